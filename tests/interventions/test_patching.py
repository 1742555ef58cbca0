"""Activation patching against TransformerLens's own `transformer_lens.patching` functions run
on the bridge with the same metric, on both tiny layouts."""

import pytest
import torch
from transformer_lens import patching as tl_patching

import interp
from interp import metrics
from interp.errors import InvalidSettingError
from interp.interventions import ablation_effect, make_intervention
from interp.interventions.patching import patch

TL = {
    "heads": tl_patching.get_act_patch_attn_head_out_all_pos,
    "heads-by-pos": tl_patching.get_act_patch_attn_head_out_by_pos,
    "resid": tl_patching.get_act_patch_resid_pre,
    "attn-out": tl_patching.get_act_patch_attn_out,
    "mlp-out": tl_patching.get_act_patch_mlp_out,
}


@pytest.fixture
def pair(tiny):
    clean = interp.generate(tiny, "The earth revolves around the", max_new_tokens=1, temperature=0)
    ids = clean.token_ids[: clean.prompt_len].tolist()
    ids[-3] = (ids[-3] + 7) % tiny.d_vocab  # one prompt token changed: the corruption
    corrupted = interp.generate(tiny, ids, continuation=clean.continuation_ids)
    return clean, corrupted


def tl_metric(clean, a, d):
    last = clean.prompt_len - 1
    return lambda logits: logits[0, last, a] - logits[0, last, d]


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_every_site_equals_transformer_lens_patching(tiny, pair, direction):
    clean, corrupted = pair
    target, source = (corrupted, clean) if direction == "denoise" else (clean, corrupted)
    a, d = 40, 41
    results = patch(
        tiny, clean, corrupted, sites=list(TL), metric=metrics.logit_diff(a, d),
        direction=direction, positions="all",
    )  # fmt: skip
    with torch.no_grad():
        _, source_cache = tiny.bridge.run_with_cache(source.token_ids[None])
        base = float(tl_metric(clean, a, d)(tiny.bridge(target.token_ids[None])))
    for site, fn in TL.items():
        with torch.no_grad():
            want = fn(tiny.bridge, target.token_ids[None], source_cache, tl_metric(clean, a, d))
        if site == "heads-by-pos":
            want = want.permute(0, 2, 1)  # TransformerLens: [layer, pos, head]
        got = results[site]
        assert got.per_row.shape == (1, *want.shape) and got.stderr is None
        torch.testing.assert_close(got.effect + base, want.float(), atol=1e-4, rtol=1e-4)
    prompt = patch(tiny, clean, corrupted, sites=["resid", "heads-by-pos"],
                   metric=metrics.logit_diff(a, d), direction=direction)  # fmt: skip
    n = clean.prompt_len  # by default the prompt's positions: the rest cannot move the metric
    assert prompt.positions == "prompt" and prompt.tokens == clean.token_strs[:n]
    torch.testing.assert_close(prompt["resid"].effect, results["resid"].effect[:, :n])
    torch.testing.assert_close(
        prompt["heads-by-pos"].effect, results["heads-by-pos"].effect[..., :n]
    )
    assert results["resid"].effect[:, n:].abs().max() < 1e-5
    span = results["heads"].clean_metric - results["heads"].corrupted_metric
    sign = 1 if direction == "denoise" else -1
    torch.testing.assert_close(
        results["resid"].effect_normalized, results["resid"].effect / (sign * span)
    )


def test_patching_a_run_into_itself_does_nothing_and_all_of_it_everything(tiny, pair):
    clean, corrupted = pair
    with pytest.raises(InvalidSettingError, match="same logit-diff"):  # nothing to normalise by
        patch(tiny, clean, clean, metric=metrics.logit_diff(40, 41))
    cleans, corrupts = interp.TraceSet([clean, clean]), interp.TraceSet([corrupted, clean])
    same = patch(
        tiny, cleans, corrupts, sites=["heads", "resid"], metric=metrics.logit_diff(40, 41)
    )
    assert same["heads"].per_row[1].abs().max() < 1e-5  # the row patched into itself
    assert same["resid"].per_row[1].abs().max() < 1e-5
    whole = make_intervention(tiny, corrupted, [(0, None)], "resample", site="resid", source=clean)
    metric = metrics.logit_diff(40, 41)
    effect = ablation_effect(tiny, corrupted, whole, metric=metric)
    result = patch(tiny, clean, corrupted, sites=["resid"], metric=metric)["resid"]
    normalized = (effect.ablated_metric - result.corrupted_metric) / (
        result.clean_metric - result.corrupted_metric
    )
    assert normalized == pytest.approx(1.0, abs=1e-4)  # every position of block 0's input


