"""Open interventions (`interp.edits`): every operation against a Hugging Face hand computation
(hooks on the plain modules) while generating under the KV cache, composition, replay of a run
recorded under one, and patching whose corrupted side ran under seeded noise."""

import json

import pytest
import torch
from conftest import hf_logits, reference
from hf_reference import continuation_lp, hf_run, noised_embeddings

import interp
from interp import metrics
from interp.edits import Intervention, applying, edit, span
from interp.errors import InvalidSettingError
from interp.generation.generate import record_under
from interp.interventions.ablation import replacing
from interp.interventions.ablation_record import AblationRecord
from interp.interventions.measuring import forced_logits
from interp.interventions.patching import pair_runs, patch
from interp.interventions.replay import intervention_of, replay_hooks
from interp.interventions.runner import run_jobs
from interp.trace.trace import Trace

PROMPT = "The Eiffel Tower is in the city of"
LAYER = 1


def _by_hand(op, params, at, scale=None):
    """The operation on values `v` `[pos, ...]` at absolute positions `at`, written out."""

    def apply(v):
        if op == "zero":
            return torch.zeros_like(v)
        if op == "scale":
            return v * params["factor"]
        if op == "add":
            return v + params.get("scale", 1.0) * params["vector"]
        if op == "noise":
            return v + scale * applying.noise(params.get("seed", 0), torch.tensor(at), v.shape[1:])
        if op in ("mean", "resample", "patch"):  # one row of values, at every position
            return params["values"].expand_as(v)
        d = params["direction"] / params["direction"].norm()
        along = (v * d).sum(-1, keepdim=True)
        if op == "project":
            return v - along * d
        return v + (params["value"] - along) * d

    return apply


def _hand_logits(model, ids, site, at, fn, head=None):
    """Logits of the plain HF model with `fn` applied to the site's value at positions `at`."""

    def edit_value(x):  # x [1, pos, ...] (heads: [1, pos, head, d_head])
        chosen = x[0, at] if head is None else x[0, at][:, [head]]
        new = fn(chosen.float())
        if head is None:
            x[0, at] = new
        else:
            x[0, at, head] = new[:, 0]
        return x

    logits, _ = hf_run(reference(model), ids, site, LAYER, model.n_heads, edit_value)
    return logits


OPS = [
    ("zero", {}),
    ("scale", {"factor": -1.5}),
    ("add", {"vector": "random", "scale": 2.0}),
    ("project", {"direction": "random"}),
    ("set", {"direction": "random", "value": 3.0}),
    ("noise", {"scale": 0.5, "seed": 7}),
    ("mean", {"values": "random values"}),
    ("resample", {"values": "random values"}),
]


