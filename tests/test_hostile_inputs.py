"""Hostile input on the edits (issue 47): each value refused where it is built or meets the
model, in one line, and the numbers that used to be silently wrong held to a reference
computed another way (by hand, or by composing the edits explicitly)."""

import math

import pytest
import torch

import interp
from interp.edits import Intervention, applying, edit, span
from interp.errors import InvalidSettingError
from interp.generation import record_under
from interp.interventions.patching import patch

PROMPT = "The Eiffel Tower is in the city of"
SITE = "blocks.1.hook_resid_pre"


def _forced(model, intervention=None, hooks=(SITE,)):
    hooks = None if hooks is None else list(hooks)  # None: the default hooks
    return interp.generate(
        model, PROMPT, continuation=" Paris", hooks=hooks, intervention=intervention
    )


@pytest.mark.parametrize("positions", [slice(0, 5, 0), slice(0, 5.5), slice("a", None)])
def test_a_position_slice_with_step_0_or_bad_bounds_is_refused_where_built(positions):
    with pytest.raises(InvalidSettingError, match="slice"):
        edit(SITE, "zero", positions=positions)
    value = {"edits": [{"site": SITE, "op": "zero", "positions": [{"slice": [0, 5, 0]}]}]}
    with pytest.raises(InvalidSettingError, match=r"edits\[0\].*step cannot be 0"):
        Intervention.from_json(value)


def test_a_neuron_out_of_range_is_refused_and_the_last_one_is_edited(tiny_llama):
    site, d_mlp = "blocks.1.mlp.hook_post", int(tiny_llama.cfg.d_mlp)
    with pytest.raises(InvalidSettingError, match=f"neuron 1000000 of {site}.*0..{d_mlp - 1}"):
        _forced(tiny_llama, edit(site, "zero", neurons=[1_000_000]), hooks=[site])
    plain = _forced(tiny_llama, hooks=[site]).activations[site]
    edited = _forced(tiny_llama, edit(site, "zero", neurons=[d_mlp - 1]), hooks=[site])
    want = plain.clone()
    want[:, d_mlp - 1] = 0
    torch.testing.assert_close(edited.activations[site], want)


def test_kv_heads_are_checked_against_the_kv_heads_at_hook_k_and_hook_v(tiny_llama):
    n_kv = tiny_llama.bridge.cfg.n_key_value_heads
    assert n_kv < tiny_llama.n_heads  # grouped-query: the check must not use the query heads
    for site in ("blocks.0.attn.hook_k", "blocks.0.attn.hook_v"):
        with pytest.raises(InvalidSettingError, match=f"KV head {n_kv} of {site}.*0..{n_kv - 1}"):
            _forced(tiny_llama, edit(site, "zero", heads=[n_kv]), hooks=[site])
        run = _forced(tiny_llama, edit(site, "zero", heads=[n_kv - 1]), hooks=[site])
        assert bool((run.activations[site][:, n_kv - 1] == 0).all())
    q = "blocks.0.attn.hook_q"
    run = _forced(tiny_llama, edit(q, "zero", heads=[tiny_llama.n_heads - 1]), hooks=[q])
    assert bool((run.activations[q][:, -1] == 0).all())


def test_a_noise_seed_past_64_bits_is_refused_and_a_large_one_draws_by_hand(tiny_llama):
    for seed in (10**20, 2**64, -1):
        with pytest.raises(InvalidSettingError, match="seed"):
            edit("hook_embed", "noise", seed=seed)
    seed = 2**60  # seed * 1_000_003 overflowed 64 bits before
    run = _forced(tiny_llama, edit("hook_embed", "noise", seed=seed), hooks=["hook_embed"])
    plain = _forced(tiny_llama, hooks=["hook_embed"]).activations["hook_embed"]
    scale = 3 * applying.embedding_std(tiny_llama)
    for p in range(run.n_positions):
        g = torch.Generator().manual_seed((seed * 1_000_003 + p + 1) % 2**64)
        want = plain[p] + scale * torch.randn(tiny_llama.d_model, generator=g)
        torch.testing.assert_close(run.activations["hook_embed"][p], want)


