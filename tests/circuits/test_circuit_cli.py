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
from interp.files.store import ACTIVATIONS

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
    argv = [
        "circuit",
        tmp_path / "clean",
        "--noise",
        "all",
        "--noise-seed",
        2,
        "--method",
        "eap",
        "--metric",
        spec,
        "--seeds",
        2,
        "--out",
        out,
    ]
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
        (["--noise", "all", "--sizes", "100,10"], "expected increasing sizes"),
        (["--noise", "all", "--sizes", "ten"], "expected whole numbers like"),
    ):
        out = tmp_path / "circ"
        code, _, err = run_cli(["circuit", tmp_path / "clean", *extra, "--out", out], capsys)
        assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and words in err, err
        assert not out.exists()


def test_evaluate_writes_a_given_circuits_exact_metric(tiny_model, tmp_path, capsys):
    clean = interp.generate(tiny_model, PROMPT, continuation=[40])
    clean.save(tmp_path / "clean")
    spec = "logit-diff:" + ",".join(json.dumps(tiny_model.decode([t])) for t in (40, 41))
    edges = ["embed->L0.mlp", "L0H1->L1H0.q", "L1.mlp->logits", "embed->logits"]
    (tmp_path / "edges.txt").write_text("# a circuit\n" + "\n".join(edges) + "\n\n")
    out = tmp_path / "ev"
    argv = [
        "circuit",
        tmp_path / "clean",
        "--noise",
        "all",
        "--noise-seed",
        2,
        "--metric",
        spec,
        "--evaluate",
        tmp_path / "edges.txt",
        "--out",
        out,
    ]
    code, printed, err = run_cli(argv, capsys)
    assert code == 0, err
    noise = interp.edit("embed", "noise", seed=2)
    want = interp.evaluate_circuit(
        tiny_model, clean, noise, edges, metric=metrics.logit_diff(40, 41)
    )
    record = json.loads((out / "evaluation.json").read_text())["evaluation"]
    assert record["edges"] == edges and record["kept"] == 4
    assert record["per_row"] == pytest.approx(want.per_row.tolist(), abs=1e-6)
    assert record["faithfulness"] == pytest.approx(want.faithfulness, abs=1e-6)
    assert f"faithfulness {want.faithfulness:.3f}" in printed


def test_mibs_graph_json_is_read_as_its_in_graph_edges_in_interps_names(tmp_path):
    from interp.circuits import files

    graph = {
        "cfg": {},
        "nodes": {},
        "edges": {
            "input->a0.h1<q>": {"score": 1.0, "in_graph": True},
            "a0.h1->m0": {"score": 0.5, "in_graph": True},
            "m1->logits": {"score": 0.1, "in_graph": False},
            "a1.h2->a3.h0<v>": {"score": 0.2, "in_graph": True},
        },
    }
    (tmp_path / "g.json").write_text(json.dumps(graph))
    assert files.read_edges(tmp_path / "g.json") == [
        "embed->L0H1.q",
        "L0H1->L0.mlp",
        "L1H2->L3H0.v",
    ]
    (tmp_path / "l.json").write_text(json.dumps(["L0H1->logits"]))
    assert files.read_edges(tmp_path / "l.json") == ["L0H1->logits"]
    graph["edges"]["a0.h1<q>->m0"] = {"score": 0.0, "in_graph": True}
    (tmp_path / "bad.json").write_text(json.dumps(graph))
    with pytest.raises(interp.InterpError, match="is not an edge in MIB's names"):
        files.read_edges(tmp_path / "bad.json")


def test_evaluate_refuses_bad_edge_files_in_one_line(tiny_model, tmp_path, capsys):
    interp.generate(tiny_model, PROMPT, continuation=[40]).save(tmp_path / "clean")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    (tmp_path / "bad.json").write_text('{"edges": [1, 2]')
    (tmp_path / "unknown.txt").write_text("L0H1->L0H2.q\n")
    for name, words in (
        ("missing.txt", "cannot read the edges file"),
        ("empty.txt", "names no edge"),
        ("bad.json", "is not valid JSON"),
        ("unknown.txt", "L0H1 does not feed L0H2.q"),
    ):
        out = tmp_path / "ev"
        argv = [
            "circuit",
            tmp_path / "clean",
            "--noise",
            "all",
            "--evaluate",
            tmp_path / name,
            "--out",
            out,
        ]
        code, _, err = run_cli(argv, capsys)
        assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and words in err, err
        assert not out.exists()


