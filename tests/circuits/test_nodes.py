"""Node attribution: a node's score is the sum of its edges' where edges are defined (both
methods), the exact change of patching that node to first order (on Gemma 3 too, whose edges
are refused), and EAP-IG's steps average the gradient like the edges' do."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import metrics
from interp.circuits import circuit

PROMPT = "The earth revolves around the sun"
METRIC = metrics.logit_diff(40, 41)


def _runs(model, scale):
    clean = interp.generate(model, PROMPT, max_new_tokens=2, temperature=0)
    noise = interp.edit("embed", "noise", seed=3, scale=scale)
    return clean, interp.record_under(model, clean, noise)


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_a_nodes_score_is_the_sum_of_its_edges(tiny, method):
    clean, corrupted = _runs(tiny, 0.3)
    edges = circuit(tiny, clean, corrupted, metric=METRIC, method=method, steps=3)
    nodes = interp.node_scores(tiny, clean, corrupted, metric=METRIC, method=method, steps=3)
    assert nodes.nodes == edges.graph.writers
    torch.testing.assert_close(nodes.scores, edges.node_scores(), atol=1e-4, rtol=1e-4)
    assert nodes.clean_metric == edges.clean_metric and nodes.rows == 1


def test_gemma_gets_node_scores_that_track_patching_each_head(tiny_gemma):
    """Under a small corruption the first-order estimate is the exact change: patching each
    head's output with the corrupted run's, in the clean run."""
    clean, corrupted = _runs(tiny_gemma, 3e-3)
    with pytest.raises(interp.InterpError, match="node scores are: interp.node_scores"):
        circuit(tiny_gemma, clean, corrupted, metric=METRIC)
    nodes = interp.node_scores(tiny_gemma, clean, corrupted, metric=METRIC, method="eap")
    exact = interp.patch(
        tiny_gemma, clean, corrupted, sites=["heads"], metric=METRIC, direction="noise"
    )["heads"].effect
    heads = torch.tensor(
        [
            [
                nodes.scores[nodes.nodes.index(interp.site(f"L{l_}H{h}"))]
                for h in range(exact.shape[1])
            ]
            for l_ in range(exact.shape[0])
        ]
    )
    assert exact.abs().max() > 5e-6
    size = float(exact.abs().max())
    torch.testing.assert_close(heads, exact, atol=0.06 * size, rtol=0.06)
    assert [str(s) for s, _ in nodes.top(3)] == [
        str(nodes.nodes[i]) for i in nodes.scores.abs().argsort(descending=True)[:3].tolist()
    ]


def test_eap_takes_the_clean_values_from_its_gradients_forward(tiny, monkeypatch):
    """EAP runs two forwards a batch (the corrupted values, the clean gradient with the clean
    values), and its scores are those of reading the clean values in a forward of their own."""
    from interp.circuits import nodes as module
    from interp.circuits.runs import node_values

    clean, corrupted = _runs(tiny, 0.3)
    calls: list[str] = []
    counted_values = module.node_values
    counted_grads = module.metric_gradients
    monkeypatch.setattr(module, "node_values", lambda *a: calls.append("v") or counted_values(*a))
    monkeypatch.setattr(
        module, "metric_gradients", lambda *a: calls.append("g") or counted_grads(*a)
    )
    got = interp.node_scores(tiny, clean, corrupted, metric=METRIC, method="eap")
    assert calls == ["v", "g"]
    # the reference: the clean values from a no-grad forward of their own, by hand
    runs = [clean], [corrupted]
    here, there = node_values(tiny, runs[0]), node_values(tiny, runs[1])
    bound = METRIC.bind(tiny, runs[0])
    names = module.node_hooks(tiny)
    _, grads = counted_grads(tiny, runs[0], bound, names)
    want = [((there[names[0]] - here[names[0]]) * grads[names[0]]).sum()]
    for layer in range(tiny.n_layers):
        z, mlp = names[1 + 2 * layer], names[2 + 2 * layer]
        want += list(((there[z] - here[z]) * grads[z]).sum((0, 1, 3)))
        want.append(((there[mlp] - here[mlp]) * grads[mlp]).sum())
    torch.testing.assert_close(got.scores, torch.stack(want).float(), atol=1e-6, rtol=1e-6)


def _pairs(model):
    """Two clean runs of one length and their corruption by other prompt tokens."""
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, model.d_vocab, (2, 7), generator=g)
    options = {"max_new_tokens": 2, "temperature": 0, "stop_at_eos": False}
    clean = interp.generate(model, ids.tolist(), **options)
    ids[:, -3:] = torch.randint(3, model.d_vocab, (2, 3), generator=g)
    forced = [row.continuation_ids for row in clean]
    return clean, interp.generate(model, ids.tolist(), continuation=forced)


@pytest.mark.parametrize("kind", ["tiny_llama", "tiny_gemma"])
def test_a_node_circuit_is_the_clean_run_with_every_other_node_patched_in(kind, request):
    """All nodes: the clean run; none: the corrupted run; all but one head: activation
    patching of that head's output into the clean run (interp.patch, noise direction)."""
    model = request.getfixturevalue(kind)
    clean, corrupted = _pairs(model)
    nodes = interp.node_scores(model, clean, corrupted, metric=METRIC, method="eap")
    names = [str(node) for node in nodes.nodes]
    torch.testing.assert_close(
        nodes.evaluate(names), interp.evaluate(model, clean, METRIC).values, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        nodes.evaluate([]), interp.evaluate(model, corrupted, METRIC).values, atol=1e-5, rtol=0
    )
    patched = interp.patch(
        model, clean, corrupted, sites=["heads"], metric=METRIC, direction="noise"
    )["heads"].patched_per_row
    for layer, head in [(0, 1), (model.n_layers - 1, 2)]:
        keep = [n for n in names if n != f"L{layer}H{head}"]
        torch.testing.assert_close(nodes.evaluate(keep), patched[:, layer, head], atol=1e-5, rtol=0)
    with pytest.raises(interp.InterpError, match="L9H0 is not a node"):
        nodes.evaluate(["L9H0"])


def test_the_node_curve_reads_each_fraction_of_the_ranked_nodes(tiny_gemma):
    clean, corrupted = _pairs(tiny_gemma)
    nodes = interp.node_scores(tiny_gemma, clean, corrupted, metric=METRIC, method="eap-ig")
    curve = nodes.curve(fractions=(0.1, 0.5, 1.0), seeds=2)
    total = len(nodes.nodes)
    assert curve.signed.requested == [int(f * total) for f in (0.1, 0.5, 1.0)]
    span = nodes.clean_metric - nodes.corrupted_metric
    for ranking, key in (("signed", -nodes.scores), ("abs", nodes.scores.abs())):
        half = [nodes.nodes[i] for i in key.argsort(descending=True, stable=True)[: total // 2]]
        want = (float(nodes.evaluate(half).mean()) - nodes.corrupted_metric) / span
        got = getattr(curve, "signed" if ranking == "signed" else "absolute")
        assert got.faithfulness[1] == pytest.approx(want, abs=1e-5)
        assert got.faithfulness[2] == pytest.approx(1.0, abs=1e-5)
    assert curve.signed.random[2] == pytest.approx(1.0, abs=1e-5)
    f = curve.signed.faithfulness  # CPR: trapezoids over the fractions
    assert curve.cpr == pytest.approx(0.4 * (f[0] + f[1]) / 2 + 0.5 * (f[1] + f[2]) / 2, abs=1e-9)
