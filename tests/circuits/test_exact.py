"""`method="exact"`: every edge's score is the metric's change when that edge alone carries
the corrupted value (MIB's exact edge patching), checked edge by edge against a plain loop of
`interp.evaluate_circuit` over the full graph less that one edge."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import metrics
from interp.circuits import circuit, evaluate_circuit, scores
from interp.circuits.pairs import ESTIMATES, check_settings
from interp.errors import InvalidSettingError

PROMPTS = ["The earth revolves around the sun", "The moon revolves around the earth"]
METRIC = metrics.logit_diff(40, 41)


@pytest.mark.slow  # a plain loop over every edge of the graph: `make test` runs it
def test_exact_scores_are_each_edge_patched_alone(tiny, monkeypatch):
    clean = interp.generate(tiny, PROMPTS, max_new_tokens=2, temperature=0)
    corrupted = interp.record_under(tiny, clean, interp.edit("embed", "noise", seed=3))
    monkeypatch.setattr(scores, "EXACT_CHUNK", 7)  # several passes, a short one last
    got = circuit(tiny, clean, corrupted, metric=METRIC, method="exact")
    assert got.method == "exact" and got.steps == 1
    graph = got.graph
    want = torch.zeros(graph.mask.shape)
    for w, r in graph.mask.nonzero().tolist():
        less_one = graph.mask.clone()
        less_one[w, r] = False
        evaluated = evaluate_circuit(tiny, clean, corrupted, less_one, metric=METRIC)
        want[w, r] = evaluated.mean - evaluated.full
    assert want.abs().max() > 1e-3  # the corruption moves the metric through single edges
    torch.testing.assert_close(got.scores, want, atol=1e-5, rtol=0)
    # the scores rank and evaluate as any others: every edge's is the change its loss makes
    top, value = got.top(1)[0]
    assert got.exact([top]) == {top: pytest.approx(value, abs=1e-6)}


def test_node_scores_are_estimates_only():
    # node_scores takes ESTIMATES (typed so); a caller without the types gets one line
    with pytest.raises(InvalidSettingError, match="unknown method 'exact'; choose one of eap,"):
        check_settings("exact", 5, 16, ESTIMATES)
    assert check_settings("exact", 5, 16) == 1
