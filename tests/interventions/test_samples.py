"""Ablation effects over paired samples: pairs against single regenerations with their seeds,
per-pair KL and log-prob change against the teacher-forced effect of that text, the bootstrap
against a known proportion, controls, and effect.json."""

import math
from pathlib import Path

import pytest
import torch

import interp
from interp.errors import InvalidSettingError
from interp.generation.generate import row_seed
from interp.interventions import ablate, ablation_effect, make_ablation
from interp.interventions.ablation_record import AblationRecord
from interp.interventions.samples import control_targets, paired_samples
from interp.models import hooks as H
from interp.stats import bootstrap, median


@pytest.fixture(scope="module")
def sampled(tiny):
    return interp.generate(tiny, "The earth revolves around", max_new_tokens=10, seed=5, top_k=40)


def test_with_nothing_ablated_every_pair_is_identical(tiny, sampled):
    nothing = make_ablation(tiny, sampled, [], "zero")
    result = paired_samples(tiny, sampled, nothing, samples=5)
    stats = result.effect
    assert all(p.first_divergence is None for p in stats.pairs)
    assert stats.divergence_rate.value == 0 and stats.kl_mean.value == pytest.approx(0, abs=1e-6)
    assert stats.first_divergence_median.value == 10  # censored at the horizon
    assert len(result.greedy) == 1 and result.greedy[0].first_divergence is None


def zero_heads(where):
    """Plain forward hooks zeroing each (hook_z name, head) at every position."""

    def hook_for(head):
        def hook(x, hook):
            x = x.clone()
            x[:, :, head] = 0
            return x

        return hook

    return [(name, hook_for(head)) for name, head in where]


