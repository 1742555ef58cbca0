"""Hostile input, faults and odd paths: one clear error (a typed error at the API, one
`interp: error:` line and a non-zero exit at the command line), nothing half-written, no
user file lost, nothing left behind. Hostile traces are built from a tiny model's valid one."""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import interp
from interp import cli, store
from interp.errors import (
    InvalidSettingError,
    TraceFormatError,
    UnknownModelError,
    WriteError,
)
from interp.files import atomic
from interp.interventions.ablation import ablation_dirname
from interp.models.heads import parse_heads
from interp.trace.trace import Trace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recorded(tiny_llama):
    return interp.generate(tiny_llama, "The earth revolves", max_new_tokens=5, seed=0)


@pytest.fixture
def saved(recorded, tmp_path):
    return recorded.save(tmp_path / "t")


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("interp: error: ")


# ---- hostile traces: Trace.load refuses each with the file and the field --------------------


def _edit_summary(directory, edit):
    path = directory / "summary.json"
    summary = json.loads(path.read_text())
    edit(summary)
    path.write_text(json.dumps(summary))


def _edit_tensors(directory, name, edit):
    tensors = load_file(directory / name)
    edit(tensors)
    save_file(tensors, directory / name)


def _set(key, value):
    def edit(summary):
        summary[key] = value

    return edit


def _set_setting(key, value):
    def edit(summary):
        summary["settings"][key] = value

    return edit


SUMMARY_CASES = [
    ("prompt_len", _set("prompt_len", 10**9), "prompt_len"),
    ("prompt_len", _set("prompt_len", -5), "prompt_len"),
    ("prompt_len", _set("prompt_len", 0), "prompt_len"),
    ("prompt_len float", _set("prompt_len", 2.7), "prompt_len"),
    ("prompt_len bool", _set("prompt_len", True), "prompt_len"),
    ("format_version true", _set("format_version", True), "format version true"),
    ("format_version string", _set("format_version", "1"), 'format version "1"'),
    ("model type", _set("model", 5), "'model'"),
    ("hooks type", _set("hooks", "blocks.0.hook_resid_pre"), "'hooks'"),
    ("a hook that is not there", _set("hooks", ["blocks.0.hook_nothing"]), "hook_nothing"),
    ("temperature type", _set_setting("temperature", "hot"), "'temperature'"),
    ("seed type", _set_setting("seed", [1]), "'seed'"),
    ("stop reason", _set("stop_reason", "boredom"), "stop_reason"),
    ("timings type", _set("timings", {"x": "slow"}), "timings"),
    ("token strings 3 short", lambda s: s.update(token_strs=s["token_strs"][:-3]), "shape"),
]


@pytest.mark.parametrize(
    ("case", "edit", "message"), SUMMARY_CASES, ids=[c[0] for c in SUMMARY_CASES]
)
def test_a_summary_that_lies_is_refused(saved, case, edit, message):
    _edit_summary(saved, edit)
    with pytest.raises(TraceFormatError, match=message.replace("(", r"\(")) as info:
        Trace.load(saved)
    assert "summary.json" in str(info.value) or "safetensors" in str(info.value)


def _token_ids(value):
    def edit(t):
        t["token_ids"] = value(t["token_ids"])

    return edit


def _activation(edit_one):
    def edit(t):
        name = "blocks.1.hook_resid_pre"
        t[name] = edit_one(t[name])

    return edit


TENSOR_CASES = [
    ("negative token id", "steps.safetensors", _token_ids(lambda x: x - 1000), "negative"),
    ("token ids 3 short", "steps.safetensors", _token_ids(lambda x: x[:-3]), "token_ids"),
    ("float token ids", "steps.safetensors", _token_ids(lambda x: x.float()), "dtype"),
    ("an activation cut short", "activations.safetensors", _activation(lambda x: x[:-1]), "shape"),
    (
        "NaN activations",
        "activations.safetensors",
        _activation(lambda x: x.masked_fill(torch.ones_like(x, dtype=torch.bool), float("nan"))),
        "NaN",
    ),
    (
        "a pattern of the wrong shape",
        "activations.safetensors",
        lambda t: t.update(
            {"blocks.0.attn.hook_pattern": t["blocks.0.attn.hook_pattern"][:, :2].contiguous()}
        ),
        "hook_pattern",
    ),
]


@pytest.mark.parametrize(
    ("case", "file", "edit", "message"), TENSOR_CASES, ids=[c[0] for c in TENSOR_CASES]
)
def test_tensors_that_disagree_with_the_summary_are_refused(saved, case, file, edit, message):
    _edit_tensors(saved, file, edit)
    with pytest.raises(TraceFormatError, match=message) as info:
        Trace.load(saved)
    assert file in str(info.value)


