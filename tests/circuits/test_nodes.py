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
