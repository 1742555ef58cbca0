"""Steering's statistics (issue 49): the verdict against degenerate controls, the concept
measure's word forms and patterns against hand counts, the first divergence against a hand
mean, the separability over many splits against a naive loop, an old vector file, and what
`interp steer` prints."""

import json
import math

import pytest
import torch
from test_steering import NEGATIVE, POSITIVE, steer_argv

import interp
from interp import cli
from interp.errors import InvalidSettingError
from interp.stats import Estimate
from interp.steering import SteeringEval, SteeringVector, concept_words, separability, steer_eval
from interp.steering.measures import ConceptWords
from interp.steering.result import Measures, Scored


@pytest.fixture
def files(tmp_path):
    (tmp_path / "pos.txt").write_text("\n".join(POSITIVE))
    (tmp_path / "neg.txt").write_text("\n".join(NEGATIVE))
    (tmp_path / "prompts.txt").write_text("The earth revolves\nThe sun\n")
    (tmp_path / "words.txt").write_text("the\nsun\nearth\n")
    return tmp_path


def scored(concept, first=None, prompt=0, sample=0):
    return Scored(prompt, sample, sample, "text", concept, math.nan, 0.1, -2.0, 0.0, first)


def measures(label, concepts, firsts=None):
    firsts = firsts or [None] * len(concepts)
    rows = [scored(c, f, sample=i) for i, (c, f) in enumerate(zip(concepts, firsts, strict=True))]
    return Measures.of(label, rows, horizon=10)


def evaluation(steered, controls):
    """A SteeringEval of one scale per entry of `steered` (its samples' concept values) against
    `controls` (per scale, per direction, the samples' concept values)."""
    scales = [float(i + 1) for i in range(len(steered))]
    each = [[measures("c", c) for c in per_scale] for per_scale in controls]
    pooled = [measures("pooled", [x for c in per_scale for x in c]) for per_scale in controls]
    return SteeringEval(
        {},
        1,
        "add",
        "vector",
        "all",
        scales,
        4,
        ["p"],
        10,
        "concept-word rate",
        ["sea"],
        [],
        [],
        measures("unsteered", [0.0] * 4),
        [measures("s", s) for s in steered],
        pooled,
        each,
        None,
        None,
    )


def test_every_control_interval_of_zero_width_is_flagged_and_never_cleared():
    zeros = [[0.0] * 4, [0.0] * 4]
    result = evaluation([[0.1, 0.2, 0.1, 0.3]], [zeros])
    assert all(c.concept == Estimate(0.0, 0.0, 0.0) for c in result.control_each[0])
    assert result.steered[0].concept.lo > 0  # it would "clear" a control of 0 [0, 0]
    assert result.verdicts == ["controls degenerate"]
    assert result.smallest_clear_scale is None
    sentence = result.sentence()
    assert "zero width" in sentence and "no claim" in sentence and "clears" not in sentence
    record = result.json()
    assert record["steered"][0]["verdict"] == "controls degenerate"
    assert record["smallest_clear_scale"] is None


def test_verdicts_per_scale_against_a_hand_comparison():
    spread = [[0.0, 0.1, 0.0, 0.1], [0.0, 0.0, 0.1, 0.0]]
    result = evaluation(
        [[0.0, 0.1, 0.0, 0.0], [0.5, 0.6, 0.5, 0.6], [0.5, 0.6, 0.5, 0.6]],
        [spread, spread, [[0.0] * 4, [0.0] * 4]],
    )
    assert result.verdicts == ["does not clear", "clears", "controls degenerate"]
    hi = max(c.concept.hi for c in result.control_each[1])
    assert result.steered[1].concept.lo > hi  # the hand comparison
    assert result.smallest_clear_scale == 2.0
    assert "zero width: no claim is made there" in result.sentence()
    one_flat = evaluation([[0.5, 0.6, 0.5, 0.6]], [[[0.0] * 4, [0.0, 0.1, 0.0, 0.1]]])
    assert one_flat.verdicts == ["clears"]  # one informative control is enough to compare
    none = evaluation([[0.5] * 4], [[]])
    assert none.verdicts == ["no controls"] and "No random-direction controls" in none.sentence()


def test_first_divergence_is_the_mean_index_censored_at_the_horizon():
    m = measures("s", [0.0] * 4, firsts=[0, 3, None, 12])
    assert m.first_divergence.value == pytest.approx((0 + 3 + 10 + 10) / 4)
    assert m.first_divergence.lo <= m.first_divergence.value <= m.first_divergence.hi


def test_word_forms_and_patterns_against_a_hand_count():
    text = "The Whale's waters; whales swam. WATER-water! Watery whaler, the whales' churches"
    words = ConceptWords(("whale", "water", "church"), (), ())
    # the, whale's, waters, whales, swam, water, water, watery, whaler, the, whales, churches
    hits = ["whale's", "waters", "whales", "water", "water", "whales", "churches"]
    assert words.rate(text) == pytest.approx(len(hits) / 12)
    patterned = ConceptWords(("whale",), (), (), (r"wat\w*",))
    # whale's, whales, whales (forms) + waters, water, water, watery (the pattern)
    assert patterned.rate(text) == pytest.approx(7 / 12)
    assert ConceptWords(("berry",), (), ()).rate("Berries and a berry") == pytest.approx(2 / 4)
    assert ConceptWords(("sea",), (), ()).rate("the season") == 0.0  # whole words only


