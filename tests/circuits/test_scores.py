"""Edge attribution over the whole graph, checked against exact path patching (the change an
edge alone makes, to first order under a small corruption), against the gradient at each
writer's own output, and against the graph's definition in words."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import metrics
from interp.circuits import Graph, circuit
from interp.errors import InvalidSettingError
from interp.interventions.attribution_patching import gradients
from interp.models import hooks as H

PROMPT = "The earth revolves around the sun"
METRIC = metrics.logit_diff(40, 41)


def naive_edges(n_layers, n_heads, n_kv, kv):
    """The edges as the graph is defined in words: every earlier writer feeds every later
    reader, a layer's heads feed its MLP, the embedding feeds all and the logits read all."""
    writers = ["embed"]
    for layer in range(n_layers):
        writers += [f"L{layer}H{h}" for h in range(n_heads)] + [f"L{layer}.mlp"]
    edges = set()
    for w in writers:
        w_layer = -1 if w == "embed" else int(w[1:].split("H")[0].split(".")[0])
        for layer in range(n_layers):
            k_v = [f"L{layer}.kv{g}.{x}" for x in "kv" for g in range(n_kv)]
            if kv == "per-head":
                k_v = [f"L{layer}H{h}.{x}" for x in "kv" for h in range(n_heads)]
            if w_layer < layer:
                edges |= {f"{w}->L{layer}H{h}.q" for h in range(n_heads)}
                edges |= {f"{w}->{r}" for r in k_v}
            if w_layer < layer or (w_layer == layer and "H" in w):
                edges.add(f"{w}->L{layer}.mlp")
        edges.add(f"{w}->logits")
    return edges


@pytest.mark.parametrize("kv", ["group", "per-head"])
def test_the_graph_is_its_definition_and_counts_the_models_edges(kv):
    graph = Graph(3, 4, 2, kv)
    named = {str(graph.edge(w, r)) for w, r in graph.mask.nonzero().tolist()}
    assert named == naive_edges(3, 4, 2, kv)
    for w, r in graph.mask.nonzero().tolist()[::7]:  # an Edge or its spelling, back to its index
        assert graph.index(graph.edge(w, r)) == graph.index(str(graph.edge(w, r))) == (w, r)
    # SmolLM2-135M (30 layers, 9 heads, 3 KV heads), and GPT-2 small as MIB counts it
    assert Graph(30, 9, 3, "group").n_edges == 70_651
    assert Graph(30, 9, 3, "per-head").n_edges == 123_211
    assert Graph(12, 12, 12, "per-head").n_edges == 32_491
    with pytest.raises(InvalidSettingError, match="L1H0 does not feed L0.mlp"):
        graph.index("L1H0->L0.mlp")


def _runs(model, scale):
    clean = interp.generate(model, PROMPT, max_new_tokens=2, temperature=0)
    noise = interp.edit("embed", "noise", seed=3, scale=scale)
    return clean, interp.record_under(model, clean, noise)


def _heads_into(model, scores, receiver):
    """The scores of every head's edge into `receiver`, `[layer, head]`."""
    graph = scores.graph
    r = graph.readers.index(interp.site(receiver))
    rows = [
        [graph.writers.index(interp.site(f"L{l_}H{h}")) for h in range(model.n_heads)]
        for l_ in range(model.n_layers)
    ]
    return scores.scores[torch.tensor(rows), r]


def _against_path_patching(model, receiver, scale, tolerance):
    """Under a small corruption the first-order estimate is the exact change: path patching
    of each head into the receiver, the corrupted value into the clean run. (Float32 rounds
    the metric to about 5e-7, so the corruption is small but not tiny.)"""
    clean, corrupted = _runs(model, scale)
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    exact = interp.path_patch(
        model, clean, corrupted, receivers=receiver, metric=METRIC, direction="noise"
    )["path"].effect
    assert exact.abs().max() > 5e-6  # the receiver does read the heads, above float noise
    size = float(exact.abs().max())
    torch.testing.assert_close(
        _heads_into(model, scores, receiver), exact, atol=tolerance * size, rtol=tolerance
    )


@pytest.mark.parametrize("receiver", ["logits", "L1.kv0.v", "L1.mlp", "L0.mlp"])
def test_an_edge_score_is_the_exact_change_its_corruption_makes_to_first_order(tiny, receiver):
    _against_path_patching(tiny, receiver, 1e-3, 0.03)


@pytest.mark.parametrize("receiver", ["L1H2.q", "L1.kv1.k"])
def test_edges_into_queries_and_keys_too(tiny_llama, receiver):
    """Queries and keys move the pattern only a little on a tiny model: a larger corruption
    (the tiny GPT-2's patterns barely move at all, below float32's resolution)."""
    _against_path_patching(tiny_llama, receiver, 3e-3, 0.06)


