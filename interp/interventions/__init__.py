"""Interventions: change what the model computes and measure the effect.

- `ablation`: ablations (mean, zero, resample) built as `Intervention`s, the one value every
  consumer runs (`replacing`: values put in at a site; `ablation_values`: each mode's values);
- `measuring`: the one way to measure (`measure`: runs replayed, an intervention applied,
  each row's metric value and its logits), which every consumer that scores a run calls;
- `effect`: the teacher-forced effect on a recorded continuation;
- `regenerate`: generating again with the same prompt, settings and sampler noise;
- `sweep`: every head alone, exact (from the intervened layer on) or triaged;
- `attribution_patching`: the first-order estimate the triage ranks by;
- `ablate`: effect plus regeneration in one call (of heads or of any `interp.edits`
  intervention), `ablation_record` its result and record on disk; `samples`: paired
  regenerations of an intervention (`sample_stats`: their statistics; `ablate_samples` on a
  trace or set);
- `sites`, `runner`: where an intervention acts, and the exact batched run from that layer;
- `patching`, `path_patching`, `patching_result`, `patching_site`: activation and path
  patching between a clean and a corrupted run, and their results (the whole and its
  directory; one site's);
- `replay`: a run recorded under an `interp.edits` intervention, run again under it;
  `evaluate`: a metric over a trace or set, as recorded or under an intervention.
"""

from interp.interventions.ablate import ablate, ablate_samples
from interp.interventions.ablation import (
    MODES,
    AblationMode,
    ablation_parts,
    make_ablation,
    make_intervention,
    replacing,
)
from interp.interventions.ablation_record import AblationRecord, AblationReport
from interp.interventions.attribution_patching import attribution_estimate
from interp.interventions.effect import AblationEffect, ablation_effect, continuation_logprobs
from interp.interventions.evaluate import Evaluation, evaluate
from interp.interventions.measuring import Measured, measure
from interp.interventions.patching import patch
from interp.interventions.patching_result import Patching
from interp.interventions.patching_site import (
    PATCH_SITES,
    HeadPosition,
    PatchingResult,
    SitePosition,
)
from interp.interventions.path_patching import path_patch
from interp.interventions.regenerate import Regeneration, first_divergence, regenerate
from interp.interventions.sample_stats import PairedSamples
from interp.interventions.samples import paired_samples
from interp.interventions.sweep import SweepMethod, SweepResult, exact_effects, sweep

__all__ = [
    "Evaluation",
    "evaluate",
    "Measured",
    "measure",
    "PATCH_SITES",
    "Patching",
    "PatchingResult",
    "HeadPosition",
    "SitePosition",
    "MODES",
    "ablation_parts",
    "make_intervention",
    "replacing",
    "patch",
    "PairedSamples",
    "paired_samples",
    "path_patch",
    "AblationEffect",
    "AblationMode",
    "AblationRecord",
    "AblationReport",
    "Regeneration",
    "SweepMethod",
    "SweepResult",
    "ablate",
    "ablate_samples",
    "ablation_effect",
    "attribution_estimate",
    "continuation_logprobs",
    "exact_effects",
    "first_divergence",
    "make_ablation",
    "regenerate",
    "sweep",
]
