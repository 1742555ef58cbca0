"""`interp circuit` as a user runs it: a clean trace corrupted by noise, every edge's score in
circuit.json equal to the library's, the curve in curve.json, bad input one line and nothing
written."""

from __future__ import annotations

import json

import pytest
import torch

import interp
from interp import cli, metrics
from interp.circuits import circuit

PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture
def tiny_model(monkeypatch, tiny_llama):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    return tiny_llama


def run_cli(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_writes_every_edge_and_the_curve(tiny_model, tmp_path, capsys):
    clean = interp.generate(tiny_model, PROMPT, continuation=[40])
    clean.save(tmp_path / "clean")
    out = tmp_path / "circ"
    spec = "logit-diff:" + ",".join(json.dumps(tiny_model.decode([t])) for t in (40, 41))
    argv = ["circuit", tmp_path / "clean", "--noise", "all", "--noise-seed", 2, "--method", "eap",
            "--metric", spec, "--seeds", 2, "--out", out]  # fmt: skip
    code, printed, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "CPR" in printed and "written to" in printed
    record = json.loads((out / "circuit.json").read_text())
    noise = interp.edit("embed", "noise", seed=2)
    want = circuit(tiny_model, clean, noise, metric=metrics.logit_diff(40, 41), method="eap")
    assert record["circuit"]["edges"] == want.graph.n_edges == len(record["edges"])
    names = sorted(want.edges())
    got = torch.tensor([record["edges"][n] for n in names])
    torch.testing.assert_close(
        got, torch.tensor([want.edges()[n] for n in names]), atol=1e-6, rtol=0
    )
    curve = json.loads((out / "curve.json").read_text())
    assert curve["signed"]["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4)
    assert curve["full"] == pytest.approx(want.clean_metric, abs=1e-5)
    sizes = [n for n in (10, 20, 50, 100, 200) if n <= want.graph.n_edges]  # the default sizes
    assert curve["sizes"]["abs"]["requested"] == sizes


def test_bad_input_is_one_line_and_writes_nothing(tiny_model, tmp_path, capsys):
    interp.generate(tiny_model, PROMPT, max_new_tokens=1).save(tmp_path / "clean")
    for extra, words in (
        (["--steps", 0], "--steps and --seeds must be at least 1"),
        ([], "give one corrupted side"),
        (["--noise", "all", "--kv", "per-head"], "use kv='group'"),
        (["--noise", "all", "--sizes", "100,10"], "expected increasing sizes"),
        (["--noise", "all", "--sizes", "ten"], "expected whole numbers like"),
    ):
        out = tmp_path / "circ"
        code, _, err = run_cli(["circuit", tmp_path / "clean", *extra, "--out", out], capsys)
        assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and words in err, err
        assert not out.exists()
