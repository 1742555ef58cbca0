"""Faithfulness as a circuit grows, as MIB's circuit-localization track measures it: the top n
edges by score, pruned as EAP-IG's `Graph.prune` prunes (repeatedly drop every head or MLP
left with no incoming or no outgoing edge, `embed` always a source and `logits` a sink, then
every edge with a missing end), evaluated exactly; f = (m(C) - m(empty)) / (m(full) -
m(empty)) on the dataset mean. CPR is the area under f from the signed ranking, CMD the area
under |1 - f| from the absolute ranking: trapezoids over the nominal fractions, on a linear
axis. A random-edge control, at the same sizes, averages several seeds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from interp.circuits.graph import Graph
from interp.errors import InvalidSettingError

Ranking = Literal["signed", "abs"]
FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # MIB's
SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)  # edges, for a log-x view


@dataclass
class Curve:
    """f at each size of one ranking: the fractions asked for, the edges that asks for
    (`int(fraction * edges)`, as MIB counts), the edges kept after pruning, and the random
    control's mean f at the same requested sizes."""

    ranking: Ranking
    fractions: list[float]
    requested: list[int]
    kept: list[int]
    faithfulness: list[float]
    random: list[float]

    @property
    def area_under(self) -> float:
        """The trapezoid area under f over the fractions (CPR, for the signed ranking)."""
        return _trapezoid(self.fractions, self.faithfulness)

    @property
    def area_from_one(self) -> float:
        """The trapezoid area under |1 - f| (CMD, for the absolute ranking)."""
        return _trapezoid(self.fractions, [abs(1 - f) for f in self.faithfulness])


@dataclass
class Faithfulness:
    """Both rankings' curves at MIB's fractions, the metric of the full and the empty circuit,
    CPR and CMD; and both rankings at absolute sizes where asked for (`by_size`, their
    fractions the sizes over the graph's edges)."""

    signed: Curve
    absolute: Curve
    full: float
    empty: float
    by_size: dict[Ranking, Curve] | None = None

    @property
    def cpr(self) -> float:
        return self.signed.area_under

    @property
    def cmd(self) -> float:
        return self.absolute.area_from_one


def top_n(graph: Graph, scores: Tensor, n: int, ranking: Ranking) -> Tensor:
    """The n real edges ranked first: by |score|, or signed (the most negative first: the
    edges whose corruption lowers the metric most), ties in index order."""
    chosen = torch.zeros(graph.mask.numel(), dtype=torch.bool)
    chosen[ranked(graph, scores, ranking)[:n]] = True
    return chosen.view_as(graph.mask) & graph.mask


def ranked(graph: Graph, scores: Tensor, ranking: Ranking) -> Tensor:
    """The real edges' flat indices into `[writer, reader]`, first ranked first (ties in
    index order)."""
    key = scores.flatten().abs() if ranking == "abs" else -scores.flatten()
    order = key.argsort(descending=True, stable=True)
    return order[graph.mask.flatten()[order]]


def prune(graph: Graph, included: Tensor) -> Tensor:
    """`included` less every edge of a node cut off from the embedding or from the logits, to
    the fixed point (EAP-IG's `Graph.prune`)."""
    out = included & graph.mask
    logits = len(graph.readers) - 1
    while True:
        outgoing = out.any(1)
        ingoing = (out.any(0)[None, :] & graph.inputs).any(1)
        ingoing[0] = True  # the embedding is a source
        nodes = outgoing & ingoing
        alive = (nodes[:, None] & graph.inputs).any(0)  # a reader of a node in the circuit
        alive[logits] = True  # the logits are a sink
        pruned = out & nodes[:, None] & alive[None, :]
        if torch.equal(pruned, out):
            return out
        out = pruned


def check_curve(full: float, empty: float, fractions: Sequence[float], seeds: int) -> None:
    """A curve's settings, and a full and an empty circuit apart enough to divide by."""
    if abs(full - empty) <= 1e-6 * max(1.0, abs(full)):
        raise InvalidSettingError(
            f"the full and the empty circuit give the same metric ({full:.6g}, {empty:.6g}): "
            "faithfulness divides by their difference"
        )
    if (
        not fractions
        or any(not 0 < f <= 1 for f in fractions)
        or list(fractions) != sorted(fractions)
    ):
        raise InvalidSettingError("fractions are increasing numbers in (0, 1]")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidSettingError(f"seeds must be at least 1, got {seeds!r}")


def faithfulness_curves(
    graph: Graph,
    scores: Tensor,
    evaluate: Callable[[list[Tensor]], list[float]],
    full: float,
    empty: float,
    fractions: Sequence[float] = FRACTIONS,
    seeds: int = 3,
    sizes: Sequence[int] = (),
) -> Faithfulness:
    """Both rankings' curves (see the module's docstring); `evaluate(masks)` is each circuit's
    mean metric, exactly, all evaluated in one pass over the data."""
    check_curve(full, empty, fractions, seeds)
    total = graph.n_edges
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes) or list(
        sizes
    ) != sorted(set(sizes)):
        raise InvalidSettingError("sizes are increasing whole numbers of edges, at least 1")
    points = {  # where each curve is drawn, and the edges each point asks for
        "fractions": (list(fractions), [int(f * total) for f in fractions]),  # as MIB counts
        "sizes": ([n / total for n in sizes if n <= total], [n for n in sizes if n <= total]),
    }
    orders = [_random_scores(graph, seed) for seed in range(seeds)]
    random_masks = {
        key: [[prune(graph, top_n(graph, o, n, "abs")) for o in orders] for n in requested]
        for key, (_, requested) in points.items()
    }
    ranked_masks = {
        (key, r): [prune(graph, top_n(graph, scores, n, r)) for n in requested]
        for key, (_, requested) in points.items()
        for r in ("signed", "abs")
    }
    # every distinct circuit once, all in one pass over the data
    distinct: dict[bytes, Tensor] = {}
    for masks in [*(m for ms in random_masks.values() for m in ms), *ranked_masks.values()]:
        for m in masks:
            distinct.setdefault(_key(m), m)
    values = dict(zip(distinct, evaluate(list(distinct.values())), strict=True))

    def f_of(mask: Tensor) -> float:
        return (values[_key(mask)] - empty) / (full - empty)

    def curve(key: str, ranking: Ranking) -> Curve:
        at, requested = points[key]
        masks = ranked_masks[key, ranking]
        random = [sum(f_of(m) for m in ms) / seeds for ms in random_masks[key]]
        kept = [int(m.sum()) for m in masks]
        return Curve(ranking, at, requested, kept, [f_of(m) for m in masks], random)

    by_size: dict[Ranking, Curve] | None = None
    if points["sizes"][1]:
        by_size = {"signed": curve("sizes", "signed"), "abs": curve("sizes", "abs")}
    signed, absolute = curve("fractions", "signed"), curve("fractions", "abs")
    return Faithfulness(signed, absolute, full, empty, by_size)


def _key(mask: Tensor) -> bytes:
    return mask.numpy().tobytes()


def _random_scores(graph: Graph, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(graph.mask.shape, generator=generator)


def _trapezoid(x: Sequence[float], y: Sequence[float]) -> float:
    return sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))
