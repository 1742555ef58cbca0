"""Hostile input on the edits (issue 47): each value refused where it is built or meets the
model, in one line, and the numbers that used to be silently wrong held to a reference
computed another way (by hand, or by composing the edits explicitly)."""

import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fakes import Planted, random_dictionary, tiny_corpus, vector_file
from safetensors.torch import save_file

import interp
from interp.dictionaries.files import check, load_dictionary, same_model
from interp.edits import Intervention, applying, edit, span
from interp.errors import (
    DictionaryFormatError,
    InvalidSettingError,
    ModelMismatchError,
    TraceFormatError,
)
from interp.features.topk import TopKTrainer, TrainSettings
from interp.features.train import checkpoint_path, read_checkpoint, train_dictionary
from interp.generation.generate import record_under
from interp.interventions.patching import patch
from interp.interventions.path_patching import path_patch
from interp.interventions.receivers import parse_receivers
from interp.steering import SteeringVector

ROOT = Path(__file__).resolve().parents[2]

PROMPT = "The Eiffel Tower is in the city of"
SITE = "L1.resid_pre"


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
        value = {"edits": [{"site": "hook_embed", "op": "noise", "params": {"seed": seed}}]}
        with pytest.raises(InvalidSettingError, match=r"edits\[0\]: seed must be in"):
            Intervention.from_json(value)
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
    site = f"L{tiny_llama.n_layers - 1}.resid_post"  # as errors spell it
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
    assert again.intervention_label == by_hand.intervention_label
    metric = "logprob"
    result = patch(tiny_llama, clean, noise, sites=["heads"], metric=metric)
    want = interp.evaluate(tiny_llama, by_hand, metric).mean
    assert result.corrupted_metric == pytest.approx(want, abs=1e-5)
    assert interp.evaluate(tiny_llama, clean, metric, intervention=noise).mean == pytest.approx(
        want, abs=1e-5
    )


# ---- training checkpoints, dictionaries, steering vectors, path patching --------------------


def test_a_checkpoint_is_read_without_running_code(tiny_llama, tmp_path, monkeypatch):
    tiny_corpus(monkeypatch)
    out, hook = tmp_path / "sae", "blocks.1.hook_resid_post"
    kwargs = dict(width=16, k=2, tokens=4 * 4 * 15, context=16, chunk_windows=4)
    assert train_dictionary(tiny_llama, hook, out, stop_after_chunks=1, **kwargs) == []
    state = read_checkpoint(checkpoint_path(out))  # interp's own checkpoint: weights only
    resumed = TopKTrainer.from_state(state["trainers"][0])
    assert state["next_chunk"] == 1 and torch.equal(
        resumed.W_dec, state["trainers"][0]["params"][2]
    )
    proof, marker = tmp_path / "proof", tmp_path / "PWNED"
    pickle.loads(pickle.dumps(Planted(proof)))  # the plant does run code when unpickled
    assert proof.exists()
    for planted in (pickle.dumps(Planted(marker)), b"\x80\x04garbage", pickle.dumps([1, 2])):
        checkpoint_path(out).write_bytes(planted)
        with pytest.raises(InvalidSettingError, match=r"^\.sae\.checkpoint is not a checkpoint"):
            train_dictionary(tiny_llama, hook, out, **kwargs)
        assert not marker.exists() and not out.exists()


def test_a_width_that_cannot_fit_in_memory_is_refused():
    settings = TrainSettings(width=10**12, k=4)
    with pytest.raises(InvalidSettingError, match="width 1,000,000,000,000 .* needs about"):
        settings.check(1)  # even one input per latent
    assert settings.training_bytes(576) == 4 * (8 * 576 * 10**12 + 6 * 512 * 10**12) + 8 * 10**12
    TrainSettings(width=64, k=4).check(576)


def _saelens(folder, **cfg):
    g = torch.Generator().manual_seed(0)
    shapes = {"W_enc": (8, 12), "b_enc": (12,), "W_dec": (12, 8), "b_dec": (8,)}
    w = {name: torch.randn(*shape, generator=g) for name, shape in shapes.items()}
    folder.mkdir()
    save_file(w, folder / "sae_weights.safetensors")
    meta = {"model_name": cfg.pop("model_name", "tiny-llama"), "hook_name": "blocks.0.hook_in"}
    (folder / "cfg.json").write_text(
        json.dumps({"architecture": "standard", **cfg, "metadata": meta})
    )
    return w


