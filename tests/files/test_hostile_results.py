"""Tampered results, unbounded requests and odd inputs against the newer surfaces (patching,
sets, paired samples, local folders): one `interp: error:` line, exit 2, nothing written, and
no traceback or hang."""

import inspect
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import interp
from interp import cli, metrics
from interp.errors import InvalidSettingError, ModelNotInstalledError, TraceFormatError
from interp.generation.prompts import read_prompts
from interp.interventions import sites
from interp.interventions.patching import patch
from interp.interventions.patching_result import Patching
from interp.report import figures
from interp.trace.trace import Trace

PROMPT = "The earth revolves around the"


def run_cli(argv, capsys):
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("interp: error: ")


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory):
    """A clean and a corrupted trace on disk, and the patching result between them."""
    root = tmp_path_factory.mktemp("runs")
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=1, temperature=0)
    ids = clean.token_ids[: clean.prompt_len].tolist()
    ids[-3] = (ids[-3] + 7) % tiny_llama.d_vocab
    corrupted = interp.generate(tiny_llama, ids, continuation=clean.continuation_ids)
    result = patch(
        tiny_llama, clean, corrupted, sites=["heads", "resid"], metric=metrics.logit_diff(40, 41)
    )
    return clean.save(root / "clean"), corrupted.save(root / "corrupted"), result


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))


@pytest.fixture
def tiny_model(monkeypatch, tiny_llama):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)


def _edit_patch(directory, name, edit):
    path = directory / "patch.safetensors"
    tensors = load_file(path)
    tensors[name] = edit(tensors[name]).contiguous()
    save_file(tensors, path)


TAMPERED = [
    ("heads flattened", "heads.effect", lambda t: t.flatten()[:270], "heads.effect"),
    ("normalised shape", "heads.effect_normalized", lambda t: t[:1], "heads.effect_normalized"),
    ("effect of bool", "heads.effect", lambda t: t > 0, "dtype torch.bool"),
    ("resid 3-D", "resid.effect", lambda t: t[None], "resid.effect"),
    ("per_row rows", "resid.per_row", lambda t: torch.cat([t, t]), "resid.per_row"),
]


@pytest.mark.parametrize(("case", "name", "edit", "words"), TAMPERED, ids=[c[0] for c in TAMPERED])
def test_a_tampered_patching_result_is_one_line(
    runs, tmp_path, capsys, no_model, case, name, edit, words
):
    directory = runs[2].save(tmp_path / "p")
    _edit_patch(directory, name, edit)
    with pytest.raises(TraceFormatError, match="patch.safetensors"):
        Patching.load(directory)
    code, err = run_cli(["report", str(directory)], capsys)
    assert code == 2 and one_line(err) and words in err, err
    assert not (directory / "index.html").exists()


def test_a_tampered_patching_summary_is_one_line(runs, tmp_path, capsys, no_model):
    directory = runs[2].save(tmp_path / "p")
    record = json.loads((directory / "summary.json").read_text())
    record["patching"]["tokens"] = record["patching"]["tokens"][:-1]
    (directory / "summary.json").write_text(json.dumps(record))
    code, err = run_cli(["report", str(directory)], capsys)
    assert code == 2 and one_line(err) and "resid.effect" in err


@pytest.mark.parametrize(
    ("case", "ids"), [("shortened", lambda ids: ids[:-2]), ("negative", lambda ids: [-1, *ids[1:]]),
                      ("beyond the vocabulary", lambda ids: [10**6, *ids[1:]])],
)  # fmt: skip
def test_summary_token_ids_must_agree_with_the_tensors(runs, tmp_path, capsys, no_model, case, ids):
    directory = tmp_path / "t"
    Trace.load(runs[0]).save(directory)
    record = json.loads((directory / "summary.json").read_text())
    record["token_ids"] = ids(record["token_ids"])
    (directory / "summary.json").write_text(json.dumps(record))
    code, err = run_cli(["analyze", str(directory)], capsys)
    assert code == 2 and one_line(err) and "token_ids" in err, err


def test_a_set_row_with_cut_activations_is_one_line(tiny_llama, tmp_path, capsys, no_model):
    rows = interp.generate(tiny_llama, ["a b", "c d e"], max_new_tokens=2, seed=0)
    saved = rows.save(tmp_path / "set")
    acts = load_file(saved / "activations.safetensors")
    acts["row1.blocks.0.hook_resid_pre"] = acts["row1.blocks.0.hook_resid_pre"][:, :10].contiguous()
    save_file(acts, saved / "activations.safetensors")
    code, err = run_cli(["analyze", str(saved)], capsys)
    assert code == 2 and one_line(err) and "row 1" in err


