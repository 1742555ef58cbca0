"""Analyses on tiny models of both layouts: against hand computations from the plain Hugging
Face model, and shapes, labels and dtypes of every result."""

import math
import statistics

import pytest
import torch
from conftest import reference

import interp
from interp.analysis import attention, direct_logit_attribution, head_roles, logit_lens
from interp.analysis.attention import ROLES
from interp.analysis.logit_lens import prediction_depth
from interp.analysis.readout import Unembedding, top_k_rows
from interp.errors import HookError, InvalidSettingError, ModelMismatchError
from interp.models import hooks as H
from interp.models.heads import head_label, parse_heads, parse_label, rank_heads


@pytest.fixture(scope="module")
def recorded(tiny):
    return interp.generate(tiny, "The earth revolves around", max_new_tokens=10, seed=0)


def hf_hidden(model, token_ids):
    hf = reference(model)
    with torch.no_grad():
        out = hf(token_ids[None].to(model.device), output_hidden_states=True)
    return [h[0].float().cpu() for h in out.hidden_states], out.logits[0].float().cpu()


def hand_lens(model, token_ids):
    """Hand computation: each layer's input through HF's final norm and lm_head."""
    hidden, logits = hf_hidden(model, token_ids)
    hf = reference(model)
    norm = hf.model.norm if hasattr(hf, "model") else hf.transformer.ln_f
    head = hf.lm_head
    with torch.no_grad():
        # GPT-2 and Llama both return the final hidden state after the final norm
        layers = [head(norm(h.to(model.device))).float().cpu() for h in hidden[:-1]]
    return [x.log_softmax(-1) for x in layers + [logits]]


@pytest.mark.parametrize(
    ("rows_per_chunk", "vocab_block"),
    [(512, None), (7, 64), (7, 3)],  # one tile; several, the last short; narrower than top-k
)
def test_logit_lens_equals_a_hand_computation(tiny, recorded, rows_per_chunk, vocab_block):
    result = logit_lens(tiny, recorded, rows_per_chunk=rows_per_chunk, vocab_block=vocab_block)
    ref = hand_lens(tiny, recorded.token_ids)
    p, n = recorded.prompt_len, recorded.n_positions
    targets = recorded.token_ids[p:]
    final = ref[-1][p - 1 : n - 1]
    for i, lp in enumerate(ref):
        lp = lp[p - 1 : n - 1]
        probs = lp.exp()
        want_p = probs.gather(-1, targets[:, None])[:, 0]
        torch.testing.assert_close(result.target_probs[i], want_p, atol=1e-4, rtol=0)
        kl = (final.exp() * (final - lp)).sum(-1)
        torch.testing.assert_close(result.kl[i], kl, atol=1e-3, rtol=0)
        assert result.top_ids[i, :, 0].tolist() == lp.argmax(-1).tolist()
        top = probs.topk(result.top_probs.shape[-1], dim=-1)
        torch.testing.assert_close(result.top_probs[i], top.values, atol=1e-5, rtol=0)
        target_lp = lp.gather(-1, targets[:, None])
        assert result.target_ranks[i].tolist() == ((lp > target_lp).sum(-1) + 1).tolist()
    assert result.kl[-1].abs().max() <= 1e-5


def test_logit_lens_shapes_labels_and_summary(tiny, recorded):
    result = logit_lens(tiny, recorded, top_k=4)
    L, G = tiny.n_layers + 1, recorded.n_generated
    assert result.layers == [f"L{i}" for i in range(tiny.n_layers)] + ["final"]
    assert result.top_ids.shape == (L, G, 4) and result.top_ids.dtype == torch.long
    assert result.top_probs.shape == (L, G, 4) and result.top_probs.dtype == torch.float32
    assert result.kl.shape == result.target_ranks.shape == (L, G)
    assert result.positions == list(range(recorded.prompt_len - 1, recorded.n_positions - 1))
    summary = result.summary()
    assert len(summary["mean_kl"]) == len(summary["top1_agreement"]) == L
    assert summary["top1_agreement"][-1] == 1.0 and summary["mean_kl"][-1] == 0.0
    # the final row's rank of the generated token is the trace's own rank
    assert result.target_ranks[-1].tolist() == recorded.token_ranks.tolist()


def test_prediction_depth_by_hand():
    top1 = torch.tensor([[1, 5, 7], [2, 5, 9], [3, 5, 7], [3, 5, 7]])  # [layer, step]
    assert prediction_depth(top1).tolist() == [2, 0, 2]


def test_attention_patterns_and_top_positions(tiny, recorded):
    result = attention(tiny, recorded, top_k=2)
    n = recorded.n_positions
    assert result.patterns.shape == (tiny.n_layers, tiny.n_heads, n, n)
    assert result.top_positions.shape == (tiny.n_layers, tiny.n_heads, recorded.n_generated, 2)
    pattern = recorded.activations[H.pattern(1)]
    for j, q in enumerate(result.query_positions):
        row = pattern[2, q]
        assert result.top_positions[1, 2, j, 0] == row.argmax()
        assert result.top_positions[1, 2, j].max() <= q  # never the future