@pytest.mark.parametrize(
    "field, value",
    [("apply_b_dec_to_input", "false"), ("apply_b_dec_to_input", 0), ("k", "4"), ("d_sae", 12.0)],
)
def test_dictionary_cfg_fields_are_type_checked(tmp_path, field, value):
    _saelens(tmp_path / "d", **{field: value})
    with pytest.raises(DictionaryFormatError, match=f"cfg.json: {field} must be"):
        load_dictionary(tmp_path / "d")


def test_apply_b_dec_false_encodes_without_subtracting_it(tmp_path):
    w = _saelens(tmp_path / "d", apply_b_dec_to_input=False)
    x = torch.randn(5, 8)
    want = torch.relu(x @ w["W_enc"] + w["b_enc"])  # by hand: b_dec not subtracted
    torch.testing.assert_close(load_dictionary(tmp_path / "d").encode(x), want)


def test_a_dictionary_of_another_model_is_refused(tiny_llama, tmp_path, unchecked):
    d = random_dictionary(tiny_llama, "blocks.1.hook_resid_post", width=16, k=2)
    d.model_name = "gpt2"
    with pytest.raises(ModelMismatchError, match="made for 'gpt2', not 'tiny-llama'"):
        check(d, tiny_llama)
    d.model_name = "someone/tiny-llama-it"  # a variant of the same model's name
    check(d, tiny_llama)
    smollm = SimpleNamespace(name="smollm2-135m", source="")
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", smollm)
    assert same_model("SmolLM2-135M", smollm) and not same_model("gpt2", smollm)


@pytest.mark.parametrize("resid_norm", [-1.0, 0.0, "2", float("inf")])
def test_a_steering_record_with_a_bad_resid_norm_is_refused(tmp_path, resid_norm, unchecked):
    file = vector_file(tmp_path / "v.safetensors", torch.ones(32), resid_norm=resid_norm)
    with pytest.raises(TraceFormatError, match="resid_norm must be a finite number above 0"):
        SteeringVector.load(file)


def test_a_zero_steering_vector_is_refused_and_a_huge_ones_norm_is_exact(tiny_llama, tmp_path):
    with pytest.raises(InvalidSettingError, match="zero"):
        SteeringVector.given(tiny_llama, torch.zeros(tiny_llama.d_model), 0)
    with pytest.raises(TraceFormatError, match="zero"):
        SteeringVector.load(vector_file(tmp_path / "z.safetensors", torch.zeros(32)))
    huge = SteeringVector(torch.full((32,), 1e20), 0, "tiny-llama", "diffmean", resid_norm=2.0)
    assert huge.norm == pytest.approx(1e20 * math.sqrt(32))  # by hand; float32 overflows
    assert huge.step("resid") == pytest.approx(2.0 / (1e20 * math.sqrt(32)))


def test_path_patching_into_layer_0_heads_alone_has_no_senders():
    for spec in ("L0.kv0.k", "L0H1.q", "L0H0.q,L0.kv1.v"):
        with pytest.raises(InvalidSettingError, match="layer 0's heads have no senders"):
            parse_receivers(spec, None)
    assert parse_receivers("L0.mlp", None) == [(0, 0, "mlp")]
    assert parse_receivers("L0H0.q,L1H0.q", None) == [(0, 0, "q"), (1, 0, "q")]


def test_path_patching_refuses_only_the_run_patched_into_as_the_guide_says(tiny_llama):
    guide = (ROOT / "docs" / "guides" / "interventions.md").read_text()
    assert "residual stream of the run the patch goes into" in " ".join(guide.split())
    clean = _forced(tiny_llama, edit(SITE, "scale", factor=0.5), hooks=None)
    corrupted = record_under(
        tiny_llama, _forced(tiny_llama, hooks=None), edit("hook_embed", "noise")
    )
    result = path_patch(tiny_llama, clean, corrupted, metric="logprob", direction="denoise")
    assert torch.isfinite(result["path"].effect).all()
    with pytest.raises(InvalidSettingError, match=f"recorded under an edit of {SITE}"):
        path_patch(tiny_llama, clean, corrupted, metric="logprob", direction="noise")
