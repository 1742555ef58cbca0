"""A metric over a trace or every row of a set, as it ran or under an intervention: one
batched teacher-forced forward, each row under the intervention it was recorded under and
then `intervention`, and each row's value with the mean and its standard error."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from jaxtyping import Float
from torch import Tensor

from interp.edits.value import Intervention
from interp.executors import Executor, merging, run_rows
from interp.interventions.measuring import measure
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.preflight import check_before_running
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
    executor: Executor | None = None,
) -> Evaluation:
    """`metric` on every row of `runs` (teacher-forced on its recorded tokens), each row as
    it was recorded (its own intervention replayed) and under `intervention` if given.
    `executor`: where the rows run (`interp.Ray(...)`; default this process).
    Returns an `Evaluation`: `values` [row], their `mean` and its `stderr`."""
    metric = check_before_running(model, runs, "evaluate", metric=metric, intervention=intervention)
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    task = partial(_values, metric=metric, intervention=intervention)
    parts = run_rows(executor, model, task, rows, "evaluate")
    values = merging.rows([v for v, _ in parts])
    stderr = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else None
    label = None if intervention is None else intervention.label
    return Evaluation(parts[0][1], values, float(values.mean()), stderr, label)


def _values(
    model: Model, rows: list[Trace], metric: Metric, intervention: Intervention | None
) -> tuple[Tensor, str]:
    """Some rows' values and the metric's label: a chunk of `evaluate`."""
    measured = measure(model, rows, metric, intervention, purpose="evaluate")
    return measured.values, measured.bound.label
