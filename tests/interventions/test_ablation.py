"""Head ablations on tiny models of both layouts: locality, the fast sweep against the naive
loop, regeneration with the same noise, and bad head specs."""

import pytest
import torch
from naive import naive_sweep

import interp
from interp.edits import applying
from interp.errors import InvalidSettingError
from interp.interventions import (
    MODES,
    ablate,
    ablation_effect,
    ablation_parts,
    attribution_estimate,
    first_divergence,
    make_ablation,
    regenerate,
    replacing,
    sweep,
)
from interp.models import hooks as H


@pytest.fixture(scope="module")
def recorded(tiny):
    return interp.generate(tiny, "The earth revolves around", max_new_tokens=12, seed=0)


def all_heads(model):
    return [(layer, head) for layer in range(model.n_layers) for head in range(model.n_heads)]


def hooks_of(model, trace, intervention):
    """The intervention's own forward hooks on the trace's run (a full forward)."""
    return applying.hooks(intervention, model, [applying.Row.of(trace)])


def run_cache(model, trace, hooks):
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
        logits, cache = model.bridge.run_with_cache(trace.token_ids[None].to(model.device))
    return logits, cache


def test_ablating_layer_l_leaves_earlier_activations_unchanged(tiny, recorded):
    ablation = make_ablation(tiny, recorded, [(1, 2)], "zero")
    clean_logits, clean = run_cache(tiny, recorded, [])
    logits, ablated = run_cache(tiny, recorded, hooks_of(tiny, recorded, ablation))
    for name in (H.resid_pre(0), H.z(0), H.pattern(0), H.resid_pre(1), H.pattern(1)):
        assert torch.equal(clean[name], ablated[name]), name
    assert torch.all(ablated[H.z(1)][0, :, 2] == 0)
    assert torch.equal(clean[H.z(1)][0, :, 1], ablated[H.z(1)][0, :, 1])  # other heads kept
    assert not torch.allclose(clean_logits, logits)


def test_ablating_nothing_reproduces_the_baseline_exactly(tiny, recorded):
    effect = ablation_effect(tiny, recorded, make_ablation(tiny, recorded, [], "mean"))
    assert torch.equal(effect.ablated_logprobs, effect.baseline_logprobs)
    assert effect.delta_logprob_total == 0.0 and float(effect.kl.max()) == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_fast_sweep_equals_the_naive_loop(tiny, recorded, mode):
    exact = sweep(tiny, recorded, mode)
    parts = ablation_parts(tiny, recorded, all_heads(tiny), mode)
    naive = naive_sweep(tiny, recorded, dict(zip(all_heads(tiny), parts, strict=True)))
    err = (exact.delta - naive).abs()
    assert torch.all((err <= 1e-3) | (err <= 1e-5 * naive.abs())), err.max()
    assert bool(exact.verified.all()) and exact.method == "exact"
    assert torch.allclose(exact.delta_per_token.sum(-1), exact.delta)
    top = exact.top_heads(3)
    assert [abs(v) for _, v in top] == sorted((abs(v) for _, v in top), reverse=True)


def test_triage_verifies_the_estimates_top_heads(tiny, recorded):
    triage = sweep(tiny, recorded, "mean", method="triage", verify=3)
    assert int(triage.verified.sum()) == 3 and triage.method == "triage"
    top3 = triage.estimate.abs().flatten().argsort(descending=True)[:3]
    assert set(top3.tolist()) == set(triage.verified.flatten().nonzero()[:, 0].tolist())
    assert torch.isnan(triage.delta[~triage.verified]).all()
    summary = triage.summary()
    assert len(summary["verified_heads"]) == 3 and summary["method"] == "triage"


def test_the_estimate_is_first_order_exact_for_a_tiny_change(tiny, recorded):
    """Against a finite difference: scale an ablation down to a small step."""
    full = make_ablation(tiny, recorded, [(1, 0)], "zero")
    clean_z = recorded.activations[H.z(1)].float()
    eps = 1e-3
    # z -> z + eps * (0 - z), position by position
    small = replacing("heads", [(1, 0)], {1: clean_z * (1 - eps)}, origin="a small step")
    estimate = attribution_estimate(tiny, recorded, [full])[0] * eps
    exact = ablation_effect(tiny, recorded, small).delta_logprob_total
    assert abs(float(estimate) - exact) <= 0.05 * abs(exact) + 1e-6


