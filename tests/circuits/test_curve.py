"""Faithfulness curves as MIB computes them: the top edges, pruned as EAP-IG prunes (checked
against a plain loop over named nodes), evaluated exactly, areas as trapezoids."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import metrics
from interp.circuits import Graph, circuit
from interp.circuits.curve import faithfulness_curves, prune, top_n
from interp.errors import InvalidSettingError

METRIC = metrics.logit_diff(40, 41)


def naive_prune(graph, edges):
    """EAP-IG's prune in words, on sets of names: drop every head or MLP with no edge in or no
    edge out (the embedding needs none in, the logits none out) and every edge whose sender
    or receiver's node was dropped, until nothing changes."""
    per_group = graph.n_heads // graph.n_kv

    def node_of(reader):  # the writer node(s) a reader belongs to
        if reader.kind == "logits":
            return {"logits"}
        if reader.kind == "mlp":
            return {str(reader)}
        if reader.kind == "kv_input":
            first = reader.index * per_group
            return {f"L{reader.layer}H{h}" for h in range(first, first + per_group)}
        return {f"L{reader.layer}H{reader.index}"}

    edges = set(edges)
    while True:
        outgoing = {str(e.sender) for e in edges}
        ingoing = {"embed"} | {n for e in edges for n in node_of(e.receiver)}
        nodes = (outgoing & ingoing) | {"logits"}
        kept = {e for e in edges if str(e.sender) in nodes and node_of(e.receiver) & nodes}
        if kept == edges:
            return edges
        edges = kept


@pytest.mark.parametrize("kv", ["group", "per-head"])
def test_pruning_is_eap_igs_fixed_point(kv):
    graph = Graph(3, 4, 2, kv)
    generator = torch.Generator().manual_seed(0)
    for density in (0.02, 0.1, 0.3):
        keep = (torch.rand(graph.mask.shape, generator=generator) < density) & graph.mask
        got = prune(graph, keep)
        named = [graph.edge(w, r) for w, r in keep.nonzero().tolist()]
        want = naive_prune(graph, named)
        assert {graph.edge(w, r) for w, r in got.nonzero().tolist()} == want


def test_top_n_takes_the_highest_ranked_real_edges():
    graph = Graph(2, 4, 2)
    scores = torch.randn(graph.mask.shape) * graph.mask
    real = [(w, r) for w, r in graph.mask.nonzero().tolist()]
    for ranking, key in (
        ("abs", lambda e: -abs(float(scores[e]))),
        ("signed", lambda e: float(scores[e])),
    ):
        want = set(sorted(real, key=key)[:7])
        assert {tuple(e) for e in top_n(graph, scores, 7, ranking).nonzero().tolist()} == want


def area(x, y):
    """The trapezoid rule, a plain loop."""
    total = 0.0
    for i in range(len(x) - 1):
        total += (x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2
    return total


def test_a_curve_is_its_circuits_evaluated_and_its_areas_are_trapezoids(tiny_llama):
    clean = interp.generate(tiny_llama, "The earth revolves around the sun", max_new_tokens=2)
    corrupted = interp.record_under(tiny_llama, clean, interp.edit("embed", "noise", seed=3))
    scores = circuit(tiny_llama, clean, corrupted, metric=METRIC, method="eap-ig", steps=3)
    fractions = (0.05, 0.2, 0.5, 1.0)
    result = scores.curve(fractions=fractions, seeds=2, sizes=())
    assert result.by_size is None
    full, empty = scores.clean_metric, scores.corrupted_metric
    gap = full - empty
    graph = scores.graph
    for curve, ranking in ((result.signed, "signed"), (result.absolute, "abs")):
        assert curve.requested == [int(f * graph.n_edges) for f in fractions]
        assert all(k <= n for k, n in zip(curve.kept, curve.requested, strict=True))
        for n, f in zip(curve.requested, curve.faithfulness, strict=True):
            mask = prune(graph, top_n(graph, scores.scores, n, ranking))
            assert f == pytest.approx((scores.evaluate(keep=mask).mean - empty) / gap, abs=1e-6)
        assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)  # every edge: the clean run
    assert result.cpr == pytest.approx(area(fractions, result.signed.faithfulness))
    gaps = [abs(1 - f) for f in result.absolute.faithfulness]
    assert result.cmd == pytest.approx(area(fractions, gaps))
    assert result.signed.random == result.absolute.random and len(result.signed.random) == 4


def test_a_curve_without_a_gap_is_refused():
    graph = Graph(1, 2, 2)
    with pytest.raises(InvalidSettingError, match="faithfulness divides by their difference"):
        faithfulness_curves(
            graph, torch.zeros(graph.mask.shape), lambda ms: [0.0] * len(ms), 1.5, 1.5
        )


def test_a_curve_at_absolute_sizes_is_its_circuits_evaluated_with_a_random_control(tiny_llama):
    clean = interp.generate(tiny_llama, "The earth revolves around the sun", max_new_tokens=2)
    corrupted = interp.record_under(tiny_llama, clean, interp.edit("embed", "noise", seed=3))
    scores = circuit(tiny_llama, clean, corrupted, metric=METRIC, method="eap")
    graph, total = scores.graph, scores.graph.n_edges
    result = scores.curve(fractions=(0.5, 1.0), seeds=2, sizes=(3, 10, total + 1))
    gap = scores.clean_metric - scores.corrupted_metric

    def f(mask):
        return (scores.evaluate(keep=mask).mean - scores.corrupted_metric) / gap

    random = []
    for n in (3, 10):  # each seed's uniform scores, top n by |score|, pruned: a plain loop
        fs = []
        for seed in range(2):
            uniform = torch.rand(graph.mask.shape, generator=torch.Generator().manual_seed(seed))
            fs.append(f(prune(graph, top_n(graph, uniform, n, "abs"))))
        random.append(sum(fs) / 2)
    assert result.by_size is not None
    for ranking, curve in result.by_size.items():
        assert curve.requested == [3, 10]  # a size past the graph's edges is left out
        assert curve.fractions == [3 / total, 10 / total]
        for n, value in zip(curve.requested, curve.faithfulness, strict=True):
            assert value == pytest.approx(f(prune(graph, top_n(graph, scores.scores, n, ranking))))
        assert curve.random == pytest.approx(random)


def test_sizes_are_increasing_whole_numbers():
    graph = Graph(1, 2, 2)
    for sizes in ((10, 5), (0,), (3, 3)):
        with pytest.raises(InvalidSettingError, match="sizes are increasing whole numbers"):
            faithfulness_curves(
                graph,
                torch.zeros(graph.mask.shape),
                lambda ms: [0.0] * len(ms),
                1.0,
                0.0,
                sizes=sizes,
            )
