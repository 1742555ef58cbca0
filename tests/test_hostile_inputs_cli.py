"""Hostile input at the command line (issue 47): one `interp: error:` line, exit 2, nothing
written, and refused before the model loads wherever the model is not needed."""

import json

import pytest

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
    refused(code, err, f"the edit add {SITE} leaves a value at {SITE} that is not finite")


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