def test_a_writers_edges_sum_to_its_own_attribution(tiny):
    """Sum over readers of a writer's edge scores = (corrupted - clean) output . d metric /
    d output, the gradient taken at the writer's own hook (`hook_z` for a head)."""
    clean, corrupted = _runs(tiny, 0.3)
    scores = circuit(tiny, clean, corrupted, metric=METRIC, method="eap")
    names = [H.EMBED] + [
        n for layer in range(tiny.n_layers) for n in (H.z(layer), H.mlp_out(layer))
    ]
    here, grads = gradients(tiny, clean, clean, METRIC, names)
    there, _ = gradients(tiny, corrupted, clean, METRIC, names)
    want = [float(((there[H.EMBED] - here[H.EMBED]) * grads[H.EMBED]).sum())]
    for layer in range(tiny.n_layers):
        z = ((there[H.z(layer)] - here[H.z(layer)]) * grads[H.z(layer)]).sum((0, 2))
        mlp = ((there[H.mlp_out(layer)] - here[H.mlp_out(layer)]) * grads[H.mlp_out(layer)]).sum()
        want += [*z.tolist(), float(mlp)]
    torch.testing.assert_close(scores.node_scores(), torch.tensor(want), atol=1e-4, rtol=1e-4)


def test_eap_ig_with_one_step_is_the_gradient_at_the_corrupted_end(tiny):
    """m = 1 runs the clean tokens from the corrupted embeddings: with a noise corruption that
    is the corrupted run, so its scores are minus EAP's with the runs' roles swapped."""
    clean, corrupted = _runs(tiny, 0.3)
    one = circuit(tiny, clean, corrupted, metric=METRIC, method="eap-ig", steps=1)
    swapped = circuit(tiny, corrupted, clean, metric=METRIC, method="eap")
    torch.testing.assert_close(one.scores, -swapped.scores, atol=1e-5, rtol=1e-4)
    many = circuit(tiny, clean, corrupted, metric=METRIC, method="eap-ig", steps=4)
    assert many.steps == 4 and not torch.allclose(many.scores, one.scores)


def test_rankings_and_names(tiny_llama):
    clean, corrupted = _runs(tiny_llama, 0.3)
    scores = circuit(tiny_llama, clean, corrupted, metric=METRIC, method="eap-ig", steps=2)
    edges = scores.edges()
    assert len(edges) == scores.graph.n_edges
    by_abs = sorted(edges.items(), key=lambda kv: -abs(kv[1]))[:5]
    assert [(str(e), v) for e, v in scores.top(5)] == by_abs
    signed = sorted(edges.items(), key=lambda kv: kv[1])[:5]
    assert [(str(e), v) for e, v in scores.top(5, by="signed")] == signed


def test_what_it_cannot_score_is_refused_in_one_line(tiny_llama, tiny_gemma):
    clean, corrupted = _runs(tiny_llama, 0.3)
    for kwargs, words in (
        ({"steps": 0}, "steps must be a whole number"),
        ({"metric": "kl"}, "no first-order estimate"),
    ):
        with pytest.raises(InvalidSettingError, match=words) as err:
            circuit(tiny_llama, clean, corrupted, **{"metric": METRIC, **kwargs})
        assert "\n" not in str(err.value)
    other = interp.generate(tiny_llama, PROMPT + " and", max_new_tokens=2, temperature=0)
    with pytest.raises(InvalidSettingError, match="row 0: the clean run has"):
        circuit(tiny_llama, clean, other, metric=METRIC)
    g_clean, g_corrupted = _runs(tiny_gemma, 0.3)
    with pytest.raises(InvalidSettingError, match="edge scores are not defined"):
        circuit(tiny_gemma, g_clean, g_corrupted, metric=METRIC)


def test_eap_edges_take_the_clean_writes_from_the_gradients_forward(tiny, monkeypatch):
    """Edge EAP runs two forwards a batch (the clean gradient with the clean writes, the
    corrupted writes), and its scores are those of clean writes read in a forward of their
    own, contracted by hand."""
    from interp.circuits import runs as module

    clean, corrupted = _runs(tiny, 0.3)
    calls: list[str] = []
    values, grads_of = module.node_values, module.metric_gradients
    monkeypatch.setattr(module, "node_values", lambda *a: calls.append("v") or values(*a))
    monkeypatch.setattr(
        module, "metric_gradients", lambda *a, **k: calls.append("g") or grads_of(*a, **k)
    )
    got = circuit(tiny, clean, corrupted, metric=METRIC, method="eap")
    assert calls == ["g", "v"]
    graph = got.graph
    here, there = module.writes(tiny, [clean]), module.writes(tiny, [corrupted])
    grads, _ = module.reader_grads(tiny, [clean], METRIC.bind(tiny, [clean]), graph)
    want = torch.einsum("bpwd,bprd->wr", there - here, grads) * graph.mask
    torch.testing.assert_close(got.scores, want, atol=1e-5, rtol=1e-5)


def test_the_pairs_metrics_are_measured_a_batch_at_a_time(tiny, monkeypatch):
    """Many pairs never put every row's logits in memory at once: the clean and corrupted
    metrics are measured at most 16 rows a forward, and equal one forward over all rows."""
    from interp.interventions import patching_runs as module

    clean = interp.generate(tiny, [PROMPT] * 20, max_new_tokens=2, temperature=0)
    corrupted = interp.record_under(tiny, clean, interp.edit("embed", "noise", seed=3))
    sizes: list[int] = []
    measure = module.measure
    monkeypatch.setattr(
        module,
        "measure",
        lambda m, rows, *a, **k: sizes.append(len(rows)) or measure(m, rows, *a, **k),
    )
    got = circuit(tiny, clean, corrupted, metric=METRIC, method="eap")
    assert sizes == [16, 16, 4, 4]  # each batch: its corrupted rows, then its clean rows
    whole = measure(tiny, clean, METRIC).values.mean()  # one forward over every row
    assert got.clean_metric == pytest.approx(float(whole), abs=1e-5)
