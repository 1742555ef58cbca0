"""Batches: many prompts and many samples through one recording loop. Row i must equal a
single-prompt `generate` of its prompt with its own seed, token for token, on both tiny
layouts and the embedded model."""

import pytest
import torch

import interp
from interp.errors import InvalidSettingError
from interp.generation.generate import row_seed
from interp.models import hooks as H

PROMPTS = ["The earth revolves around", "The sun", "Attention heads copy tokens; induction"]


def assert_rows_equal_single_runs(model, ts, prompts, num_samples, **kwargs):
    assert len(ts) == len(prompts) * num_samples
    for i, row in enumerate(ts):
        prompt = prompts[i // num_samples]
        assert row.prompt == prompt and row.settings.seed == ts.seeds[i]
        single = interp.generate(model, prompt, seed=ts.seeds[i], **kwargs)
        assert row.token_ids.tolist() == single.token_ids.tolist(), i
        assert row.stop_reason == single.stop_reason
        torch.testing.assert_close(row.token_logprobs, single.token_logprobs, atol=1e-4, rtol=0)
        assert row.token_ranks.tolist() == single.token_ranks.tolist()
        assert row.hook_names == single.hook_names
        for name in single.hook_names:
            a, b = row.activations[name], single.activations[name]
            assert a.shape == b.shape, name
            if H.is_query_key(name):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
            else:
                # fp32 rounding of other batch shapes, relative to each vector: a small
                # head output's can pass 1e-5 on some CPUs' kernels; a wrong row is off by ~1
                scale = b.norm(dim=-1, keepdim=True).clamp_min(1e-6)
                assert ((a - b).norm(dim=-1, keepdim=True) / scale).max() <= 5e-5, name


@pytest.mark.parametrize("engine", ["auto", "bridge"])
def test_rows_of_different_lengths_equal_single_runs(tiny, engine):
    kwargs = {"max_new_tokens": 6, "top_k": 20, "engine": engine}
    ts = interp.generate(tiny, PROMPTS, num_samples=2, seed=3, **kwargs)
    assert isinstance(ts, interp.TraceSet)
    assert len({t.prompt_len for t in ts}) > 1  # the prompts really differ in length
    assert ts.seeds == [row_seed(3, i) for i in range(6)]
    assert len(set(ts.seeds)) == 6 and ts.prompts == [p for p in PROMPTS for _ in range(2)]
    assert_rows_equal_single_runs(tiny, ts, PROMPTS, 2, **kwargs)
    want = {"auto": "direct", "bridge": "bridge"}[engine]
    assert all(t.provenance["engine"] == want for t in ts)


def test_samples_of_one_prompt_run_on_both_engines(tiny):
    for engine in ("direct", "bridge"):
        kwargs = {"max_new_tokens": 5, "engine": engine}
        ts = interp.generate(tiny, "The sun", num_samples=3, seed=1, **kwargs)
        assert [t.provenance["engine"] for t in ts] == [engine] * 3
        assert_rows_equal_single_runs(tiny, ts, ["The sun"], 3, **kwargs)
        assert len({tuple(t.continuation_ids) for t in ts}) > 1  # different seeds, other text


def test_forced_continuations_of_different_lengths_stop_each_row_at_its_end(tiny):
    continuations = [" the sun.", " is hot and bright today", " heads"]
    ts = interp.generate(tiny, PROMPTS, continuation=continuations)
    for row, prompt, text in zip(ts, PROMPTS, continuations, strict=True):
        single = interp.generate(tiny, prompt, continuation=text)
        assert row.token_ids.tolist() == single.token_ids.tolist()
        assert row.stop_reason == "forced" and row.settings.seed is None
        torch.testing.assert_close(row.token_logprobs, single.token_logprobs, atol=1e-4, rtol=0)
        for name in single.hook_names:  # nothing recorded past a row's own end
            assert row.activations[name].shape == single.activations[name].shape, name
    assert len({t.n_generated for t in ts}) == 3


def test_a_trace_set_is_a_list_of_traces_with_a_padded_view(tiny):
    ts = interp.generate(tiny, PROMPTS, max_new_tokens=3, seed=0)
    assert [t.n_positions for t in ts] == ts.lengths and list(ts)[1] is ts[1]
    assert len(ts[1:]) == 2 and ts[1:][0] is ts[1]
    resid = ts.stacked(H.resid_pre(1))  # [row, pos, d_model]
    mask = ts.mask
    assert resid.shape[:2] == mask.shape == (3, max(ts.lengths))
    for i, row in enumerate(ts):
        n = row.n_positions
        assert torch.equal(resid[i, :n], row.activations[H.resid_pre(1)])
        assert mask[i, :n].all() and not mask[i, n:].any() and not resid[i, n:].any()
    patterns = ts.stacked(H.pattern(0))  # [row, head, query, key]
    assert patterns.shape == (3, tiny.n_heads, max(ts.lengths), max(ts.lengths))
    interp.logit_lens(tiny, ts[2])  # a row is a real trace: every analysis works on it
    cache = ts.cache  # TransformerLens's own cache over the padded batch
    assert cache.has_batch_dim and torch.equal(cache[H.pattern(0)], patterns)
    assert torch.equal(cache["resid_pre", 1], resid)  # TransformerLens's own key lookup


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "The sun", "num_samples": 2, "continuation": " x"}, "num_samples > 1"),
        ({"prompt": PROMPTS, "continuation": [" a", " b"]}, "takes a list of 3 continuations"),
        ({"prompt": [], "num_samples": 1}, "no tokens"),
        ({"prompt": "The sun", "num_samples": 0}, "num_samples"),
    ],
)
def test_bad_batches_are_refused(tiny, kwargs, message):
    with pytest.raises(InvalidSettingError, match=message):
        interp.generate(tiny, max_new_tokens=2, **kwargs)


