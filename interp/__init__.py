"""interp: record sampled generations with TransformerLens and analyse and intervene on what
the model did.

The public API, imported lazily (`import interp` does not import torch):

    model = interp.load_model("smollm2-135m")
    trace = interp.generate(model, "earth revolve around", max_new_tokens=20, seed=0)
    lens = interp.logit_lens(model, trace)
    report = interp.ablate(model, trace, "L5H1,L9H3", mode="mean")

Process set-up for scripts is in `interp.program`, directory checks in `interp.store`, the
compute-and-store steps the command line composes in `interp.workflow`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from interp.report import display as _display

__version__ = "0.1.0"

_EXPORTS = {
    # models and generation
    "load_model": "interp.models.load",
    "Model": "interp.models.model",
    "DEFAULT_MODEL": "interp.models.registry",
    "generate": "interp.generation.generate",
    "record_under": "interp.generation.generate",
    "Trace": "interp.trace.trace",
    "TraceSet": "interp.trace.traceset",
    "GenerationSettings": "interp.trace.trace",
    "SamplingConfig": "interp.generation.sampling",
    "default_hooks": "interp.models.hooks",
    # analyses and their results
    "analyze": "interp.analysis.suite",
    "Analysis": "interp.analysis.suite",
    "SetAnalysis": "interp.analysis.suite",
    "logit_lens": "interp.analysis.logit_lens",
    "LogitLensResult": "interp.analysis.logit_lens",
    "LogitLensSetResult": "interp.analysis.logit_lens",
    "attention": "interp.analysis.attention",
    "AttentionResult": "interp.analysis.attention",
    "AttentionSetResult": "interp.analysis.attention",
    "head_roles": "interp.analysis.attention",
    "HeadRoles": "interp.analysis.attention",
    "direct_logit_attribution": "interp.analysis.attribution",
    "AttributionResult": "interp.analysis.attribution",
    "AttributionSetResult": "interp.analysis.attribution",
    "Head": "interp.models.heads",
    "Site": "interp.models.site",
    "site": "interp.models.site",
    "parse_heads": "interp.models.heads",
    # interventions and their results
    "Intervention": "interp.edits.value",
    "edit": "interp.edits.value",
    "span": "interp.edits.positions",
    "ablation": "interp.interventions.ablation",
    "ablate": "interp.interventions.ablate",
    "AblationReport": "interp.interventions.ablation_record",
    "AblationEffect": "interp.interventions.effect",
    "regenerate": "interp.interventions.regenerate",
    "Regeneration": "interp.interventions.regenerate",
    "PairedSamples": "interp.interventions.sample_stats",
    "sweep": "interp.interventions.sweep",
    "SweepResult": "interp.interventions.sweep",
    "evaluate": "interp.interventions.evaluate",
    "Evaluation": "interp.interventions.evaluate",
    "patch": "interp.interventions.patching",
    "path_patch": "interp.interventions.path_patching",
    "Patching": "interp.interventions.patching_result",
    # circuits
    "circuit": "interp.circuits.scores",
    "CircuitScores": "interp.circuits.scores",
    "evaluate_circuit": "interp.circuits.evaluate",
    "node_scores": "interp.circuits.nodes",
    "NodeScores": "interp.circuits.nodes",
    # steering
    "steering_vector": "interp.steering.vectors",
    "SteeringVectors": "interp.steering.vectors",
    "SteeringVector": "interp.steering.vector",
    "steer_eval": "interp.steering.evaluate",
    "SteeringEval": "interp.steering.result",
    # features
    "load_dictionary": "interp.dictionaries.files",
    "Dictionary": "interp.dictionaries.dictionary",
    # where a set's rows run
    "Ray": "interp.executors",
    "Local": "interp.executors",
    # errors
    "InterpError": "interp.errors",
    "metrics": "interp.interventions.metrics",  # the module itself
}

__all__ = sorted(_EXPORTS)  # the public names, listed once: in _EXPORTS

if TYPE_CHECKING:  # for mypy and the API reference: _EXPORTS's names, re-exported
    from interp.analysis.attention import AttentionResult as AttentionResult
    from interp.analysis.attention import AttentionSetResult as AttentionSetResult
    from interp.analysis.attention import HeadRoles as HeadRoles
    from interp.analysis.attention import attention as attention
    from interp.analysis.attention import head_roles as head_roles
    from interp.analysis.attribution import AttributionResult as AttributionResult
    from interp.analysis.attribution import AttributionSetResult as AttributionSetResult
    from interp.analysis.attribution import direct_logit_attribution as direct_logit_attribution
    from interp.analysis.logit_lens import LogitLensResult as LogitLensResult
    from interp.analysis.logit_lens import LogitLensSetResult as LogitLensSetResult
    from interp.analysis.logit_lens import logit_lens as logit_lens
    from interp.analysis.suite import Analysis as Analysis
    from interp.analysis.suite import SetAnalysis as SetAnalysis
    from interp.analysis.suite import analyze as analyze
    from interp.circuits.evaluate import evaluate_circuit as evaluate_circuit
    from interp.circuits.nodes import NodeScores as NodeScores
    from interp.circuits.nodes import node_scores as node_scores
    from interp.circuits.scores import CircuitScores as CircuitScores
    from interp.circuits.scores import circuit as circuit
    from interp.dictionaries.dictionary import Dictionary as Dictionary
    from interp.dictionaries.files import load_dictionary as load_dictionary
    from interp.edits.positions import span as span
    from interp.edits.value import Intervention as Intervention
    from interp.edits.value import edit as edit
    from interp.errors import InterpError as InterpError
    from interp.executors import Local as Local
    from interp.executors import Ray as Ray
    from interp.generation.generate import generate as generate
    from interp.generation.generate import record_under as record_under
    from interp.generation.sampling import SamplingConfig as SamplingConfig
    from interp.interventions import metrics as metrics
    from interp.interventions.ablate import ablate as ablate
    from interp.interventions.ablation import ablation as ablation
    from interp.interventions.ablation_record import AblationReport as AblationReport
    from interp.interventions.effect import AblationEffect as AblationEffect
    from interp.interventions.evaluate import Evaluation as Evaluation
    from interp.interventions.evaluate import evaluate as evaluate
    from interp.interventions.patching import patch as patch
    from interp.interventions.patching_result import Patching as Patching
    from interp.interventions.path_patching import path_patch as path_patch
    from interp.interventions.regenerate import Regeneration as Regeneration
    from interp.interventions.regenerate import regenerate as regenerate
    from interp.interventions.sample_stats import PairedSamples as PairedSamples
    from interp.interventions.sweep import SweepResult as SweepResult
    from interp.interventions.sweep import sweep as sweep
    from interp.models.heads import Head as Head
    from interp.models.heads import parse_heads as parse_heads
    from interp.models.hooks import default_hooks as default_hooks
    from interp.models.load import load_model as load_model
    from interp.models.model import Model as Model
    from interp.models.registry import DEFAULT_MODEL as DEFAULT_MODEL
    from interp.models.site import Site as Site
    from interp.models.site import site as site
    from interp.steering.evaluate import steer_eval as steer_eval
    from interp.steering.result import SteeringEval as SteeringEval
    from interp.steering.vector import SteeringVector as SteeringVector
    from interp.steering.vectors import SteeringVectors as SteeringVectors
    from interp.steering.vectors import steering_vector as steering_vector
    from interp.trace.trace import GenerationSettings as GenerationSettings
    from interp.trace.trace import Trace as Trace
    from interp.trace.traceset import TraceSet as TraceSet


_display.register()  # notebook display of results, in a running IPython


_MOVED = {  # names taken off the top level, and where they went (said for one release)
    "make_ablation": "interp.ablation (the edits, an Intervention) or "
    "interp.interventions.make_ablation (the values)",
    "make_intervention": "interp.ablation (the edits, an Intervention) or "
    "interp.interventions.make_intervention (the values)",
    "ablate_samples": "interp.ablate(model, runs, heads, samples=N) "
    "(or interp.interventions.ablate_samples)",
    "ablation_effect": "interp.ablate(model, trace, heads, regenerate_text=False).effect "
    "(or interp.interventions.ablation_effect)",
    "freeze_imports": "interp.program.freeze_imports",
    "configure_output": "interp.program.configure_output",
    "check_output_dir": "interp.store.check_output_dir",
    "library_versions": "interp.provenance.library_versions",
    "analyze_into": "interp.workflow.analyze_into",
    "sweep_into": "interp.workflow.sweep_into",
    "ablate_into": "interp.workflow.ablate_into",
    "model_head_roles": "interp.workflow.model_head_roles",
    "Sampler": "interp.generation.sampling.Sampler",
    "parse_label": "interp.models.heads.parse_label (results hold Head values: PatchingResult.top, "
    "SweepResult.verified_heads, AblationEffect.heads)",
}


# modules reached as attributes (`interp.program.freeze_imports()`) without importing them:
# the stage packages, and short names for the plumbing scripts use and the metrics
_SUBMODULES = {
    **{
        name: f"interp.{name}"
        for name in (
            "analysis",
            "cli",
            "dictionaries",
            "edits",
            "errors",
            "executors",
            "features",
            "files",
            "generation",
            "interventions",
            "models",
            "report",
            "steering",
            "trace",
        )
    },
    "metrics": "interp.interventions.metrics",
    "program": "interp.cli.program",
    "provenance": "interp.models.provenance",
    "store": "interp.files.store",
    "workflow": "interp.cli.workflow",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MOVED:
        raise AttributeError(f"interp.{name} has moved: use {_MOVED[name]}")
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
