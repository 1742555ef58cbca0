"""Runs recorded under an intervention, run again under it: a trace keeps its intervention's
serialised form, and the consumers that recompute a run (patching's baselines, the exact
runner) apply it to that run's rows alone, so a baseline is the run's own and not the plain
model's."""

from __future__ import annotations

import json
from collections.abc import Sequence

from interp.edits import applying
from interp.edits.applying import HookPair
from interp.edits.value import Intervention
from interp.errors import TraceFormatError
from interp.models.model import Model
from interp.trace.trace import Trace


def intervention_of(trace: Trace) -> Intervention | None:
    """The intervention a run was recorded under, read back from its provenance (None for a
    plain run)."""
    spec = trace.intervention_spec
    if spec is None:
        return None
    where = f"the intervention of the run of {trace.origin or repr(trace.prompt[:40])}"
    try:
        value = json.loads(spec)
    except ValueError:
        raise TraceFormatError(f"{where} is not JSON") from None
    return Intervention.from_json(value, where)


def replay_hooks(model: Model, traces: Sequence[Trace], *, start_layer: int = -1) -> list[HookPair]:
    """Hooks that run each of `traces` (one batch item each, unpadded or right-padded) under
    the intervention it was recorded under, from `start_layer` on (see `applying.hooks`)."""
    specs = [t.intervention_spec for t in traces]
    out: list[HookPair] = []
    for spec in dict.fromkeys(s for s in specs if s is not None):
        first = traces[specs.index(spec)]
        intervention = intervention_of(first)
        assert intervention is not None
        rows = [
            applying.Row.of(t) if s == spec else None for t, s in zip(traces, specs, strict=True)
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
