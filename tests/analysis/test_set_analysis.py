"""Analyses, saved results and reports of a TraceSet: each row's results equal what a naive
per-row computation gives, set means come with their standard errors, and a set directory
goes through `analyze`, `report` and back like a trace does."""

import math
import statistics

import pytest
import torch

import interp
from interp.analysis import AttentionSetResult, SetAnalysis
from interp.errors import InvalidSettingError
from interp.models import hooks as H
from interp.report.build import build_report

PROMPTS = ["The earth revolves around", "The sun", "Attention heads copy tokens; induction"]


@pytest.fixture
def rows(tiny):
    return interp.generate(tiny, PROMPTS, num_samples=2, max_new_tokens=4, seed=1, top_k=20)


def test_the_attention_of_a_set_equals_a_naive_loop_over_rows(tiny, rows):
    result = interp.attention(tiny, rows, top_k=3)
    assert isinstance(result, AttentionSetResult) and len(result.rows) == len(rows)
    stats = {name: [] for name in result.stats}
    for row, trace in zip(result.rows, rows, strict=True):
        p, n = trace.prompt_len, trace.n_positions
        assert row.query_positions == list(range(p - 1, n - 1))
        assert row.top_positions.shape == (tiny.n_layers, tiny.n_heads, n - p, 3)
        sink = torch.zeros(tiny.n_layers, tiny.n_heads)
        prev, ent = torch.zeros_like(sink), torch.zeros_like(sink)
        for layer in range(tiny.n_layers):
            pattern = trace.activations[H.pattern(layer)]  # [head, q, k]
            assert torch.equal(row.patterns[layer], pattern)
            for j, q in enumerate(range(p - 1, n - 1)):
                want = pattern[:, q].topk(3, dim=-1).values  # [head, 3]
                torch.testing.assert_close(row.top_weights[layer, :, j], want)
                got = pattern[:, q].gather(-1, row.top_positions[layer, :, j])
                torch.testing.assert_close(got, want)
                sink[layer] += pattern[:, q, 0] / (n - p)
                prev[layer] += (pattern[:, q, q - 1] if q > 0 else 0.0) / (n - p)
                w = pattern[:, q, : q + 1].double()
                ent[layer] += (-(w * w.clamp_min(1e-30).log()).sum(-1)).float() / (n - p)
        stats["sink"].append(sink)
        stats["previous"].append(prev)
        stats["entropy"].append(ent)
    for name, per_row in stats.items():
        mean, se = result.stat(name)
        values = torch.stack(per_row)
        torch.testing.assert_close(mean, values.mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(se, values.std(0) / math.sqrt(len(rows)), atol=1e-5, rtol=1e-4)
    with pytest.raises(InvalidSettingError):
        result.stat("copying")


def test_a_set_is_analysed_saved_and_read_back(tiny, rows, tmp_path):
    out = rows.save(tmp_path / "set")
    analysis = interp.workflow.analyze_into(tiny, rows, out)
    assert isinstance(analysis, SetAnalysis) and len(analysis.rows) == len(rows)
    one = interp.analyze(tiny, rows[2])  # a row's analysis equals its trace's own
    torch.testing.assert_close(analysis.rows[2].logit_lens.kl, one.logit_lens.kl, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        analysis.rows[2].attribution.heads, one.attribution.heads, atol=1e-5, rtol=1e-5
    )
    summary = analysis.summary()
    kl = [float(r.logit_lens.mean_kl[0]) for r in analysis.rows]
    assert summary["set"]["rows"] == len(rows)
    assert abs(summary["set"]["logit_lens"]["mean_kl"][0] - statistics.mean(kl)) < 1e-4
    se = statistics.stdev(kl) / math.sqrt(len(kl))
    assert abs(summary["set"]["logit_lens"]["mean_kl_se"][0] - se) < 1e-4
    back = SetAnalysis.load(out, interp.TraceSet.load(out, activations=False))
    for got, want in zip(back.rows, analysis.rows, strict=True):
        assert torch.equal(got.logit_lens.top_ids, want.logit_lens.top_ids)
        assert torch.equal(got.attribution.heads, want.attribution.heads)
        assert torch.equal(got.attention.patterns, want.attention.patterns)
    assert torch.equal(back.head_roles.scores, analysis.head_roles.scores)
    assert back.summary()["set"] == summary["set"]


def test_a_set_of_one_row_has_no_standard_error_but_a_valid_summary(tiny, tmp_path):
    one = interp.generate(tiny, ["hello"], max_new_tokens=3, seed=0)
    out = one.save(tmp_path / "one")
    summary = interp.workflow.analyze_into(tiny, one, out).summary()
    assert summary["set"]["logit_lens"]["mean_kl_se"] == [None] * (tiny.n_layers + 1)
    build_report(out)  # strict JSON and the page both cope


@pytest.mark.slow  # renders a page for each of six rows
def test_the_report_of_a_set_has_a_summary_and_a_page_per_row(tiny, rows, tmp_path):
    out = rows.save(tmp_path / "set")
    interp.workflow.analyze_into(tiny, rows, out)
    page = build_report(out)
    html = page.read_text(encoding="utf-8")
    assert page == out / "index.html" and (out / "figures" / "logit_lens_kl.png").is_file()
    for i in range(len(rows)):
        row_page = out / "rows" / f"row{i}.html"
        text = row_page.read_text(encoding="utf-8")
        assert '<script src="circuitsvis.js"></script>' in text and len(text) < 1_000_000
        assert f'href="rows/row{i}.html"' in html and f'<option value="rows/row{i}.html">' in html
    assert (out / "rows" / "circuitsvis.js").stat().st_size > 1_000_000
    assert html.count("circuitsvis") == 0 and "±" in html
    for prompt in PROMPTS:
        assert prompt in html
    # the set directory is still a set, and can be written again over its own report
    assert len(interp.TraceSet.load(out)) == len(rows)
    rows.save(out)
    assert not (out / "rows").exists()


def test_the_progress_bar_counts_rows_over_every_batch(tiny, capsys):
    interp.generate(tiny, PROMPTS, max_new_tokens=3, seed=0, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "rows 3/3" in err and "generating" in err


@pytest.mark.browser
def test_a_set_report_and_its_row_pages_render_offline_in_chromium(tiny_llama, tmp_path):
    from browser import assert_renders

    rows = interp.generate(tiny_llama, PROMPTS, max_new_tokens=4, seed=1)
    out = rows.save(tmp_path / "set")
    interp.workflow.analyze_into(tiny_llama, rows, out)
    page = build_report(out)
    assert_renders(page, tmp_path / "index", circuitsvis=False)
    assert_renders(out / "rows" / "row1.html", tmp_path / "row")  # the shared bundle loads


def test_the_model_probe_is_cached_by_weights_and_rerun_when_unreadable(
    tiny_llama, tmp_path, monkeypatch
):
    from interp import workflow

    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    assert tiny_llama.checksum == "random-init"
    first = workflow.model_head_roles(tiny_llama)  # never cached without a checksum
    assert not (tmp_path / "cache").exists()
    monkeypatch.setattr(tiny_llama, "checksum", "sha256:abc")
    computed = workflow.model_head_roles(tiny_llama)
    torch.testing.assert_close(computed.scores, first.scores)
    (cached_file,) = (tmp_path / "cache" / "probes").iterdir()
    monkeypatch.setattr(workflow, "head_roles", lambda *a, **k: pytest.fail("probe rerun"))
    again = workflow.model_head_roles(tiny_llama)
    for name in ("scores", "score_se", "probe_tokens", "token_loss"):
        assert torch.equal(getattr(again, name), getattr(computed, name)), name
    assert (again.block_len, again.offset) == (computed.block_len, computed.offset)
    monkeypatch.undo()
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tiny_llama, "checksum", "sha256:abc")
    cached_file.write_bytes(b"not safetensors")
    assert torch.equal(workflow.model_head_roles(tiny_llama).scores, computed.scores)
    assert cached_file.stat().st_size > 100  # replaced
    monkeypatch.setattr(tiny_llama, "checksum", "sha256:other")
    workflow.model_head_roles(tiny_llama)
    assert len(list((tmp_path / "cache" / "probes").iterdir())) == 2  # other weights, other file


@pytest.mark.slow  # renders a page for each of six rows
def test_a_set_report_shows_its_sweep_with_standard_errors(tiny, rows, tmp_path):
    out = rows.save(tmp_path / "set")
    interp.workflow.analyze_into(tiny, rows, out)
    interp.workflow.sweep_into(tiny, rows, out, metric=interp.metrics.logit_diff(40, 41))
    html = build_report(out).read_text(encoding="utf-8")
    assert 'id="sweep"' in html and "mean change in logit-diff:40,41" in html and " ± " in html
    assert (out / "figures" / "sweep.png").is_file()
