"""What every verb checks before its first forward pass, in one place: the runs against the
model, the metric against the model and the rows it reads (each answer one token, each
position inside its row), an intervention's edits (sites, heads, every row's positions) and
position groups. A study is refused in its first second, not 23 minutes in."""

from __future__ import annotations

from collections.abc import Sequence

from interp.edits import applying
from interp.edits.positions import Position
from interp.edits.resolving import Row
from interp.edits.value import Intervention, unresolved
from interp.errors import InvalidSettingError
from interp.interventions import candidates
from interp.interventions.metrics import Metric, MetricFn, as_metric
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


def check_before_running(
    model: Model,
    runs: Trace | TraceSet | Sequence[Trace],
    purpose: str,
    *,
    metric: Metric | MetricFn | str | None = None,
    answers: Sequence[Trace] | None = None,
    intervention: Intervention | Trace | TraceSet | None = None,
    groups: tuple[Position, ...] | str | None = None,
    pairs_draws: bool = False,
) -> Metric:
    """Refuse now, in one line (an `InterpError`), what would fail later: `runs` bound to
    `model` and replayable for `purpose`; `metric` bound to the rows it reads its answers from
    (`answers`, default `runs`), which needs no forward pass; an `intervention` (a verb's
    corrupting side may be runs instead: not checked here) checked against the model and
    resolved in every row; position `groups` (not "prompt" or "all") resolved in every row.
    A noise edit's draws and "rome" scale are resolved over a set only by verbs that pair
    draws with clean rows (`pairs_draws`: patch, circuit); elsewhere they are refused here.
    Returns the metric as a `Metric`."""
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    for row in rows:
        row.bind(model)
        row.require_plain(purpose, replayed=True)
    chosen = as_metric(metric).check(model)
    chosen.bind(model, rows if answers is None else list(answers))
    if isinstance(intervention, Intervention):
        if not pairs_draws:
            for e in intervention.edits:
                if (why := unresolved(e)) is not None:
                    raise InvalidSettingError(why)
        applying.check(intervention, model)
        for row in rows:
            for e in intervention.edits:
                applying.resolve(e, Row.of(row))
    if isinstance(groups, tuple):
        candidates.columns(rows, groups)
    return chosen
