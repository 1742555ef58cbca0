"""Feature harvesting on Ray workers gives what one process gives: a harvest's activations, a
dictionary's top contexts and its evaluation, and a trained dictionary (only the harvests
spread; the optimizer runs here), every number to 1e-6, the work done by at least two worker
processes. The corpus is random token ids in its place."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch
from conftest import spread
from fakes import random_dictionary

import interp
from interp.cli.app import main
from interp.dictionaries.files import load_dictionary
from interp.features import FeatureContexts, corpus, evaluate_dictionary, feature_contexts, harvest
from interp.features import train_dictionary as train

pytestmark = pytest.mark.ray

HOOKS = ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"]


@pytest.fixture(scope="module")
def model(folder_model):
    return folder_model


@pytest.fixture(scope="module")
def windows(model):
    """14 windows of 16 random token ids."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, model.d_vocab, (14, 16), generator=g)


@pytest.fixture
def tiny_corpus(model, monkeypatch):
    """Random token ids as both splits of the corpus (the driver reads it; workers get rows)."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, model.d_vocab, (40 * 128,), generator=g)
    monkeypatch.setattr(harvest, "corpus_tokens", lambda model, split: tokens)
    monkeypatch.setattr(corpus, "record", lambda: {"corpus": "random token ids"})


def close(a, b):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()


def same_weights(a, b):
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        close(getattr(a, name), getattr(b, name))


# First: the command starts (and shuts down) its own local cluster, before the module's.
def test_train_dictionary_on_ray_writes_what_one_process_writes(
    tiny_folder, tiny_corpus, tmp_path, capsys
):
    import ray

    argv = ["train-dictionary", "--model", str(tiny_folder), "--site", "L1.resid_post"]
    argv += ["--width", "16", "--k", "2", "--tokens", str(33 * 127)]  # 33 windows: 2 batches
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    assert "activations harvested on Ray (2 workers, 1 node(s))" in capsys.readouterr().out
    assert not ray.is_initialized()  # the cluster the command started is shut down
    one, spread_ = load_dictionary(tmp_path / "one"), load_dictionary(tmp_path / "ray")
    same_weights(one, spread_)
    a, b = one.info["evaluation"], spread_.info["evaluation"]
    assert b == pytest.approx(a, abs=1e-6, nan_ok=True)
    assert one.info["training"]["executor"] == {"kind": "local"}
    record = spread_.info["training"]["executor"]
    assert record["kind"] == "ray" and record["workers"] == 2 and record["processes"] == 2
    x, y = (FeatureContexts.load(tmp_path / n) for n in ("one", "ray"))
    close(x.values, y.values)
    assert torch.equal(x.context_ids, y.context_ids) and torch.equal(x.density, y.density)


def test_the_workers_options_are_checked_before_the_model_loads(tmp_path, capsys):
    argv = ["train-dictionary", "--model", "./no-such-model", "--site", "L1.resid_post"]
    argv += ["--width", "16", "--k", "2", "--tokens", "1k", "--out", str(tmp_path / "d")]
    assert main([*argv, "--workers", "2"]) == 2
    assert "--workers goes with --ray" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.fixture(scope="module")
def executor():
    """Two workers, each batch of windows a chunk of its own."""
    with interp.Ray(workers=2, chunk_rows=1) as ex:
        yield ex


def test_a_harvest_equals_one_process_and_a_naive_forward(model, windows, executor):
    one = harvest.activations(model, windows, HOOKS, batch=3)
    ray_ = harvest.activations(model, windows, HOOKS, batch=3, executor=executor)
    spread(executor)
    for hook in HOOKS:
        close(one[hook], ray_[hook])
        with torch.no_grad(), model.bridge.hooks(fwd_hooks=[]):  # positions 1.., in order
            _, cache = model.bridge.run_with_cache(windows, names_filter=[hook])
        close(ray_[hook], cache[hook][:, 1:].reshape(-1, model.d_model).float())


def test_top_contexts_and_the_evaluation_equal_one_process(model, windows, executor):
    ds = [
        random_dictionary(model, HOOKS[0], width=24, k=4),
        random_dictionary(model, HOOKS[1], width=16, k=3, seed=1),
    ]
    one = feature_contexts(model, ds, ids=windows, batch=3, top=3)
    ray_ = feature_contexts(model, ds, ids=windows, batch=3, top=3, executor=executor)
    spread(executor)
    for a, b in zip(one, ray_, strict=True):
        close(a.values, b.values)
        assert torch.equal(a.context_ids, b.context_ids) and torch.equal(a.density, b.density)
        assert a.tokens == b.tokens == 14 * 15
    for d in ds:
        a = asdict(evaluate_dictionary(model, d, ids=windows, batch=3))
        b = asdict(evaluate_dictionary(model, d, ids=windows, batch=3, executor=executor))
        spread(executor)
        assert a["tokens"] == b["tokens"] == 14 * 15
        for key, value in a.items():
            assert math.isclose(value, b[key], rel_tol=0, abs_tol=1e-6) or (
                math.isnan(value) and math.isnan(b[key])
            ), key


def test_training_on_ray_equals_one_process_and_resumes_in_one(
    model, executor, tiny_corpus, tmp_path
):
    kwargs = dict(width=16, k=2, tokens=2 * 64 * 15, context=16, chunk_windows=64)
    # two batches of 32 windows a chunk; the evaluation and contexts read windows of 128
    kwargs.update(evaluate_tokens=40 * 127, contexts_tokens=40 * 127, settings={"batch": 32})
    one = train(model, HOOKS, tmp_path / "one", **kwargs)
    ray_ = train(model, HOOKS, tmp_path / "ray", executor=executor, **kwargs)
    spread(executor)
    for a, b in zip(one, ray_, strict=True):
        same_weights(a, b)
        assert b.info["evaluation"] == pytest.approx(a.info["evaluation"], abs=1e-6, nan_ok=True)
        assert b.info["training"]["executor"]["processes"] >= 2
    # stopped after a chunk on Ray, resumed in this process: the same weights
    stopped = train(
        model, HOOKS, tmp_path / "mixed", executor=executor, stop_after_chunks=1, **kwargs
    )
    assert stopped == []
    for a, b in zip(one, train(model, HOOKS, tmp_path / "mixed", **kwargs), strict=True):
        same_weights(a, b)
    saved = json.loads((tmp_path / "ray" / HOOKS[0] / "interp.json").read_text())
    assert saved["training"]["executor"]["kind"] == "ray"
