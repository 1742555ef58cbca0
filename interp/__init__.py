"""interp: record sampled generations with TransformerLens and analyse what the model did.

The public API (imported lazily, so `interp --help` answers without importing torch):

    model = interp.load_model("smollm2-135m")
    trace = interp.generate(model, "earth revolve around", max_new_tokens=20, seed=0)
    trace.save("reports/earth"); trace = interp.Trace.load("reports/earth", model=model)
    interp.logit_lens(model, trace); interp.head_roles(model)
    report = interp.ablate(model, trace, "L5H1,L9H3", mode="mean")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "interp.models",
    "freeze_imports": "interp.models",
    "Model": "interp.models",
    "DEFAULT_MODEL": "interp.models",
    "generate": "interp.generation",
    "Trace": "interp.trace",
    "GenerationSettings": "interp.trace",
    "SamplingConfig": "interp.sampling",
    "Sampler": "interp.sampling",
    "default_hooks": "interp.hooks",
    "InterpError": "interp.errors",
    "analyze": "interp.analysis.suite",
    "logit_lens": "interp.analysis.logit_lens",
    "attention": "interp.analysis.attention",
    "head_roles": "interp.analysis.attention",
    "direct_logit_attribution": "interp.analysis.attribution",
    "make_ablation": "interp.analysis.ablation",
    "ablate": "interp.analysis.ablation",
    "ablation_effect": "interp.analysis.ablation",
    "regenerate": "interp.analysis.ablation",
    "sweep": "interp.analysis.ablation",
    "parse_heads": "interp.heads",
}

__all__ = [
    "DEFAULT_MODEL",
    "GenerationSettings",
    "InterpError",
    "Model",
    "Sampler",
    "SamplingConfig",
    "Trace",
    "ablate",
    "ablation_effect",
    "analyze",
    "attention",
    "default_hooks",
    "direct_logit_attribution",
    "freeze_imports",
    "generate",
    "head_roles",
    "load_model",
    "logit_lens",
    "make_ablation",
    "parse_heads",
    "regenerate",
    "sweep",
]

if TYPE_CHECKING:
    from interp.analysis.ablation import (
        ablate,
        ablation_effect,
        make_ablation,
        regenerate,
        sweep,
    )
    from interp.analysis.attention import attention, head_roles
    from interp.analysis.attribution import direct_logit_attribution
    from interp.analysis.logit_lens import logit_lens
    from interp.analysis.suite import analyze
    from interp.errors import InterpError
    from interp.generation import generate
    from interp.heads import parse_heads
    from interp.hooks import default_hooks
    from interp.models import DEFAULT_MODEL, Model, freeze_imports, load_model
    from interp.sampling import Sampler, SamplingConfig
    from interp.trace import GenerationSettings, Trace


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
