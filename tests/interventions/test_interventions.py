"""One intervention mechanism: every source at every site against a plain Hugging Face forward
with the same replacement done by hand (on both tiny layouts), and metrics against the logits
themselves."""

import math

import pytest
import torch
from conftest import reference
from hf_reference import continuation_lp, hf_run, replacing
from naive import naive_sweep, per_head

import interp
from interp import metrics
from interp.edits import applying
from interp.errors import InvalidSettingError
from interp.interventions import ablation_effect, make_intervention, sweep
from interp.interventions.measuring import forced_logits

SITES = ("heads", "resid", "attn-out", "mlp-out")


def interp_ablated(model, trace, target, mode, site, ref, other):
    """interp's teacher-forced log-probs with one target replaced from `mode`'s source."""
    intervention = make_intervention(
        model,
        trace,
        [target],
        "mean" if mode == "reference" else mode,  # a reference mean: mean over the set
        site=site,
        reference=ref if mode == "reference" else None,
        source=other if mode == "resample" else None,
    )
    return ablation_effect(model, trace, intervention).ablated_logprobs


@pytest.fixture
def runs(tiny):
    trace = interp.generate(tiny, "The earth revolves around", max_new_tokens=5, seed=2)
    other = interp.generate(tiny, "Induction heads copy the tokens", max_new_tokens=8, seed=4)
    ref = interp.generate(tiny, ["A cat sat", "Some dogs ran far away"], max_new_tokens=3, seed=1)
    return trace, other, ref


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("mode", ["zero", "mean", "reference", "resample"])
def test_every_source_at_every_site_equals_hugging_face_by_hand(tiny, runs, site, mode):
    trace, other, ref = runs
    hf, layer, n_heads = reference(tiny), 1, tiny.n_heads
    target = (layer, 2) if site == "heads" else (layer, None)
    ours = interp_ablated(tiny, trace, target, mode, site, ref, other)

    ids = trace.token_ids
    _, clean = hf_run(hf, ids, site, layer, n_heads)  # the site's values on the trace
    if mode == "zero":
        value = torch.zeros_like(clean[:1])
    elif mode == "mean":
        value = clean.mean(0, keepdim=True)
    elif mode == "reference":
        values = [hf_run(hf, row.token_ids, site, layer, n_heads)[1] for row in ref]
        value = torch.cat(values).mean(0, keepdim=True)
    else:
        value = hf_run(hf, other.token_ids, site, layer, n_heads)[1][: len(ids)]

    logits, _ = hf_run(hf, ids, site, layer, n_heads, replacing(site, value, len(ids), 2))
    torch.testing.assert_close(ours, continuation_lp(trace, logits), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, trace.token_logprobs, atol=1e-6)  # it did something


@pytest.mark.parametrize("site", ["heads", "resid"])
def test_an_intervention_at_one_position_leaves_the_others(tiny, runs, site):
    trace, _, _ = runs
    hf, layer, at = reference(tiny), 1, trace.prompt_len - 1
    target = (layer, 0) if site == "heads" else (layer, None)
    intervention = make_intervention(tiny, trace, [target], "zero", site=site, positions=[at])
    ours = ablation_effect(tiny, trace, intervention).ablated_logprobs

    def edit(x):
        if site == "heads":
            x[0, at, 0] = 0
        else:
            x[0, at] = 0
        return x

    logits, _ = hf_run(hf, trace.token_ids, site, layer, tiny.n_heads, edit)
    torch.testing.assert_close(ours, continuation_lp(trace, logits), atol=1e-4, rtol=1e-4)


def test_positions_by_label_and_last_prompt_are_each_rows_own(tiny, runs):
    trace, _, _ = runs
    trace.meta = {"s2": 2}
    by_label = make_intervention(tiny, trace, [(1, 0)], "zero", positions="s2")
    last = make_intervention(tiny, trace, [(1, 0)], "zero", positions=["last_prompt", -1])
    assert by_label.edits[0].positions == (2,)
    assert last.edits[0].positions == (trace.prompt_len - 1, trace.n_positions - 1)
    with pytest.raises(InvalidSettingError, match="no position 'io'"):
        make_intervention(tiny, trace, [(1, 0)], "zero", positions="io")


