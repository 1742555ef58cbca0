"""Runs recorded under an intervention, run again under it: a trace holds its intervention
as a value, and the consumers that recompute a run (patching's baselines, the exact runner)
apply it to that run's rows alone, so a baseline is the run's own and not the plain
model's."""

from __future__ import annotations

from collections.abc import Sequence

from interp.edits import applying
from interp.edits.applying import HookPair
from interp.edits.value import Intervention
from interp.models.model import Model
from interp.trace.trace import Trace


def intervention_of(trace: Trace) -> Intervention | None:
    """The intervention a run was recorded under (None for a plain run)."""
    return trace.intervention


def replay_hooks(model: Model, traces: Sequence[Trace], *, start_layer: int = -1) -> list[HookPair]:
    """Hooks that run each of `traces` (one batch item each, unpadded or right-padded) under
    the intervention it was recorded under, from `start_layer` on (see `applying.hooks`)."""
    found = [t.intervention for t in traces]
    out: list[HookPair] = []
    for intervention in {id(i): i for i in found if i is not None}.values():
        rows = [
            applying.Row.of(t) if i is intervention else None
            for t, i in zip(traces, found, strict=True)
        ]
        out += applying.hooks(intervention, model, rows, start_layer=start_layer)
    return out


def composed(trace: Trace, extra: Intervention | None) -> Intervention | None:
    """What to run `trace`'s tokens under: the intervention it was recorded under, then
    `extra` (None where there is neither)."""
    recorded = intervention_of(trace)
    if extra is None or recorded is None:
        return recorded if extra is None else extra
    return recorded + extra


def hooks_under(
    model: Model, rows: Sequence[Trace], intervention: Intervention | None
) -> list[HookPair]:
    """Hooks applying `intervention` to every one of `rows` (one batch item each)."""
    if intervention is None:
        return []
    return applying.hooks(intervention, model, [applying.Row.of(r) for r in rows])