@pytest.mark.real_model
def test_a_batch_on_the_embedded_model_equals_single_runs(smollm):
    prompts = ["earth revolve around", "The capital of France is", "Once upon a time, in a"]
    kwargs = {"max_new_tokens": 8, "top_p": 0.95}
    ts = interp.generate(smollm, prompts, num_samples=2, seed=0, **kwargs)
    assert len({t.prompt_len for t in ts}) > 1
    assert_rows_equal_single_runs(smollm, ts, prompts, 2, **kwargs)


@pytest.mark.real_model
def test_a_batch_through_the_bridge_on_the_embedded_model_equals_single_runs(smollm):
    prompts = ["earth revolve around", "The capital of France is"]
    kwargs = {"max_new_tokens": 6, "engine": "bridge"}
    ts = interp.generate(smollm, prompts, num_samples=2, seed=5, **kwargs)
    assert len({t.prompt_len for t in ts}) > 1
    assert_rows_equal_single_runs(smollm, ts, prompts, 2, **kwargs)


def test_a_trace_set_saves_and_loads_in_one_directory(tiny, tmp_path):
    import json

    from interp.errors import ModelMismatchError, TraceFormatError

    ts = interp.generate(tiny, PROMPTS, num_samples=2, max_new_tokens=3, seed=0)
    out = ts.save(tmp_path / "set")
    assert sorted(p.name for p in out.iterdir()) == [
        "activations.safetensors",
        "steps.safetensors",
        "summary.json",
    ]
    again = interp.TraceSet.load(out, model=tiny)
    assert len(again) == len(ts) and all(a == b for a, b in zip(again, ts, strict=True))
    ts.save(out)  # a set may be replaced
    with pytest.raises(TraceFormatError, match="TraceSet.load"):
        interp.Trace.load(out)
    ts[0].save(tmp_path / "one")
    with pytest.raises(TraceFormatError, match="Trace.load"):
        interp.TraceSet.load(tmp_path / "one")
    summary = json.loads((out / "summary.json").read_text())
    summary["rows"][1]["prompt_len"] = 10**9
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(TraceFormatError, match=r"row 1.*prompt_len|prompt_len.*row 1"):
        interp.TraceSet.load(out)
    other = interp.generate(tiny, PROMPTS, max_new_tokens=2, seed=0)
    other[0].model_name = "another"
    interp.TraceSet(other.traces).save(tmp_path / "x")
    with pytest.raises(ModelMismatchError):
        interp.TraceSet.load(tmp_path / "x", model=tiny)