def test_regeneration_applies_a_layer_site_under_the_kv_cache(tiny, runs):
    trace, _, _ = runs
    intervention = make_intervention(tiny, trace, [(1, None)], "zero", site="mlp-out")
    again = interp.regenerate(tiny, trace, intervention).ablated
    # step by step under the KV cache, the edit gave the same log-probs as over the whole text
    hooks = applying.hooks(intervention, tiny, [applying.Row.of(again)])
    logits = forced_logits(tiny, [again], hooks)[0]
    forced = continuation_lp(again, logits.float())
    torch.testing.assert_close(forced, again.token_logprobs, atol=1e-4, rtol=0)


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_read_the_logits_they_say(tiny, runs):
    trace, _, _ = runs
    hf = reference(tiny)
    with torch.no_grad():
        logits = hf(trace.token_ids[None]).logits[0].float()
    last = trace.prompt_len - 1
    a, d = trace.token_ids[last + 1].item(), 5
    window = logits[None]
    diff = metrics.logit_diff(a, d).bind(tiny, [trace])
    assert diff.start == last
    assert float(diff.score(window[:, diff.start :])[0]) == pytest.approx(
        float(logits[last, a] - logits[last, d]), abs=1e-5
    )
    prob = metrics.prob(a, position=-2).bind(tiny, [trace])
    want = float(logits[trace.n_positions - 2].softmax(-1)[a])
    assert float(prob.score(window[:, prob.start :])[0]) == pytest.approx(want, abs=1e-6)
    total = metrics.log_prob().bind(tiny, [trace])
    got = float(total.score(window[:, total.start :])[0])
    assert got == pytest.approx(float(continuation_lp(trace, logits).sum()), abs=1e-4)
    kl = metrics.kl().bind(tiny, [trace])
    kl.prepare(window[:, kl.start :])
    assert float(kl.score(window[:, kl.start :])[0]) == pytest.approx(0.0, abs=1e-6)
    shifted = window.clone()
    shifted[..., 0] += 3.0
    p = trace.prompt_len
    base = logits[p - 1 : -1].log_softmax(-1)
    other = shifted[0, p - 1 : -1].log_softmax(-1)
    want_kl = float((base.exp() * (base - other)).sum(-1).mean())
    assert float(kl.score(shifted[:, kl.start :])[0]) == pytest.approx(want_kl, abs=1e-5)
    custom = metrics.as_metric(lambda lg, rows: lg[:, 0, 7]).bind(tiny, [trace])
    assert custom.start == 0 and float(custom.score(window)[0]) == pytest.approx(
        float(logits[0, 7])
    )


def test_answers_come_from_each_rows_fields(tiny, runs):
    trace, _, _ = runs
    a, d = tiny.token_strs([40, 41])
    trace.meta = {"answer": a, "distractor": d}
    bound = metrics.logit_diff().bind(tiny, [trace])
    explicit = metrics.logit_diff(a, d).bind(tiny, [trace])
    window = torch.randn(1, trace.n_positions - bound.start, tiny.d_vocab)
    assert torch.equal(bound.score(window), explicit.score(window))
    trace.meta = {}
    with pytest.raises(InvalidSettingError, match="row 0 .*: no 'answer' field"):
        metrics.logit_diff().bind(tiny, [trace])
    trace.origin = "ioi.jsonl:7"  # a row from a prompts file is named by its line
    with pytest.raises(InvalidSettingError, match="^ioi.jsonl:7: no 'answer' field"):
        metrics.logit_diff().bind(tiny, [trace])


def test_bad_metric_specs_and_tokens_are_one_clear_error(tiny, runs):
    trace, _, _ = runs
    assert isinstance(metrics.parse("logprob"), metrics.LogProb)
    parsed = metrics.parse('logit-diff:" Mary"," John"')
    assert isinstance(parsed, metrics.LogitDiff) and parsed.answer == " Mary"
    assert metrics.parse('prob:" Paris"').answer == " Paris"
    for spec, message in [
        ("accuracy", "unknown metric"),
        ("logit-diff: Mary, John", "JSON strings"),
        ('prob:" a"," b"', "takes 1 tokens"),
    ]:
        with pytest.raises(InvalidSettingError, match=message):
            metrics.parse(spec)
    several = tiny.decode(tiny.encode("cat dog bird", add_special_tokens=False))
    with pytest.raises(InvalidSettingError, match="not a single token .* tokenizes as"):
        metrics.single_token(tiny, several)
    with pytest.raises(InvalidSettingError, match="shape"):
        bad = metrics.as_metric(lambda lg, rows: lg.sum()).bind(tiny, [trace])
        bad.score(torch.zeros(1, 3, tiny.d_vocab))


# ---- sweeps by any metric -------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric",
    [metrics.logit_diff(40, 41), metrics.prob(40), metrics.kl()],
    ids=lambda m: m.label.split(":")[0],
)
def test_the_sweep_by_any_metric_equals_the_naive_loop(tiny, runs, metric):
    trace, _, _ = runs
    exact = sweep(tiny, trace, "mean", metric=metric)
    heads = [(layer, head) for layer in range(tiny.n_layers) for head in range(tiny.n_heads)]
    naive = naive_sweep(tiny, trace, per_head(tiny, trace, heads), metric)
    torch.testing.assert_close(exact.delta, naive, atol=1e-5, rtol=1e-4)
    assert exact.metric == metric.label and exact.delta_per_token is None
    if isinstance(metric, metrics.KL):
        assert torch.isnan(exact.estimate).all() and exact.summary()["estimate_spearman"] is None
        with pytest.raises(InvalidSettingError, match="first-order"):
            sweep(tiny, trace, metric=metric, method="triage")
    else:
        assert torch.isfinite(exact.estimate).all()