@pytest.mark.parametrize("size", [1e20, 1e-30, 3e38])
def test_project_and_set_along_a_direction_of_any_finite_norm(tiny_llama, size):
    d = tiny_llama.d_model
    direction = torch.full((d,), size)
    plain = _forced(tiny_llama).activations[SITE].double()
    unit = torch.ones(d, dtype=torch.float64) / math.sqrt(d)  # by hand, in float64
    along = plain @ unit
    projected = _forced(tiny_llama, edit(SITE, "project", direction=direction))
    want = plain - along[:, None] * unit
    torch.testing.assert_close(projected.activations[SITE].double(), want, atol=1e-4, rtol=1e-4)
    put = _forced(tiny_llama, edit(SITE, "set", direction=direction, value=3.0))
    want = plain + (3.0 - along)[:, None] * unit
    torch.testing.assert_close(put.activations[SITE].double(), want, atol=1e-4, rtol=1e-4)
    with pytest.raises(InvalidSettingError, match="zero vector"):
        edit(SITE, "project", direction=torch.zeros(d))


@pytest.mark.parametrize(
    "bad",
    [
        lambda d: edit(SITE, "add", vector=torch.ones(d) * 1e30),
        lambda d: edit(SITE, "set", direction=torch.eye(d)[0], value=1e38),
        lambda d: edit(SITE, "scale", factor=1e38, positions="last_prompt"),
    ],
)
def test_an_edit_that_overflows_the_stream_stops_the_run_naming_it(tiny_llama, bad):
    intervention = bad(tiny_llama.d_model)
    with pytest.raises(InvalidSettingError) as err:
        interp.generate(tiny_llama, PROMPT, max_new_tokens=2, intervention=intervention)
    message = str(err.value)
    assert "\n" not in message and intervention.label in message and SITE in message
    assert "not finite" in message


def test_the_downstream_guard_refuses_an_overflow_past_the_edits_outside_the_padding(
    tiny_llama,
):
    """An edit whose own value is finite may still overflow later: the guard at the last
    layer's output checks the edited rows' real positions (not their left padding)."""
    intervention = edit(SITE, "scale", factor=2.0)
    rows = [applying.Row(3, ["a"] * 3, 3, pad=2), None]
    (_, _), (site, guard) = applying.hooks(intervention, tiny_llama, rows)
    assert site == f"blocks.{tiny_llama.n_layers - 1}.hook_resid_post"
    x = torch.zeros(2, 5, tiny_llama.d_model)
    x[0, :2, 0] = 1e20  # the edited row's left padding
    x[1, :, 0] = 1e20  # a row the intervention leaves alone
    assert guard(x) is x
    x[0, 4, 0] = 1e20  # squares overflow float32: the next norm would divide by infinity
    with pytest.raises(InvalidSettingError, match=f"under {intervention.label}.*{site}"):
        guard(x)


def test_evaluate_refuses_an_intervention_that_is_not_one(tiny_llama, unchecked):
    run = _forced(tiny_llama)
    with pytest.raises(InvalidSettingError, match="an intervention is an interp.Intervention"):
        interp.evaluate(tiny_llama, run, "logprob", intervention="zero")


def test_a_position_past_the_run_says_so():
    row = applying.Row(3, ["a", "b", "c"], 5, origin="the row")
    for p, side in ((9_999_999_999, "past the end"), (-6, "before the start"), (5, "past the end")):
        with pytest.raises(InvalidSettingError, match=f"position {p} is {side} of its 5"):
            applying.resolve_positions([p], row)


def test_the_corrupted_side_runs_the_clean_runs_own_intervention_first(tiny_llama):
    own = edit(SITE, "scale", factor=0.0, positions=span("Eiffel Tower"))
    noise = edit("hook_embed", "noise", seed=3)
    clean = _forced(tiny_llama, own, hooks=None)
    # the reference: the same tokens recorded under both edits, composed by hand
    by_hand = _forced(tiny_llama, own + noise, hooks=None)
    plain_noised = _forced(tiny_llama, noise, hooks=None)
    again = record_under(tiny_llama, clean, noise)
    torch.testing.assert_close(again.activations[SITE], by_hand.activations[SITE])
    torch.testing.assert_close(again.token_logprobs, by_hand.token_logprobs)
    assert not torch.allclose(again.token_logprobs, plain_noised.token_logprobs)
    assert again.intervention == by_hand.intervention
    metric = "logprob"
    result = patch(tiny_llama, clean, noise, sites=["heads"], metric=metric)
    want = interp.evaluate(tiny_llama, by_hand, metric).mean
    assert result.corrupted_metric == pytest.approx(want, abs=1e-5)
    assert interp.evaluate(tiny_llama, clean, metric, intervention=noise).mean == pytest.approx(
        want, abs=1e-5
    )
