"""Notebook display: the report registers HTML renderers for the result types with IPython's
`text/html` formatter, so the result types themselves know nothing of rendering.

Registration is by module and class name: nothing is imported until a result is displayed.
`import interp` registers them in a running IPython (Jupyter included); `register()` does it
for a shell started afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# (module, class) -> the renderer's name in interp.report.notebook
RENDERERS = {
    ("interp.trace.trace", "Trace"): "trace_html",
    ("interp.analysis.logit_lens", "LogitLensResult"): "lens_html",
    ("interp.analysis.attention", "AttentionResult"): "attention_html",
    ("interp.analysis.attention", "HeadRoles"): "roles_html",
    ("interp.interventions.sweep", "SweepResult"): "sweep_html",
    ("interp.interventions.ablation_record", "AblationReport"): "ablation_html",
    ("interp.interventions.patching_result", "Patching"): "patching_html",
}


def register(shell: Any = None) -> bool:
    """Register the renderers with `shell` (default: the running IPython, if any); False
    when there is no IPython shell."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is None:
            return False
    formatter = shell.display_formatter.formatters["text/html"]
    for (module, name), renderer in RENDERERS.items():
        formatter.for_type_by_name(module, name, _deferred(renderer))
    return True


def _deferred(renderer: str) -> Callable[[Any], str]:
    def render(result: Any) -> str:
        from interp.report import notebook

        return str(getattr(notebook, renderer)(result))

    return render
