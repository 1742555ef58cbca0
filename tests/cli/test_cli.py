"""The `interp` command: fast help, one clear error line per bad input, nothing half-written."""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interp import cli


def test_help_answers_without_importing_torch():
    code = (
        "import sys\nfrom interp import cli\n"
        "for argv in (['--help'], ['generate', '--help']):\n"
        "    try:\n        cli.main(argv)\n"
        "    except SystemExit as e:\n        assert e.code == 0\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"
    assert "--max-new-tokens" in out.stdout and "--continuation" in out.stdout


def test_only_the_clis_own_process_freezes_the_imports(tmp_path):
    """`interp` run as a program freezes the imported stack out of garbage collection before
    loading (`interp.models.freeze_imports`); `cli.main` called from another program does not."""
    code = (
        "import gc, sys\nfrom interp import cli, models\n"
        "class Loaded(Exception):\n    pass\n"
        "def load(name, device):\n"
        "    print('frozen', gc.get_freeze_count() > 100_000)\n    raise Loaded\n"
        "models.load_model = load\n"
        f"argv = ['generate', 'hi', '--out', {str(tmp_path / 'x')!r}]\n"
        "try:\n    cli.main(argv)\nexcept Loaded:\n    pass\n"
        "sys.argv = ['interp', *argv]\n"
        "try:\n    cli.console_main()\nexcept Loaded:\n    pass\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["frozen", "False", "frozen", "True"]


def test_slug():
    assert cli.slug("earth revolve around") == "earth-revolve-around"
    assert cli.slug("<script>!!") == "script"
    assert cli.slug("???") == "trace"


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", ""], "prompt is empty"),
        (["generate", "   "], "prompt is empty"),
        (["generate", "hi", "--max-new-tokens", "0"], "max-new-tokens must be >= 1"),
        (["generate", "hi", "--temperature", "-0.5"], "temperature must be >= 0"),
        (["generate", "hi", "--top-p", "0"], "top-p must be in (0, 1]"),
        (["generate", "hi", "--top-p", "1.01"], "top-p must be in (0, 1]"),
        (["generate", "hi", "--top-k", "0"], "top-k must be >= 1"),
        (["generate", "hi", "--continuation", ""], "continuation is empty"),
        (["generate", "hi", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["generate", "hi", "--device", "warp-drive"], "device"),
    ],
)
def test_bad_input_gets_one_line_and_writes_nothing(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv, capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert err.count("\n") == 1 and err.startswith("interp: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_out_that_cannot_be_written(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(["generate", "hi", "--out", str(tmp_path / "afile" / "t")], capsys)
    assert code == cli.EXIT_BAD_INPUT and "not writable" in err and err.count("\n") == 1


def test_existing_out_that_is_not_a_trace_is_never_overwritten(capsys, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("precious")
    code, _, err = run_cli(["generate", "hi", "--out", str(tmp_path / "mine")], capsys)
    assert code == cli.EXIT_BAD_INPUT and "refusing to overwrite" in err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["data.csv"]


def test_gpt2_unreachable_is_one_clear_paragraph(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        ["generate", "hi", "--model", "gpt2", "--out", str(tmp_path / "t")], capsys
    )
    assert code == cli.EXIT_ERROR and err.count("\n") == 1
    assert "could not be loaded" in err and "--model smollm2-135m" in err
    assert "Traceback" not in err and not (tmp_path / "t").exists()


@pytest.mark.real_model
def test_generate_writes_a_trace_and_says_where(capsys, tmp_path, monkeypatch, smollm):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        ["generate", "earth revolve around", "--max-new-tokens", "5", "--seed", "3"], capsys
    )
    assert code == 0, err
    assert gc.get_freeze_count() == 0  # called in-process: the caller's collector is untouched
    target = tmp_path / "reports" / "earth-revolve-around"
    summary = json.loads((target / "summary.json").read_text())
    assert out.splitlines()[0] == "earth revolve around\u2502" + summary["continuation"]
    assert f"trace written to {target.relative_to(tmp_path)}" in out
    assert len(summary["token_logprobs"]) == 5 and summary["seed"] == 3
    assert summary["provenance"]["engine"] == "direct"
    # the same command again gives the same text (and replaces its own trace), on either engine
    code, out2, _ = run_cli(
        ["generate", "earth revolve around", "--max-new-tokens", "5", "--seed", "3"]
        + ["--engine", "bridge"],
        capsys,
    )
    assert code == 0 and out2.splitlines()[0] == out.splitlines()[0]
    summary = json.loads((target / "summary.json").read_text())
    assert summary["provenance"]["engine"] == "bridge"


@pytest.mark.real_model
def test_first_run_converts_quietly_when_stderr_is_not_a_terminal(tmp_path):
    """`interp` from a fresh cache, its output piped: the conversion is announced in one log
    line, without transformers' progress bar (which ignores its own switch, see
    `interp.models.cache._gguf_progress_bar_follows_transformers`), and the converted cache
    works."""
    env = {**os.environ, "INTERP_CACHE_DIR": str(tmp_path / "cache")}
    argv = [str(Path(sys.executable).parent / "interp"), "generate", "earth revolve around"]
    argv += ["--max-new-tokens", "2", "--out", str(tmp_path / "trace")]
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "interp: converting smollm2-135m from SmolLM2-135M-Instruct.Q4_1.gguf "
        "(one time, about 15 s)"
    ]
    assert (tmp_path / "trace" / "summary.json").exists()


@pytest.mark.real_model
def test_prompt_beyond_the_context_is_refused(capsys, tmp_path, smollm):
    code, _, err = run_cli(
        ["generate", "hi", "--max-new-tokens", "9000", "--out", str(tmp_path / "t")], capsys
    )
    assert code == cli.EXIT_BAD_INPUT and "context of 8192" in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()


@pytest.mark.real_model
def test_analyze_writes_results_beside_the_trace(capsys, tmp_path, smollm):
    out = tmp_path / "t"
    assert (
        run_cli(
            ["generate", "earth revolve around", "--max-new-tokens", "6", "--out", str(out)], capsys
        )[0]
        == 0
    )
    code, text, err = run_cli(["analyze", str(out)], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    analysis = summary["analysis"]
    lens = analysis["logit_lens"]
    assert lens["layers"][-1] == "final" and len(lens["layers"]) == 31
    for key in ("mean_kl", "mean_rank", "top1_agreement"):
        assert len(lens[key]) == 31
    assert len(analysis["prediction_depth"]) == 6
    assert set(analysis["head_roles"]) == {"previous_token", "duplicate_token", "induction", "sink"}
    for pairs in list(analysis["head_roles"].values()) + [analysis["dla_top_heads"]]:
        assert len(pairs) == 10 and all(isinstance(h, str) and h.startswith("L") for h, _ in pairs)
    assert (out / "analysis.safetensors").exists()
    assert "analysis written to" in text
    # the trace itself still loads, unchanged
    from interp.trace.trace import Trace

    assert Trace.load(out).n_generated == 6


def test_analyze_refuses_what_is_not_a_trace(capsys, tmp_path):
    code, _, err = run_cli(["analyze", str(tmp_path)], capsys)
    assert code == cli.EXIT_BAD_INPUT and "not an interp trace" in err and err.count("\n") == 1


@pytest.mark.real_model
def test_analyze_names_missing_hooks(capsys, tmp_path, smollm):
    import interp

    trace = interp.generate(
        smollm, "earth", max_new_tokens=2, seed=0, hooks=["blocks.0.hook_resid_pre"]
    )
    trace.save(tmp_path / "t")
    code, _, err = run_cli(["analyze", str(tmp_path / "t")], capsys)
    assert code == cli.EXIT_BAD_INPUT and "did not record" in err and "L1.resid_pre" in err


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory, smollm):
    import interp

    out = tmp_path_factory.mktemp("cli") / "t"
    interp.generate(smollm, "earth revolve around", max_new_tokens=6, seed=0).save(out)
    return out


@pytest.mark.real_model
def test_ablate_writes_effect_and_the_regenerated_trace(capsys, small_trace):
    code, out, err = run_cli(["ablate", str(small_trace), "--heads", "L0H8,L16H0"], capsys)
    assert code == 0, err
    target = small_trace / "ablations" / "L0H8_L16H0-mean"
    effect = json.loads((target / "effect.json").read_text())
    for key in (
        "heads",
        "mode",
        "delta_logprob_total",
        "delta_logprob",
        "kl",
        "baseline_text",
        "ablated_text",
        "first_divergence",
    ):
        assert key in effect, key
    assert effect["heads"] == ["L0H8", "L16H0"] and effect["mode"] == "mean"
    assert len(effect["delta_logprob"]) == len(effect["kl"]) == 6
    assert abs(sum(effect["delta_logprob"]) - effect["delta_logprob_total"]) < 1e-4
    from interp.trace.trace import Trace

    regenerated = Trace.load(target)
    assert regenerated.continuation == effect["ablated_text"]
    assert "baseline:" in out and "ablated:" in out and "written to" in out


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ("L30H0", "layer 30 in 'L30H0' is out of range; valid: L0..L29 and H0..H8"),
        ("L3H9", "head 9"),
        ("layer3", "malformed"),
    ],
)
def test_ablate_bad_heads_one_line_nothing_written(capsys, small_trace, heads, message):
    code, _, err = run_cli(["ablate", str(small_trace), "--heads", heads], capsys)
    assert code == cli.EXIT_BAD_INPUT and message in err and err.count("\n") == 1
    assert not (small_trace / "ablations").exists() or not any(
        p.name.startswith(heads) for p in (small_trace / "ablations").iterdir()
    )