@pytest.mark.parametrize(("op", "params"), OPS, ids=[o for o, _ in OPS])
@pytest.mark.parametrize("site", ["resid", "mlp-out", "heads"])
def test_every_operation_while_generating_equals_hugging_face_by_hand(tiny, op, params, site):
    width = int(tiny.cfg.d_head) if site == "heads" else tiny.d_model
    row = (1, 1, width) if site == "heads" else (1, width)  # replacing values: one position's
    params = {
        k: torch.randn(width) if v == "random" else torch.randn(row) if v == "random values" else v
        for k, v in params.items()
    }
    hook = {"resid": "blocks.1.hook_resid_pre", "mlp-out": "blocks.1.hook_mlp_out",
            "heads": "blocks.1.attn.hook_z"}[site]  # fmt: skip
    plain = interp.generate(tiny, PROMPT, max_new_tokens=4, temperature=0)
    p = plain.prompt_len
    at = [1, p - 1, p + 1]  # two prompt positions and a decoding step's
    change = edit(hook, op, positions=at, heads=[2] if site == "heads" else None, **params)
    ours = interp.generate(tiny, PROMPT, continuation=plain.continuation_ids, intervention=change)
    fn = _by_hand(op, params, at, params.get("scale"))
    logits = _hand_logits(tiny, ours.token_ids, site, at, fn, 2 if site == "heads" else None)
    torch.testing.assert_close(
        ours.token_logprobs, continuation_lp(ours, logits), atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(ours.token_logprobs, plain.token_logprobs[: ours.n_generated])


def test_edits_compose_in_order(tiny_llama):
    vector = torch.randn(tiny_llama.d_model)
    site = "blocks.1.hook_resid_pre"
    both = edit(site, "add", vector=vector, positions=[2]) + edit(site, "scale", factor=0.5)
    assert len(both) == 2 and "add" in both.label and "scale" in both.label
    trace = interp.generate(tiny_llama, PROMPT, continuation=" Paris", intervention=both)

    def fn(v):  # add at position 2 first, then halve every position
        v = v.clone()
        v[2] += vector
        return v * 0.5

    ids = trace.token_ids
    logits = _hand_logits(tiny_llama, ids, "resid", list(range(len(ids))), fn)
    torch.testing.assert_close(
        trace.token_logprobs, continuation_lp(trace, logits), atol=1e-4, rtol=1e-4
    )


def test_a_noised_run_replays_identically_and_the_same_seed_gives_the_same_noise(
    tiny_llama, tmp_path
):
    noise = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=3)
    first = interp.generate(tiny_llama, PROMPT, max_new_tokens=3, temperature=0, intervention=noise)
    again = interp.generate(tiny_llama, PROMPT, max_new_tokens=3, temperature=0, intervention=noise)
    assert torch.equal(
        first.activations["blocks.0.hook_resid_pre"], again.activations["blocks.0.hook_resid_pre"]
    )
    other = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=4)
    third = interp.generate(tiny_llama, PROMPT, max_new_tokens=3, temperature=0, intervention=other)
    assert not torch.equal(
        first.activations["blocks.0.hook_resid_pre"], third.activations["blocks.0.hook_resid_pre"]
    )
    # the default scale is three standard deviations of the embeddings
    resid = first.activations["blocks.0.hook_resid_pre"]
    plain = interp.generate(tiny_llama, PROMPT, max_new_tokens=3, temperature=0)
    moved = (resid - plain.activations["blocks.0.hook_resid_pre"])[: first.prompt_len]
    std = float(reference(tiny_llama).get_input_embeddings().weight.detach().std())
    cols = [i for i in range(first.prompt_len) if moved[i].abs().max() > 0]
    assert cols and float(moved[cols].std()) == pytest.approx(3 * std, rel=0.35)
    # saved, loaded, and run again teacher-forced: the recorded log-probs come back
    saved = first.save(tmp_path / "noised")
    back = Trace.load(saved, tiny_llama)
    assert back.intervention_label == first.intervention_label
    assert back.intervention.to_json() == first.intervention.to_json()  # read once, a value
    logits = forced_logits(tiny_llama, [back], replay_hooks(tiny_llama, [back]))[0]
    lp = logits[back.prompt_len - 1 : -1].float().log_softmax(-1)
    replayed = lp.gather(-1, back.token_ids[back.prompt_len :, None])[:, 0]
    torch.testing.assert_close(replayed, back.token_logprobs, atol=1e-4, rtol=1e-4)


def test_patching_a_run_corrupted_by_noise_uses_the_noised_baseline(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    noise = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=0)
    corrupted = record_under(tiny_llama, clean, noise)
    metric = metrics.logit_diff(40, 41)
    # the noised run's true metric, by hand on Hugging Face's modules
    hf = reference(tiny_llama)
    logits = hf_logits(hf, clean.token_ids, [noised_embeddings(hf, noise, clean, seed=0)])
    last = clean.prompt_len - 1
    want = float(logits[last, 40] - logits[last, 41])
    result = patch(tiny_llama, clean, corrupted, sites=["heads", "resid"], metric=metric)
    assert result.corrupted_metric == pytest.approx(want, abs=1e-4)
    assert result.corrupted_metric != pytest.approx(result.clean_metric, abs=1e-3)
    for site in ("heads", "resid"):
        assert torch.isfinite(result[site].effect_normalized).all()
    # the clean residual restored at layer 0 at every position: all of the way back
    runs = pair_runs(tiny_llama, clean, corrupted, metric, "denoise")
    whole = replacing("resid", [(0, None)], {0: clean.activations["blocks.0.hook_resid_pre"]})
    restored = run_jobs(
        tiny_llama, [(0, whole)], runs.targets, runs.cleans, metric, runs.target_windows
    )
    normalized = (float(restored[0]) - result.corrupted_metric) / (
        result.clean_metric - result.corrupted_metric
    )
    assert normalized == pytest.approx(1.0, abs=1e-4)
    # the corrupted side given as the intervention itself: the same numbers
    direct = patch(tiny_llama, clean, noise, sites=["heads"], metric=metric)
    torch.testing.assert_close(direct["heads"].effect, result["heads"].effect)


