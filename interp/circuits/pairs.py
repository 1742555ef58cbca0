"""The graph and the paired runs a circuit is found or evaluated on, every input checked
before the first forward pass: the model's graph (refused where a head's write is not
additive), the corrupted side recorded where it is an intervention, and the metric. With
mean ablation an edge's corrupted value is its writer's mean output over a reference set (over
its rows and positions, EAP-IG's "mean"), the same at every position of every pair; with
mean-positional, over its rows at each position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from interp.circuits.graph import KV, Graph
from interp.circuits.rebuild import circuit_metrics
from interp.circuits.runs import batches, writes
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.generation.generate import record_pairs
from interp.interventions.measuring import measure
from interp.interventions.metrics import KL, Metric, MetricFn, as_metric
from interp.interventions.patching import Runs
from interp.interventions.patching_runs import pair_runs
from interp.interventions.preflight import check_before_running
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.surgery import head_write_obstruction, kv_heads
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

Method = Literal["eap", "eap-ig", "exact"]
METHODS: tuple[Method, ...] = ("eap", "eap-ig", "exact")
Estimate = Literal["eap", "eap-ig"]  # the first-order methods (node scores have only these)
ESTIMATES: tuple[Estimate, ...] = ("eap", "eap-ig")
Ablation = Literal["patch", "mean", "mean-positional"]
ABLATIONS: tuple[Ablation, ...] = ("patch", "mean", "mean-positional")


def check_settings(
    method: str, steps: int, batch_size: int, methods: Sequence[str] = METHODS
) -> int:
    """Refuse a method not in `methods` or a bad count in one line; the gradients a batch
    takes (EAP one, EAP-IG `steps`; exact scores take none, and record 1)."""
    if method not in methods:
        raise InvalidSettingError(f"unknown method {method!r}; choose one of {', '.join(methods)}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSettingError(f"{name} must be a whole number of at least 1, got {value!r}")
    return steps if method == "eap-ig" else 1


def graph_of(model: Model, kv: KV = "group") -> Graph:
    """The model's graph, refused where its edges are not defined or not built yet."""
    graph = Graph(model.n_layers, model.n_heads, kv_heads(model), kv)
    obstruction = head_write_obstruction(model, range(model.n_layers))
    if obstruction is not None:
        raise InvalidSettingError(
            f"a head's write into the residual stream is not z @ W_O here ({obstruction}): "
            "edges out of a head are not additive, so edge scores are not defined (node scores "
            "are: interp.node_scores)"
        )
    return graph


def paired(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet | Intervention,
    metric: Metric | MetricFn | str | None,
    what: str = "circuit discovery",
    graph: Graph | None = None,
) -> Runs:
    """The clean and corrupted runs paired row by row (an intervention's: the clean runs
    recorded under it, each noise draw a row) and the metric bound to them."""
    check_before_running(
        model, clean, what, metric=metric, intervention=corrupted, pairs_draws=True
    )
    if isinstance(corrupted, Intervention):
        clean, corrupted = record_pairs(model, clean, corrupted)
    chosen = as_metric(metric)
    _refuse_kl(chosen)
    if graph is not None:
        _refuse_grouped_edits(graph, [clean] if isinstance(clean, Trace) else list(clean))
    # a batch of pairs a forward: the logits of every pair are never held at once
    return pair_runs(model, clean, corrupted, chosen, "denoise", what, batch=16)


def metric_values(
    model: Model, rows: Sequence[Trace], metric: Metric, what: str, size: int
) -> Tensor:
    """Each row's metric, `size` rows a forward: the logits of one batch at a time."""
    parts = [
        measure(model, rows[i : i + size], metric, purpose=what).values
        for i in range(0, len(rows), size)
    ]
    return torch.cat(parts)


def _refuse_grouped_edits(graph: Graph, cleans: Sequence[Trace]) -> None:
    """With a key and value input per query head on a grouped-query model (the model run
    ungrouped), refuse clean runs recorded under an edit of a key or value, whose KV-head
    axis would then count query heads."""
    if graph.kv != "per-head" or graph.n_kv == graph.n_heads:
        return
    for i, run in enumerate(cleans):
        for e in run.intervention.edits if run.intervention is not None else ():
            if H.by_kv_heads(e.hook):
                raise InvalidSettingError(
                    f"clean row {i} is recorded under an edit of a key or value ({e.label}): "
                    "with kv='per-head' on a grouped-query model its KV heads are copied per "
                    "query head; use kv='group'"
                )


def _refuse_kl(metric: Metric) -> None:
    if isinstance(metric, KL):
        raise InvalidSettingError(
            "the KL from the clean run has no first-order estimate (zero, with zero gradient, "
            "there): choose a metric such as a logit difference"
        )


def mean_paired(
    model: Model,
    clean: Trace | TraceSet,
    reference: Trace | TraceSet | Intervention,
    metric: Metric | MetricFn | str | None,
    graph: Graph,
    what: str = "circuit discovery",
    batch_size: int = 16,
    positional: bool = False,
) -> tuple[Runs, Tensor]:
    """The clean runs, each paired with itself under mean ablation, and every writer's mean
    output over `reference` (`[writer, d_model]`; `positional`, EAP-IG's "mean-positional":
    at each position, `[pos, writer, d_model]`, every run of one length): the corrupted
    metric is the empty circuit's, every edge carrying the mean."""
    if isinstance(reference, Intervention):
        raise InvalidSettingError("mean ablation averages a reference set of runs, not an edit")
    check_before_running(model, clean, what, metric=metric)
    cleans = [clean] if isinstance(clean, Trace) else list(clean)
    refs = [reference] if isinstance(reference, Trace) else list(reference)
    for row in refs:
        row.bind(model)
        row.require_plain(what, replayed=True)
    chosen = as_metric(metric)
    _refuse_kl(chosen)
    _refuse_grouped_edits(graph, cleans)
    if positional:
        n = refs[0].n_positions
        for side, rows in (("reference", refs), ("clean", cleans)):
            for i, row in enumerate(rows):
                if row.n_positions != n:
                    raise InvalidSettingError(
                        f"mean-positional ablation averages each position over runs of one "
                        f"length: {side} row {i} has {row.n_positions} tokens, reference row 0 "
                        f"has {n}"
                    )
    means = mean_writes(model, refs, batch_size, positional)
    clean_m = metric_values(model, cleans, chosen, what, size=batch_size)
    empty = torch.zeros_like(graph.mask)
    corrupt_m = circuit_metrics(
        model, cleans, cleans, chosen, graph, [empty], batch_size, means=means
    )[0]
    runs = Runs(cleans, cleans, chosen, "denoise", clean_m, corrupt_m, torch.empty(0))
    return runs, means


def mean_writes(
    model: Model, runs: Sequence[Trace], batch_size: int = 16, positional: bool = False
) -> Tensor:
    """Every writer's output averaged over the runs' rows and positions, `[writer, d_model]`;
    `positional`: over the rows at each position, `[pos, writer, d_model]`."""
    total: Tensor | None = None
    count = 0
    for rows in batches(runs, batch_size):
        out = writes(model, [runs[i] for i in rows]).double()  # [row, pos, writer, d]
        part = out.sum(0) if positional else out.sum((0, 1))
        total = part if total is None else total + part
        count += out.shape[0] * (1 if positional else out.shape[1])
    assert total is not None
    return (total / count).float()
