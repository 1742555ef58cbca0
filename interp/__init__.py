"""interp: record sampled generations with TransformerLens and analyse what the model did.

The public API (imported lazily, so `interp --help` answers without importing torch):

    model = interp.load_model("smollm2-135m")
    trace = interp.generate(model, "earth revolve around", max_new_tokens=20, seed=0)
    trace.save("reports/earth"); trace = interp.Trace.load("reports/earth", model=model)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "interp.models",
    "Model": "interp.models",
    "DEFAULT_MODEL": "interp.models",
    "generate": "interp.generation",
    "Trace": "interp.trace",
    "GenerationSettings": "interp.trace",
    "SamplingConfig": "interp.sampling",
    "Sampler": "interp.sampling",
    "default_hooks": "interp.hooks",
    "InterpError": "interp.errors",
}

__all__ = [
    "DEFAULT_MODEL",
    "GenerationSettings",
    "InterpError",
    "Model",
    "Sampler",
    "SamplingConfig",
    "Trace",
    "default_hooks",
    "generate",
    "load_model",
]

if TYPE_CHECKING:
    from interp.errors import InterpError
    from interp.generation import generate
    from interp.hooks import default_hooks
    from interp.models import DEFAULT_MODEL, Model, load_model
    from interp.sampling import Sampler, SamplingConfig
    from interp.trace import GenerationSettings, Trace


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