def test_an_edit_after_the_patched_layer_is_replayed_by_the_exact_runner(tiny_llama):
    """A corrupted run whose intervention sits after the candidates' layer: the runner starts
    from the recorded residual and must apply the rest itself; a full forward agrees."""
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    late = edit("blocks.1.hook_resid_pre", "scale", factor=0.3)
    metric = metrics.logit_diff(40, 41)
    result = patch(tiny_llama, clean, late, sites=["resid"], metric=metric)
    corrupted = record_under(tiny_llama, clean, late)
    for pos in (0, clean.prompt_len - 1):
        value = clean.activations["blocks.0.hook_resid_pre"]
        move = replacing("resid", [(0, None)], {0: value}, positions=[pos])
        own = applying.hooks(move, tiny_llama, [applying.Row.of(corrupted)])
        hooks = [*replay_hooks(tiny_llama, [corrupted]), *own]
        logits = forced_logits(tiny_llama, [corrupted], hooks)[0]
        last = clean.prompt_len - 1
        full = float(logits[last, 40] - logits[last, 41]) - result.corrupted_metric
        assert float(result["resid"].effect[0, pos]) == pytest.approx(full, abs=1e-4)


def test_spans_resolve_per_row_and_a_missing_span_names_its_row(tiny_llama):
    rows = interp.generate(
        tiny_llama,
        ["The Eiffel Tower", "Far away, the Eiffel Tower stands"],
        max_new_tokens=1,
        temperature=0,
    )
    change = edit("hook_embed", "zero", positions=span("Eiffel Tower"))
    spans = [
        applying.resolve(change.edits[0], applying.Row(r.prompt_len, r.token_strs, r.n_positions))
        for r in rows
    ]
    for row, at in zip(rows, spans, strict=True):
        assert "".join(row.token_strs[i] for i in at).strip() == "Eiffel Tower"
    assert spans[0] != spans[1]
    missing = applying.Row(3, ["a", "b", "c"], 4, origin="prompts.jsonl:2")
    with pytest.raises(
        InvalidSettingError, match="prompts.jsonl:2: its prompt has no span 'Eiffel Tower'"
    ):
        applying.resolve(change.edits[0], missing)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: edit("hook_embed", "blur"), "unknown operation 'blur'"),
        (lambda: edit("hook_embed", "add"), "needs vector="),
        (lambda: edit("hook_embed", "scale", factor=1.0, value=2), "takes no value="),
        (lambda: edit("hook_embed", "zero", heads=[1]), "heads= goes with"),
        (lambda: edit("hook_embed", "zero", positions=[]), "positions= is empty"),
        (lambda: edit("hook_embed", "project", direction=[0.0, 0.0]), "zero vector"),
        (lambda: edit("hook_embed", "scale", factor=float("nan")), "finite number"),
        (
            lambda: Intervention.from_json(
                {"edits": [{"site": "hook_embed", "op": "add", "params": {"vector": "x"}}]}
            ),
            "edits[0]: vector=",
        ),
        (
            lambda: Intervention.from_json(
                {"edits": [{"site": "hook_embed", "op": "zero", "colour": 1}]}
            ),
            "unknown field 'colour'",
        ),
    ],
)
def test_a_bad_edit_is_one_clear_error_where_it_is_built(build, words, unchecked):
    with pytest.raises(InvalidSettingError, match=words.replace("[", r"\[").replace("(", r"\(")):
        build()


def test_an_edit_checked_against_the_model(tiny_llama):
    with pytest.raises(InvalidSettingError, match="has no site L9.resid_pre; its blocks are L0..L"):
        interp.generate(
            tiny_llama, "hi", max_new_tokens=1, intervention=edit("blocks.9.hook_resid_pre", "zero")
        )
    with pytest.raises(InvalidSettingError, match="vector= has shape"):
        interp.generate(
            tiny_llama,
            "hi",
            max_new_tokens=1,
            intervention=edit("hook_embed", "add", vector=torch.ones(3)),
        )