def test_results_do_not_depend_on_the_batch_size(tiny):
    whole = interp.generate(tiny, PROMPTS, num_samples=2, max_new_tokens=4, seed=7)
    chunked = interp.generate(tiny, PROMPTS, num_samples=2, max_new_tokens=4, seed=7, batch_size=4)
    assert [t.token_ids.tolist() for t in whole] == [t.token_ids.tolist() for t in chunked]
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a.token_logprobs, b.token_logprobs, atol=1e-4, rtol=0)
    with pytest.raises(InvalidSettingError, match="batch_size"):
        interp.generate(tiny, PROMPTS, max_new_tokens=2, batch_size=0)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.txt", None, "cannot read the prompts file"),
        ("p.txt", "\n\n  \n", "holds no prompts"),
        ("p.jsonl", '{"prompt": "a"}\n{nope\n', "p.jsonl:2: not valid JSON"),
        (
            "p.jsonl",
            '{"prompt": "a"}\n\n{"text": "b"}\n',
            'p.jsonl:3: expected an object with a "prompt"',
        ),
        ("p.jsonl", '{"prompt": ""}\n', "p.jsonl:1: the prompt is empty"),
        ("p.jsonl", '{"prompt": "a", "continuation": " b"}\n{"prompt": "c"}\n', "or none"),
    ],
)
def test_a_bad_prompts_file_is_one_line_naming_the_line(
    tmp_path, capsys, monkeypatch, name, content, message
):
    from interp import cli

    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    path = tmp_path / name if content is None else _write(tmp_path / name, content)
    code = cli.main(["generate", "--prompts", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate"], "give a PROMPT"),
        (["generate", "hi", "--prompts", "f.txt"], "not both"),
        (["generate", "hi", "--num-samples", "0"], "--num-samples must be >= 1"),
        (["generate", "hi", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["generate", "hi", "--num-samples", "2", "--continuation", " x"], "--num-samples > 1"),
    ],
)
def test_bad_batch_options_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    from interp import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.real_model
def test_the_cli_writes_a_set_from_a_prompts_file(smollm, tmp_path, capsys):
    from interp import cli

    prompts = _write(tmp_path / "prompts.txt", "earth revolve around\n\nThe capital of France is\n")
    out = tmp_path / "set"
    argv = ["generate", "--prompts", prompts, "--num-samples", "2", "--max-new-tokens", "3"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[4 rows," in printed and f"trace set written to {out}" in printed
    ts = interp.TraceSet.load(out, model=smollm)
    assert ts.prompts == ["earth revolve around"] * 2 + ["The capital of France is"] * 2
    single = interp.generate(smollm, ts.prompts[3], max_new_tokens=3, seed=ts.seeds[3])
    assert ts[3].token_ids.tolist() == single.token_ids.tolist()
    long = _write(tmp_path / "long.txt", "hi\n" + "word " * 9000 + "\n")
    assert cli.main(["generate", "--prompts", long, "--out", str(tmp_path / "l")]) == 2
    assert "long.txt:2: the prompt" in capsys.readouterr().err


def test_the_lens_and_attribution_of_a_set_equal_each_rows_own(tiny):
    from interp.analysis import AttributionSetResult, LogitLensSetResult

    ts = interp.generate(tiny, PROMPTS, num_samples=2, max_new_tokens=4, seed=1)
    lens = interp.logit_lens(tiny, ts)
    dla = interp.direct_logit_attribution(tiny, ts)
    assert isinstance(lens, LogitLensSetResult) and len(lens.rows) == len(ts)
    assert isinstance(dla, AttributionSetResult) and len(dla.rows) == len(ts)
    for row_lens, row_dla, trace in zip(lens.rows, dla.rows, ts, strict=True):
        one = interp.logit_lens(tiny, trace)
        assert row_lens.positions == one.positions and row_lens.layers == one.layers
        assert torch.equal(row_lens.target_ids, one.target_ids)
        assert torch.equal(row_lens.top_ids[..., 0], one.top_ids[..., 0])
        for name in ("top_probs", "target_probs", "kl"):
            torch.testing.assert_close(
                getattr(row_lens, name), getattr(one, name), atol=1e-5, rtol=0
            )
        assert torch.equal(row_lens.prediction_depth, one.prediction_depth)
        alone = interp.direct_logit_attribution(tiny, trace)
        for name in ("embed", "heads", "attn_bias", "mlp", "constant", "logits"):
            torch.testing.assert_close(
                getattr(row_dla, name), getattr(alone, name), atol=1e-5, rtol=1e-5
            )
        torch.testing.assert_close(row_dla.total, row_dla.logits, atol=1e-4, rtol=1e-4)
    per_row = torch.stack([r.mean_kl for r in lens.rows]).double()
    mean, se = lens.mean_kl
    torch.testing.assert_close(mean, per_row.mean(0).float())
    torch.testing.assert_close(se, (per_row.std(0) / len(ts) ** 0.5).float())
    heads, heads_se = dla.heads_mean()
    assert heads.shape == heads_se.shape == (tiny.n_layers, tiny.n_heads)


@pytest.mark.real_model
def test_the_cli_analyses_and_reports_a_set_and_keeps_each_lines_fields(smollm, tmp_path, capsys):
    import json

    from interp import cli

    lines = [
        {"prompt": "When Mary and John went to the store, John gave a drink to", "answer": " Mary"},
        {"prompt": "The capital of France is", "answer": " Paris", "tags": ["geo"]},
    ]
    prompts = _write(tmp_path / "p.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "set"
    argv = ["generate", "--prompts", prompts, "--num-samples", "2", "--max-new-tokens", "3"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    ts = interp.TraceSet.load(out)
    assert [row.origin for row in ts] == [f"{prompts}:1"] * 2 + [f"{prompts}:2"] * 2
    assert [row.meta for row in ts] == [{"answer": " Mary"}] * 2 + [
        {"answer": " Paris", "tags": ["geo"]}
    ] * 2
    capsys.readouterr()
    assert cli.main(["analyze", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 rows, 12 generated tokens" in printed and "±" in printed
    assert "head roles on 16 x 2 x 50 repeated random tokens" in printed
    saved = json.loads((out / "summary.json").read_text())["analysis"]
    assert len(saved["rows"]) == 4 and saved["set"]["rows"] == 4
    one = interp.logit_lens(smollm, ts[1].bind(smollm)).summary()
    for key in ("mean_kl", "top1_agreement", "mean_rank"):
        assert saved["rows"][1]["logit_lens"][key] == pytest.approx(one[key], rel=1e-3, abs=1e-4)
    assert cli.main(["report", str(out)]) == 0
    assert (out / "rows" / "row3.html").is_file() and "Mary" in (out / "index.html").read_text()
    capsys.readouterr()
    assert cli.main(["ablate", str(out), "--heads", "L0H0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a trace set (4 rows)" in err, err
