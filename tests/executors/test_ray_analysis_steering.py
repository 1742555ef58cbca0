"""`analyze` of a set and `steer_eval` on Ray workers give what one process gives: every row's
analysis and the means over rows to 1e-6, the same sampled texts and the same statistics, on a
local cluster and on two simulated nodes, the work done by at least two worker processes; and
`interp analyze` / `interp steer` with --ray write what one process writes, with the executor."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import spread

import interp
from interp.analysis.stored import ROW_FIELDS
from interp.cli import commands, steering
from interp.cli.app import main
from interp.steering import SteeringVector, steer_eval

pytestmark = pytest.mark.ray

PROMPTS = [
    "The earth revolves around the sun",
    "The moon revolves",
    "Attention heads copy tokens around",
    "Induction heads complete repeated patterns",
    "The sun",
]


@pytest.fixture(scope="module")
def model(folder_model):
    return folder_model


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    return ray_cluster


def close(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    if not a.is_floating_point():
        assert torch.equal(a, b)
        return
    assert torch.allclose(a, b, atol=1e-6, rtol=0, equal_nan=True), (a - b).abs().nanmax()


def near(a, b, path="summary"):
    """Two JSON records alike: the same keys and strings, numbers within 1e-5 (they are
    rounded to 5 places, so a last digit may flip)."""
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            near(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            near(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == b or math.isnan(a) and math.isnan(b) or abs(a - b) <= 1e-5, path
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def runs(model):
    """Rows of different lengths, every hook the analyses read recorded."""
    return interp.generate(model, PROMPTS, max_new_tokens=4, seed=7)


def same_analysis(one, other):
    assert len(one.rows) == len(other.rows) == len(PROMPTS)
    for a, b in zip(one.rows, other.rows, strict=True):
        for part, names in ROW_FIELDS.items():
            for name in names:
                close(getattr(getattr(a, part), name), getattr(getattr(b, part), name))
        close(a.attention.patterns, b.attention.patterns)
        assert a.logit_lens.positions == b.logit_lens.positions
        assert a.attention.tokens == b.attention.tokens
    close(one.attention.row_stats, other.attention.row_stats)
    for name in ("mean_kl", "top1_agreement", "mean_rank"):
        pairs = zip(getattr(one.logit_lens, name), getattr(other.logit_lens, name), strict=True)
        for x, y in pairs:
            close(x, y)
    for x, y in zip(one.attribution.heads_mean(), other.attribution.heads_mean(), strict=True):
        close(x, y)
    assert one.vocab == other.vocab
    close(one.head_roles.scores, other.head_roles.scores)


def test_analysis_of_a_set_equals_one_process(model, cluster, runs):
    executor, nodes = cluster
    one = interp.analyze(model, runs)
    ray_ = interp.analyze(model, runs, executor=executor)  # the head roles probed here, once
    spread(executor, nodes)
    same_analysis(one, ray_)
    assert ray_.executor == executor.record() and not one.executor
    a, b = one.summary(), ray_.summary()
    assert b.pop("executor") == executor.record() and "executor" not in a
    a.pop("timings"), b.pop("timings")
    near(a, b)


def test_interp_analyze_with_ray_writes_what_one_process_writes(
    model, cluster, runs, tmp_path, monkeypatch, capsys
):
    executor, nodes = cluster
    made = []
    real = commands.executor_of
    runs.save(tmp_path / "one")
    runs.save(tmp_path / "ray")
    assert main(["analyze", str(tmp_path / "one")]) == 0
    monkeypatch.setattr(commands, "executor_of", lambda args: made.append(real(args)) or executor)
    assert main(["analyze", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    assert made == [interp.Ray(workers=2)]
    assert f"on Ray: 2 workers on {nodes} node(s)" in capsys.readouterr().out
    spread(executor, nodes)
    a = json.loads((tmp_path / "one" / "summary.json").read_text())["analysis"]
    b = json.loads((tmp_path / "ray" / "summary.json").read_text())["analysis"]
    assert b.pop("executor") == executor.record() and "executor" not in a
    a.pop("timings"), b.pop("timings")
    near(a, b)
    loaded = [
        interp.SetAnalysis.load(tmp_path / d, interp.TraceSet.load(tmp_path / d, model))
        for d in ("one", "ray")
    ]
    assert loaded[1].executor == executor.record() and not loaded[0].executor
    for x, y in zip(loaded[0].rows, loaded[1].rows, strict=True):
        close(x.attribution.heads, y.attribution.heads)


def test_ray_analyze_of_one_trace_is_refused_in_one_line(runs, tmp_path, capsys):
    runs[0].save(tmp_path / "one")
    assert main(["analyze", str(tmp_path / "one"), "--ray"]) == 2
    assert "--ray spreads a set's rows; this is one trace" in capsys.readouterr().err
    assert "analysis" not in json.loads((tmp_path / "one" / "summary.json").read_text())


def evaluation(model, executor=None):
    vector = SteeringVector.given(
        model, torch.randn(model.d_model, generator=torch.Generator().manual_seed(1)), layer=1
    )
    return steer_eval(
        model, PROMPTS[:3], vector, scales=[0.0, 4.0], samples=3, controls=2, max_new_tokens=5,
        concept_words=["the", "sun", "earth"], prompt_baseline="Talk about the sun.", seed=3,
        executor=executor,
    )  # fmt: skip


def agree(u, v):
    """Two float32 statistics alike to 1e-6 (relative beyond 1: a log-prob of -10 scored in
    batches of another shape moves by a few of float32's steps of 1e-6 there)."""
    return u == v or math.isnan(u) and math.isnan(v) or abs(u - v) <= 1e-6 * max(1.0, abs(u))


def same_measures(a, b):
    assert a.label == b.label
    assert [(s.prompt, s.sample, s.seed, s.text) for s in a.samples] == [
        (s.prompt, s.sample, s.seed, s.text) for s in b.samples
    ]
    for x, y in zip(a.samples, b.samples, strict=True):
        assert x.first_divergence == y.first_divergence
        assert x.divergence_chars == y.divergence_chars
        for name in ("concept", "concept_mass", "kl", "logprob_per_token", "repetition"):
            assert agree(getattr(x, name), getattr(y, name)), name
    for name in ("concept", "concept_mass", "kl", "logprob_per_token", "repetition"):
        for part in ("value", "lo", "hi"):
            assert agree(getattr(getattr(a, name), part), getattr(getattr(b, name), part)), name
    assert a.first_divergence == b.first_divergence


def test_steering_evaluation_equals_one_process(model, cluster):
    executor, nodes = cluster
    one = evaluation(model)
    ray_ = evaluation(model, executor)
    spread(executor, nodes)
    assert len(one.unsteered.samples) == 3 * 3
    same_measures(one.unsteered, ray_.unsteered)
    same_measures(one.prompt_baseline, ray_.prompt_baseline)
    for a, b in zip(one.steered + one.controls, ray_.steered + ray_.controls, strict=True):
        same_measures(a, b)
    for each_a, each_b in zip(one.control_each, ray_.control_each, strict=True):
        for a, b in zip(each_a, each_b, strict=True):
            same_measures(a, b)
    assert one.verdicts == ray_.verdicts and one.pairs() == ray_.pairs()
    assert ray_.settings.pop("executor") == executor.record() and "executor" not in one.settings
    assert one.settings == ray_.settings


def test_interp_steer_with_ray_writes_what_one_process_writes(
    tiny_folder, cluster, tmp_path, monkeypatch, capsys
):
    executor, nodes = cluster
    (tmp_path / "prompts.txt").write_text("The earth revolves\nThe sun\nThe moon\n")
    (tmp_path / "words.txt").write_text("the\nsun\nearth\n")
    (tmp_path / "pos.txt").write_text("The earth revolves around the sun\nThe sun is a star\n")
    (tmp_path / "neg.txt").write_text("A cat sat on the mat\nThe dog ran in the park\n")

    def argv(out, *extra):
        return ["steer", str(tmp_path / "prompts.txt"), "--positive", str(tmp_path / "pos.txt"),
                "--negative", str(tmp_path / "neg.txt"), "--layer", "1", "--scales", "0,2",
                "--samples", "2", "--controls", "1", "--concept-words",
                str(tmp_path / "words.txt"), "--max-new-tokens", "4", "--splits", "5",
                "--model", str(tiny_folder), "--out", str(tmp_path / out), *extra]  # fmt: skip

    made = []
    real = steering.executor_of
    assert main(argv("one")) == 0
    monkeypatch.setattr(steering, "executor_of", lambda args: made.append(real(args)) or executor)
    assert main(argv("ray", "--ray", "--workers", "2")) == 0
    assert made == [interp.Ray(workers=2)]
    assert f"sampled on Ray: 2 workers on {nodes} node(s)" in capsys.readouterr().out
    spread(executor, nodes)
    a = json.loads((tmp_path / "one" / "steering.json").read_text())
    b = json.loads((tmp_path / "ray" / "steering.json").read_text())
    assert b["settings"].pop("executor") == executor.record() and "executor" not in a["settings"]
    for record in (a, b):
        record["vector"]["provenance"].pop("created")  # when each vector was made
    near(a, b)
