"""A metric over a trace or every row of a set, as it ran or under an intervention: one
batched teacher-forced forward, each row under the intervention it was recorded under and
then `intervention`, and each row's value with the mean and its standard error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import applying
from interp.edits.value import Intervention
from interp.interventions.effect import forced_logits
from interp.interventions.metrics import KL, Metric, MetricFn, as_metric
from interp.interventions.replay import replay_hooks
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@dataclass
class Evaluation:
    """A metric's value on each row (`values`), their mean and its standard error (None for
    one row), and what the rows ran under (`intervention`: a label, None for as recorded)."""

    metric: str
    values: Float[Tensor, " row"]
    mean: float
    stderr: float | None
    intervention: str | None = None


def evaluate(
    model: Model,
    runs: Trace | TraceSet,
    metric: Metric | MetricFn | str | None = None,
    *,
    intervention: Intervention | None = None,
) -> Evaluation:
    """`metric` on every row of `runs` (teacher-forced on its recorded tokens), each row as
    it was recorded (its own intervention replayed) and under `intervention` if given.
    Returns an `Evaluation`: `values` [row], their `mean` and its `stderr`."""
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    for row in rows:
        row.bind(model)
        row.require_plain("evaluate", replayed=True)
    chosen = as_metric(metric)
    bound = chosen.bind(model, rows)
    hooks = replay_hooks(model, rows)
    if intervention is not None:
        hooks += applying.hooks(intervention, model, [applying.Row.of(r) for r in rows])
    window = forced_logits(model, rows, hooks)[:, bound.start :]
    if isinstance(chosen, KL) and intervention is not None:  # KL: from the rows as recorded
        bound.prepare(forced_logits(model, rows, replay_hooks(model, rows))[:, bound.start :])
    else:
        bound.prepare(window)
    with torch.no_grad():
        values = bound.score(window).float().cpu()
    stderr = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else None
    label = None if intervention is None else intervention.label
    return Evaluation(bound.label, values, float(values.mean()), stderr, label)