def test_a_trace_cut_to_other_widths_is_refused_on_bind(runs, tmp_path, tiny_llama):
    directory = tmp_path / "t"
    Trace.load(runs[0]).save(directory)
    acts = load_file(directory / "activations.safetensors")
    for name in [n for n in acts if n.endswith("hook_resid_pre")]:
        acts[name] = acts[name][:, :10].contiguous()
    save_file(acts, directory / "activations.safetensors")
    with pytest.raises(TraceFormatError, match=r"widths \[10\], not \[32\]"):
        Trace.load(directory, tiny_llama)


# ---- unbounded requests: refused up front, within seconds -----------------------------------


def _no_model_work(monkeypatch):
    """Fail the test if a recording loop or a teacher-forced forward starts: the request must
    be refused before any work (the refusal, not the clock, is what is checked)."""

    def ran(*args, **kwargs):
        raise AssertionError("the model ran before the request was refused")

    monkeypatch.setattr("interp.generation.generate.run", ran)
    monkeypatch.setattr("interp.interventions.measuring.forced_logits", ran)


def test_unbounded_requests_are_refused_up_front(tiny_llama, runs, tmp_path, monkeypatch):
    trace = Trace.load(runs[0], tiny_llama)
    _no_model_work(monkeypatch)
    cases = [
        (
            lambda: interp.generate(tiny_llama, "hi", num_samples=100_000_000, max_new_tokens=5),
            "GB",
        ),
        (lambda: interp.ablate(tiny_llama, trace, [(0, 0)], samples=100_000_000), "tokens"),
        (
            lambda: interp.ablate(tiny_llama, trace, [(0, 0)], samples=2, controls=100_000),
            "controls",
        ),
    ]
    for run, words in cases:
        with pytest.raises(InvalidSettingError, match=words):
            run()
    with pytest.raises(InvalidSettingError, match="1,024 positions"):
        figures.check_positions(20_000)


def test_a_patching_result_too_wide_to_draw_is_refused_before_drawing(
    runs, tmp_path, capsys, no_model
):
    result = runs[2]
    wide = result.results["resid"]
    n = 20_000
    grid = torch.zeros(wide.effect.shape[0], n)
    wide = type(wide)(
        "resid",
        "denoise",
        wide.metric,
        grid,
        grid.clone(),
        None,
        grid[None].clone(),
        1.0,
        0.0,
        patched=grid.clone(),
    )
    directory = Patching(
        {"resid": wide}, "denoise", wide.metric, 1.0, 0.0, 1, tokens=["x"] * n
    ).save(tmp_path / "wide")
    code, err = run_cli(["report", str(directory)], capsys)
    assert code == 2 and one_line(err) and "20,000 positions" in err and "1,024" in err


def test_a_model_folder_asking_for_100000_layers_is_refused_before_building(tmp_path, monkeypatch):
    import transformers

    def built(*args, **kwargs):
        raise AssertionError("the model was built before the folder was refused")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", built)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", built)
    folder = tmp_path / "huge"
    folder.mkdir()
    config = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 100_000, "vocab_size": 32000}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelNotInstalledError, match="100,000 layers"):
        interp.load_model(str(folder))


# ---- other tracebacks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"prompt": "hi", "x": NaN}', "NaN is not a JSON number"),
        ('{"prompt": "hi", "x": ' + "[" * 985 + "]" * 985 + "}", "nested 986 levels deep"),
        ('{"prompt": "hi", "answer": 3, "answer_id": 3}', "must be a text"),
    ],
    ids=["nan", "deep", "answer number"],
)
def test_prompt_file_fields_interp_could_not_write_back_are_refused(tmp_path, line, words):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InvalidSettingError, match=words):
        read_prompts(path)


def test_a_model_folder_that_is_a_symlink_loop_is_one_line(tmp_path, capsys, no_model):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(ModelNotInstalledError, match="cannot be resolved"):
        interp.load_model(str(loop))


def test_a_head_index_that_is_not_an_integer_is_interps_error(tiny_llama, runs):
    trace = Trace.load(runs[0], tiny_llama)
    with pytest.raises(InvalidSettingError, match=r"\(layer, head\) pair of integers"):
        interp.ablate(tiny_llama, trace, [(0, True)], "zero", regenerate_text=False)
    # what the runtime type checker of the tests stops first, interp refuses without it too
    check = inspect.unwrap(sites.check_targets)
    for head in (1.5, "1", np.float32(1)):
        with pytest.raises(InvalidSettingError, match=r"\(layer, head\) pair of integers"):
            check("heads", [(0, head)], tiny_llama)
    assert check("heads", [(np.int64(0), np.int64(1))], tiny_llama) == [(0, 1)]


