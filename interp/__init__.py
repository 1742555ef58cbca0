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

from interp.report import display as _display

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "interp.models.load",
    "freeze_imports": "interp.program",
    "Model": "interp.models.model",
    "DEFAULT_MODEL": "interp.models.registry",
    "generate": "interp.generation",
    "Trace": "interp.trace",
    "TraceSet": "interp.traceset",
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
    "Intervention": "interp.edits.value",
    "edit": "interp.edits.value",
    "span": "interp.edits.value",
    "record_under": "interp.generation",
    "evaluate": "interp.interventions.evaluate",
    "ablation": "interp.interventions.ablation",
    "ablate": "interp.interventions.ablate",
    "ablate_samples": "interp.interventions.ablate",
    "ablation_effect": "interp.interventions.effect",
    "regenerate": "interp.interventions.regenerate",
    "sweep": "interp.interventions.sweep",
    "patch": "interp.interventions.patching",
    "path_patch": "interp.interventions.path_patching",
    "Head": "interp.heads",
    "parse_heads": "interp.heads",
    "parse_label": "interp.heads",
    "configure_output": "interp.program",
    "library_versions": "interp.provenance",
    "check_output_dir": "interp.store",
    "analyze_into": "interp.workflow",
    "sweep_into": "interp.workflow",
    "ablate_into": "interp.workflow",
    "model_head_roles": "interp.workflow",
    "metrics": "interp.metrics",  # the module itself
    "steering_vector": "interp.steering.vectors",
    "SteeringVector": "interp.steering.vector",
    "steer_eval": "interp.steering.evaluate",
}

__all__ = [
    "DEFAULT_MODEL",
    "GenerationSettings",
    "Head",
    "InterpError",
    "Intervention",
    "Model",
    "Sampler",
    "SamplingConfig",
    "SteeringVector",
    "Trace",
    "TraceSet",
    "ablate",
    "ablate_samples",
    "ablate_into",
    "ablation",
    "ablation_effect",
    "analyze",
    "analyze_into",
    "attention",
    "check_output_dir",
    "configure_output",
    "default_hooks",
    "direct_logit_attribution",
    "edit",
    "evaluate",
    "freeze_imports",
    "generate",
    "head_roles",
    "library_versions",
    "load_model",
    "logit_lens",
    "metrics",
    "model_head_roles",
    "parse_heads",
    "parse_label",
    "patch",
    "path_patch",
    "record_under",
    "regenerate",
    "span",
    "steer_eval",
    "steering_vector",
    "sweep",
    "sweep_into",
]

if TYPE_CHECKING:
    from interp import metrics
    from interp.analysis.attention import attention, head_roles
    from interp.analysis.attribution import direct_logit_attribution
    from interp.analysis.logit_lens import logit_lens
    from interp.analysis.suite import analyze
    from interp.edits.value import Intervention, edit, span
    from interp.errors import InterpError
    from interp.generation import generate, record_under
    from interp.heads import Head, parse_heads, parse_label
    from interp.hooks import default_hooks
    from interp.interventions.ablate import ablate, ablate_samples
    from interp.interventions.ablation import ablation
    from interp.interventions.effect import ablation_effect
    from interp.interventions.evaluate import evaluate
    from interp.interventions.patching import patch
    from interp.interventions.path_patching import path_patch
    from interp.interventions.regenerate import regenerate
    from interp.interventions.sweep import sweep
    from interp.models.load import load_model
    from interp.models.model import Model
    from interp.models.registry import DEFAULT_MODEL
    from interp.program import configure_output, freeze_imports
    from interp.provenance import library_versions
    from interp.sampling import Sampler, SamplingConfig
    from interp.steering.evaluate import steer_eval
    from interp.steering.vector import SteeringVector
    from interp.steering.vectors import steering_vector
    from interp.store import check_output_dir
    from interp.trace import GenerationSettings, Trace
    from interp.traceset import TraceSet
    from interp.workflow import ablate_into, analyze_into, model_head_roles, sweep_into


_display.register()  # notebook display of results, in a running IPython


_MOVED = {  # names taken off the top level, and where they went (said for one release)
    "make_ablation": "interp.ablation (the edits, an Intervention) or "
    "interp.interventions.make_ablation (the values)",
    "make_intervention": "interp.ablation (the edits, an Intervention) or "
    "interp.interventions.make_intervention (the values)",
}


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return importlib.import_module(_EXPORTS[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MOVED:
        raise AttributeError(f"interp.{name} has moved: use {_MOVED[name]}")
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
