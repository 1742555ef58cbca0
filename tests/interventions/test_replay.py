"""Every consumer replays a run recorded under an `interp.edits` intervention (sweeps, the
triage, ablation effects, regenerations, paired samples, path patching), each against a
Hugging Face hand computation under the same edits; and the replacing operations (mean, patch,
resample) against the same by hand."""

import pytest
import torch
from conftest import hf_logits, reference
from hf_reference import continuation_lp, noised_embeddings

import interp
from interp import metrics
from interp.edits import edit, span
from interp.errors import InvalidSettingError
from interp.generation.generate import record_under
from interp.interventions import paired_samples, sweep
from interp.interventions.path_patching import path_patch
from interp.trace.trace import Trace

PROMPT = "The Eiffel Tower is in the city of"
SEED = 3
NOISE = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=SEED)
A, D = 40, 41


def hf_forward(hf, ids, post=(), pre=()):
    """Logits `[pos, vocab]` (float) of the plain HF model with forward hooks `post` and
    forward pre-hooks `pre` on for this forward alone (`conftest.hf_logits`)."""
    return hf_logits(hf, ids, post, pre).float()


def o_proj(hf, layer):
    return hf.model.layers[layer].self_attn.o_proj


def set_head(hf, layer, head, value):
    """A pre-hook putting `value` (`[d_head]` or `[pos, d_head]`) in as head `head`'s output."""
    d = hf.config.hidden_size // hf.config.num_attention_heads

    def fn(module, args):
        x = args[0].clone()
        x[0, :, head * d : (head + 1) * d] = value
        return (x,)

    return o_proj(hf, layer), fn


def z_of(hf, ids, layer, post=(), pre=()):
    """Every head's output in `layer` `[pos, head, d_head]`, as HF computes it."""
    seen = {}
    n_heads = hf.config.num_attention_heads

    def take(module, args):
        seen["z"] = args[0][0].detach().clone()

    hf_forward(hf, ids, post, [*pre, (o_proj(hf, layer), take)])
    return seen["z"].view(seen["z"].shape[0], n_heads, -1).float()


@pytest.fixture
def noised(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=3, temperature=0)
    return clean, record_under(tiny_llama, clean, NOISE)


def test_a_sweep_of_a_noised_run_equals_hugging_face_by_hand(tiny_llama, noised):
    _, corrupted = noised
    hf = reference(tiny_llama)
    embed = noised_embeddings(hf, NOISE, corrupted, SEED)
    ids = corrupted.token_ids
    base = float(continuation_lp(corrupted, hf_forward(hf, ids, [embed])).sum())
    plain = float(continuation_lp(corrupted, hf_forward(hf, ids)).sum())
    assert abs(base - plain) > 1e-3  # the noise matters: a plain baseline would be wrong
    result = sweep(tiny_llama, corrupted, "zero", metric="logprob")
    for layer in range(tiny_llama.n_layers):
        for head in range(tiny_llama.n_heads):
            zero = set_head(hf, layer, head, 0.0)
            moved = float(continuation_lp(corrupted, hf_forward(hf, ids, [embed], [zero])).sum())
            assert float(result.delta[layer, head]) == pytest.approx(moved - base, abs=2e-4)
    # the triage ranks by an estimate taken under the noise, and verifies exactly
    triage = sweep(tiny_llama, corrupted, "zero", metric="logprob", method="triage", verify=3)
    assert int(triage.verified.sum()) == 3
    torch.testing.assert_close(triage.delta[triage.verified], result.delta[triage.verified])


def test_an_ablation_of_a_noised_run_and_its_regeneration_are_under_the_noise(tiny_llama, noised):
    _, corrupted = noised
    hf = reference(tiny_llama)
    embed = noised_embeddings(hf, NOISE, corrupted, SEED)
    zero = set_head(hf, 1, 2, 0.0)
    report = interp.ablate(tiny_llama, corrupted, [(1, 2)], "zero", metric="logprob")
    ids = corrupted.token_ids
    base = float(continuation_lp(corrupted, hf_forward(hf, ids, [embed])).sum())
    moved = float(continuation_lp(corrupted, hf_forward(hf, ids, [embed], [zero])).sum())
    assert report.effect.baseline_metric == pytest.approx(base, abs=2e-4)
    assert report.effect.ablated_metric == pytest.approx(moved, abs=2e-4)
    regenerated = report.regeneration.ablated
    assert regenerated.intervention is not None  # the noise and the ablation: replayable
    assert "under noise embed" in regenerated.intervention_label
    embed_r = noised_embeddings(hf, NOISE, regenerated, SEED)
    by_hand = continuation_lp(regenerated, hf_forward(hf, regenerated.token_ids, [embed_r], [zero]))
    torch.testing.assert_close(regenerated.token_logprobs, by_hand, atol=2e-4, rtol=1e-4)


