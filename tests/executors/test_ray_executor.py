"""A set's rows on Ray workers give what one process gives: the same tokens under the same
seeds and every number to 1e-6, on a local cluster and on two simulated nodes, the work done by
at least two worker processes. A worker killed mid-run is retried; errors are one line."""

from __future__ import annotations

import pytest
import torch
from conftest import spread

import interp
from interp.interventions import metrics

pytestmark = pytest.mark.ray

PROMPTS = [
    "The earth revolves around the sun",
    "The moon revolves around the earth",
    "Attention heads copy tokens around",
    "Induction heads complete repeated patterns",
    "The sun revolves around nothing at",
]


@pytest.fixture(scope="module")
def model(folder_model):
    return folder_model


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    return ray_cluster


@pytest.fixture(scope="module")
def pairs(model):
    """Clean runs of one length and corrupted ones (one prompt token changed), paired."""
    ids = torch.randint(3, model.d_vocab, (5, 8), generator=torch.Generator().manual_seed(0))
    clean = interp.generate(model, ids.tolist(), max_new_tokens=2, temperature=0, stop_at_eos=False)
    corrupted = []
    for row in clean:
        ids = row.token_ids[: row.prompt_len].tolist()
        ids[-2] = (ids[-2] + 7) % model.d_vocab
        corrupted.append(interp.generate(model, ids, continuation=row.continuation_ids))
    return clean, interp.TraceSet(corrupted)


def same_top(a, b):
    """The same candidates in the same order, their values to 1e-6."""
    assert [cell for cell, _ in a] == [cell for cell, _ in b]
    assert all(abs(x - y) <= 1e-6 for (_, x), (_, y) in zip(a, b, strict=True))


def close(a, b):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-6, rtol=0, equal_nan=True), (a - b).abs().nanmax()


def test_generation_over_a_prompts_file_is_token_for_token_one_process(model, cluster, tmp_path):
    executor, nodes = cluster
    file = tmp_path / "prompts.jsonl"
    file.write_text("".join(f'{{"prompt": "{p}", "k": {i}}}\n' for i, p in enumerate(PROMPTS)))
    from interp.generation.prompts import read_prompts

    lines = read_prompts(file)
    prompts, metas = [line.prompt for line in lines], [line.fields for line in lines]
    one = interp.generate(model, prompts, meta=metas, num_samples=2, max_new_tokens=6, seed=5)
    spread_ = interp.generate(
        model, prompts, meta=metas, num_samples=2, max_new_tokens=6, seed=5, executor=executor
    )
    spread(executor, nodes)
    assert len(spread_) == len(one) == 10
    for a, b in zip(one, spread_, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist() and a.settings == b.settings
        assert a.meta == b.meta
        close(a.token_logprobs, b.token_logprobs)
        for name in a.activations:
            close(a.activations[name], b.activations[name])


def test_patching_equals_one_process(model, cluster, pairs):
    executor, nodes = cluster
    clean, corrupted = pairs
    metric = metrics.logit_diff(40, 41)
    one = interp.patch(model, clean, corrupted, sites=["heads", "resid"], metric=metric)
    ray_ = interp.patch(
        model, clean, corrupted, sites=["heads", "resid"], metric=metric, executor=executor
    )
    spread(executor, nodes)
    assert ray_.rows == one.rows == len(PROMPTS)
    for site in ("heads", "resid"):
        a, b = one[site], ray_[site]
        for name in ("effect", "effect_normalized", "stderr", "per_row", "patched"):
            close(getattr(a, name), getattr(b, name))
        close(a.clean_per_row, b.clean_per_row)
        same_top(a.top(5), b.top(5))


def test_sweep_and_evaluate_equal_one_process(model, cluster, pairs):
    executor, nodes = cluster
    clean, _ = pairs
    one = interp.sweep(model, clean, "mean")
    ray_ = interp.sweep(model, clean, "mean", executor=executor)
    spread(executor, nodes)
    for name in ("delta", "estimate", "delta_rows"):
        close(getattr(one, name), getattr(ray_, name))
    same_top(one.top_heads(5), ray_.top_heads(5))
    a = interp.evaluate(model, clean, metrics.logit_diff(40, 41))
    b = interp.evaluate(model, clean, metrics.logit_diff(40, 41), executor=executor)
    spread(executor, nodes)
    close(a.values, b.values)
    assert abs(a.mean - b.mean) <= 1e-6 and abs(a.stderr - b.stderr) <= 1e-6


def test_paired_samples_equal_one_process(model, cluster):
    executor, nodes = cluster
    runs = interp.generate(model, PROMPTS[:4], max_new_tokens=4, seed=2)
    one = interp.ablate(model, runs, "L0H1,L1H2", samples=3, controls=1, max_new_tokens=4)
    ray_ = interp.ablate(
        model, runs, "L0H1,L1H2", samples=3, controls=1, max_new_tokens=4, executor=executor
    )
    spread(executor, nodes)
    assert one.summary() == ray_.summary()
    texts = [(p.baseline_text, p.ablated_text, p.row) for p in one.effect.pairs]
    assert texts == [(p.baseline_text, p.ablated_text, p.row) for p in ray_.effect.pairs]
    assert len(texts) == 4 * 3


def test_path_patching_and_circuit_scores_equal_one_process(model, cluster, pairs):
    executor, nodes = cluster
    clean, corrupted = pairs
    metric = metrics.logit_diff(40, 41)
    one = interp.path_patch(model, clean, corrupted, metric=metric, receivers="L1H0.q")
    ray_ = interp.path_patch(
        model, clean, corrupted, metric=metric, receivers="L1H0.q", executor=executor
    )
    spread(executor, nodes)
    for name in ("effect", "per_row", "patched"):
        close(getattr(one["path"], name), getattr(ray_["path"], name))
    assert ray_.executor == executor.record() and not one.executor
    for method in ("eap", "eap-ig"):
        a = interp.circuit(model, clean, corrupted, metric=metric, method=method, batch_size=2)
        b = interp.circuit(
            model, clean, corrupted, metric=metric, method=method, batch_size=2, executor=executor
        )
        spread(executor, nodes)
        close(a.scores, b.scores)
        same_top(a.top(10), b.top(10))
        assert b.rows == a.rows == len(PROMPTS)
