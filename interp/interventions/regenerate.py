"""Generating again with an ablation: the same prompt, settings and sampler noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interp.edits.value import Intervention
from interp.generation.generate import generate
from interp.interventions import sites
from interp.interventions.replay import composed, intervention_of
from interp.models.model import Model
from interp.trace.trace import INTERVENTION_KEY, Trace


@dataclass
class Regeneration:
    """Baseline and ablated generations from the same prompt, settings and sampler noise."""

    baseline: Trace
    ablated: Trace
    first_divergence: int | None  # index into the continuation, None if identical


def regeneration_settings(trace: Trace) -> dict[str, Any]:
    """generate() arguments that repeat the trace's run. A forced continuation is replaced by
    as many sampled tokens with the trace's seed (greedy where it has none)."""
    s = trace.settings
    if s.continuation is None:
        return {
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "seed": s.seed,
            "stop_at_eos": s.stop_at_eos,
        }
    return {
        "max_new_tokens": trace.n_generated,
        "temperature": s.temperature if s.seed is not None else 0.0,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "seed": s.seed if s.seed is not None else 0,
        "stop_at_eos": False,
    }


def regenerate(
    model: Model, trace: Trace, ablation: Intervention, *, progress: bool = False
) -> Regeneration:
    """Generate again with the heads ablated, or under any intervention (as well as under what
    the trace was recorded under); the baseline is the trace itself for a sampled trace
    (regenerating it unablated gives the same tokens), or an unablated regeneration for a
    forced continuation. Returns a `Regeneration` (both traces and their first divergence)."""
    trace.bind(model)
    trace.require_plain("regenerating it", replayed=True)
    settings = regeneration_settings(trace)
    prompt = trace.token_ids[: trace.prompt_len].tolist()
    hooks = trace.hook_names
    recorded = intervention_of(trace)
    if trace.settings.continuation is None:
        baseline = trace
    else:
        baseline = generate(
            model, prompt, hooks=hooks, intervention=recorded, progress=progress, **settings
        )
    move = composed(trace, ablation)
    ablated = generate(model, prompt, hooks=hooks, intervention=move, progress=progress, **settings)
    ablated.prompt = baseline.prompt = trace.prompt
    described = sites.describe(ablation)
    if described is not None:  # in words; another intervention keeps its label
        under = "" if recorded is None else f" under {recorded.label}"
        ablated.provenance[INTERVENTION_KEY] = (
            f"a {described.mode} ablation of {described.label}{under}"
        )
    return Regeneration(baseline, ablated, first_divergence(baseline, ablated))


def first_divergence(a: Trace, b: Trace) -> int | None:
    """First continuation index where the two runs' tokens differ (or one has ended)."""
    x, y = a.continuation_ids, b.continuation_ids
    for i, (u, v) in enumerate(zip(x, y, strict=False)):
        if u != v:
            return i
    return None if len(x) == len(y) else min(len(x), len(y))