def test_attention_patterns_equal_hugging_face_eager(tiny, recorded):
    hf = reference(tiny)
    with torch.no_grad():
        out = hf(recorded.token_ids[None].to(tiny.device), output_attentions=True)
    for layer, ref in enumerate(out.attentions):
        got = recorded.activations[H.pattern(layer)]
        torch.testing.assert_close(got, ref[0].float().cpu(), atol=1e-5, rtol=0)


def test_head_roles_by_hand_on_a_probe(tiny):
    roles = head_roles(tiny, block_len=12, sequences=3, seed=3)
    tokens, n, o = roles.probe_tokens, roles.block_len, roles.offset
    assert tokens.shape == (3, o + 2 * n) and roles.sequences == 3
    assert torch.equal(tokens[:, o : o + n], tokens[:, o + n : o + 2 * n])
    assert not torch.equal(tokens[0], tokens[1])
    assert roles.scores.shape == roles.score_se.shape == (4, tiny.n_layers, tiny.n_heads)
    with torch.no_grad():
        logits, cache = tiny.bridge.run_with_cache(tokens.to(tiny.device))
    second = range(o + n, o + 2 * n)
    induction, previous = [], []
    for seq in range(3):
        pat = cache[H.pattern(1)][seq, 3].cpu()  # layer 1, head 3
        induction.append(sum(float(pat[q, q - n + 1]) for q in second) / n)
        total = tokens.shape[1]
        previous.append(sum(float(pat[q, q - 1]) for q in range(1, total)) / (total - 1))
    assert abs(float(roles.score("induction")[1, 3]) - statistics.mean(induction)) < 1e-6
    assert abs(float(roles.score("previous_token")[1, 3]) - statistics.mean(previous)) < 1e-6
    se = statistics.stdev(induction) / math.sqrt(3)
    assert abs(float(roles.score_se[ROLES.index("induction"), 1, 3]) - se) < 1e-6
    lp = logits[:, :-1].float().log_softmax(-1).cpu()
    want = -lp.gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(roles.token_loss, want, atol=1e-5, rtol=1e-5)
    first = [float(want[seq, o : o + n - 1].mean()) for seq in range(3)]
    assert abs(roles.loss_first_copy - statistics.mean(first)) < 1e-5
    assert roles.probe_summary()["loss_first_copy_per_sequence"] == [round(x, 4) for x in first]
    top = roles.top("sink", 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    with pytest.raises(InvalidSettingError):
        roles.score("copying")


def test_the_first_probe_sequence_is_the_same_for_any_number_of_sequences(tiny):
    one = head_roles(tiny, block_len=8, sequences=1, seed=5)
    four = head_roles(tiny, block_len=8, sequences=4, seed=5)
    assert torch.equal(one.probe_tokens[0], four.probe_tokens[0])
    torch.testing.assert_close(one.token_loss[0], four.token_loss[0], atol=1e-5, rtol=1e-5)
    assert torch.isnan(one.score_se).all() and one.probe_summary()["loss_first_copy_sd"] is None


def test_direct_logit_attribution_sums_to_the_logit(tiny, recorded):
    result = direct_logit_attribution(tiny, recorded)
    _, logits = hf_hidden(tiny, recorded.token_ids)
    p = recorded.prompt_len
    want = logits[p - 1 : -1].gather(-1, recorded.token_ids[p:, None])[:, 0]
    torch.testing.assert_close(result.total, want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(result.logits, want, atol=1e-4, rtol=1e-5)
    G, L, Hn = recorded.n_generated, tiny.n_layers, tiny.n_heads
    assert result.heads.shape == (G, L, Hn) and result.mlp.shape == (G, L)
    assert len(result.top_heads(5)) == 5
    labels = [label for label, _ in result.components(0)]
    assert labels[0] == "embed" and labels[-1] == "biases" and "L1H3" in labels


def test_head_decomposition_equals_the_attention_output(tiny, recorded):
    """The per-head split (z @ W_O + b_O) reproduces hook_attn_out of a full run."""
    with torch.no_grad():
        _, cache = tiny.bridge.run_with_cache(recorded.token_ids[None].to(tiny.device))
    attn = tiny.bridge.blocks[1].attn
    z = recorded.activations[H.z(1)]
    out = torch.einsum("phd,hdm->pm", z, attn.W_O.detach().cpu())
    if getattr(attn, "b_O", None) is not None:
        out = out + attn.b_O.detach().cpu()
    torch.testing.assert_close(out, cache[H.attn_out(1)][0].cpu(), atol=1e-5, rtol=1e-5)


def test_missing_hooks_are_named(tiny):
    trace = interp.generate(tiny, "The sun", max_new_tokens=3, seed=0, hooks=[H.resid_pre(0)])
    with pytest.raises(HookError, match="did not record: L1.resid_pre, L1.resid_post"):
        logit_lens(tiny, trace)
    with pytest.raises(HookError, match="hook_pattern"):
        attention(tiny, trace)
    with pytest.raises(HookError, match="L0.z, L1.z"):
        direct_logit_attribution(tiny, trace)


def test_analysing_with_another_model_is_refused(recorded, tiny, tmp_path_factory, device):
    from conftest import build_tiny

    other = build_tiny(
        "llama" if tiny.name == "tiny-gpt2" else "gpt2", tmp_path_factory.mktemp("o"), device
    )
    with pytest.raises(ModelMismatchError):
        logit_lens(other, recorded)


def test_parse_heads_and_rank_heads():
    assert parse_heads("L1H2, l0h1", 2, 3) == [(0, 1), (1, 2)]
    assert parse_heads("L1", 2, 3) == [(1, 0), (1, 1), (1, 2)]
    for bad, message in [
        ("L2H0", "layer 2"),
        ("L0H3", "head 3"),
        ("x", "malformed"),
        ("", "empty"),
        ("L0H1,,L1H1", "empty"),
    ]:
        with pytest.raises(InvalidSettingError, match=message):
            parse_heads(bad, 2, 3)
    assert parse_label(head_label(12, 7)) == (12, 7) == interp.Head(12, 7)
    head = parse_heads("L1H2", 2, 3)[0]  # a value: it unpacks, indexes and prints its label
    layer, index = head
    assert (layer, index) == (1, 2) and str(head) == "L1H2" and f"{head:6s}|" == "L1H2  |"
    assert float(torch.arange(6.0).view(2, 3)[head]) == 5.0
    with pytest.raises(InvalidSettingError, match="malformed head label"):
        parse_label("L5")
    scores = torch.tensor([[0.1, -0.9], [0.5, 0.2]])
    assert rank_heads(scores, 2) == [((1, 0), 0.5), ((1, 1), pytest.approx(0.2))]
    assert rank_heads(scores, 1, by_magnitude=True) == [((0, 1), pytest.approx(-0.9))]
    assert [str(h) for h, _ in rank_heads(scores, 2)] == ["L1H0", "L1H1"]


def _halve_head(head):
    def hook(z, hook):
        z = z.clone()
        z[..., head, :] *= 0.5
        return z

    return hook


@pytest.mark.parametrize(
    "fwd_hooks",
    [
        [],
        [(H.z(1), _halve_head(2))],  # an edit the direct engine serves
        [(lambda n: n == H.pattern(0), lambda t, hook: t * 0.5)],  # one only the bridge serves
    ],
)
def test_head_roles_agree_on_both_engines(tiny, fwd_hooks):
    direct = head_roles(tiny, block_len=10, seed=1, fwd_hooks=fwd_hooks)
    bridge = head_roles(tiny, block_len=10, seed=1, fwd_hooks=fwd_hooks, engine="bridge")
    torch.testing.assert_close(direct.scores, bridge.scores, atol=1e-6, rtol=0)
    torch.testing.assert_close(direct.token_loss, bridge.token_loss, atol=1e-4, rtol=1e-5)
    if fwd_hooks:  # the edit took effect
        plain = head_roles(tiny, block_len=10, seed=1)
        assert not torch.allclose(plain.token_loss, direct.token_loss, atol=1e-4)


@pytest.mark.parametrize(("n", "k"), [(49152, 5), (50257, 10), (130, 3), (70, 5), (9, 4)])
def test_blocked_top_k_equals_torch_topk(n, k):
    x = torch.randn(37, n, generator=torch.Generator().manual_seed(n))
    x[3, -1] = 50.0  # the winner in the last, shorter block
    x[4, :5] = 40.0 + torch.arange(5.0)  # all winners in the first block
    values, ids = top_k_rows(x, k)
    want = x.topk(k, dim=-1)
    assert torch.equal(values, want.values) and torch.equal(ids, want.indices)


@pytest.mark.parametrize("bias", [False, True])
def test_unembedding_kernels_agree(tiny, bias):
    fast, plain = Unembedding(tiny), Unembedding(tiny, onednn=False)
    assert plain.kernel == "matmul"
    assert fast.kernel == ("onednn" if tiny.device.type == "cpu" else "matmul")
    if bias:
        fast.b_u = plain.b_u = torch.randn(tiny.d_vocab, device=tiny.device)
    x = torch.randn(19, tiny.d_model, device=tiny.device)
    want = x @ plain.w_u + (plain.b_u if bias else 0)
    torch.testing.assert_close(plain(x), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast(x), want, atol=1e-5, rtol=1e-5)


def test_logit_lens_matmul_path_agrees_with_the_default(tiny, recorded, monkeypatch):
    """The matmul path (CUDA, or a torch without oneDNN), over several chunks of rows and
    several tiles of the vocabulary, the last of each short, gives what the default path
    gives."""
    import importlib

    lens_module = importlib.import_module("interp.analysis.readout")
    default = logit_lens(tiny, recorded, rows_per_chunk=7, vocab_block=64)
    monkeypatch.setattr(lens_module, "onednn_linear", lambda: None)
    plain = logit_lens(tiny, recorded, rows_per_chunk=7, vocab_block=64)
    assert torch.equal(plain.top_ids, default.top_ids)
    for name in ("top_probs", "target_probs", "kl"):
        torch.testing.assert_close(getattr(plain, name), getattr(default, name), atol=1e-5, rtol=0)