def test_pair_k_is_a_single_run_with_its_seed_and_its_kl_the_forced_effect(tiny, sampled):
    ablation = make_ablation(tiny, sampled, [(0, 1), (1, 3)], "zero")
    result = paired_samples(tiny, sampled, ablation, samples=4, max_new_tokens=8)
    prompt = sampled.token_ids[: sampled.prompt_len].tolist()
    options = {"max_new_tokens": 8, "top_k": 40}
    assert any(p.first_divergence is not None for p in result.effect.pairs)
    for k, pair in enumerate(result.effect.pairs):
        seed = row_seed(5, k)
        assert pair.seed == seed
        base = interp.generate(tiny, prompt, seed=seed, **options)
        zeroed = [(H.z(0), 1), (H.z(1), 3)]  # the ablation by hand: a plain hook per head
        moved = interp.generate(tiny, prompt, seed=seed, fwd_hooks=zero_heads(zeroed), **options)
        assert (pair.baseline_text, pair.ablated_text) == (base.continuation, moved.continuation)
        effect = ablation_effect(tiny, base, ablation)  # along this pair's baseline tokens
        torch.testing.assert_close(pair.kl, effect.kl.float(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(pair.delta_logprob, effect.delta_logprob.float(), atol=1e-5,
                                   rtol=1e-4)  # fmt: skip
    rate = sum(p.first_divergence is not None for p in result.effect.pairs) / 4
    assert result.effect.divergence_rate.value == rate
    kl = [float(p.kl.mean()) for p in result.effect.pairs]
    assert result.effect.kl_mean.value == pytest.approx(sum(kl) / 4)
    curve = result.effect.kl_curve
    assert curve.shape == (3, 8) and torch.all(curve[1] <= curve[0] + 1e-9)


def test_the_bootstrap_interval_of_a_known_proportion():
    ones = [1.0] * 30 + [0.0] * 70
    est = bootstrap(ones)
    half = 1.96 * math.sqrt(0.3 * 0.7 / 100)  # the normal approximation's half-width
    assert est.value == pytest.approx(0.3)
    assert est.lo == pytest.approx(0.3 - half, abs=0.02)
    assert est.hi == pytest.approx(0.3 + half, abs=0.02)
    assert bootstrap(ones) == est  # seeded: the same values, the same interval
    assert bootstrap([4.0, 1.0, 3.0], median).value == 3.0
    assert bootstrap([2.5]).json() == {"value": 2.5, "ci95": [2.5, 2.5]}
    assert bootstrap([]).json() == {"value": None, "ci95": [None, None]}


def test_controls_are_seeded_random_heads_outside_the_excluded(tiny):
    excluded = [(0, 0), (0, 1), (1, 0)]
    sets = control_targets(tiny, 2, 6, excluded, seed=3)
    assert sets == control_targets(tiny, 2, 6, excluded, seed=3) and len(sets) == 6
    assert all(len(s) == 2 and not set(s) & set(excluded) for s in sets)
    with pytest.raises(InvalidSettingError, match="too few for a control"):
        control_targets(tiny, tiny.n_layers * tiny.n_heads, 1, excluded)


def test_ablate_with_samples_writes_its_pairs_and_controls_into_effect_json(tiny, sampled):
    report = ablate(
        tiny, sampled, "L0H1,L1H3", "zero", samples=3, controls=2, exclude=[(0, 0)],
        max_new_tokens=6, regenerate_text=False,
    )  # fmt: skip
    summary = report.summary()
    assert summary["samples"] == 3 and summary["horizon"] == 6 and len(summary["pairs"]) == 3
    assert set(summary["pairs"][0]) == {
        "seed", "baseline_text", "ablated_text", "first_divergence", "kl_mean",
        "delta_logprob_mean", "divergence_chars",
    }  # fmt: skip
    for key in ("divergence_rate", "first_divergence_median", "kl_mean"):
        assert set(summary[key]) == {"value", "ci95"} and len(summary[key]["ci95"]) == 2
    assert len(summary["controls"]) == 2
    for control in summary["controls"]:
        assert len(control["heads"]) == 2 and "L0H0" not in control["heads"]
        assert not {"L0H1", "L1H3"} & set(control["heads"]) and "kl_mean" in control
    assert summary["delta_logprob_total"] == pytest.approx(
        report.effect.delta_logprob_total, abs=1e-6
    )
    back = AblationRecord.from_json(summary, Path("effect.json"))
    assert back.paired is not None and back.paired["samples"] == 3
    plain = ablate(tiny, sampled, "L0H1", "zero", regenerate_text=False).summary()
    assert "samples" not in plain
    assert AblationRecord.from_json(plain, Path("effect.json")).paired is None
    with pytest.raises(InvalidSettingError, match="controls need samples"):
        ablate(tiny, sampled, "L0H1", controls=2, regenerate_text=False)
    with pytest.raises(InvalidSettingError, match="samples must be at least 1"):
        paired_samples(tiny, sampled, report.ablation, samples=0)


@pytest.mark.browser
def test_the_report_shows_the_pairs_their_aggregates_and_figures(tiny, sampled, tmp_path):
    from browser import assert_renders

    from interp.cli.workflow import ablate_into, analyze_into
    from interp.report import build_report

    directory = tmp_path / "trace"
    sampled.save(directory)
    analyze_into(tiny, sampled, directory)
    ablate_into(
        tiny, sampled, directory, [(0, 1), (1, 3)], "zero", samples=4, controls=2,
        max_new_tokens=6,
    )  # fmt: skip
    (record,) = AblationRecord.load_all(directory)
    assert record.paired is not None and len(record.paired["controls"]) == 2
    page = build_report(directory)
    html = page.read_text()
    assert "4 paired samples, 6 tokens each" in html and html.count("control:") == 2
    assert (directory / "figures" / "samples_0_kl.png").exists()
    assert (directory / "figures" / "samples_0_divergence.png").exists()
    assert_renders(page, tmp_path)


@pytest.mark.real_model
def test_induction_heads_change_copied_text_far_more_than_random_heads(smollm):
    """The issue's setting: a list to copy; ablating the five strongest induction heads moves
    the continuation's distribution far more than five random heads do, over 16 pairs."""
    prompt = "Items: apple, chair, candle, window, river, stone, paper, cloud. Again: apple, chair,"
    trace = interp.generate(smollm, prompt, max_new_tokens=10, seed=1)
    roles = interp.workflow.model_head_roles(smollm)
    top = [h for h, _ in roles.top("induction", 5)]
    strong = [h for role in roles.roles for h, _ in roles.top(role, 11)]
    report = ablate(
        smollm, trace, top, "mean", samples=16, controls=3, exclude=strong, regenerate_text=False
    )
    paired = report.samples
    assert paired is not None and len(paired.controls) == 3
    effect = paired.effect
    for control in paired.controls:
        assert effect.kl_mean.lo > 3 * control.kl_mean.hi, (effect.line(), control.line())
    assert effect.divergence_rate.value >= 0.5
    assert effect.delta_logprob_per_token.hi < 0  # the copied text got less likely
    assert "vs controls" in paired.comparison()


def test_a_forced_continuation_regenerates_from_its_prompt(tiny):
    forced = interp.generate(tiny, "The earth revolves around", continuation=" the sun")
    ablation = make_ablation(tiny, forced, [(1, 0)], "zero")
    result = paired_samples(tiny, forced, ablation, samples=3, greedy=False)
    assert result.effect.horizon == forced.n_generated and result.greedy == []
    prompt = forced.token_ids[: forced.prompt_len].tolist()
    first = interp.generate(
        tiny, prompt, seed=row_seed(0, 0), max_new_tokens=forced.n_generated
    )  # no seed recorded: the pairs' seeds derive from 0
    assert result.effect.pairs[0].baseline_text == first.continuation


@pytest.mark.real_model
def test_the_cli_prints_the_pairs_and_writes_them(smollm, tmp_path, capsys):
    import json

    from interp import cli

    out = tmp_path / "trace"
    argv = ["generate", "Items: apple, chair, candle. Again: apple,", "--max-new-tokens", "6"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    ablate_argv = ["ablate", str(out), "--heads", "L18H6,L17H3"]
    assert cli.main([*ablate_argv, "--samples", "4", "--controls", "1"]) == 0
    printed = capsys.readouterr().out
    assert "4 paired samples, 6 tokens each:" in printed and "  control L" in printed
    assert " vs controls " in printed and printed.count("    baseline: ") == 3
    effect = json.loads((out / "ablations" / "L17H3_L18H6-mean" / "effect.json").read_text())
    assert effect["samples"] == 4 and len(effect["controls"]) == 1
    assert (
        effect["kl_mean"]["ci95"][0] <= effect["kl_mean"]["value"] <= effect["kl_mean"]["ci95"][1]
    )
    assert set(effect["controls"][0]["heads"]).isdisjoint({"L18H6", "L17H3"})
    for bad in (["--controls", "2"], ["--samples", "-1"], ["--max-new-tokens", "5"]):
        assert cli.main([*ablate_argv, *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("--samples" in err or "samples" in err), err


def test_a_set_pools_its_rows_pairs_each_with_its_own_means(tiny):
    prompts = ["The earth revolves around", "Attention heads copy"]
    rows = interp.generate(tiny, prompts, max_new_tokens=5, seed=2, top_k=40)
    pooled = interp.interventions.ablate_samples(tiny, rows, "L0H2", "mean", samples=3, controls=1)
    assert (
        len(pooled.effect.pairs) == 6 and [p.row for p in pooled.effect.pairs] == [0] * 3 + [1] * 3
    )
    assert len(pooled.greedy) == 2 and len(pooled.controls) == 1
    assert len(pooled.controls[0].pairs) == 6
    kl = []
    for i, row in enumerate(rows):
        alone = interp.interventions.ablate_samples(
            tiny, row, "L0H2", "mean", samples=3, controls=1
        )
        assert [p.ablated_text for p in alone.effect.pairs] == [
            p.ablated_text for p in pooled.effect.pairs if p.row == i
        ]
        kl += [float(p.kl.mean()) for p in alone.effect.pairs]
    assert pooled.effect.kl_mean.value == pytest.approx(sum(kl) / 6)
    assert pooled.summary()["pairs"][3]["row"] == 1
    via_ablate = interp.ablate(tiny, rows, "L0H2", "mean", samples=3, controls=1)
    assert [p.ablated_text for p in via_ablate.effect.pairs] == [
        p.ablated_text for p in pooled.effect.pairs
    ]
    with pytest.raises(InvalidSettingError, match="give samples=N"):
        interp.ablate(tiny, rows, "L0H2")


def test_a_sets_paired_samples_are_written_beside_it_and_replace_their_own(tiny, tmp_path):
    import json

    from interp.cli.workflow import ablate_set_into
    from interp.errors import OutputPathError

    rows = interp.generate(tiny, ["The earth revolves", "Attention heads"], max_new_tokens=4)
    directory = tmp_path / "set"
    rows.save(directory)
    paired, out = ablate_set_into(tiny, rows, directory, [(0, 2)], "zero", samples=2, controls=1)
    effect = json.loads((out / "effect.json").read_text())
    assert effect["rows"] == 2 and effect["heads"] == ["L0H2"] and effect["samples"] == 2
    assert [p["row"] for p in effect["pairs"]] == [0, 0, 1, 1] and len(effect["controls"]) == 1
    ablate_set_into(tiny, rows, directory, [(0, 2)], "zero", samples=2)  # its own: replaced
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="mine.txt"):
        ablate_set_into(tiny, rows, directory, [(0, 2)], "zero", samples=2)
    assert (out / "mine.txt").read_text() == "keep"


@pytest.mark.real_model
def test_the_cli_samples_every_row_of_a_set(smollm, tmp_path, capsys):
    import json

    from interp import cli

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Items: apple, chair. Again: apple,\nThe earth revolves around\n")
    out = tmp_path / "set"
    argv = ["generate", "--prompts", str(prompts), "--max-new-tokens", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["ablate", str(out), "--heads", "L18H6", "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 paired samples, 4 tokens each:" in printed and "[2 rows]" in printed
    effect = json.loads((out / "ablations" / "L18H6-mean" / "effect.json").read_text())
    assert effect["rows"] == 2 and len(effect["pairs"]) == 4
    assert cli.main(["ablate", str(out), "--heads", "L18H6"]) == 2  # a set needs --samples
    assert "holds a trace set" in capsys.readouterr().err
