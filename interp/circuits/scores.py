"""Edge attribution over the whole graph (`interp.circuits.graph`): the score of an edge u->v
estimates the change in the metric when that edge alone carries the corrupted run's value of
u, averaged over pairs, so its sign means what it says.

- `eap` (Syed et al. 2023): sum over positions of (corrupted out(u) - clean out(u)) .
  d metric / d input(v), the gradient taken on the clean run.
- `eap-ig` (EAP-IG-inputs, Hanna et al. 2024): the same endpoint difference, contracted with
  the readers' gradients averaged over m runs of the clean tokens from the input embeddings
  corrupted + (k/m)(clean - corrupted), k = 0 .. m-1 (a left Riemann sum), summed over the
  steps before the one contraction a batch.
- `exact`: not an estimate but the change itself, each edge patched alone (MIB's exact edge
  patching): one forward a batch of pairs for each edge, for small graphs or few pairs.

Each reader's gradient is taken at its own copy of its input (a head's query, a KV group's key
or value, TransformerLens's split Q/K/V input; an MLP's before its norm; the final norm's
input), so it counts only the path through that reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor

from interp.circuits.curve import (
    FRACTIONS,
    SIZES,
    Faithfulness,
    Ranking,
    faithfulness_curves,
    ranked,
)
from interp.circuits.evaluate import Evaluated
from interp.circuits.graph import KV, Edge, Graph
from interp.circuits.pairs import (
    ABLATIONS,
    Ablation,
    Method,
    check_settings,
    graph_of,
    mean_paired,
    paired,
)
from interp.circuits.rebuild import circuit_metrics
from interp.circuits.runs import bar, batches, reader_grads, writes, writes_of
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, describe, run_rows
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.patching import Runs
from interp.models.model import Model
from interp.models.site import Site
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

EXACT_CHUNK = 256  # edges evaluated in one pass over the data by `exact_effects`


@dataclass
class CircuitScores:
    """Every edge's score (`scores[writer, reader]`, 0 where there is no edge), with how it
    was computed and the runs' metric means."""

    graph: Graph
    scores: Tensor
    method: Method
    steps: int
    metric: str
    rows: int
    clean_metric: float
    corrupted_metric: float
    model_name: str = ""
    ablation: Ablation = "patch"
    # what `evaluate` runs: the model and the paired runs, in this process only
    runs: tuple[Model, Runs] | None = field(default=None, repr=False)
    means: Tensor | None = field(default=None, repr=False)  # mean ablation's [writer, d]
    executor: dict[str, Any] = field(default_factory=dict)  # where the scores ran; {}: here

    def evaluate(
        self, keep: Sequence[Edge | str] | Tensor | None = None, drop: Sequence[Edge | str] = ()
    ) -> Evaluated:
        """The circuit's metric, exactly: `keep` its edges (all by default; a bool
        `[writer, reader]` mask, or edges), less `drop`; every other edge carries the
        corrupted run's value (see `interp.circuits.evaluate`)."""
        included = self.graph.included(keep, drop)
        values = self.metrics([included])[0]
        kept = int((included & self.graph.mask).sum())
        return Evaluated(values, kept, self.clean_metric, self.corrupted_metric)

    def exact(self, edges: Sequence[Edge | str], progress: bool = False) -> dict[Edge, float]:
        """Each edge's exact score: the mean metric with that edge alone carrying the
        corrupted value, less the clean run's (what `interp.path_patch` of its sender into
        its receiver gives), the edges evaluated together (`exact_effects`)."""
        chosen = [self.graph.edge(*self.graph.index(e)) for e in edges]
        found = self.exact_effects([self.graph.index(e) for e in chosen], progress)
        return {e: float(v) for e, v in zip(chosen, found, strict=True)}

    def exact_effects(self, indices: Sequence[tuple[int, int]], progress: bool = False) -> Tensor:
        """The exact score of each edge at `[writer, reader]` `indices` (see `exact`), in
        passes over the data of `EXACT_CHUNK` edges each (their masks held at once): `[edge]`."""
        out = torch.zeros(len(indices))
        for start in range(0, len(indices), EXACT_CHUNK):
            masks = []
            for w, r in indices[start : start + EXACT_CHUNK]:
                mask = self.graph.mask.clone()
                mask[w, r] = False
                masks.append(mask)
            out[start : start + len(masks)] = self.metrics(masks, progress).mean(1)
        return out - self.clean_metric

    def metrics(self, circuits: Sequence[Tensor], progress: bool = False) -> Tensor:
        """Each pair's metric under each circuit (bool `[writer, reader]` masks), exactly, the
        corrupted writes computed once a batch for all of them: `[circuit, row]`."""
        if self.runs is None:
            raise InvalidSettingError("these scores hold no runs to evaluate a circuit on")
        model, runs = self.runs
        return circuit_metrics(
            model,
            runs.cleans,
            runs.corrupts,
            runs.metric,
            self.graph,
            circuits,
            16,
            progress,
            self.means,
        )

    def exact_nodes(self) -> dict[Site, float]:
        """Each head's and MLP's (and the embedding's) exact score: the mean metric with every
        edge out of it carrying the corrupted value, less the clean metric (patching that
        node), all in one pass; compare it with `node_scores`."""
        masks = []
        for w in range(len(self.graph.writers)):
            mask = self.graph.mask.clone()
            mask[w] = False
            masks.append(mask)
        means = self.metrics(masks).mean(1)
        return {
            site: float(m) - self.clean_metric
            for site, m in zip(self.graph.writers, means, strict=True)
        }

    def curve(
        self,
        fractions: Sequence[float] = FRACTIONS,
        seeds: int = 3,
        sizes: Sequence[int] = SIZES,
        progress: bool = False,
    ) -> Faithfulness:
        """Faithfulness of the top edges at each fraction of the graph's edges (and at each
        absolute size, for a log-x view), both rankings, with a random-edge control of `seeds`
        seeds, CPR and CMD (`interp.circuits.curve`)."""
        return faithfulness_curves(
            self.graph,
            self.scores,
            lambda masks: self.metrics(masks, progress).mean(1).tolist(),
            self.clean_metric,
            self.corrupted_metric,
            fractions,
            seeds,
            sizes,
        )

    def top(self, k: int = 10, by: Ranking = "abs") -> list[tuple[Edge, float]]:
        """The k highest-ranked edges with their scores: by |score|, or signed (the edges
        whose corruption lowers the metric most first)."""
        flat = self.scores.flatten()
        order = ranked(self.graph, self.scores, by)[:k]
        n = len(self.graph.readers)
        return [(self.graph.edge(int(i) // n, int(i) % n), float(flat[i])) for i in order]

    def edges(self) -> dict[str, float]:
        """Every real edge's score, named "SENDER->RECEIVER"."""
        w, r = self.graph.mask.nonzero(as_tuple=True)
        return {
            str(self.graph.edge(int(a), int(b))): float(self.scores[a, b])
            for a, b in zip(w.tolist(), r.tolist(), strict=True)
        }

    def node_scores(self) -> Tensor:
        """Each writer's score, the sum of its outgoing edges' (`[writer]`)."""
        return (self.scores * self.graph.mask).sum(1)


def circuit(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet | Intervention,
    *,
    metric: Metric | MetricFn | str | None = None,
    method: Method = "eap-ig",
    steps: int = 5,
    kv: KV = "group",
    batch_size: int = 16,
    progress: bool = False,
    ablation: Ablation = "patch",
    executor: Executor | None = None,
) -> CircuitScores:
    """Score every edge of the model's graph between paired clean and corrupted runs (the
    corrupted side may be recorded under an intervention, or be one: the clean runs under it,
    a noise edit say); see the module's docstring. `steps` is EAP-IG's m (EAP takes one
    gradient, exact none). `ablation="mean"`: `corrupted` is a reference set, an edge's
    corrupted value its writer's mean output over its rows and positions ("mean-positional":
    over its rows at each position, every run of one length). `executor`: where the pairs'
    gradients run (`interp.Ray(...)`): each chunk's float64 sum over its pairs, summed."""
    m = check_settings(method, steps, batch_size)
    graph = graph_of(model, kv)
    if ablation not in ABLATIONS:
        raise InvalidSettingError(f"ablation is one of {', '.join(ABLATIONS)}, got {ablation!r}")
    if ablation == "patch":
        runs, means = paired(model, clean, corrupted, metric, graph=graph), None
    else:  # `corrupted` is the reference set the means are taken over, by position or not
        at = ablation == "mean-positional"
        runs, means = mean_paired(
            model, clean, corrupted, metric, graph, batch_size=batch_size, positional=at
        )
    if method == "exact":
        return _exact_scores(model, graph, runs, ablation, means, progress)
    task = partial(
        _totals,
        metric=runs.metric,
        kv=kv,
        method=method,
        m=m,
        batch_size=batch_size,
        means=means,
        progress=progress and executor is None,  # a worker's bar would print nowhere
    )
    pairs = list(zip(runs.cleans, runs.corrupts, strict=True))
    parts = run_rows(executor, model, task, pairs, "circuit scores")
    total = torch.stack(parts).sum(0)  # each chunk's float64 sum over its pairs
    scores = (total / (len(runs.cleans) * m)).float() * graph.mask
    where = {} if executor is None else describe(executor)
    return _scored(model, graph, runs, scores, method, m, ablation, means, where)


def _scored(
    model: Model,
    graph: Graph,
    runs: Runs,
    scores: Tensor,
    method: Method,
    steps: int,
    ablation: Ablation,
    means: Tensor | None,
    executor: dict[str, Any],
) -> CircuitScores:
    """The scores with the runs' figures, and what `evaluate` needs to run them again."""
    return CircuitScores(
        graph,
        scores,
        method,
        steps,
        runs.metric.label,
        len(runs.cleans),
        float(runs.clean_m.mean()),
        float(runs.corrupt_m.mean()),
        model.name,
        ablation,
        (model, runs),
        means,
        executor,
    )


def _totals(
    model: Model,
    pairs: list[tuple[Trace, Trace]],
    metric: Metric,
    kv: KV,
    method: Method,
    m: int,
    batch_size: int,
    means: Tensor | None,
    progress: bool = False,
) -> Tensor:
    """Some pairs' edge scores summed over pairs and steps, `[writer, reader]` in float64."""
    graph = graph_of(model, kv)
    total = torch.zeros(len(graph.writers), len(graph.readers), dtype=torch.float64)
    groups = batches([c for c, _ in pairs], batch_size)
    for rows in bar(groups, len(pairs), f"{method} ({m} step(s))", progress):
        cleans, corrupts = [pairs[i][0] for i in rows], [pairs[i][1] for i in rows]
        bound = metric.bind(model, cleans)
        if method == "eap":  # the clean writes from the gradient's own forward
            grads, seen = reader_grads(model, cleans, bound, graph, values=True)
            clean_out = writes_of(model, seen)
        else:
            clean_out = writes(model, cleans)
        if means is None:
            corrupt_out = writes(model, corrupts)
        elif means.dim() == 3:  # each position's own mean: [pos, writer, d]
            corrupt_out = means[None].expand(clean_out.shape[0], -1, -1, -1)
        else:
            corrupt_out = means[None, None].expand(*clean_out.shape[:2], -1, -1)
        if method != "eap":  # EAP-IG: the readers' gradients summed over the m steps
            start, end = corrupt_out[:, :, 0], clean_out[:, :, 0]
            for k in range(m):
                step, _ = reader_grads(model, cleans, bound, graph, start + (k / m) * (end - start))
                grads = step if k == 0 else grads.add_(step)
        # one contraction a batch (a row at a time: no batch-sized copies), in float32 (its
        # sums run over positions and d_model), accumulated over rows and batches in float64
        diff = corrupt_out - clean_out
        for row in range(diff.shape[0]):
            total += torch.einsum("pwd,prd->wr", diff[row], grads[row]).double()
    return total


def _exact_scores(
    model: Model,
    graph: Graph,
    runs: Runs,
    ablation: Ablation,
    means: Tensor | None,
    progress: bool,
) -> CircuitScores:
    """`method="exact"`: every real edge's exact score (`CircuitScores.exact_effects`), one
    forward a batch of pairs for each edge."""
    out = _scored(
        model, graph, runs, torch.zeros(graph.mask.shape), "exact", 1, ablation, means, {}
    )
    w, r = graph.mask.nonzero(as_tuple=True)
    out.scores[w, r] = out.exact_effects(list(zip(w.tolist(), r.tolist(), strict=True)), progress)
    return out
