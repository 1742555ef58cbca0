"""TransformerLens's cache methods on interp's cache: right against the true logits (Hugging
Face's own) and interp's direct logit attribution, or a clear refusal; never silently wrong."""

import pytest
import torch
from conftest import reference

import interp
from interp.errors import InvalidSettingError
from interp.models import hooks as H
from interp.models.surgery import norm_parameter


def true_diff(model, trace, a, d):
    """Hugging Face's logit(a) - logit(d) at every position, less what a folded cache leaves
    out of a stack's attribution (the final LayerNorm's bias, and b_U: both constants)."""
    with torch.no_grad():
        logits = reference(model)(trace.token_ids[None]).logits[0].float()
    w_u = model.bridge.W_U.detach().float()
    bias = norm_parameter(model.bridge.ln_final, "bias")
    out = logits[:, a] - logits[:, d]
    if bias is not None:
        out = out - bias @ (w_u[:, a] - w_u[:, d])
    return out


@pytest.fixture
def trace(tiny):
    return interp.generate(tiny, "The earth revolves around", max_new_tokens=6, seed=3)


def test_logit_attrs_of_the_final_residual_is_the_true_logit_difference(tiny, trace):
    cache = trace.cache
    final = cache["resid_post", tiny.n_layers - 1]  # [1, pos, d_model]
    got = cache.logit_attrs(final[None], tokens=40, incorrect_tokens=41)[0, 0]
    torch.testing.assert_close(got, true_diff(tiny, trace, 40, 41), atol=1e-4, rtol=1e-4)


def test_every_decomposition_sums_to_it_and_heads_match_interps_attribution(tiny, trace):
    cache = trace.cache
    want = true_diff(tiny, trace, 40, 41)
    parts = cache.decompose_resid()  # logit_attrs applies the final norm itself
    torch.testing.assert_close(
        cache.logit_attrs(parts, 40, 41).sum(0)[0], want, atol=1e-4, rtol=1e-4
    )
    full = cache.get_full_resid_decomposition(expand_neurons=False)
    torch.testing.assert_close(
        cache.logit_attrs(full, 40, 41).sum(0)[0], want, atol=1e-4, rtol=1e-4
    )
    heads = cache.logit_attrs(cache.stack_head_results(), 40, 41)[:, 0]
    applied = cache.stack_head_results(apply_ln=True)  # what logit_attrs does inside
    w_u = tiny.bridge.W_U.detach().float()
    direct = (applied * (w_u[:, 40] - w_u[:, 41])).sum(-1)[:, 0]
    torch.testing.assert_close(direct, heads, atol=1e-5, rtol=1e-5)
    dla = interp.direct_logit_attribution(tiny, trace, answer=40, distractor=41)
    p = trace.prompt_len
    ours = heads[:, p - 1 : trace.n_positions - 1].T.reshape(dla.heads.shape)  # [step, l, h]
    torch.testing.assert_close(ours, dla.heads, atol=1e-4, rtol=1e-4)


def test_the_final_norm_applies_with_its_weight_and_other_norms_refuse(tiny, trace):
    cache = trace.cache
    final = cache["resid_post", tiny.n_layers - 1]
    with torch.no_grad():
        normed = tiny.bridge.ln_final(final).float()
    bias = norm_parameter(tiny.bridge.ln_final, "bias")
    stacked = cache.apply_ln_to_stack(final[None])[0]
    torch.testing.assert_close(
        stacked, normed - (0 if bias is None else bias), atol=1e-5, rtol=1e-5
    )
    accumulated = cache.accumulated_resid(apply_ln=True)
    torch.testing.assert_close(accumulated[-1], normed, atol=1e-5, rtol=1e-5)
    assert torch.allclose(cache["mlp_out", 0] + cache["resid_mid", 0], cache["resid_pre", 1])
    with pytest.raises(InvalidSettingError, match="block 1's norm"):
        cache.apply_ln_to_stack(final[None], layer=1)
    with pytest.raises(InvalidSettingError, match="hook_post"):
        cache.get_full_resid_decomposition()


def test_a_sets_padded_cache_gives_each_rows_numbers(tiny):
    ts = interp.generate(tiny, ["The sun", "Attention heads copy tokens"], max_new_tokens=3, seed=0)
    cache = ts.cache
    stack = cache.decompose_resid()  # [component, row, pos, d_model]
    attrs = cache.logit_attrs(stack, 40, 41).sum(0)  # [row, pos]
    assert torch.isfinite(attrs).all()  # the padding's norm scale is 1, not 0
    for i, row in enumerate(ts):
        n = row.n_positions
        torch.testing.assert_close(attrs[i, :n], true_diff(tiny, row, 40, 41), atol=1e-4, rtol=1e-4)


def test_dla_with_a_direction_sums_to_the_true_logit_difference(tiny, trace):
    dla = interp.direct_logit_attribution(tiny, trace, answer=40, distractor=41)
    with torch.no_grad():
        logits = reference(tiny)(trace.token_ids[None]).logits[0].float()
    p = trace.prompt_len
    want = (logits[:, 40] - logits[:, 41])[p - 1 : trace.n_positions - 1]
    torch.testing.assert_close(dla.logits, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dla.total, want, atol=1e-4, rtol=1e-4)
    assert dla.target_ids.tolist() == [40] * trace.n_generated
    one = interp.direct_logit_attribution(tiny, trace, answer=40)
    torch.testing.assert_close(
        one.total, logits[p - 1 : trace.n_positions - 1, 40], atol=1e-4, rtol=1e-4
    )
    with pytest.raises(InvalidSettingError, match="needs an answer"):
        interp.direct_logit_attribution(tiny, trace, distractor=41)
    ts = interp.generate(tiny, ["The sun", "A cat"], max_new_tokens=2, seed=0)
    per_row = interp.direct_logit_attribution(tiny, ts, answer=[40, 42], distractor=[41, 43])
    alone = interp.direct_logit_attribution(tiny, ts[1], answer=42, distractor=43)
    torch.testing.assert_close(per_row.rows[1].heads, alone.heads, atol=1e-5, rtol=1e-5)
    assert H.resid_pre(0) in ts[0].activations