def test_paired_samples_of_a_noised_run_sample_both_sides_under_the_noise(tiny_llama):
    sampled = interp.generate(tiny_llama, PROMPT, max_new_tokens=4, seed=5, intervention=NOISE)
    move = edit("blocks.1.attn.hook_z", "zero", heads=[0, 1])
    result = paired_samples(tiny_llama, sampled, move, samples=2, greedy=False)
    baselines = interp.generate(
        tiny_llama, PROMPT, max_new_tokens=4, seed=5, num_samples=2, intervention=NOISE
    )
    hf = reference(tiny_llama)
    for pair, row in zip(result.effect.pairs, baselines, strict=True):
        assert pair.baseline_text == row.continuation
        embed = noised_embeddings(hf, NOISE, row, SEED)
        zeros = [set_head(hf, 1, head, 0.0) for head in (0, 1)]
        base = continuation_lp(row, hf_forward(hf, row.token_ids, [embed]))
        moved = continuation_lp(row, hf_forward(hf, row.token_ids, [embed], zeros))
        torch.testing.assert_close(pair.delta_logprob, moved - base, atol=2e-4, rtol=1e-4)
    rows = interp.generate(tiny_llama, [PROMPT, "A dog"], max_new_tokens=3, seed=1)
    pooled = interp.ablate(tiny_llama, rows, move, samples=2)  # a set: every row's pairs
    # a zero edit of whole heads reads as their ablation, labelled by its heads
    assert len(pooled.effect.pairs) == 4 and pooled.effect.label == "L1H0,L1H1"


