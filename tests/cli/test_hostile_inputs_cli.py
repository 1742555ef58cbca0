"""Hostile input at the command line (issue 47): one `interp: error:` line, exit 2, nothing
written, and refused before the model loads wherever the model is not needed."""

import json
import pickle

import pytest
import torch

import interp
from interp import cli
from interp.edits import edit

PROMPT = "The Eiffel Tower is in the city of"
SITE = "blocks.1.hook_resid_pre"


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(code, err, words):
    assert code == cli.EXIT_BAD_INPUT, err
    assert err.count("\n") == 1 and err.startswith("interp: error: "), err
    assert words in err, err


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: pytest.fail("loaded"))


@pytest.fixture
def tiny_model(monkeypatch, tiny_llama):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    return tiny_llama


@pytest.fixture(scope="module")
def clean_run(tiny_llama, tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "clean"
    interp.generate(tiny_llama, PROMPT, continuation=" Paris").save(path)
    return path


def _generate_under(tmp_path, capsys, text):
    spec = tmp_path / "i.json"
    spec.write_text(text)
    out = tmp_path / "t"
    argv = ["generate", PROMPT, "--intervention", spec, "--max-new-tokens", 3, "--out", out]
    code, _, err = run_cli(argv, capsys)
    assert not out.exists()
    return code, err


def test_an_intervention_file_with_edits_twice_is_refused(tmp_path, capsys, no_model):
    one = json.dumps(edit(SITE, "zero").to_json()["edits"])
    code, err = _generate_under(tmp_path, capsys, f'{{"edits": {one}, "edits": []}}')
    refused(code, err, "the key 'edits' appears twice in one object")


def test_an_intervention_file_with_a_slice_of_step_0_is_refused(tmp_path, capsys, no_model):
    value = {"edits": [{"site": SITE, "op": "zero", "positions": [{"slice": [0, 5, 0]}]}]}
    code, err = _generate_under(tmp_path, capsys, json.dumps(value))
    refused(code, err, "step cannot be 0")


def test_an_edit_that_overflows_is_one_line_and_writes_nothing(tmp_path, capsys, tiny_model):
    add = edit(SITE, "add", vector=[1e30] * tiny_model.d_model)
    code, err = _generate_under(tmp_path, capsys, json.dumps(add.to_json()))
    spelled = "L1.resid_pre"  # a hook name in the file; errors spell the site one way
    refused(code, err, f"the edit add {spelled} leaves a value at {spelled} that is not finite")


def test_a_noise_seed_past_64_bits_is_refused_before_the_model(clean_run, capsys, no_model):
    argv = ["patch", clean_run, "--noise", "all", "--noise-seed", 10**20]
    code, _, err = run_cli(argv, capsys)
    refused(code, err, "seed must be in [0, 2**64 - 1]")
    assert not (clean_run / "patching").exists()


def test_a_ten_digit_position_is_past_the_run(clean_run, capsys, tiny_model):
    argv = ["patch", clean_run, "--noise", "all", "--sites", "resid", "--metric", "kl"]
    argv += ["--positions", 9999999999]
    code, _, err = run_cli(argv, capsys)
    refused(code, err, "position 9999999999 is past the end of its")
    assert not (clean_run / "patching").exists() or not any((clean_run / "patching").iterdir())


def test_a_planted_checkpoint_is_refused_without_running_it(
    tmp_path, capsys, tiny_model, monkeypatch
):
    from fakes import Planted, tiny_corpus

    tiny_corpus(monkeypatch)
    out, marker = tmp_path / "sae", tmp_path / "PWNED"
    argv = ["train-dictionary", "--hook", "blocks.1.hook_resid_post", "--width", 16, "--k", 2]
    argv += ["--tokens", 200, "--out", out]
    for planted in (pickle.dumps(Planted(marker)), b"\x80\x04garbage"):
        (tmp_path / ".sae.checkpoint").write_bytes(planted)
        code, _, err = run_cli(argv, capsys)
        refused(code, err, ".sae.checkpoint is not a checkpoint interp wrote; remove it")
        assert not marker.exists() and not out.exists()


def test_a_width_that_cannot_fit_is_refused_before_the_model(tmp_path, capsys, no_model):
    argv = ["train-dictionary", "--hook", "blocks.1.hook_resid_post", "--width", 10**12]
    argv += ["--k", 4, "--tokens", "1k", "--out", tmp_path / "sae"]
    code, _, err = run_cli(argv, capsys)
    refused(code, err, "needs about")
    assert not (tmp_path / "sae").exists()


@pytest.mark.parametrize("top", [-1, 0])
def test_features_top_below_1_is_refused_before_the_model(clean_run, capsys, no_model, top):
    argv = ["features", clean_run, "--dictionary", clean_run, "--top", top]
    code, _, err = run_cli(argv, capsys)
    refused(code, err, f"at least 1; got {top}")
    assert not (clean_run / "features.json").exists()


def test_an_unreadable_cached_dictionary_is_named_as_such(tmp_path, capsys, monkeypatch):
    from interp.features import catalog

    root = tmp_path / "dictionaries"
    monkeypatch.setattr(catalog, "dictionaries_root", lambda: root)
    for name, text in (("a", "{not json"), ("b", "[1, 2]")):
        (root / "m" / name).mkdir(parents=True)
        (root / "m" / name / "cfg.json").write_text(text)
    code, out, _ = run_cli(["dictionaries"], capsys)
    assert code == 0 and "None" not in out
    lines = out.splitlines()
    assert len(lines) == 2 and all(": unreadable (" in line for line in lines)
    assert lines[0].startswith(str(root / "m" / "a")) and lines[1].startswith(str(root / "m" / "b"))


def _steer(tmp_path, *extra):
    (tmp_path / "p.txt").write_text("I went to the\n")
    (tmp_path / "w.txt").write_text("wedding\n")
    argv = ["steer", tmp_path / "p.txt", "--concept-words", tmp_path / "w.txt"]
    return [*argv, "--scales", "0,2", "--out", tmp_path / "out", *extra]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--samples", 0], "samples must be an integer >= 1, got 0"),
        (["--controls", -1], "controls must be an integer >= 0, got -1"),
        (["--prompt-baseline", " "], "--prompt-baseline is empty"),
    ],
)
def test_steer_settings_are_refused_before_the_model(tmp_path, capsys, no_model, extra, words):
    from fakes import vector_file

    vector = vector_file(tmp_path / "v.safetensors", torch.ones(32))
    code, _, err = run_cli(_steer(tmp_path, "--vector", vector, *extra), capsys)
    refused(code, err, words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "vector, record, words",
    [
        (torch.ones(32), {"resid_norm": -3.0}, "resid_norm must be a finite number above 0"),
        (torch.zeros(32), {}, "the steering vector is zero"),
    ],
)
def test_a_steering_vector_record_is_checked_before_the_model(
    tmp_path, capsys, no_model, vector, record, words
):
    from fakes import vector_file

    file = vector_file(tmp_path / "v.safetensors", vector, **record)
    code, _, err = run_cli(_steer(tmp_path, "--vector", file), capsys)
    refused(code, err, words)
    assert not (tmp_path / "out").exists()


def test_path_patching_into_layer_0_keys_is_refused_before_the_model(clean_run, capsys, no_model):
    argv = ["path-patch", clean_run, clean_run.parent / "other", "--receivers", "L0.kv0.k"]
    code, _, err = run_cli(argv, capsys)
    refused(code, err, "layer 0's heads have no senders")
    assert not (clean_run / "patching").exists()