@pytest.mark.parametrize("site", ["blocks.1.hook_resid_pre", "blocks.0.hook_mlp_out"])
def test_the_estimate_of_any_edit_is_its_first_order_term(tiny, recorded, site):
    """A steering addition, not an ablation: its estimate, scaled down, against the exact
    effect of the same small addition (a finite difference)."""
    direction = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(3))
    # the tiny models' residual stream is small and sharply curved: step 5e-4 of its norm
    norm = float(recorded.activations[H.resid_pre(1)].norm(dim=-1).mean())
    direction *= norm / float(direction.norm())
    eps = 5e-4
    estimate = attribution_estimate(tiny, recorded, [interp.edit(site, "add", vector=direction)])
    small = interp.edit(site, "add", vector=direction, scale=eps)
    exact = ablation_effect(tiny, recorded, small).delta_logprob_total
    assert exact != 0.0
    assert abs(float(estimate[0]) * eps - exact) <= 0.1 * abs(exact) + 1e-6


def test_regeneration_without_ablation_equals_the_baseline(tiny, recorded):
    result = regenerate(tiny, recorded, make_ablation(tiny, recorded, [], "mean"))
    assert result.ablated.token_ids.tolist() == recorded.token_ids.tolist()
    assert result.first_divergence is None and result.baseline is recorded


def test_regeneration_draws_the_same_noise(tiny, recorded):
    """An ablation that barely moves the distributions leaves the text unchanged: both runs
    see the same Gumbel noise, so only a real change of distribution can flip a token."""
    # a small step from the clean z towards zero at every position (the trace covers them all)
    step = recorded.activations[H.z(1)].float() * 0.98
    step = torch.cat([step, step[-1:]])[: recorded.n_positions + 1]
    small = replacing("heads", [(1, 0)], {1: step}, origin="a small step towards zero")
    effect = ablation_effect(tiny, recorded, small)
    assert 0 < float(effect.kl.max()) < 1e-3
    result = regenerate(tiny, recorded, small)
    div = result.first_divergence
    assert div is None or div >= 0.75 * recorded.n_generated


def test_forced_continuation_regenerates_greedily_without_a_seed(tiny):
    trace = interp.generate(tiny, "The earth", continuation=" revolves around the sun")
    report = ablate(tiny, trace, "L0", "zero")
    base, abl = report.regeneration.baseline, report.regeneration.ablated
    assert base.n_generated == abl.n_generated == trace.n_generated
    assert base.token_ranks.tolist() == [1] * trace.n_generated  # greedy
    assert len(report.effect.delta_logprob) == trace.n_generated


def test_first_divergence(tiny):
    a = interp.generate(tiny, "The sun", max_new_tokens=6, seed=1, hooks=[])
    b = interp.generate(tiny, "The sun", max_new_tokens=6, seed=2, hooks=[])
    i = first_divergence(a, b)
    assert a.continuation_ids[:i] == b.continuation_ids[:i]
    assert a.continuation_ids[i] != b.continuation_ids[i]
    assert first_divergence(a, a) is None


def test_resample_source_covers_regeneration_positions(tiny, recorded):
    report = ablate(tiny, recorded, "L1H0", "resample", resample_text="Another text.")
    assert report.regeneration.ablated.n_generated >= 1
    assert report.ablation.edits[0].params["values"].shape[0] >= recorded.prompt_len + 12


@pytest.mark.parametrize(
    ("spec", "message"),
    [("L9H0", "layer 9 in 'L9H0' is out of range"), ("L0H7", "head 7"), ("head3", "malformed")],
)
def test_bad_head_specs_state_the_valid_range(tiny, recorded, spec, message):
    with pytest.raises(InvalidSettingError, match=message) as info:
        ablate(tiny, recorded, spec)
    assert f"L0..L{tiny.n_layers - 1}" in str(info.value)


def test_unknown_mode_is_refused(tiny, recorded):
    with pytest.raises(InvalidSettingError, match="mode"):
        make_ablation(tiny, recorded, [(0, 0)], "scramble")
