"""A given circuit's metric, exactly, and its faithfulness between the full (clean) and the
empty (corrupted) circuit; the exact forward itself is `interp.circuits.rebuild`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from interp.circuits.graph import KV, Edge
from interp.circuits.pairs import graph_of, paired
from interp.circuits.rebuild import circuit_metrics
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.interventions.metrics import Metric, MetricFn
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@dataclass
class Evaluated:
    """A circuit's metric: each pair's, how many edges it kept, and the full (clean) and
    empty (corrupted) circuits' means its faithfulness is measured between."""

    per_row: Tensor
    edges: int
    full: float
    empty: float

    @property
    def mean(self) -> float:
        return float(self.per_row.mean())

    @property
    def faithfulness(self) -> float:
        """(m(C) - m(empty)) / (m(full) - m(empty)) on the dataset mean; refused where the
        full and the empty circuit give the same metric."""
        if abs(self.full - self.empty) <= 1e-6 * max(1.0, abs(self.full)):
            raise InvalidSettingError(
                f"the full and the empty circuit give the same metric ({self.full:.6g}): "
                "faithfulness divides by their difference"
            )
        return (self.mean - self.empty) / (self.full - self.empty)


def evaluate_circuit(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet | Intervention,
    edges: Sequence[Edge | str] | Tensor,
    *,
    metric: Metric | MetricFn | str | None = None,
    kv: KV = "group",
    batch_size: int = 16,
    progress: bool = False,
) -> Evaluated:
    """A given circuit's metric, exactly, with no scores computed: its `edges` carry what it
    computes, every other edge the corrupted value (see the module's docstring)."""
    graph = graph_of(model, kv)
    included = graph.included(edges)
    runs = paired(model, clean, corrupted, metric, "circuit evaluation", graph)
    values = circuit_metrics(
        model, runs.cleans, runs.corrupts, runs.metric, graph, [included], batch_size, progress
    )[0]
    full, empty = float(runs.clean_m.mean()), float(runs.corrupt_m.mean())
    return Evaluated(values, int(included.sum()), full, empty)