def test_a_sweep_of_a_set_is_the_mean_of_its_rows(tiny, runs, tmp_path):
    _, _, ref = runs
    result = sweep(tiny, ref, "mean", reference=ref, metric=metrics.logit_diff(40, 41))
    rows = [
        sweep(tiny, row, "mean", reference=ref, metric=metrics.logit_diff(40, 41)) for row in ref
    ]
    want = torch.stack([r.delta for r in rows])
    assert result.delta_rows is not None and torch.allclose(result.delta_rows, want, atol=1e-6)
    assert torch.allclose(result.delta, want.mean(0), atol=1e-6)
    assert torch.allclose(result.delta_se, want.std(0) / math.sqrt(len(ref)), atol=1e-6)
    out = ref.save(tmp_path / "set")
    result.save(out)
    back = interp.interventions.SweepResult.load(out)
    assert torch.equal(back.delta_rows, result.delta_rows) and back.metric == result.metric
    assert back.summary()["rows"] == len(ref)


def test_a_reference_mean_is_mode_mean_with_a_reference_set(tiny, runs):
    trace, other, ref = runs
    with pytest.raises(InvalidSettingError, match="mode='mean' with reference="):
        make_intervention(tiny, trace, [(0, 0)], "reference")
    with pytest.raises(InvalidSettingError, match="give it with mode 'mean'"):
        make_intervention(tiny, trace, [(0, 0)], "zero", reference=ref)
    with_ref = make_intervention(tiny, trace, [(0, 0)], "mean", reference=ref)
    plain = make_intervention(tiny, trace, [(0, 0)], "mean")
    origin = [a.edits[0].params["origin"] for a in (with_ref, plain)]
    assert "reference rows" in origin[0] and "of the trace" in origin[1]
    from interp.interventions.ablation import ablation_dirname, reference_digest

    named = ablation_dirname([(0, 0)], "mean", "heads", reference_digest(ref))
    assert named != ablation_dirname([(0, 0)], "mean", "heads")  # one directory a source
    with pytest.raises(InvalidSettingError, match="at least as long"):
        make_intervention(tiny, other, [(0, 0)], "resample", source=ref[0])
    with pytest.raises(InvalidSettingError, match="takes"):
        make_intervention(tiny, trace, [(0, 1)], "zero", site="resid")


def test_the_exact_runner_serves_every_site_in_one_batch(tiny, runs):
    from interp.interventions.runner import run_candidates

    trace, other, _ = runs
    last = trace.prompt_len - 1
    candidates = [
        make_intervention(tiny, trace, [(1, 3)], "mean"),
        make_intervention(tiny, trace, [(1, None)], "zero", site="resid"),
        make_intervention(tiny, trace, [(1, None)], "zero", site="resid", positions=[last]),
        make_intervention(tiny, trace, [(1, None)], "resample", site="attn-out", source=other),
        make_intervention(tiny, trace, [(1, None)], "mean", site="mlp-out", positions=[0, last]),
    ]
    metric = metrics.logit_diff(40, 41)
    bound = metric.bind(tiny, [trace] * len(candidates))
    got, window = run_candidates(tiny, trace, candidates, bound)
    assert window.shape == (len(candidates), trace.n_positions - last, tiny.d_vocab)
    for value, candidate in zip(got.tolist(), candidates, strict=True):
        full = ablation_effect(tiny, trace, candidate, metric=metric)  # a full forward each
        assert value == pytest.approx(full.ablated_metric, abs=1e-4), candidate.label


@pytest.mark.real_model
@pytest.mark.parametrize("site", SITES)
def test_every_source_at_every_site_on_the_embedded_model(smollm, smollm_hf, site):
    trace = interp.generate(smollm, "The capital of France is", max_new_tokens=4, seed=0)
    other = interp.generate(smollm, "Paris is a city of many bridges and", max_new_tokens=4, seed=1)
    ref = interp.generate(smollm, ["A cat sat on the mat", "Rain fell"], max_new_tokens=2, seed=2)
    layer, ids = 12, trace.token_ids
    target = (layer, 4) if site == "heads" else (layer, None)
    _, clean = hf_run(smollm_hf, ids, site, layer, smollm.n_heads)
    values = {
        "zero": torch.zeros_like(clean[:1]),
        "mean": clean.mean(0, keepdim=True),
        "reference": torch.cat(
            [hf_run(smollm_hf, row.token_ids, site, layer, smollm.n_heads)[1] for row in ref]
        ).mean(0, keepdim=True),
        "resample": hf_run(smollm_hf, other.token_ids, site, layer, smollm.n_heads)[1][: len(ids)],
    }
    for mode, value in values.items():
        ours = interp_ablated(smollm, trace, target, mode, site, ref, other)
        edit = replacing(site, value, len(ids), 4)
        logits, _ = hf_run(smollm_hf, ids, site, layer, smollm.n_heads, edit)
        want = continuation_lp(trace, logits)
        torch.testing.assert_close(ours, want, atol=2e-3, rtol=1e-4, msg=f"{site} {mode}")
