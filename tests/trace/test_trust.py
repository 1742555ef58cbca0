"""Never a silently wrong number: each case where a number used to come out wrong (or be lost)
without a word, shown against its hand computation, and the refusal or fix that replaced it."""

import json
import math
from dataclasses import replace

import pytest
import torch
from conftest import hf_logits, reference
from hf_reference import continuation_lp, hf_run, replacing
from safetensors.torch import load_file, save_file

import interp
from interp import metrics, store
from interp.analysis.attribution import direct_logit_attribution
from interp.errors import InvalidSettingError, ModelNotInstalledError
from interp.generation.prompts import read_prompts
from interp.interventions import make_intervention, sweep
from interp.interventions.effect import ablation_effect
from interp.interventions.patching import patch
from interp.interventions.patching_result import Patching
from interp.interventions.path_patching import path_patch
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

PROMPT = "The earth revolves around the"


def _noise_hook(noise):
    """Adds `noise[pos]` to the embeddings at absolute positions (counting under the KV cache)."""
    seen = [0]

    def hook(x, hook):
        start, n = seen[0], x.shape[1]
        seen[0] += n
        return x + noise[start : start + n].to(x.dtype)

    return hook


@pytest.fixture(scope="module")
def noised(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    noise = 3.0 * torch.randn(
        clean.n_positions, tiny_llama.d_model, generator=torch.Generator().manual_seed(0)
    )
    prompt = clean.token_ids[: clean.prompt_len].tolist()
    corrupted = interp.generate(
        tiny_llama, prompt, continuation=clean.continuation_ids,
        fwd_hooks=[("hook_embed", _noise_hook(noise))],
    )  # fmt: skip
    return clean, corrupted, noise


def test_a_run_recorded_under_hooks_is_refused_by_every_replaying_consumer(
    tiny_llama, noised, tmp_path
):
    clean, corrupted, noise = noised
    metric = metrics.logit_diff(40, 41)
    # the number patching used to report as the corrupted baseline: the plain model on the tokens
    bound = metric.bind(tiny_llama, [clean])
    with torch.no_grad():
        plain = float(
            bound.score(tiny_llama.bridge(corrupted.token_ids[None])[:, bound.start :])[0]
        )
    # the noised run's true value, by hand on Hugging Face's modules
    hf = reference(tiny_llama)
    moved = (hf.get_input_embeddings(), lambda m, a, out: out + noise[None])
    logits = hf_logits(hf, corrupted.token_ids, [moved])
    true = float(logits[clean.prompt_len - 1, 40] - logits[clean.prompt_len - 1, 41])
    assert abs(true - plain) > 1e-2  # the baseline that was silently wrong

    assert "raw fwd_hooks on hook_embed" in corrupted.intervention_label
    assert corrupted.intervention is None  # raw hooks: nothing to replay
    saved = corrupted.save(tmp_path / "corrupted")
    assert Trace.load(saved).intervention_label == corrupted.intervention_label  # on disk
    for run in (
        lambda: patch(tiny_llama, clean, corrupted, metric=metric),
        lambda: patch(tiny_llama, clean, Trace.load(saved, tiny_llama), metric=metric),
        lambda: path_patch(tiny_llama, clean, corrupted, metric=metric),
        lambda: sweep(tiny_llama, corrupted, metric=metric),
        lambda: interp.ablate(tiny_llama, corrupted, [(0, 0)], "zero"),
    ):
        with pytest.raises(InvalidSettingError, match="recorded under raw fwd_hooks"):
            run()


def test_a_model_folder_with_missing_or_unexpected_tensors_is_refused(tiny_llama, tmp_path, capsys):
    from interp import cli
    from interp.models import load_model

    good = tmp_path / "good"
    reference(tiny_llama).save_pretrained(good)
    tiny_llama.tokenizer.save_pretrained(good)
    assert load_model(str(good)).n_layers == tiny_llama.n_layers
    tensors = load_file(good / "model.safetensors")
    for case, edit, words in [
        ("missing", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), "lack tensors"),
        ("unexpected", lambda t: t.update({"model.extra.weight": torch.ones(2)}), "does not have"),
    ]:
        folder = tmp_path / case
        folder.mkdir()
        for f in good.iterdir():
            if f.name != "model.safetensors":
                (folder / f.name).write_bytes(f.read_bytes())
        changed = dict(tensors)
        edit(changed)
        save_file(changed, folder / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(ModelNotInstalledError, match=words):
            load_model(str(folder))
        out = tmp_path / f"{case}-out"
        capsys.readouterr()
        code = cli.main(["generate", "hi", "--model", str(folder), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err and not out.exists()
        assert ("up_proj" in err) == (case == "missing") and ("model.extra" in err) != (
            case == "missing"
        )


def test_patching_directories_keep_every_setting_apart():
    a = Patching.dirname("denoise", metrics.parse('logit-diff:"Mary","John"').label)
    b = Patching.dirname("denoise", metrics.parse('logit-diff:" Mary"," John"').label)
    assert a != b and a.startswith("denoise-logit-diff-mary-john-")
    assert Patching.dirname("noise", "kl") != Patching.dirname("denoise", "kl")
    assert Patching.dirname("denoise", "kl", "L1H1.q") != Patching.dirname(
        "denoise", "kl", "L1H1.k"
    )


def test_a_number_as_an_answer_is_refused_and_an_id_is_explicit(tiny_llama, tmp_path):
    year = tmp_path / "year.jsonl"
    year.write_text('{"prompt": "In the year", "answer": 1999}\n')
    with pytest.raises(InvalidSettingError, match='"answer_id": 1999'):
        read_prompts(year)
    ids = tmp_path / "ids.jsonl"
    ids.write_text('{"prompt": "In the year", "answer_id": 40, "distractor_id": 41}\n')
    line = read_prompts(ids)[0]
    trace = interp.generate(tiny_llama, line.prompt, max_new_tokens=1, temperature=0)
    trace.meta = dict(line.fields)
    bound = metrics.logit_diff().bind(tiny_llama, [trace])
    with torch.no_grad():
        logits = tiny_llama.bridge(trace.token_ids[None])
    at = logits[0, trace.prompt_len - 1]
    assert float(bound.score(logits[:, bound.start :])[0]) == pytest.approx(
        float(at[40] - at[41]), abs=1e-5
    )
    trace.meta = {"answer": 1999, "distractor": "x"}  # a row built in Python: the same rule
    with pytest.raises(InvalidSettingError, match="must be a text"):
        metrics.logit_diff().bind(tiny_llama, [trace])


def test_a_sets_top_heads_show_signed_means_ranked_by_magnitude(tiny_llama):
    rows = interp.generate(tiny_llama, ["The cat sat on", "A dog ran"], max_new_tokens=3, seed=0)
    dla = direct_logit_attribution(tiny_llama, rows)
    by_hand = torch.stack([r.heads.mean(0) for r in dla.rows]).mean(0)  # [layer, head]
    top = dla.top_heads(3)
    order = by_hand.abs().flatten().argsort(descending=True)[:3].tolist()
    assert [head for head, _ in top] == [(i // 4, i % 4) for i in order]
    for (_, value), i in zip(top, order, strict=True):
        assert value == pytest.approx(float(by_hand.flatten()[i]), abs=1e-6)  # signed
    planted = [replace(r, heads=r.heads * 0.01) for r in dla.rows]  # a negative name mover
    for r in planted:
        r.heads[:, 1, 0] = -0.956
    assert type(dla)(planted).top_heads(1) == [((1, 0), pytest.approx(-0.956))]


def test_mean_ablation_over_a_forced_continuation_uses_the_prompt_positions(tiny_llama):
    trace = interp.generate(tiny_llama, PROMPT, continuation=" sun and the moon")
    hf, layer, p = reference(tiny_llama), 1, trace.prompt_len
    ids = trace.token_ids
    _, clean = hf_run(hf, ids, "heads", layer, tiny_llama.n_heads)
    prompt_mean, all_mean = clean[:p].mean(0, keepdim=True), clean.mean(0, keepdim=True)
    assert not torch.allclose(prompt_mean, all_mean, atol=1e-4)  # the answer leaked in before
    ablation = make_intervention(tiny_llama, trace, [(layer, 2)], "mean")
    assert f"the {p} prompt positions" in ablation.edits[0].params["origin"]
    ours = ablation_effect(tiny_llama, trace, ablation).ablated_logprobs
    logits, _ = hf_run(
        hf, ids, "heads", layer, tiny_llama.n_heads, replacing("heads", prompt_mean, len(ids), 2)
    )
    torch.testing.assert_close(ours, continuation_lp(trace, logits), atol=1e-4, rtol=1e-4)


def test_degenerate_patching_is_refused(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    with pytest.raises(InvalidSettingError, match="same logit-diff"):
        patch(tiny_llama, clean, clean, metric=metrics.logit_diff(40, 41))
    twin = interp.generate(
        tiny_llama,
        clean.token_ids[: clean.prompt_len].tolist(),
        continuation=clean.continuation_ids,
    )
    with pytest.raises(InvalidSettingError, match="same"):
        patch(tiny_llama, clean, twin, metric=metrics.logit_diff(40, 41))
    with pytest.raises(InvalidSettingError, match="answer and the distractor are the same token"):
        patch(tiny_llama, clean, twin, metric=metrics.logit_diff(40, 40))


def test_prompt_files_keep_their_prompts_as_written(tmp_path):
    text = tmp_path / "p.txt"
    text.write_bytes("\ufeffFirst\fprompt\r\nSecond\u2028line\n".encode())
    assert [p.prompt for p in read_prompts(text)] == ["First\fprompt", "Second\u2028line"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a\u2028b"}\n', encoding="utf-8")
    assert read_prompts(jsonl)[0].prompt == "a\u2028b"
    jsonl.write_text('{"prompt": "a", "prompt": "b"}\n')
    with pytest.raises(InvalidSettingError, match="appears twice"):
        read_prompts(jsonl)


def test_a_set_that_could_not_be_read_back_is_never_written(
    tiny_llama, tmp_path, monkeypatch, capsys
):
    from interp import cli

    monkeypatch.setattr(store, "MAX_JSON_BYTES", 200_000)
    rows = interp.generate(tiny_llama, ["a", "b"], max_new_tokens=2, seed=0)
    rows[0].meta = {"extra": "x" * 300_000}
    with pytest.raises(InvalidSettingError, match="interp reads back"):
        rows.save(tmp_path / "set")
    assert list(tmp_path.iterdir()) == []
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi", "extra": "y" * 40_000}) + "\n")
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    code = cli.main(
        ["generate", "--prompts", str(prompts), "--num-samples", "7", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert (
        code == 2 and err.count("\n") == 1 and "reads back" in err and not (tmp_path / "o").exists()
    )


def test_a_metric_that_returns_nan_is_refused_naming_the_row(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    ids = clean.token_ids[: clean.prompt_len].tolist()
    ids[-2] = (ids[-2] + 5) % tiny_llama.d_vocab
    corrupted = interp.generate(tiny_llama, ids, continuation=clean.continuation_ids)
    clean.origin = "prompts.jsonl:3"

    def broken(logits, traces):
        return torch.full((len(traces),), math.nan)

    with pytest.raises(InvalidSettingError, match="non-finite.*prompts.jsonl:3"):
        patch(tiny_llama, clean, corrupted, metric=broken)


def test_a_trace_set_with_rows_of_other_widths_is_refused(tiny_llama, tmp_path):
    rows = interp.generate(tiny_llama, ["a b", "c d e"], max_new_tokens=2, seed=0)
    saved = rows.save(tmp_path / "set")
    acts = load_file(saved / "activations.safetensors")
    name = "row1.blocks.1.hook_resid_pre"
    acts[name] = acts[name][:, :10].contiguous()
    save_file(acts, saved / "activations.safetensors")
    with pytest.raises(interp.errors.TraceFormatError, match="row 1's blocks.1.hook_resid_pre"):
        TraceSet.load(saved)