def test_mean_ablation_takes_a_reference_set(tiny_model, tmp_path, capsys):
    clean = interp.generate(tiny_model, PROMPT, continuation=[40])
    clean.save(tmp_path / "clean")
    reference = interp.generate(
        tiny_model, ["A day at the sea", "The sun is up"], seed=1, max_new_tokens=3
    )
    reference.save(tmp_path / "ref")
    spec = "logit-diff:" + ",".join(json.dumps(tiny_model.decode([t])) for t in (40, 41))
    out = tmp_path / "mean"
    argv = [
        "circuit",
        tmp_path / "clean",
        tmp_path / "ref",
        "--ablation",
        "mean",
        "--method",
        "eap",
        "--metric",
        spec,
        "--no-curve",
        "--out",
        out,
    ]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    record = json.loads((out / "circuit.json").read_text())
    assert record["circuit"]["ablation"] == "mean"
    want = circuit(
        tiny_model,
        clean,
        reference,
        metric=metrics.logit_diff(40, 41),
        method="eap",
        ablation="mean",
    )
    assert record["circuit"]["corrupted_metric"] == pytest.approx(want.corrupted_metric, abs=1e-5)
    some = sorted(want.edges())[:50]
    assert [record["edges"][n] for n in some] == pytest.approx(
        [want.edges()[n] for n in some], abs=1e-6
    )
    code, _, err = run_cli(
        [
            "circuit",
            tmp_path / "clean",
            "--noise",
            "all",
            "--ablation",
            "mean",
            "--out",
            tmp_path / "x",
        ],
        capsys,
    )
    assert code == cli.EXIT_BAD_INPUT and "takes a reference set" in err
    assert not (tmp_path / "x").exists()
    # each position's mean needs runs of one length: these two are not
    argv = [
        "circuit",
        tmp_path / "clean",
        tmp_path / "ref",
        "--ablation",
        "mean-positional",
        "--metric",
        spec,
    ]
    code, _, err = run_cli([*argv, "--out", tmp_path / "y"], capsys)
    assert code == cli.EXIT_BAD_INPUT and "averages each position over runs of one length" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "y").exists()


def test_the_command_reads_only_the_tokens_of_both_sides(tiny_model, tmp_path, capsys):
    # circuit discovery runs its own forwards: with the activations files gone (what a set
    # recorded with hooks=[] amounts to on disk, and what loading them would cost in memory)
    # the scores are the library's on the runs in memory
    clean = interp.generate(tiny_model, "The earth revolves around the sun", continuation=[40])
    other = interp.generate(tiny_model, "The sun revolves around the earth", continuation=[40])
    if other.n_positions != clean.n_positions:
        pytest.fail("the corrupted prompt tokenises to another length")
    for name, run in (("clean", clean), ("other", other)):
        run.save(tmp_path / name)
        (tmp_path / name / ACTIVATIONS).unlink()
    spec = "logit-diff:" + ",".join(json.dumps(tiny_model.decode([t])) for t in (40, 41))
    out = tmp_path / "circ"
    argv = ["circuit", tmp_path / "clean", tmp_path / "other", "--method", "eap"]
    code, _, err = run_cli([*argv, "--metric", spec, "--no-curve", "--out", out], capsys)
    assert code == 0, err
    record = json.loads((out / "circuit.json").read_text())
    want = circuit(tiny_model, clean, other, metric=metrics.logit_diff(40, 41), method="eap")
    some = sorted(want.edges())[:50]
    assert [record["edges"][n] for n in some] == pytest.approx(
        [want.edges()[n] for n in some], abs=1e-6
    )


def test_method_exact_writes_each_edges_exact_change(tiny_model, tmp_path, capsys):
    clean = interp.generate(tiny_model, PROMPT, continuation=[40])
    clean.save(tmp_path / "clean")
    spec = "logit-diff:" + ",".join(json.dumps(tiny_model.decode([t])) for t in (40, 41))
    out = tmp_path / "exact"
    argv = ["circuit", tmp_path / "clean", "--noise", "all", "--noise-seed", 2, "--no-curve"]
    code, printed, err = run_cli(
        [*argv, "--method", "exact", "--metric", spec, "--out", out], capsys
    )
    assert code == 0, err
    assert printed.startswith("exact over 1 pair(s)")
    record = json.loads((out / "circuit.json").read_text())
    assert record["circuit"]["method"] == "exact"
    noise = interp.edit("embed", "noise", seed=2)
    want = circuit(tiny_model, clean, noise, metric=metrics.logit_diff(40, 41), method="exact")
    some = sorted(want.edges())[::5]
    assert [record["edges"][n] for n in some] == pytest.approx(
        [want.edges()[n] for n in some], abs=1e-6
    )