def test_the_serialised_form_round_trips_and_a_callable_replays_in_the_process(
    tiny_llama, tmp_path
):
    change = edit(
        "blocks.0.attn.hook_z",
        "add",
        vector=torch.arange(8.0),
        heads=[1, 3],
        positions=[slice(0, 2), "last_prompt", span("Tower")],
    ) + edit("hook_embed", "noise")
    back = Intervention.from_json(json.loads(json.dumps(change.to_json())))
    assert back.to_json() == change.to_json() and back.label == change.label

    def halve(value, context):
        return value * 0.5

    trace = interp.generate(
        tiny_llama, PROMPT, max_new_tokens=1, temperature=0, intervention=edit("hook_embed", halve)
    )
    assert trace.intervention_label == "halve embed"
    assert "intervention_spec" not in trace.provenance  # a callable has no serialised form
    # in this process it runs wherever a built-in edit does: the same as a scale of 0.5
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    metric = metrics.logit_diff(40, 41)
    by_callable = patch(tiny_llama, clean, edit("hook_embed", halve), metric=metric)
    built_in = patch(tiny_llama, clean, edit("hook_embed", "scale", factor=0.5), metric=metric)
    assert by_callable.corrupted_metric == pytest.approx(built_in.corrupted_metric, abs=1e-6)
    torch.testing.assert_close(by_callable["heads"].effect, built_in["heads"].effect)
    # the result says what each side ran under, and that a callable was among them
    assert by_callable.under == {"corrupted": "halve embed"} and by_callable.held_callable
    assert built_in.under == {"corrupted": "scale embed"} and not built_in.held_callable
    saved = interp.interventions.Patching.load(by_callable.save(tmp_path / "patched"))
    assert saved.under == by_callable.under and saved.held_callable
    assert saved.summary()["held_callable"] is True and "held_callable" not in built_in.summary()
    # an ablation's effect says so too, in its effect.json
    halved = interp.ablate(tiny_llama, clean, edit("hook_embed", halve), regenerate_text=False)
    scaled = interp.ablate(tiny_llama, clean, edit("embed", "scale", factor=0.5),
                           regenerate_text=False)  # fmt: skip
    assert halved.effect.held_callable and not scaled.effect.held_callable
    record = AblationRecord.from_json(halved.summary(), tmp_path / "effect.json")
    assert record.held_callable and halved.summary()["held_callable"] is True
    assert halved.effect.ablated_metric == pytest.approx(scaled.effect.ablated_metric, abs=1e-6)
    assert patch(tiny_llama, clean, trace, metric=metric).corrupted_metric == pytest.approx(
        built_in.corrupted_metric, abs=1e-6
    )
    # read back from disk it is not there to replay, and patching says so
    back = Trace.load(trace.save(tmp_path / "halved"), tiny_llama)
    assert back.intervention is None and back.intervention_label == "halve embed"
    with pytest.raises(InvalidSettingError, match="held a callable"):
        patch(tiny_llama, clean, back, metric=metric)


def test_a_window_patch_equals_hugging_face_by_hand(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    noise = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=1)
    metric = metrics.logit_diff(40, 41)
    result = patch(tiny_llama, clean, noise, sites=["mlp-out"], metric=metric, window=2)
    assert result.window == 2 and "window2" in interp.interventions.Patching.dirname(
        "denoise", "kl", window=2
    )
    hf, ids, last = reference(tiny_llama), clean.token_ids[None], clean.prompt_len - 1
    at = applying.positions_in(noise, clean)
    moved = noised_embeddings(hf, noise, clean, seed=1)
    mlps = [layer.mlp for layer in hf.model.layers]
    seen = {}
    handles = [
        m.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out[0].detach().clone()))
        for i, m in enumerate(mlps)
    ]
    with torch.no_grad():
        hf(ids)
    for h in handles:
        h.remove()

    def run(layers, pos):
        def put(i):
            def hook(m, a, out):
                out = out.clone()
                out[0, pos] = seen[i][pos]
                return out

            return hook

        logits = hf_logits(hf, clean.token_ids, [moved, *((mlps[i], put(i)) for i in layers)])
        return float(logits[last, 40] - logits[last, 41])

    for layer, layers in ((0, [0]), (1, [0, 1])):
        for pos in (at[0], last):
            want = run(layers, pos) - result.corrupted_metric
            assert float(result["mlp-out"].effect[layer, pos]) == pytest.approx(want, abs=1e-4)
    with pytest.raises(InvalidSettingError, match="a window of layers goes with"):
        patch(tiny_llama, clean, noise, sites=["heads"], metric=metric, window=3)


