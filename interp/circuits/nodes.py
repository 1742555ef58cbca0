"""Node attribution: each node's score (the embedding, every head, every MLP), the estimated
change in the metric when that node alone carries the corrupted run's value, from its own
output (a head's `z`, an MLP's output). It needs no additive write into the residual stream,
so it also scores models whose edges are not defined (Gemma 3's post-attention and post-MLP
norms). Same methods and sign as `interp.circuits.scores`: `eap` takes the gradient on the
clean run; `eap-ig` averages it over runs from the interpolated input embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.circuits.curve import FRACTIONS, Faithfulness
from interp.circuits.node_curve import node_curves, node_metrics
from interp.circuits.pairs import ESTIMATES, Estimate, check_settings, paired
from interp.circuits.runs import bar, batches, node_hooks, node_values
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.interventions.attribution_patching import metric_gradients
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.patching_runs import Runs
from interp.models import hooks as H
from interp.models import site as site_values
from interp.models.model import Model
from interp.models.site import Site
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@dataclass
class NodeScores:
    """Every node's score (`scores[i]` is `nodes[i]`'s), with how it was computed and the
    runs' metric means."""

    nodes: list[Site]
    scores: Tensor
    method: str
    steps: int
    metric: str
    rows: int
    clean_metric: float
    corrupted_metric: float
    # what `evaluate` and `curve` run: the model and the paired runs, in this process only
    runs: tuple[Model, Runs] | None = field(default=None, repr=False)

    def evaluate(self, keep: Sequence[Site | str]) -> Tensor:
        """Each pair's metric, exactly, with only the nodes `keep` at their clean values
        (every other node's output the corrupted run's): `[row]`."""
        model, runs = self._runs()
        names = [str(node) for node in self.nodes]
        mask = torch.zeros(len(self.nodes), dtype=torch.bool)
        for node in keep:
            if str(node) not in names:
                raise InvalidSettingError(f"{node} is not a node of {model.name}'s graph")
            mask[names.index(str(node))] = True
        return node_metrics(model, runs, [mask])[0]

    def curve(
        self, fractions: Sequence[float] = FRACTIONS, seeds: int = 3, progress: bool = False
    ) -> Faithfulness:
        """Faithfulness of the top nodes at each fraction of the nodes, both rankings, with a
        random-node control of `seeds` seeds, CPR and CMD (`interp.circuits.node_curve`)."""
        model, runs = self._runs()
        return node_curves(
            self.scores,
            lambda masks: node_metrics(model, runs, masks, progress=progress).mean(1).tolist(),
            self.clean_metric,
            self.corrupted_metric,
            fractions,
            seeds,
        )

    def _runs(self) -> tuple[Model, Runs]:
        if self.runs is None:
            raise InvalidSettingError("these node scores were read back: evaluate in the run")
        return self.runs

    def top(self, k: int = 10) -> list[tuple[Site, float]]:
        """The k nodes of largest |score|, with their scores."""
        order = self.scores.abs().argsort(descending=True, stable=True)[:k].tolist()
        return [(self.nodes[i], float(self.scores[i])) for i in order]


def node_scores(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet | Intervention,
    *,
    metric: Metric | MetricFn | str | None = None,
    method: Estimate = "eap-ig",
    steps: int = 5,
    batch_size: int = 16,
    progress: bool = False,
) -> NodeScores:
    """Score every node between paired clean and corrupted runs (see the module's docstring);
    the corrupted side is what `interp.circuit` takes."""
    m = check_settings(method, steps, batch_size, ESTIMATES)
    runs = paired(model, clean, corrupted, metric, "node attribution")
    names = node_hooks(model)
    total = torch.zeros(len(_nodes(model)), dtype=torch.float64)
    groups = batches(runs.cleans, batch_size)
    for rows in bar(groups, len(runs.cleans), f"{method} nodes ({m} step(s))", progress):
        cleans = [runs.cleans[i] for i in rows]
        there = node_values(model, [runs.corrupts[i] for i in rows])
        bound = runs.metric.bind(model, cleans)
        # EAP's one gradient is taken on the clean run, whose values it returns: no forward
        # of its own for them; EAP-IG's steps never run the clean endpoint
        here = None if method == "eap" else node_values(model, cleans)
        grads = {name: torch.zeros_like(there[name]) for name in names}
        for k in range(m):
            hooks = []
            if method == "eap-ig":
                assert here is not None
                start, end = there[H.EMBED], here[H.EMBED]
                # a leaf that needs a gradient, so the embedding's fresh node reaches it
                embed = (start + (k / m) * (end - start)).to(model.device).requires_grad_()
                hooks.append((H.EMBED, lambda x, hook, e=embed: e.to(x.dtype)))
            values, found = metric_gradients(model, cleans, bound, names, hooks)
            here = values if here is None else here
            for name in names:
                grads[name] += found[name]
        assert here is not None
        parts = [((there[H.EMBED] - here[H.EMBED]) * grads[H.EMBED]).sum().reshape(1)]
        for layer in range(model.n_layers):
            z, mlp = H.z(layer), H.mlp_out(layer)
            parts.append(((there[z] - here[z]) * grads[z]).sum((0, 1, 3)))  # per head
            parts.append(((there[mlp] - here[mlp]) * grads[mlp]).sum().reshape(1))
        total += torch.cat(parts).double()
    scores = (total / (len(runs.cleans) * m)).float()
    clean_m, corrupt_m = float(runs.clean_m.mean()), float(runs.corrupt_m.mean())
    return NodeScores(
        _nodes(model),
        scores,
        method,
        m,
        runs.metric.label,
        len(runs.cleans),
        clean_m,
        corrupt_m,
        (model, runs),
    )


def _nodes(model: Model) -> list[Site]:
    out = [site_values.embed()]
    for layer in range(model.n_layers):
        out += [site_values.head(layer, h) for h in range(model.n_heads)]
        out.append(site_values.of_layer("mlp", layer))
    return out
