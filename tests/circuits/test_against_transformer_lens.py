"""interp's edge scores and circuit metric against TransformerLens 4.3's own edge attribution
patching and `faithfulness()`, on the tiny multi-head (GPT-2 layout) model, which TL accepts
at edge level: TL's per-position scores summed over positions are interp's EAP in TL's
denoising direction (the gradient on the corrupted run, the clean value patched in), and TL's
recovered fraction for one pair is interp's for the same circuit."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis import attribution_patching as tl

import interp
from interp import metrics
from interp.circuits import circuit

A, D = 40, 41


@pytest.fixture(scope="module")
def tiny_gpt2(device, tmp_path_factory):
    """The tiny multi-head model (TL refuses grouped-query models at edge level)."""
    from conftest import build_tiny

    return build_tiny("gpt2", tmp_path_factory.mktemp("tok-gpt2"), device)


def _pair(model):
    clean = interp.generate(model, "The earth revolves around the sun", max_new_tokens=1)
    corrupted = interp.generate(model, "The sun revolves around the earth", max_new_tokens=1)
    assert clean.n_positions == corrupted.n_positions
    return clean, corrupted


def _tl_metric(at):
    return lambda logits: logits[0, at, A] - logits[0, at, D]


def _site(node):
    """A TL node as interp's site (a multi-head model: a head's key input is its KV group)."""
    if node.kind == "embed":
        return "embed"
    if node.kind == "attn_head_out":
        return f"L{node.layer}H{node.head}"
    if node.kind in ("mlp_out", "mlp_in"):
        return f"L{node.layer}.mlp"
    if node.kind == "q_input":
        return f"L{node.layer}H{node.head}.q"
    if node.kind in ("k_input", "v_input"):
        return f"L{node.layer}.kv{node.head}.{node.kind[0]}"
    return "logits"


def test_tl_edge_scores_summed_over_positions_are_eap_in_tls_direction(tiny_gpt2):
    tiny = tiny_gpt2
    clean, corrupted = _pair(tiny)
    ours = circuit(tiny, corrupted, clean, metric=metrics.logit_diff(A, D), method="eap")
    config = tl.EdgeAttributionConfig(granularity="edge")
    theirs = tl.attribution_patch(
        tiny.bridge,
        clean.token_ids[None],
        corrupted.token_ids[None],
        _tl_metric(clean.prompt_len - 1),
        config,
    )
    summed: dict[str, float] = {}
    for (writer, reader), score in theirs.edge_scores.items():
        name = f"{_site(writer)}->{_site(reader)}"
        summed[name] = summed.get(name, 0.0) + score
    edges = ours.edges()
    assert set(summed) == set(edges)  # the same graph
    names = sorted(edges)
    got = torch.tensor([edges[n] for n in names])
    want = torch.tensor([summed[n] for n in names])
    torch.testing.assert_close(got, want, atol=1e-4 * float(want.abs().max()), rtol=1e-3)


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_tls_faithfulness_of_a_circuit_is_interps(tiny_gpt2, fraction):
    tiny = tiny_gpt2
    clean, corrupted = _pair(tiny)
    scores = circuit(tiny, clean, corrupted, metric=metrics.logit_diff(A, D), method="eap")
    kept = scores.top(int(fraction * scores.graph.n_edges))
    result = scores.evaluate(keep=[edge for edge, _ in kept])
    ours = (result.mean - scores.corrupted_metric) / (scores.clean_metric - scores.corrupted_metric)
    # the same edges at every position, as TL's per-position nodes
    config = tl.EdgeAttributionConfig(granularity="edge")
    graph = tl.attribution_patch(
        tiny.bridge, clean.token_ids[None], corrupted.token_ids[None],
        _tl_metric(clean.prompt_len - 1), config,
    )  # fmt: skip
    chosen = {str(edge) for edge, _ in kept}
    tl_circuit = [(w, r) for (w, r) in graph.edge_scores if f"{_site(w)}->{_site(r)}" in chosen]
    theirs = tl.faithfulness(
        tiny.bridge, clean.token_ids[None], corrupted.token_ids[None],
        _tl_metric(clean.prompt_len - 1), tl_circuit,
    )  # fmt: skip
    assert theirs.full_metric == pytest.approx(scores.clean_metric, abs=1e-4)
    assert theirs.corrupt_metric == pytest.approx(scores.corrupted_metric, abs=1e-4)
    assert ours == pytest.approx(theirs.recovered, abs=1e-4)