def test_token_ids_outside_the_vocabulary_are_refused_on_bind(saved, tiny_llama):
    _edit_tensors(saved, "steps.safetensors", _token_ids(lambda x: x + tiny_llama.d_vocab))
    with pytest.raises(TraceFormatError, match="outside"):
        Trace.load(saved, model=tiny_llama)


@pytest.mark.parametrize("damage", ["truncated", "header lies", "zeros"])
def test_broken_safetensors_files_are_refused(saved, damage):
    path = saved / "activations.safetensors"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header lies":
        path.write_bytes((10**12).to_bytes(8, "little") + data[8:])
    else:
        path.write_bytes(bytes(4096))
    with pytest.raises(TraceFormatError, match="activations.safetensors"):
        Trace.load(saved)


@pytest.mark.parametrize("file", ["summary.json", "activations.safetensors"])
def test_a_fifo_is_refused_without_hanging(saved, file):
    (saved / file).unlink()
    os.mkfifo(saved / file)
    with pytest.raises(TraceFormatError, match="not a regular file"):
        Trace.load(saved)


@pytest.mark.parametrize(
    ("file", "special"), [("summary.json", "/dev/urandom"), ("steps.safetensors", "/dev/zero")]
)
def test_a_device_behind_a_link_is_refused(saved, file, special):
    (saved / file).unlink()
    (saved / file).symlink_to(special)
    with pytest.raises(TraceFormatError, match="not a regular file"):
        Trace.load(saved)


def test_an_oversized_or_deeply_nested_summary_is_refused(saved, monkeypatch):
    (saved / "summary.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(TraceFormatError, match="nested too deeply"):
        Trace.load(saved)
    monkeypatch.setattr(store, "MAX_JSON_BYTES", 1000)
    (saved / "summary.json").write_text(json.dumps({"x": "y" * 2000}))
    with pytest.raises(TraceFormatError, match="more than"):
        Trace.load(saved)


def test_the_cli_refuses_a_hostile_trace_before_loading_a_model(saved, capsys, monkeypatch):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    _edit_summary(saved, _set("prompt_len", 10**9))
    code, _, err = run_cli(["analyze", str(saved)], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err) and "prompt_len" in err


def test_malformed_results_are_refused_by_the_report(tiny_llama, saved, capsys):
    from interp.report import build_report

    interp.workflow.analyze_into(tiny_llama, Trace.load(saved, model=tiny_llama), saved)
    _edit_tensors(
        saved, "analysis.safetensors", lambda t: t.update({"logit_lens.kl": t["logit_lens.kl"][:1]})
    )
    with pytest.raises(TraceFormatError, match="logit_lens.kl"):
        build_report(saved)
    interp.workflow.analyze_into(tiny_llama, Trace.load(saved, model=tiny_llama), saved)
    (saved / "ablations" / "L0H0-mean").mkdir(parents=True)
    (saved / "ablations" / "L0H0-mean" / "effect.json").write_text(json.dumps({"heads": "L0H0"}))
    code, _, err = run_cli(["report", str(saved)], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err) and "effect.json" in err
    assert not (saved / "index.html").exists()


def test_a_trace_never_steers_which_local_folder_is_loaded(saved, tmp_path, monkeypatch, capsys):
    evil = tmp_path / "evil" / "model"
    evil.mkdir(parents=True)
    (evil / "config.json").write_text('{"model_type": "llama", "auto_map": {}}')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownModelError, match="is also a path"):
        interp.load_model("evil/model")
    _edit_summary(saved, _set("model", "evil/model"))
    code, _, err = run_cli(["analyze", str(saved)], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err) and "is also a path" in err


# ---- the command line: one line, exit 2, nothing written -------------------------------------


