"""Faithfulness of the top nodes (the embedding, each head, each MLP), for any model, those whose
edges are not defined too (Gemma 3's post-attention and post-MLP norms): a node outside the
circuit carries the corrupted run's value at its own output (a head's `z`, an MLP's output, the
embedding), and everything downstream is recomputed. f = (m(C) - m(empty)) / (m(full) -
m(empty)) on the dataset mean at fractions of the nodes (`int(fraction * nodes)`, as MIB counts
edges), both rankings (signed: the most negative first; abs), with a random-node control; CPR
and CMD as for edges (`interp.circuits.curve`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from interp.circuits.curve import FRACTIONS, Curve, Faithfulness, Ranking, check_curve
from interp.circuits.runs import bar, batches, forward, node_values
from interp.interventions.patching_runs import Runs
from interp.interventions.replay import replay_hooks
from interp.models import hooks as H
from interp.models.model import Model


def node_metrics(
    model: Model,
    runs: Runs,
    circuits: Sequence[Tensor],
    batch_size: int = 16,
    progress: bool = False,
) -> Tensor:
    """Each pair's metric under each node circuit (a bool `[node]` mask in
    `interp.circuits.nodes`' order, True: the node keeps the clean run's value): `[circuit,
    row]`, the clean tokens run with every other node's output set to the corrupted run's."""
    out = torch.zeros(len(circuits), len(runs.cleans))
    what = f"evaluating {len(circuits)} node circuit(s)"
    for rows in bar(batches(runs.cleans, batch_size), len(runs.cleans), what, progress):
        clean = [runs.cleans[i] for i in rows]
        there = node_values(model, [runs.corrupts[i] for i in rows])
        bound = runs.metric.bind(model, clean)
        for c, kept in enumerate(circuits):
            hooks = replay_hooks(model, clean) + _corrupting(model, there, ~kept)
            with torch.no_grad():
                logits = forward(model, clean, hooks, bound.start)
            out[c, rows] = bound.score(logits).float().cpu()
    return out


def _corrupting(model: Model, there: dict[str, Tensor], dropped: Tensor) -> list:
    """Hooks that set every dropped node's output to the corrupted run's (`there`)."""
    hooks = [(H.EMBED, _set(there[H.EMBED]))] if bool(dropped[0]) else []
    n = model.n_heads
    for layer in range(model.n_layers):
        first = 1 + layer * (n + 1)  # the layer's heads, then its MLP
        heads = dropped[first : first + n].nonzero().flatten().tolist()
        if heads:
            hooks.append((H.z(layer), _set(there[H.z(layer)], heads)))
        if bool(dropped[first + n]):
            hooks.append((H.mlp_out(layer), _set(there[H.mlp_out(layer)])))
    return hooks


def _set(value: Tensor, heads: list[int] | None = None) -> Callable:
    def hook(x: Tensor, hook: object) -> Tensor:
        if heads is None:
            return value.to(x.device, x.dtype)
        x = x.clone()
        x[:, :, heads] = value[:, :, heads].to(x.device, x.dtype)
        return x

    return hook


def node_curves(
    scores: Tensor,
    evaluate: Callable[[list[Tensor]], list[float]],
    full: float,
    empty: float,
    fractions: Sequence[float] = FRACTIONS,
    seeds: int = 3,
) -> Faithfulness:
    """Both rankings' node curves; `evaluate(masks)` is each circuit's mean metric, exactly,
    all in one pass over the data."""
    check_curve(full, empty, fractions, seeds)
    total = len(scores)
    sizes = [int(f * total) for f in fractions]
    orders: dict[str, list[Tensor]] = {
        "signed": [(-scores).argsort(descending=True, stable=True)],
        "abs": [scores.abs().argsort(descending=True, stable=True)],
        "random": [
            torch.randperm(total, generator=torch.Generator().manual_seed(s)) for s in range(seeds)
        ],
    }
    masks = []
    for key in orders:
        for order in orders[key]:
            for n in sizes:
                mask = torch.zeros(total, dtype=torch.bool)
                mask[order[:n]] = True
                masks.append(mask)
    means = iter(evaluate(masks))
    span = full - empty
    found = {
        key: [[(next(means) - empty) / span for _ in sizes] for _ in orders[key]] for key in orders
    }
    random = [sum(f[i] for f in found["random"]) / seeds for i in range(len(sizes))]

    def curve(ranking: Ranking) -> Curve:
        return Curve(ranking, list(fractions), sizes, sizes, found[ranking][0], random)

    return Faithfulness(curve("signed"), curve("abs"), full, empty)
