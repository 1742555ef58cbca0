"""The graph and the paired runs a circuit is found or evaluated on, every input checked
before the first forward pass: the model's graph (refused where a head's write is not
additive), the corrupted side recorded where it is an intervention, and the metric."""

from __future__ import annotations

from interp.circuits.graph import KV, Graph
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.generation.generate import record_pairs
from interp.interventions.metrics import KL, Metric, MetricFn
from interp.interventions.patching import Runs, pair_runs
from interp.interventions.preflight import check_before_running
from interp.models.model import Model
from interp.models.surgery import head_write_obstruction, kv_heads
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


def graph_of(model: Model, kv: KV = "group") -> Graph:
    """The model's graph, refused where its edges are not defined or not built yet."""
    graph = Graph(model.n_layers, model.n_heads, kv_heads(model), kv)
    if kv == "per-head" and graph.n_kv != graph.n_heads:
        raise InvalidSettingError(
            f"kv='per-head' gives each query head its own key and value input; on this "
            f"grouped-query model ({graph.n_kv} KV heads for {graph.n_heads}) interp scores "
            "the model's own graph only so far: use kv='group'"
        )
    obstruction = head_write_obstruction(model, range(model.n_layers))
    if obstruction is not None:
        raise InvalidSettingError(
            f"a head's write into the residual stream is not z @ W_O here ({obstruction}): "
            "edges out of a head are not additive, so edge scores are not defined"
        )
    return graph


def paired(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet | Intervention,
    metric: Metric | MetricFn | str | None,
    what: str = "circuit discovery",
) -> Runs:
    """The clean and corrupted runs paired row by row (an intervention's: the clean runs
    recorded under it, each noise draw a row) and the metric bound to them."""
    check_before_running(
        model, clean, what, metric=metric, intervention=corrupted, pairs_draws=True
    )
    if isinstance(corrupted, Intervention):
        clean, corrupted = record_pairs(model, clean, corrupted)
    runs = pair_runs(model, clean, corrupted, metric, "denoise", what)
    if isinstance(runs.metric, KL):
        raise InvalidSettingError(
            "the KL from the clean run has no first-order estimate (zero, with zero gradient, "
            "there): choose a metric such as a logit difference"
        )
    return runs
