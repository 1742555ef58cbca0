"""A circuit's metric, exactly: the empty circuit is the corrupted run, the full one the clean
run, dropping one edge is path patching of its sender into its receiver, and dropping every
edge out of a head is activation patching of that head."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import metrics
from interp.circuits import circuit

METRIC = metrics.logit_diff(40, 41)
PROMPTS = ["The earth revolves around the sun", "The moon revolves around the earth"]
SWAPPED = ["The sun revolves around the earth", "The earth revolves around the moon"]


@pytest.fixture(params=["noise", "tokens"])
def runs(request, tiny):
    """Pairs corrupted by noise on the embeddings, or by other tokens of the same length."""
    clean = interp.generate(tiny, PROMPTS, max_new_tokens=2, temperature=0)
    if request.param == "noise":
        noise = interp.edit("embed", "noise", seed=3, scale=0.5)
        return tiny, clean, interp.record_under(tiny, clean, noise)
    other = interp.generate(tiny, SWAPPED, max_new_tokens=2, temperature=0)
    if [t.n_positions for t in other] != [t.n_positions for t in clean]:
        pytest.fail("the swapped prompts tokenise to another length")
    return tiny, clean, other


def _gap(scores):
    return abs(scores.clean_metric - scores.corrupted_metric)


def test_the_empty_circuit_is_the_corrupted_run_and_the_full_one_the_clean_run(runs):
    model, clean, corrupted = runs
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    clean_m = interp.evaluate(model, clean, METRIC).values
    corrupt_m = interp.evaluate(model, corrupted, METRIC).values
    full = scores.evaluate()
    empty = scores.evaluate(keep=[])
    assert full.edges == scores.graph.n_edges and empty.edges == 0
    tolerance = 1e-4 * max(_gap(scores), 1.0)
    torch.testing.assert_close(full.per_row, clean_m, atol=tolerance, rtol=0)
    torch.testing.assert_close(empty.per_row, corrupt_m, atol=tolerance, rtol=0)


@pytest.mark.parametrize(
    "receiver", ["logits", "L1H2.q", "L1.kv0.k", "L1.kv1.v", "L1.mlp", "L0.mlp"]
)
def test_dropping_one_edge_is_path_patching_its_sender_into_its_receiver(runs, receiver):
    model, clean, corrupted = runs
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    exact = interp.path_patch(
        model, clean, corrupted, receivers=receiver, metric=METRIC, direction="noise"
    )["path"]
    base = interp.evaluate(model, clean, METRIC).values
    tolerance = 1e-4 * max(_gap(scores), 1.0)
    senders = [(0, 1), (1, 3)] if receiver.startswith(("L1.mlp", "logits")) else [(0, 1), (0, 3)]
    for layer, head in senders:
        dropped = scores.evaluate(drop=[f"L{layer}H{head}->{receiver}"])
        got = dropped.per_row - base
        torch.testing.assert_close(got, exact.per_row[:, layer, head], atol=tolerance, rtol=0)
        assert dropped.edges == scores.graph.n_edges - 1


def test_dropping_every_edge_out_of_a_head_is_patching_that_head(runs):
    model, clean, corrupted = runs
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    patched = interp.patch(
        model, clean, corrupted, sites=["heads"], metric=METRIC, direction="noise"
    )["heads"]
    base = interp.evaluate(model, clean, METRIC).values
    graph = scores.graph
    for layer, head in [(0, 2), (1, 0)]:
        w = graph.writers.index(interp.site(f"L{layer}H{head}"))
        keep = graph.mask.clone()
        keep[w] = False
        got = scores.evaluate(keep=keep).per_row - base
        tolerance = 1e-4 * max(_gap(scores), 1.0)
        torch.testing.assert_close(got, patched.per_row[:, layer, head], atol=tolerance, rtol=0)


def test_exact_edge_scores_are_path_patching_means(runs):
    model, clean, corrupted = runs
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    exact = interp.path_patch(
        model, clean, corrupted, receivers="L1.mlp", metric=METRIC, direction="noise"
    )["path"]
    edges = ["L0H1->L1.mlp", "L1H3->L1.mlp"]
    got = scores.exact(edges)
    assert [str(e) for e in got] == edges
    tolerance = 1e-4 * max(_gap(scores), 1.0)
    for (layer, head), value in zip([(0, 1), (1, 3)], got.values(), strict=True):
        assert value == pytest.approx(float(exact.per_row[:, layer, head].mean()), abs=tolerance)


def test_a_given_circuit_is_evaluated_without_scores(runs):
    model, clean, corrupted = runs
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    kept = [edge for edge, _ in scores.top(12)]
    alone = interp.evaluate_circuit(model, clean, corrupted, kept, metric=METRIC)
    within = scores.evaluate(keep=kept)
    torch.testing.assert_close(alone.per_row, within.per_row, atol=1e-6, rtol=0)
    assert alone.edges == within.edges == 12
    full, empty = scores.clean_metric, scores.corrupted_metric
    assert alone.faithfulness == pytest.approx((alone.mean - empty) / (full - empty), abs=1e-5)
    with pytest.raises(interp.InterpError, match="L0H1 does not feed L0H2.q"):
        interp.evaluate_circuit(model, clean, corrupted, ["L0H1->L0H2.q"], metric=METRIC)


def test_each_pass_over_the_pairs_shows_a_bar_when_asked(runs, capsys):
    model, clean, corrupted = runs
    scores = circuit(
        model, clean, corrupted, metric=METRIC, method="eap-ig", steps=2, progress=True
    )
    scores.metrics([scores.graph.mask] * 3, progress=True)
    err = capsys.readouterr().err
    assert "eap-ig (2 step(s))" in err and "evaluating 3 circuit(s)" in err
    assert "2/2 [" in err  # both pairs counted
    circuit(model, clean, corrupted, metric=METRIC, method="eap")
    assert capsys.readouterr().err == ""  # off by default


def test_exact_node_scores_are_patching_each_node(runs):
    model, clean, corrupted = runs
    scores = circuit(model, clean, corrupted, metric=METRIC, method="eap")
    patched = interp.patch(
        model, clean, corrupted, sites=["heads"], metric=METRIC, direction="noise"
    )["heads"]
    exact = scores.exact_nodes()
    assert list(exact) == scores.graph.writers
    tolerance = 1e-4 * max(_gap(scores), 1.0)
    for layer in range(model.n_layers):
        for head in range(model.n_heads):
            want = float(patched.per_row[:, layer, head].mean())
            assert exact[interp.site(f"L{layer}H{head}")] == pytest.approx(want, abs=tolerance)
    # the embedding's every edge corrupted: the corrupted run
    assert exact[interp.site("embed")] == pytest.approx(
        scores.corrupted_metric - scores.clean_metric, abs=tolerance
    )


def test_mean_ablation_empties_every_edge_into_its_writers_mean_over_the_reference(tiny):
    """The empty circuit under mean ablation is a forward in which the embedding, each layer's
    attention output (less its bias) and each MLP's output are their means over the reference
    set's rows and positions, computed here by a plain loop over each run's cache."""
    from interp.models import hooks as H
    from interp.trace import components

    model = tiny
    clean = interp.generate(model, PROMPTS, max_new_tokens=2, temperature=0)
    reference = interp.generate(model, SWAPPED + ["A day on the sea"], max_new_tokens=3, seed=1)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for run in reference:
        ids = run.token_ids[None]
        _, cache = model.bridge.run_with_cache(ids)
        parts = {H.EMBED: cache[H.EMBED][0]}
        for layer in range(model.n_layers):
            heads = components.head_outputs(model, cache[H.z(layer)], layer)[0]  # [pos, h, d]
            parts[H.attn_out(layer)] = heads.sum(1)
            parts[H.mlp_out(layer)] = cache[H.mlp_out(layer)][0]
        for name, value in parts.items():
            sums[name] = sums.get(name, 0) + value.double().sum(0)
        count += ids.shape[1]
    means = {name: (total / count).float() for name, total in sums.items()}

    seen: dict[int, torch.Tensor] = {}

    def keep_z(layer):
        return lambda z, hook: seen.__setitem__(layer, z)

    def to_mean(name, layer=None):
        def hook(x, hook):
            if layer is None:
                return means[name].expand_as(x)
            live = components.head_outputs(model, seen[layer], layer).sum(-2)
            return means[name] + (x - live)  # the attention bias is no head's write

        return hook

    hooks = [(H.EMBED, to_mean(H.EMBED))]
    for layer in range(model.n_layers):
        hooks.append((H.z(layer), keep_z(layer)))
        hooks.append((H.attn_out(layer), to_mean(H.attn_out(layer), layer)))
        hooks.append((H.mlp_out(layer), to_mean(H.mlp_out(layer))))
    want = []
    for run in clean:
        with torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
            logits = model.bridge(run.token_ids[None], return_type="logits")
        at = run.prompt_len - 1
        want.append(float(logits[0, at, 40] - logits[0, at, 41]))
    scores = circuit(model, clean, reference, metric=METRIC, method="eap", ablation="mean")
    assert scores.ablation == "mean"
    torch.testing.assert_close(scores.runs[1].corrupt_m, torch.tensor(want), atol=1e-4, rtol=0)
    full = scores.evaluate()
    torch.testing.assert_close(
        full.per_row, interp.evaluate(model, clean, METRIC).values, atol=1e-4, rtol=0
    )


def test_mean_positional_over_one_reference_row_is_patching_from_that_row(tiny):
    """EAP-IG's "mean-positional": each position's mean over the reference rows. Over one row
    that is the row itself at every position, so the scores, the corrupted metric and any
    circuit's metric equal patch ablation with that row as every pair's corrupted run."""
    from interp.circuits.pairs import mean_writes
    from interp.circuits.runs import writes

    model = tiny
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, model.d_vocab, (5, 7), generator=g).tolist()
    options = {"max_new_tokens": 2, "temperature": 0, "stop_at_eos": False}
    clean = interp.generate(model, ids[:2], **options)
    reference = interp.generate(model, ids[2:4], **options)
    one = interp.TraceSet([reference[0]])
    positional = circuit(model, clean, one, metric=METRIC, method="eap", ablation="mean-positional")
    patched = circuit(
        model, clean, interp.TraceSet([reference[0]] * 2), metric=METRIC, method="eap"
    )
    torch.testing.assert_close(positional.scores, patched.scores, atol=1e-5, rtol=1e-4)
    assert positional.corrupted_metric == pytest.approx(patched.corrupted_metric, abs=1e-5)
    kept = [edge for edge, _ in patched.top(6)]
    torch.testing.assert_close(
        positional.evaluate(keep=kept).per_row,
        patched.evaluate(keep=kept).per_row,
        atol=1e-5,
        rtol=0,
    )
    both = mean_writes(model, list(reference), positional=True)  # [pos, writer, d]
    by_hand = (writes(model, [reference[0]])[0] + writes(model, [reference[1]])[0]) / 2
    torch.testing.assert_close(both, by_hand, atol=1e-6, rtol=0)
    mixed = interp.TraceSet([reference[0], interp.generate(model, ids[4] + [5], **options)])
    with pytest.raises(interp.InterpError, match="reference row 1 has 10 tokens, reference row 0"):
        circuit(model, clean, mixed, metric=METRIC, method="eap", ablation="mean-positional")