def test_concept_patterns_are_checked_and_count_without_words(tiny_llama):
    with pytest.raises(InvalidSettingError, match="not a regular expression"):
        concept_words(tiny_llama, ["sun"], ["(unclosed"])
    with pytest.raises(InvalidSettingError, match="no concept words"):
        concept_words(tiny_llama, [], [])
    only = concept_words(tiny_llama, [], [r"the\w*"])
    assert only.words == () and only.rate("There the other") == pytest.approx(2 / 3)
    v = SteeringVector.given(tiny_llama, torch.randn(tiny_llama.d_model), layer=1)
    result = steer_eval(
        tiny_llama,
        ["The sun"],
        v,
        scales=[1.0],
        samples=2,
        controls=1,
        max_new_tokens=4,
        concept_patterns=[r"\w+"],
    )
    assert result.concept_patterns == [r"\w+"]
    assert all(s.concept in (0.0, 1.0) for s in result.steered[0].samples)  # every word counts


def naive_separability(positive, negative, *, paired, seed, splits):
    """One split at a time, as the single split was computed before (issue 49)."""
    g = torch.Generator().manual_seed(seed)
    accuracies = []
    for _ in range(splits):
        n_p, n_n = len(positive), len(negative)
        order_p = torch.randperm(n_p, generator=g)
        order_n = order_p if paired else torch.randperm(n_n, generator=g)
        train_p, test_p = order_p[: n_p // 2], order_p[n_p // 2 :]
        train_n, test_n = order_n[: n_n // 2], order_n[n_n // 2 :]
        mean_p = positive[train_p].double().mean(0)
        mean_n = negative[train_n].double().mean(0)
        direction = mean_p - mean_n
        threshold = float((mean_p + mean_n) @ direction) / 2
        hit_p = sum(float(positive[i].double() @ direction) > threshold for i in test_p)
        hit_n = sum(float(negative[i].double() @ direction) <= threshold for i in test_n)
        accuracies.append((hit_p / len(test_p) + hit_n / len(test_n)) / 2)
    a = sorted(accuracies)

    def percentile(q):  # linear interpolation between the order statistics
        x = q * (len(a) - 1)
        lo = math.floor(x)
        return a[lo] + (a[min(lo + 1, len(a) - 1)] - a[lo]) * (x - lo)

    return sum(a) / len(a), percentile(0.025), percentile(0.975)


@pytest.mark.parametrize(("n_p", "n_n", "paired"), [(21, 24, False), (12, 12, True)])
def test_separability_over_splits_equals_a_naive_loop(n_p, n_n, paired):
    g = torch.Generator().manual_seed(5)
    d = torch.randn(32, generator=g)
    pos = torch.randn(n_p, 32, generator=g) + 0.3 * d
    neg = torch.randn(n_n, 32, generator=g) - 0.3 * d
    got = separability(pos, neg, paired=paired, seed=7, splits=150)
    mean, lo, hi = naive_separability(pos, neg, paired=paired, seed=7, splits=150)
    assert got.value == pytest.approx(mean, abs=1e-6)
    assert (got.lo, got.hi) == (pytest.approx(lo, abs=1e-6), pytest.approx(hi, abs=1e-6))
    assert got.lo < got.hi  # many splits of a weak direction spread
    one = separability(pos, neg, paired=paired, seed=7, splits=1)
    assert (
        one.value
        == one.lo
        == one.hi
        == pytest.approx(naive_separability(pos, neg, paired=paired, seed=7, splits=1)[0], abs=1e-6)
    )
    with pytest.raises(InvalidSettingError, match="splits"):
        separability(pos, neg, splits=0)


def test_a_vector_file_with_one_splits_separability_still_loads(tiny, tmp_path):
    from safetensors.torch import save

    v = SteeringVector.given(tiny, torch.randn(tiny.d_model), layer=1)
    record = {**v.record(), "separability": 0.35}  # as written before the splits were many
    data = save({"vector": v.vector}, metadata={"interp_steering_vector": json.dumps(record)})
    (tmp_path / "old.safetensors").write_bytes(data)
    back = SteeringVector.load(tmp_path / "old.safetensors", tiny)
    assert back.separability is not None and back.separability.value == 0.35
    assert math.isnan(back.separability.lo) and math.isnan(back.separability.hi)
    assert back.record()["separability"] == {"value": 0.35, "ci95": [None, None]}


def test_steer_prints_the_verdict_the_divergence_and_the_separability(
    capsys,
    files,
    monkeypatch,
    tiny_llama,
):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    (files / "none.txt").write_text("zzzz\n")  # a word no text has: every control 0 [0, 0]
    argv = steer_argv(files, "--splits", "50")
    argv[argv.index("--concept-words") + 1] = str(files / "none.txt")
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "no claim is made" in out
    flat = "concept 0.000 [0.000, 0.000] vs controls 0.000 [0.000, 0.000] (controls degenerate)"
    assert f"scale 2: {flat}" in out
    assert "first divergence" in out and "of 4 tokens" in out
    assert "layer 1: held-out separability" in out
    record = json.loads((files / "out" / "steering.json").read_text())
    assert [s["verdict"] for s in record["steered"]] == ["controls degenerate"] * 2
    assert record["steered"][0]["first_divergence"]["value"] == 4  # scale 0: never parts
    layer = record["separability_by_layer"][1]
    assert set(layer) == {"value", "ci95"} and layer["ci95"][0] <= layer["ci95"][1]
    assert "controls degenerate" in (files / "out" / "index.html").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concept-pattern", "(bad"], "not a regular expression"),
        (["--splits", "0"], "splits must be"),
    ],
)
def test_steer_bad_statistics_input_is_one_line_exit_2(
    capsys,
    files,
    monkeypatch,
    tiny_llama,
    extra,
    message,
):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    assert cli.main(steer_argv(files, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (files / "out").exists()
    argv = steer_argv(files)
    i = argv.index("--concept-words")
    assert cli.main(argv[:i] + argv[i + 2 :]) == 2
    assert "--concept-pattern" in capsys.readouterr().err