def test_the_cli_patches_under_noise_and_records_under_an_intervention_file(
    tiny_llama, tmp_path, capsys, monkeypatch
):
    from interp import cli

    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    spec = tmp_path / "steer.json"
    spec.write_text(
        json.dumps(
            edit("blocks.1.hook_resid_pre", "scale", factor=0.5, positions="generated").to_json()
        )
    )
    out = tmp_path / "t"
    assert (
        cli.main(
            [
                "generate",
                PROMPT,
                "--intervention",
                str(spec),
                "--max-new-tokens",
                "3",
                "--seed",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    recorded = Trace.load(out, tiny_llama)
    assert recorded.intervention_label == "scale L1.resid_pre at generated"
    assert intervention_of(recorded).to_json() == json.loads(spec.read_text())
    clean = tmp_path / "clean"
    assert cli.main(["generate", PROMPT, "--continuation", " Paris", "--out", str(clean)]) == 0
    capsys.readouterr()
    argv = [
        "patch",
        str(clean),
        "--noise",
        "span:Eiffel Tower",
        "--sites",
        "resid",
        "--metric",
        "kl",
        "--window",
        "1",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "corrupted" in printed and "written to" in printed
    (written,) = (clean / "patching").iterdir()
    assert "under-" in written.name and interp.interventions.Patching.load(written).clean_metric > 0
    for bad, words in (
        (["--noise", "Eiffel"], "write 'all', span:TEXT"),
        (["--corrupt", str(tmp_path / "none.json")], "no such intervention file"),
        ([], "give one corrupted side"),
    ):
        code = cli.main(["patch", str(clean), *bad])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err, err


def test_evaluate_gives_each_rows_metric_under_an_intervention_batched(tiny_llama):
    rows = interp.generate(tiny_llama, ["The cat sat on the", "A dog"], max_new_tokens=3, seed=0)
    change = edit("blocks.1.hook_resid_pre", "scale", factor=0.2)
    plain = interp.evaluate(tiny_llama, rows, "logprob")
    under = interp.evaluate(tiny_llama, rows, "logprob", intervention=change)
    torch.testing.assert_close(
        plain.values, torch.stack([r.token_logprobs.sum() for r in rows]), atol=1e-4, rtol=1e-4
    )
    for row, value in zip(rows, under.values, strict=True):  # each row alone, by hand
        one = interp.generate(
            tiny_llama,
            row.token_ids[: row.prompt_len].tolist(),
            continuation=row.continuation_ids,
            intervention=change,
        )
        assert float(value) == pytest.approx(float(one.token_logprobs.sum()), abs=1e-4)
    assert under.mean == pytest.approx(float(under.values.mean())) and under.stderr is not None
    assert under.intervention == change.label and plain.intervention is None
    kl = interp.evaluate(tiny_llama, rows, "kl", intervention=change)
    assert (kl.values > 0).all() and interp.evaluate(
        tiny_llama, rows, "kl"
    ).values.abs().max() < 1e-6


@pytest.mark.real_model
def test_operations_on_the_embedded_model_equal_hugging_face_by_hand(smollm, smollm_hf):
    plain = interp.generate(smollm, "The capital of France is", max_new_tokens=3, temperature=0)
    p, layer = plain.prompt_len, 12
    at = [1, p - 1, p + 1]
    direction = torch.randn(smollm.d_model)
    for op, params in (  # every operation on the embedded model
        ("zero", {}),
        ("scale", {"factor": 0.5}),
        ("add", {"vector": 3 * direction}),
        ("project", {"direction": direction}),
        ("set", {"direction": direction, "value": 5.0}),
        ("noise", {"scale": 2.0, "seed": 1}),
        ("mean", {"values": torch.randn(1, smollm.d_model)}),
        ("resample", {"values": torch.randn(1, smollm.d_model)}),
    ):
        change = edit(f"blocks.{layer}.hook_resid_pre", op, positions=at, **params)
        ours = interp.generate(
            smollm,
            "The capital of France is",
            continuation=plain.continuation_ids,
            intervention=change,
        )
        fn = _by_hand(op, params, at, params.get("scale"))

        def edit_value(x, fn=fn):
            x[0, at] = fn(x[0, at].float())
            return x

        logits, _ = hf_run(smollm_hf, ours.token_ids, "resid", layer, smollm.n_heads, edit_value)
        torch.testing.assert_close(
            ours.token_logprobs, continuation_lp(ours, logits), atol=2e-3, rtol=1e-4
        )


def test_paired_samples_take_any_intervention_and_pair_k_is_a_single_run(tiny_llama):
    from interp.generation.generate import row_seed
    from interp.interventions import paired_samples

    trace = interp.generate(tiny_llama, PROMPT, max_new_tokens=6, seed=5)
    steer = edit(
        "blocks.1.hook_resid_pre",
        "add",
        vector=3 * torch.randn(tiny_llama.d_model),
        positions="generated",
    )
    paired = paired_samples(
        tiny_llama,
        trace,
        steer,
        samples=3,
        greedy=False,
        controls=[edit("hook_embed", "scale", factor=1.0)],
    )
    prompt = trace.token_ids[: trace.prompt_len].tolist()
    for k, pair in enumerate(paired.effect.pairs):
        one = interp.generate(
            tiny_llama, prompt, max_new_tokens=6, seed=row_seed(5, k), intervention=steer
        )
        assert pair.ablated_text == one.continuation
    assert paired.effect.label == steer.label
    for pair in paired.controls[0].pairs:  # scaling by 1 changes nothing: every pair identical
        assert pair.first_divergence is None and float(pair.kl.abs().max()) < 1e-5