def test_a_set_of_pairs_gives_means_standard_errors_and_each_row(tiny, pair):
    clean, corrupted = pair
    other = interp.generate(tiny, "A cat sat on the", max_new_tokens=1, temperature=0)
    ids = other.token_ids[: other.prompt_len].tolist()
    ids[1] = (ids[1] + 3) % tiny.d_vocab
    other_corrupted = interp.generate(tiny, ids, continuation=other.continuation_ids)
    cleans = interp.TraceSet([clean, other])
    corrupts = interp.TraceSet([corrupted, other_corrupted])
    metric = metrics.logit_diff(40, 41)
    both = patch(tiny, cleans, corrupts, sites=["heads"], metric=metric)["heads"]
    first = patch(tiny, clean, corrupted, sites=["heads"], metric=metric)["heads"]
    second = patch(tiny, other, other_corrupted, sites=["heads"], metric=metric)["heads"]
    torch.testing.assert_close(both.per_row[0], first.effect)
    torch.testing.assert_close(both.effect, (first.effect + second.effect) / 2)
    torch.testing.assert_close(both.stderr, (first.effect - second.effect).abs() / 2)
    if clean.n_positions != other.n_positions:  # rows of two lengths: batched apart
        with pytest.raises(InvalidSettingError, match="per-position site needs rows of one length"):
            patch(tiny, cleans, corrupts, sites=["resid"], metric=metric)
    head, value = both.top(1)[0]
    assert isinstance(head, interp.Head) and value == float(both.effect[head])
    assert abs(value) == float(both.effect.abs().max())


def test_bad_pairs_and_sites_are_one_clear_error(tiny, pair):
    clean, _ = pair
    longer = interp.generate(tiny, "The earth revolves around the sun and", max_new_tokens=1)
    with pytest.raises(InvalidSettingError, match="row 0: the clean run has"):
        patch(tiny, clean, longer)
    with pytest.raises(InvalidSettingError, match="unknown site"):
        patch(tiny, clean, clean, sites=["neurons"])
    with pytest.raises(InvalidSettingError, match="pair up by index"):
        patch(tiny, interp.TraceSet([clean, clean]), interp.TraceSet([clean]))


def test_a_saved_result_loads_back_and_renders_its_page(tiny, pair, tmp_path):
    from interp.errors import OutputPathError, TraceFormatError
    from interp.interventions import Patching
    from interp.report.build import build_report

    clean, corrupted = pair
    sets = interp.TraceSet([clean, clean]), interp.TraceSet([corrupted, clean])
    result = patch(tiny, *sets, sites=["heads", "resid"], metric=metrics.logit_diff(40, 41))
    out = result.save(tmp_path / "p")
    back = Patching.load(out)
    assert (
        back.summary() == result.summary() and back.tokens == clean.token_strs[: clean.prompt_len]
    )
    for site in ("heads", "resid"):
        torch.testing.assert_close(back[site].per_row, result[site].per_row)
        torch.testing.assert_close(back[site].stderr, result[site].stderr)
    page = build_report(out).read_text()
    assert "heads patching (denoise)" in page and "resid patching (denoise)" in page
    assert {p.name for p in (out / "figures").iterdir()} == {
        "heads.png", "heads_rows.png", "resid.png", "resid_rows.png"
    }  # fmt: skip
    result.save(out)  # its own directory, report included, is replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="notes.txt"):
        result.save(out)
    (out / "summary.json").write_text('{"format": "interp-patching", "format_version": 1}')
    with pytest.raises(TraceFormatError, match="'patching' is not an object"):
        Patching.load(out)


@pytest.mark.parametrize("site", ["heads", "resid", "mlp-out"])
def test_the_triage_estimate_is_the_patchs_derivative_and_verifies_exactly(tiny, pair, site):
    """The estimate against a central finite difference of exact patched runs, each value moved
    a little way from the corrupted run's towards the clean run's; the verified candidates
    against the exact patching."""
    from interp.interventions import replacing
    from interp.interventions.sites import activation

    clean, corrupted = pair
    metric = metrics.logit_diff(40, 41)
    exact = patch(tiny, clean, corrupted, sites=[site], metric=metric)[site]
    triage = patch(tiny, clean, corrupted, sites=[site], metric=metric, method="triage", verify=3)
    result = triage[site]
    assert int(result.verified.sum()) == 3 and result.effect[~result.verified].isnan().all()
    torch.testing.assert_close(
        result.effect[result.verified], exact.effect[result.verified], atol=1e-5, rtol=1e-4
    )
    assert triage.method == "triage" and triage.summary()["method"] == "triage"
    assert all(cell in {c for c, _ in exact.top(100)} for cell, _ in result.top(10))

    kind = site
    eps = 1e-2
    for index in result.estimate.abs().flatten().argsort(descending=True)[:3].tolist():
        layer, rest = divmod(index, result.estimate.shape[1])
        here = activation(tiny, corrupted.activations, kind, layer)
        there = activation(tiny, clean.activations, kind, layer)
        target = (layer, rest) if site == "heads" else (layer, None)
        positions = None if site == "heads" else [rest]

        def moved(a, here=here, there=there, target=target, positions=positions, layer=layer):
            value = here + a * (there - here)
            move = replacing(kind, [target], {layer: value}, positions=positions)
            return ablation_effect(tiny, corrupted, move, metric=metric).ablated_metric

        slope = (moved(eps) - moved(-eps)) / (2 * eps)
        assert float(result.estimate.flatten()[index]) == pytest.approx(slope, rel=0.02, abs=1e-5)


def test_a_kl_has_no_triage(tiny, pair):
    clean, corrupted = pair
    with pytest.raises(InvalidSettingError, match="no first-order estimate"):
        patch(tiny, clean, corrupted, metric="kl", method="triage")
    with pytest.raises(InvalidSettingError, match="verify must be at least 1"):
        patch(tiny, clean, corrupted, method="triage", verify=0)