def test_path_patching_into_the_logits_of_a_run_under_edits_equals_hugging_face(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    under = NOISE + edit("blocks.1.attn.hook_z", "zero", heads=[3])
    corrupted = record_under(tiny_llama, clean, under)
    got = path_patch(tiny_llama, clean, corrupted, metric=metrics.logit_diff(A, D))["path"]
    hf = reference(tiny_llama)
    embed = noised_embeddings(hf, NOISE, corrupted, SEED)
    zero = set_head(hf, 1, 3, 0.0)
    ids, last = corrupted.token_ids, clean.prompt_len - 1
    base_logits = hf_forward(hf, ids, [embed], [zero])
    base = float(base_logits[last, A] - base_logits[last, D])
    d = tiny_llama.d_model // tiny_llama.n_heads
    for layer in range(tiny_llama.n_layers):
        z_clean = z_of(hf, clean.token_ids, layer)
        z_corr = z_of(hf, ids, layer, [embed])
        if layer == 1:
            z_corr[:, 3] = 0.0  # the recorded run's head, zeroed by its intervention
        for head in range(tiny_llama.n_heads):
            w_o = o_proj(hf, layer).weight[:, head * d : (head + 1) * d]
            delta = (z_clean[:, head] - z_corr[:, head]) @ w_o.T  # [pos, d_model]
            add = (hf.model.norm, lambda m, args, delta=delta: (args[0] + delta[None],))
            logits = hf_forward(hf, ids, [embed], [zero, add])
            want = float(logits[last, A] - logits[last, D]) - base
            assert float(got.effect[layer, head]) == pytest.approx(want, abs=1e-4, rel=1e-4)
    for site in ("blocks.1.hook_resid_pre", "blocks.0.hook_attn_out"):  # on a direct path
        on_path = record_under(tiny_llama, clean, edit(site, "scale", factor=2))
        with pytest.raises(
            InvalidSettingError, match=f"an edit of {interp.site(site)}, on the residual"
        ):
            path_patch(tiny_llama, clean, on_path, metric=metrics.logit_diff(A, D))


def test_path_patching_into_a_query_under_an_edit_of_that_query_equals_hugging_face(
    tiny_llama,
):
    """The receiver's output is recomputed under the run's own edit of its query."""
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    under = NOISE + edit("blocks.1.attn.hook_q", "scale", factor=0.5, heads=[0])
    corrupted = record_under(tiny_llama, clean, under)
    metric = metrics.logit_diff(A, D)
    got = path_patch(tiny_llama, clean, corrupted, receivers="L1H0.q", metric=metric)["path"]
    hf = reference(tiny_llama)
    embed = noised_embeddings(hf, NOISE, corrupted, SEED)
    ids, last = corrupted.token_ids, clean.prompt_len - 1
    d = tiny_llama.d_model // tiny_llama.n_heads
    block = hf.model.layers[1]
    handle = hf.get_input_embeddings().register_forward_hook(embed[1])
    try:
        with torch.no_grad():
            resid = hf(ids[None], output_hidden_states=True).hidden_states[1][0]
    finally:
        handle.remove()

    def query(delta):  # head 0's query from its own moved input, halved by the run's edit
        with torch.no_grad():
            new = block.self_attn.q_proj(block.input_layernorm(resid + delta))[:, :d]

        def fn(module, args, out):
            out = out.clone()
            out[0, :, :d] = 0.5 * new
            return out

        return block.self_attn.q_proj, fn

    base_logits = hf_forward(hf, ids, [embed, query(0.0)])
    base = float(base_logits[last, A] - base_logits[last, D])
    z_clean, z_corr = z_of(hf, clean.token_ids, 0), z_of(hf, ids, 0, [embed])
    for head in range(tiny_llama.n_heads):
        w_o = o_proj(hf, 0).weight[:, head * d : (head + 1) * d]
        delta = (z_clean[:, head] - z_corr[:, head]) @ w_o.T
        logits = hf_forward(hf, ids, [embed, query(delta)])
        want = float(logits[last, A] - logits[last, D]) - base
        assert float(got.effect[0, head]) == pytest.approx(want, abs=1e-4, rel=1e-4)


def test_an_ablated_regeneration_is_replayed_when_patched(tiny_llama, tmp_path):
    trace = interp.generate(tiny_llama, PROMPT, max_new_tokens=4, seed=0)
    _, out = interp.workflow.ablate_into(
        tiny_llama, trace, trace.save(tmp_path / "t"), [(1, 2)], "mean"
    )
    ablated = Trace.load(out, tiny_llama)
    assert ablated.intervention_label == "a mean ablation of L1H2"
    metric = metrics.logit_diff(A, D)
    result = interp.patch(tiny_llama, trace, ablated, metric=metric)
    hf = reference(tiny_llama)
    mean = z_of(hf, trace.token_ids, 1)[:, 2].mean(0)  # the trace's own mean, by hand
    logits = hf_forward(hf, ablated.token_ids, pre=[set_head(hf, 1, 2, mean)])
    last = trace.prompt_len - 1
    assert result.corrupted_metric == pytest.approx(
        float(logits[last, A] - logits[last, D]), abs=1e-4
    )
    with pytest.raises(InvalidSettingError, match="give the same"):
        interp.patch(tiny_llama, ablated, ablated, metric=metric)


@pytest.mark.parametrize("op", ["mean", "patch", "resample"])
def test_replacing_operations_equal_hugging_face_by_hand_while_generating(tiny_llama, op):
    reference_run = interp.generate(
        tiny_llama,
        "Far away, the river ran on past the old mill and the town",
        max_new_tokens=4,
        seed=2,
    )
    hf = reference(tiny_llama)
    z_ref = z_of(hf, reference_run.token_ids, 1)  # [pos, head, d_head]
    if op == "mean":
        change = edit("blocks.1.attn.hook_z", "mean", heads=[1], reference=reference_run)
        value = z_ref[:, 1].mean(0)
    elif op == "patch":
        change = edit("blocks.1.attn.hook_z", "patch", heads=[1], source=reference_run)
        value = z_ref[:, 1]
    else:
        value = torch.randn(1, 1, tiny_llama.d_model // tiny_llama.n_heads)
        change = edit("blocks.1.attn.hook_z", "resample", heads=[1], values=value)
        value = value[0, 0]
    run = interp.generate(tiny_llama, PROMPT, max_new_tokens=4, seed=1, intervention=change)
    at = value if value.dim() == 1 else value[: run.n_positions]
    by_hand = continuation_lp(run, hf_forward(hf, run.token_ids, pre=[set_head(hf, 1, 1, at)]))
    torch.testing.assert_close(run.token_logprobs, by_hand, atol=2e-4, rtol=1e-4)
    again = interp.Intervention.from_json(change.to_json())  # what a replay reads back
    torch.testing.assert_close(again.edits[0].params["values"], change.edits[0].params["values"])


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda r: edit("hook_embed", "mean"), "takes values= or reference="),
        (lambda r: edit("hook_embed", "patch", reference=r), "takes values= or source="),
        (lambda r: edit("hook_embed", "resample", source=r), "takes values="),
        (lambda r: edit("blocks.0.hook_resid_post", "mean", reference=r), "did not record"),
        (lambda r: edit("hook_embed", "mean", values=[1.0]), "shaped [positions"),
        (lambda r: edit("hook_embed", "mean", reference=r, mean_over="most"), "mean_over="),
    ],
)
def test_a_bad_replacing_edit_is_one_clear_error(tiny_llama, build, words):
    run = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    with pytest.raises(InvalidSettingError, match=words.replace("[", r"\[")):
        build(run)


