"""Set-up for programs that own their process (the CLI, the experiment scripts): where
interp's messages go, and the import freeze. The library itself never calls these."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

_show_original = warnings.showwarning

__all__ = ["configure_output", "freeze_imports"]


def configure_output() -> None:
    """interp's log lines on stderr as `interp: ...`; library chatter off; progress bars only
    in a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("interp: %(message)s"))
    root = logging.getLogger("interp")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Libraries below us speak only through warnings we already turn into clear messages.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    logging.getLogger("root").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.showwarning = _show_warning
    if not sys.stderr.isatty():
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """interp's own warnings as one `interp: warning: ...` line; others as Python shows them."""
    from interp.errors import InterpWarning

    if issubclass(category, InterpWarning):
        print(f"interp: warning: {message}", file=sys.stderr)  # noqa: T201
    else:
        _show_original(message, category, *args, **kwargs)


def freeze_imports() -> None:
    """Import the model stack, then move every object the garbage collector tracks into its
    permanent generation.

    torch, transformers and TransformerLens leave hundreds of thousands of tracked objects
    that live as long as the process, and a fresh process's first full collection would walk
    them all inside the model load. Frozen, they are skipped by every collection; objects made
    afterwards (models, traces) are collected as usual. A library cannot do this for a user's
    notebook (it would keep the user's older cyclic garbage alive), so `load_model` never does
    it. See DEVELOPERS.md.
    """
    import gc

    import transformers  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

    gc.freeze()
