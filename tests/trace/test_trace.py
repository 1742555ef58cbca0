"""Trace: the ActivationCache view, save/load round trip, format checks, atomic writes."""

import json

import pytest
import torch

import interp
from interp.errors import ModelMismatchError, OutputPathError, TraceFormatError
from interp.files import atomic
from interp.models import hooks as H
from interp.trace.trace import Trace

REQUIRED_SUMMARY_KEYS = {
    "model",
    "prompt",
    "seed",
    "sampling",
    "token_ids",
    "prompt_len",
    "continuation",
    "token_logprobs",
    "timings",
    "provenance",
    "format_version",
}


@pytest.fixture()
def recorded(tiny):
    return interp.generate(tiny, "The earth revolves", max_new_tokens=6, seed=0)


def test_cache_is_a_transformerlens_activation_cache(recorded, tiny):
    from transformer_lens import ActivationCache

    cache = recorded.cache
    assert isinstance(cache, ActivationCache)
    assert torch.equal(cache[H.pattern(1)][0], recorded.activations[H.pattern(1)])
    resid = cache.accumulated_resid(layer=tiny.n_layers, incl_mid=False)
    assert resid.shape == (tiny.n_layers + 1, 1, recorded.n_positions, tiny.d_model)
    torch.testing.assert_close(resid[0, 0], recorded.activations[H.resid_pre(0)])


def test_save_load_round_trip_is_equal(recorded, tiny, tmp_path):
    recorded.save(tmp_path / "t")
    loaded = Trace.load(tmp_path / "t", model=tiny)
    assert loaded == recorded
    assert loaded.model is tiny
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "activations.safetensors",
        "steps.safetensors",
        "summary.json",
    ]


def test_summary_json_holds_what_users_read(recorded, tmp_path):
    recorded.save(tmp_path / "t")
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert REQUIRED_SUMMARY_KEYS <= summary.keys()
    assert summary["token_ids"] == recorded.token_ids.tolist()
    assert len(summary["token_logprobs"]) == recorded.n_generated
    assert summary["seed"] == 0 and summary["sampling"]["temperature"] == 1.0
    prov = summary["provenance"]
    for key in (
        "interp",
        "torch",
        "transformers",
        "transformer_lens",
        "model_checksum",
        "device",
        "dtype",
    ):
        assert prov[key], key


def test_another_model_is_refused(recorded, tmp_path, device, tmp_path_factory):
    from conftest import build_tiny

    recorded.save(tmp_path / "t")
    other = "llama" if recorded.model_name == "tiny-gpt2" else "gpt2"
    other_model = build_tiny(other, tmp_path_factory.mktemp("other"), device)
    with pytest.raises(ModelMismatchError, match="recorded with model"):
        Trace.load(tmp_path / "t", model=other_model)


def test_unknown_format_version_is_refused(recorded, tmp_path):
    recorded.save(tmp_path / "t")
    summary_path = tmp_path / "t" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["format_version"] = 99
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(TraceFormatError, match="format version 99"):
        Trace.load(tmp_path / "t")


def test_a_directory_that_is_not_a_trace_is_refused(tmp_path):
    with pytest.raises(TraceFormatError, match="not an interp trace"):
        Trace.load(tmp_path)
    (tmp_path / "summary.json").write_text('{"something": "else"}')
    with pytest.raises(TraceFormatError, match="not an interp trace"):
        Trace.load(tmp_path)
    with pytest.raises(TraceFormatError, match="does not exist"):
        Trace.load(tmp_path / "missing")


def test_an_interrupted_save_leaves_nothing(recorded, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trace, "summary", boom)
    with pytest.raises(KeyboardInterrupt):
        recorded.save(tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_overwrite_keeps_the_old_trace(recorded, tmp_path, monkeypatch):
    recorded.save(tmp_path / "t")
    before = (tmp_path / "t" / "summary.json").read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "replace_dir", boom)
    with pytest.raises(OSError):
        recorded.save(tmp_path / "t")
    assert (tmp_path / "t" / "summary.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_existing_trace_is_replaced_other_content_is_refused(recorded, tmp_path):
    recorded.save(tmp_path / "t")
    recorded.save(tmp_path / "t")  # a trace may be replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputPathError, match="not an interp trace"):
        recorded.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError):
        recorded.save(tmp_path / "file")
    with pytest.raises(OutputPathError):
        recorded.save(tmp_path / "file" / "below")


def test_require_hooks_names_what_is_missing(tiny):
    trace = interp.generate(tiny, "The sun", max_new_tokens=2, seed=0, hooks=[H.resid_pre(0)])
    with pytest.raises(Exception, match="blocks.0.attn.hook_pattern"):
        trace.require_hooks([H.resid_pre(0), H.pattern(0)], "attention analysis")