@pytest.mark.real_model
def test_sweep_triage_adds_sweep_to_the_summary(capsys, small_trace):
    code, out, err = run_cli(["sweep", str(small_trace), "--triage", "--verify", "12"], capsys)
    assert code == 0, err
    sweep = json.loads((small_trace / "summary.json").read_text())["sweep"]
    assert sweep["mode"] == "mean" and sweep["method"] == "triage"
    assert len(sweep["verified_heads"]) == 12 and len(sweep["top_heads"]) == 10
    mags = [abs(v) for _, v in sweep["top_heads"]]
    assert mags == sorted(mags, reverse=True)
    assert -1.0 <= sweep["estimate_spearman"] <= 1.0
    assert (small_trace / "sweep.safetensors").exists()


@pytest.mark.real_model
def test_run_goes_from_prompt_to_report_and_report_rerenders(capsys, tmp_path, smollm):
    out = tmp_path / "r"
    code, text, err = run_cli(
        ["run", "earth revolve around", "--max-new-tokens", "4", "--no-sweep", "--out", str(out)],
        capsys,
    )
    assert code == 0, err
    page = out / "index.html"
    assert text.strip().splitlines()[-1] == f"report written to {page.resolve().as_uri()}"
    summary = json.loads((out / "summary.json").read_text())
    assert "analysis" in summary and "sweep" not in summary
    first = page.stat().st_mtime_ns
    code, text, err = run_cli(["report", str(out)], capsys)
    assert code == 0, err
    assert page.stat().st_mtime_ns >= first and "file://" in text


def test_no_commands_help_spells_a_site_as_a_hook_name():
    """Every command's help writes where as a site (L5.attn), never as a hook (hook_z)."""
    import argparse
    import re

    from interp.cli.options import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    hook = re.compile(r"blocks\.[0-9L]|hook_[a-z]|\.hook\b")
    found = [
        f"{name}: {line.strip()}"
        for name, parser in commands.choices.items()
        for line in parser.format_help().splitlines()
        if hook.search(line)
    ]
    assert found == []
    assert "--site SITE" in commands.choices["train-dictionary"].format_help()


def test_the_dictionaries_list_names_each_by_its_site(tmp_path, monkeypatch, capsys, tiny_llama):
    from fakes import random_dictionary

    from interp.features import catalog, save_dictionary

    monkeypatch.setattr(catalog, "dictionaries_root", lambda: tmp_path)
    d = random_dictionary(tiny_llama, "blocks.1.hook_resid_post", width=16, k=2)
    save_dictionary(d, tmp_path / "tiny-llama" / d.hook)
    code, out, _ = run_cli(["dictionaries"], capsys)
    assert code == 0 and out.split()[1] == "L1.resid_post" and "hook_" not in out.split(" /")[0]
