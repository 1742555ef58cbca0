"""importances.json: every per-head edge in EAP-IG's Graph JSON, named as MIB's `Graph.from_model`
names them (a plain loop over its residual stream, written from MIB's code), each score minus
interp's (MIB's sign: the estimated drop in the metric)."""

from __future__ import annotations

import json

import pytest

import interp
from interp import metrics
from interp.circuits import circuit, files


@pytest.fixture(scope="module")
def tiny_gpt2(device, tmp_path_factory):
    from conftest import build_tiny

    return build_tiny("gpt2", tmp_path_factory.mktemp("tok-gpt2"), device)


def mib_edge_names(n_layers, n_heads):
    """MIB's `Graph.from_model` edges, in its order: every earlier writer into each head's
    q, k and v input, the layer's heads into its MLP, everything into the logits."""
    names, stream = [], ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        for node in stream:
            for head in heads:
                names += [f"{node}->{head}<{x}>" for x in "qkv"]
        stream += heads
        names += [f"{node}->m{layer}" for node in stream]
        stream.append(f"m{layer}")
    return names + [f"{node}->logits" for node in stream]


def test_importances_are_mibs_graph_with_mibs_names_and_sign(tiny_gpt2, tmp_path):
    clean = interp.generate(tiny_gpt2, "The earth revolves around the sun", max_new_tokens=1)
    noise = interp.edit("embed", "noise", seed=1)
    scores = circuit(
        tiny_gpt2, clean, noise, metric=metrics.logit_diff(40, 41), method="eap", kv="per-head"
    )
    files.save(scores, tmp_path / "c")
    record = json.loads((tmp_path / "c" / "importances.json").read_text())
    n_layers, n_heads = tiny_gpt2.n_layers, tiny_gpt2.n_heads
    assert record["cfg"] == {
        "n_layers": n_layers,
        "n_heads": n_heads,
        "parallel_attn_mlp": False,
        "d_model": tiny_gpt2.d_model,
    }
    want = mib_edge_names(n_layers, n_heads)
    assert sorted(record["edges"]) == sorted(want) and len(want) == scores.graph.n_edges
    ours = scores.edges()
    for layer in range(n_layers):  # interp's names for the same edges
        for head in range(n_heads):
            for x in "qkv":
                mib = record["edges"][f"input->a{layer}.h{head}<{x}>"]
                assert mib["score"] == -ours[f"embed->L{layer}H{head}.{x}"]
                assert mib["in_graph"] is False
        assert record["edges"][f"a0.h1->m{layer}"]["score"] == -ours[f"L0H1->L{layer}.mlp"]
    last = n_layers - 1
    assert record["edges"][f"m{last}->logits"]["score"] == -ours[f"L{last}.mlp->logits"]
    nodes = ["input", *(f"a{l_}.h{h}" for l_ in range(n_layers) for h in range(n_heads))]
    assert set(record["nodes"]) == {*nodes, *(f"m{l_}" for l_ in range(n_layers)), "logits"}


def test_grouped_scores_write_no_importances(tiny_gpt2, tmp_path):
    clean = interp.generate(tiny_gpt2, "The earth revolves around the sun", max_new_tokens=1)
    noise = interp.edit("embed", "noise", seed=1)
    scores = circuit(tiny_gpt2, clean, noise, metric=metrics.logit_diff(40, 41), method="eap")
    files.save(scores, tmp_path / "c")
    assert not (tmp_path / "c" / "importances.json").exists()
    with pytest.raises(interp.InterpError, match="score with kv='per-head'"):
        files.mib_graph(scores)