def test_the_cli_ablates_and_sweeps_under_an_intervention_file(
    tiny_llama, tmp_path, capsys, monkeypatch
):
    import json

    from interp import cli
    from interp.interventions import SweepResult
    from interp.interventions.ablation_record import AblationRecord

    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    spec = tmp_path / "noise.json"
    spec.write_text(json.dumps(NOISE.to_json()))
    out = tmp_path / "t"
    argv = ["generate", PROMPT, "--max-new-tokens", "3", "--seed", "0", "--out", str(out)]
    assert cli.main(argv) == 0
    trace = Trace.load(out, tiny_llama)
    assert cli.main(["ablate", str(out), "--intervention", str(spec), "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"under {NOISE.label}" in printed and "2 paired samples" in printed
    (written,) = (out / "ablations").iterdir()
    assert written.name == f"intervention-{NOISE.digest()}"
    (record,) = AblationRecord.load_all(out)
    hf = reference(tiny_llama)
    embed = noised_embeddings(hf, NOISE, trace, SEED)
    by_hand = continuation_lp(trace, hf_forward(hf, trace.token_ids, [embed])).sum()
    assert record.ablated_metric == pytest.approx(float(by_hand), abs=2e-4)
    assert record.baseline_metric == pytest.approx(float(trace.token_logprobs.sum()), abs=2e-4)
    assert record.mode == "intervention" and record.paired is not None

    assert cli.main(["sweep", str(out), "--intervention", str(spec), "--mode", "zero"]) == 0
    assert f"under {NOISE.label}" in capsys.readouterr().out
    under = out / "interventions" / f"intervention-{NOISE.digest()}"
    again = Trace.load(under, tiny_llama)
    assert again.intervention.to_json() == NOISE.to_json()
    assert again.token_ids.tolist() == trace.token_ids.tolist()
    saved = SweepResult.load(under)
    torch.testing.assert_close(saved.delta, sweep(tiny_llama, again, "zero").delta)
    for bad, words in (
        (["--heads", "L0H0", "--intervention", str(spec)], "give --heads or --intervention"),
        ([], "give --heads or --intervention"),
        (["--intervention", str(spec), "--mode", "zero"], "--mode says how heads are ablated"),
        (["--intervention", str(spec), "--samples", "2", "--controls", "2"], "--controls says"),
    ):
        code = cli.main(["ablate", str(out), *bad])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err, err


def test_position_groups_line_rows_of_different_lengths_up_by_role(tiny_llama):
    """Each column patches a group at once, resolved in each row (a span, the last prompt
    position), on rows of different lengths; each row's effect against Hugging Face by hand."""
    prompts = [PROMPT, "Far away, the Eiffel Tower stands in"]
    clean = interp.generate(tiny_llama, prompts, max_new_tokens=1, temperature=0)
    groups = [span("Eiffel Tower"), "last_prompt"]
    metric = metrics.logit_diff(A, D)
    got = interp.patch(tiny_llama, clean, NOISE, sites=["resid"], metric=metric, positions=groups)
    assert got.positions == "groups" and got.tokens == ["span 'Eiffel Tower'", "last_prompt"]
    assert got["resid"].per_row.shape == (2, tiny_llama.n_layers, 2)
    hf = reference(tiny_llama)
    for r, row in enumerate(clean):
        at = [
            interp.edits.positions_in(edit("hook_embed", "zero", positions=g), row) for g in groups
        ]
        assert len(at[0]) >= 2 and at[1] == [row.prompt_len - 1]
        embed = noised_embeddings(hf, NOISE, row, SEED)
        ids, last = row.token_ids, row.prompt_len - 1
        with torch.no_grad():
            clean_states = hf(ids[None], output_hidden_states=True).hidden_states
        base_logits = hf_forward(hf, ids, [embed])
        base = float(base_logits[last, A] - base_logits[last, D])
        for layer in range(tiny_llama.n_layers):
            for c, positions in enumerate(at):

                def restore(
                    module, args, kwargs, layer=layer, positions=positions, states=clean_states
                ):
                    x = (args[0] if args else kwargs["hidden_states"]).clone()
                    x[0, positions] = states[layer][0, positions]
                    if args:
                        return (x, *args[1:]), kwargs
                    return args, {**kwargs, "hidden_states": x}

                handle = hf.model.layers[layer].register_forward_pre_hook(restore, with_kwargs=True)
                try:
                    logits = hf_forward(hf, ids, [embed])
                finally:
                    handle.remove()
                want = float(logits[last, A] - logits[last, D]) - base
                assert float(got["resid"].per_row[r, layer, c]) == pytest.approx(want, abs=1e-4)
    with pytest.raises(InvalidSettingError, match="needs rows of one length"):
        interp.patch(tiny_llama, clean, NOISE, sites=["resid"], metric=metric)
    with pytest.raises(InvalidSettingError, match="no position 'S2'"):
        interp.patch(tiny_llama, clean, NOISE, sites=["resid"], metric=metric, positions=["S2"])


def test_an_ablation_is_an_intervention_that_composes_and_replays(tiny_llama):
    trace = interp.generate(tiny_llama, PROMPT, max_new_tokens=4, seed=0)
    knockout = interp.ablation(tiny_llama, trace, "L1H2", "mean")
    assert isinstance(knockout, interp.Intervention) and knockout.replayable
    both = NOISE + knockout
    run = interp.generate(tiny_llama, PROMPT, max_new_tokens=4, seed=3, intervention=both)
    hf = reference(tiny_llama)
    mean = z_of(hf, trace.token_ids, 1)[:, 2].mean(0)  # the trace's own mean, by hand
    embed = noised_embeddings(hf, NOISE, run, SEED)
    by_hand = continuation_lp(
        run, hf_forward(hf, run.token_ids, [embed], [set_head(hf, 1, 2, mean)])
    )
    torch.testing.assert_close(run.token_logprobs, by_hand, atol=2e-4, rtol=1e-4)
    effect = interp.interventions.ablation_effect(
        tiny_llama, trace, knockout
    )  # measured like any ablation
    old = interp.interventions.ablation_effect(
        tiny_llama, trace, interp.interventions.make_ablation(tiny_llama, trace, [(1, 2)])
    )
    assert effect.ablated_metric == pytest.approx(old.ablated_metric, abs=1e-5)
    from interp.interventions import sites

    checked = sites.check_targets("heads", [interp.Head(1, 2), (0, 3), (1, 2)], tiny_llama)
    assert (
        checked == [(0, 3), (1, 2)] and sites.check_targets("heads", checked, tiny_llama) is checked
    )
    with pytest.raises(AttributeError, match="interp.make_ablation has moved: use interp.ablation"):
        interp.make_ablation  # noqa: B018


def test_position_labels_resolve_while_generating_and_when_recorded_again(tiny_llama):
    prompts = ["The Eiffel Tower is in", "Far away, the Eiffel Tower stands in"]
    fields = [{"S": 2}, {"S": 5}]
    knock = edit("hook_embed", "zero", positions="S")
    rows = interp.generate(
        tiny_llama, prompts, max_new_tokens=3, seed=4, intervention=knock, meta=fields
    )
    hf = reference(tiny_llama)
    for row, f in zip(rows, fields, strict=True):
        assert row.meta == f

        def zero(module, args, out, at=f["S"]):
            out = out.clone()
            out[0, at] = 0.0
            return out

        by_hand = continuation_lp(
            row, hf_forward(hf, row.token_ids, [(hf.get_input_embeddings(), zero)])
        )
        torch.testing.assert_close(row.token_logprobs, by_hand, atol=2e-4, rtol=1e-4)
    plain = interp.generate(tiny_llama, prompts, max_new_tokens=3, seed=4, meta=fields)
    again = record_under(tiny_llama, plain, knock)  # each row's own label, as it runs
    assert [r.meta for r in again] == fields
    with pytest.raises(InvalidSettingError, match="one dict of fields per prompt"):
        interp.generate(tiny_llama, prompts, max_new_tokens=1, meta=[{"S": 1}])


def test_sites_have_one_spelling_and_an_old_one_names_the_new(tiny_llama):
    trace = interp.generate(tiny_llama, PROMPT, max_new_tokens=2, seed=0)
    report = interp.ablate(tiny_llama, trace, "L1", "zero", site="mlp-out", regenerate_text=False)
    assert report.effect.site == "mlp-out" and report.effect.heads == []
    assert report.effect.targets == ["L1.mlp"]  # as a Site is spelled
    for old, new in (("resid_pre", "resid"), ("attn_out", "attn-out"), ("mlp_out", "mlp-out")):
        with pytest.raises(InvalidSettingError, match=f"'{old}' is written '{new}' now"):
            interp.ablate(tiny_llama, trace, "L1", "zero", site=old)