def test_another_models_run_exits_2_like_every_refusal(runs, tmp_path, capsys, tiny_model):
    other = tmp_path / "other"
    Trace.load(runs[1]).save(other)
    record = json.loads((other / "summary.json").read_text())
    record["model"] = "gemma3-270m"
    (other / "summary.json").write_text(json.dumps(record))
    code, err = run_cli(
        ["patch", str(runs[0]), str(other), "--metric", 'logit-diff:"a","b"'], capsys
    )
    assert code == 2 and one_line(err) and "gemma3-270m" in err
    code, err = run_cli(
        ["ablate", str(runs[0]), "--heads", "L0H0", "--reference", str(other)], capsys
    )
    assert code == 2 and one_line(err) and "gemma3-270m" in err


# ---- interrupted runs --------------------------------------------------------------------------


def test_an_interrupt_while_the_report_renders_says_what_was_kept(
    runs, tmp_path, capsys, tiny_model, monkeypatch
):
    import interp.report.build as build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "build_report", interrupted)
    out = tmp_path / "p"
    argv = ["patch", str(runs[0]), str(runs[1]), "--metric", "kl", "--out", str(out)]
    code, err = run_cli(argv, capsys)
    assert code == 130 and one_line(err)
    assert f"written before the interrupt: the patching result in {out}" in err
    assert Patching.load(out).metric == "kl"


def test_a_lock_left_by_a_killed_run_is_taken_over(runs, tmp_path, capsys, tiny_model, caplog):
    clean = tmp_path / "clean"
    Trace.load(runs[0]).save(clean)
    (clean / ".patching.lock").write_text("999999999")  # its writer was SIGKILLed
    with caplog.at_level("WARNING", logger="interp"):
        code, err = run_cli(
            ["generate", PROMPT, "--out", str(clean), "--max-new-tokens", "2"], capsys
        )
    assert code == 0, err
    assert "took over" in caplog.text and "999999999" in caplog.text
    assert not (clean / ".patching.lock").exists()


def test_a_lock_still_held_keeps_its_directory(runs, tmp_path, capsys, no_model):
    from interp.files import atomic

    clean = tmp_path / "clean"
    Trace.load(runs[0]).save(clean)
    with atomic.exclusive(clean / "patching"):
        code, err = run_cli(["generate", PROMPT, "--out", str(clean)], capsys)
    assert code == 2 and one_line(err) and "in use" in err


# ---- messages and the order of refusals ------------------------------------------------------


def test_logits_and_head_receivers_do_not_mix(runs, capsys, no_model):
    code, err = run_cli(
        ["path-patch", str(runs[0]), str(runs[1]), "--receivers", "logits,L1H1.q"], capsys
    )
    assert code == 2 and one_line(err) and "'logits' cannot be combined with head receivers" in err


def test_heatmap_labels_must_match_its_positions():
    with pytest.raises(InvalidSettingError, match="11 positions but 10 token labels"):
        figures.position_heatmap(np.zeros((2, 11)), ["L0", "L1"], ["t"] * 10, "t", "x")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--metric", "logit-diff:Mary"], "JSON strings"),
        (["--sites", "heads,nowhere"], "unknown site"),
        (["--triage", "--verify", "0"], "--verify must be at least 1"),
        (["--verify", "3"], "--verify goes with --triage"),
        (["--out", "USERDIR"], "not an interp trace"),
    ],
    ids=["metric", "site", "verify", "verify alone", "out"],
)
def test_refusals_that_need_no_model_come_before_it_loads(
    runs, tmp_path, capsys, no_model, extra, words
):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    argv = [
        "patch",
        str(runs[0]),
        str(runs[1]),
        *[str(user) if e == "USERDIR" else e for e in extra],
    ]
    code, err = run_cli(argv, capsys)
    assert code == 2 and one_line(err) and words in err, err
    assert (user / "notes.txt").read_text() == "keep"


def test_a_run_patched_against_its_own_directory_is_refused_before_the_model(
    runs, capsys, no_model
):
    code, err = run_cli(["patch", str(runs[0]), str(runs[0])], capsys)
    assert code == 2 and one_line(err) and "both the clean and the corrupted run" in err


def test_a_misspelt_head_is_refused_before_the_model_loads(runs, capsys, no_model):
    code, err = run_cli(["ablate", str(runs[0]), "--heads", "L1X2"], capsys)
    assert code == 2 and one_line(err) and "malformed head 'L1X2'" in err