BAD_ARGS = [
    (["generate", "hi", "--seed", "1180591620717411303424"], "seed must be in"),
    (["generate", "hi", "--seed", "-1"], "seed must be in"),
    (["generate", "ab\udcffcd"], "not valid UTF-8"),
    (["generate", "hi", "--continuation", "ab\udcffcd"], "not valid UTF-8"),
    (["generate", "hi", "--temperature", "1e-300"], "temperature must be 0 (greedy) or at least"),
    (["generate", "hi", "--temperature", "inf"], "temperature must be finite"),
    (["generate", "hi", "--temperature", "nan"], "temperature must be >= 0"),
    (["generate", "hi", "--top-p", "nan"], "top-p must be in"),
    (["generate", "hi", "--out", "."], "current directory"),
    (["generate", "hi", "--out", ""], "current directory"),
    (["generate", "hi", "--out", "newdir/.."], "current directory"),
    (["generate", "hi", "--out", "x" * 300], "too long"),
    (["generate", "hi", "--out", "/proc/interp-cannot-write"], "cannot write"),
    (["generate"], "give a PROMPT"),
    (["analyze"], "the following arguments are required"),
    (["generate", "hi", "--max-new-tokens", "many"], "expected an integer"),
    (["frobnicate"], "invalid choice"),
    (["ablate", "nowhere", "--heads", "L0H0", "--resample-text", ""], "--resample-text is empty"),
    (["sweep", "nowhere", "--resample-text", "ab\udcffcd"], "not valid UTF-8"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGS, ids=[" ".join(a)[:50] for a, _ in BAD_ARGS])
def test_bad_arguments_get_one_line_and_write_nothing(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert one_line(err) and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_out_below_a_file_says_it_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, err = run_cli(["generate", "hi", "--out", str(tmp_path / "f" / "sub")], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err) and "is a file" in err


def test_ctrl_c_during_start_up_is_one_line(capsys, monkeypatch):
    from interp.cli import app

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "configure_output", interrupted)
    code, _, err = run_cli(["report", "somewhere"], capsys)
    assert code == 130 and one_line(err) and "interrupted" in err


def test_a_failing_disk_is_one_line_and_leaves_the_old_page(tiny_llama, saved, capsys, monkeypatch):
    interp.workflow.analyze_into(tiny_llama, Trace.load(saved, model=tiny_llama), saved)
    assert run_cli(["report", str(saved)], capsys)[0] == 0
    before = (saved / "index.html").read_text()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    code, _, err = run_cli(["report", str(saved)], capsys)
    monkeypatch.undo()
    assert code == cli.EXIT_ERROR and one_line(err) and "No space left" in err
    assert (saved / "index.html").read_text() == before
    assert sorted(p.name for p in saved.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("error", ["oserror", "safetensors"])
def test_a_failing_disk_during_a_save_raises_one_error_and_leaves_nothing(
    recorded, tmp_path, monkeypatch, error
):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        if error == "oserror":
            raise OSError(errno.EROFS, "Read-only file system")
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    with pytest.raises(WriteError, match="cannot write"):
        recorded.save(tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


# ---- a user's files are never lost ----------------------------------------------------------


def test_replacing_a_trace_never_deletes_other_files(saved, capsys, monkeypatch):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    (saved / "my_notes.txt").write_text("mine")
    (saved / "mydata").mkdir()
    (saved / "ablations" / "L0H0-mean").mkdir(parents=True)
    code, _, err = run_cli(["generate", "hi", "--out", str(saved)], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err)
    assert "ablations/" in err and "my_notes.txt" in err and "mydata/" in err
    assert (saved / "my_notes.txt").read_text() == "mine" and (saved / "ablations").is_dir()


def test_default_directories_keep_letters_of_every_script():
    assert cli.slug("Привет мир") == "привет-мир"
    assert cli.slug("你好，世界") == "你好-世界"
    assert cli.slug("....") == cli.slug("\u200b\u200b") == "trace"


def test_a_default_directory_of_another_prompt_is_never_replaced(
    recorded, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    recorded.save(Path("reports") / "trace")
    code, _, err = run_cli(["generate", "...."], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err) and "another prompt" in err
    assert Trace.load(Path("reports") / "trace").prompt == recorded.prompt


def test_a_second_run_into_the_same_output_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "t"
    with atomic.exclusive(out):
        code, _, err = run_cli(["generate", "hi", "--out", str(out)], capsys)
    assert code == cli.EXIT_BAD_INPUT and one_line(err) and "another run" in err
    assert list(tmp_path.iterdir()) == []  # the lock file went with its holder


def test_an_out_that_is_a_link_is_followed(recorded, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    recorded.save(tmp_path / "link")
    recorded.save(tmp_path / "link")  # and replaced through it
    assert (tmp_path / "link").is_symlink()
    assert Trace.load(tmp_path / "real") == recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_files_get_the_users_umask(recorded, tmp_path):
    old = os.umask(0o027)
    try:
        recorded.save(tmp_path / "t")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "t").iterdir()}
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o750
    assert set(modes.values()) == {0o640}, modes


# ---- interrupted writes: a kill at a named point ---------------------------------------------

KILL = """
import os, signal, sys
from pathlib import Path
from interp.files import atomic
target, point = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if point == "between renames":
        os.kill(os.getpid(), signal.SIGKILL)
if point == "between renames":
    atomic._exchange = lambda a, b: False
    os.replace = replace
with atomic.atomic_dir(target) as tmp:
    (tmp / "summary.json").write_text("new")
    if point == "while writing":
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed(target, point):
    done = subprocess.run([sys.executable, "-c", KILL, str(target), point], cwd=ROOT)
    assert done.returncode == -signal.SIGKILL


def test_a_kill_while_writing_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "t"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "summary.json").write_text("old")
    _killed(target, "while writing")
    assert any(".t.tmp-" in p.name for p in tmp_path.iterdir())
    with atomic.atomic_dir(target) as tmp:
        (tmp / "summary.json").write_text("newer")
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    target = tmp_path / "t"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "summary.json").write_text("old")
    _killed(target, "between renames")
    assert not target.exists() and any(".t.old-" in p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError), atomic.atomic_dir(target):
        raise RuntimeError("a later write that fails")
    assert (target / "summary.json").read_text() == "old"  # put back, not lost
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


# ---- the API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (b"\x01\x02", "sequence of integer token ids"),
        ([1.7, 2.0], "must be integers"),
        ([1, "sun"], "must be a string or a sequence of integer token ids"),
        ([True, 3], "must be integers"),
        ("ab\udcffcd", "not valid UTF-8"),
    ],
)
def test_prompts_are_type_checked(tiny_llama, prompt, message, unchecked):
    with pytest.raises(InvalidSettingError, match=message):
        interp.generate(tiny_llama, prompt, max_new_tokens=2)


@pytest.mark.parametrize("seed", [2**64, -1, 1.5, True])
def test_seeds_are_range_checked_at_the_api(tiny_llama, seed, unchecked):
    with pytest.raises(InvalidSettingError, match="seed"):
        interp.generate(tiny_llama, "The sun", max_new_tokens=2, seed=seed)


@pytest.mark.parametrize("spec", ["L\u0665H1", "L1H\u0661", "L" + "9" * 5000, "L1H" + "9" * 5000])
def test_head_specs_take_ascii_digits_only(spec):
    with pytest.raises(InvalidSettingError, match="malformed head"):
        parse_heads(spec, 30, 9)


def test_an_empty_resample_text_is_refused(tiny_llama, recorded):
    with pytest.raises(InvalidSettingError, match="resample text is empty"):
        interp.interventions.make_ablation(
            tiny_llama, recorded, [(0, 0)], "resample", resample_text=""
        )


def test_long_head_lists_get_a_short_directory_name(tiny_llama, recorded, tmp_path, monkeypatch):
    heads = [(layer, head) for layer in range(30) for head in range(9)][:54]
    name = ablation_dirname(heads, "mean")
    assert len(name) < 60 and name.startswith("54-heads-")
    from interp.interventions import ablation

    monkeypatch.setattr(ablation, "MAX_DIRNAME_HEADS", 10)
    saved = recorded.save(tmp_path / "t")
    _, out = interp.workflow.ablate_into(
        tiny_llama, recorded, saved, [(0, 0), (0, 1), (1, 2)], "zero"
    )
    effect = json.loads((out / "effect.json").read_text())
    assert out.name.startswith("3-heads-") and effect["heads"] == ["L0H0", "L0H1", "L1H2"]


def test_a_sweep_writes_strict_json(tiny_llama, recorded, tmp_path):
    saved = recorded.save(tmp_path / "t")
    interp.workflow.sweep_into(tiny_llama, recorded, saved, method="triage", verify=1)

    def no_nan(token):
        raise AssertionError(f"summary.json holds {token}")

    summary = json.loads((saved / "summary.json").read_text(), parse_constant=no_nan)
    assert summary["sweep"]["estimate_spearman"] is None


def test_a_recording_that_cannot_fit_in_memory_is_refused_before_it_starts(tiny_llama, monkeypatch):
    from interp.generation import generate as generation
    from interp.generation import memory

    need = memory.recording_bytes(tiny_llama, interp.default_hooks(tiny_llama.n_layers), 40)
    monkeypatch.setattr(memory, "available_memory", lambda: need // 2)
    monkeypatch.setattr(generation, "choose", lambda *a: pytest.fail("started"))
    with pytest.raises(InvalidSettingError, match="attention-pattern hooks"):
        interp.generate(tiny_llama, "The sun", max_new_tokens=38)


def test_an_ablation_can_be_run_again_into_its_own_directory(tiny_llama, recorded, tmp_path):
    saved = recorded.save(tmp_path / "t")
    _, first = interp.workflow.ablate_into(tiny_llama, recorded, saved, [(0, 1)], "zero")
    _, again = interp.workflow.ablate_into(tiny_llama, recorded, saved, [(0, 1)], "zero")
    assert first == again and (again / "effect.json").exists()


def test_a_failing_disk_during_an_analysis_leaves_the_summary_as_it_was(
    tiny_llama, saved, monkeypatch
):
    before = (saved / "summary.json").read_text()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    with pytest.raises(WriteError, match="No space left"):
        interp.workflow.analyze_into(tiny_llama, Trace.load(saved, model=tiny_llama), saved)
    assert (saved / "summary.json").read_text() == before
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        ["summary.json", "steps.safetensors", "activations.safetensors"]
    )
