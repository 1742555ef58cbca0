"""`interp circuit --nodes` as a Gemma 3 user runs it: nodes.json holds the scores
`interp.node_scores` gives in Python on the same pairs, curve.json the points of
`NodeScores.curve`, `interp report DIR` writes the page again from the JSON alone, and bad
input (options nodes do not take, edges on Gemma, a changed file) is one line and exit 2 with
nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import interp
from interp import cli, metrics
from interp.report import circuits as report
from interp.report.circuit_reading import load_nodes
from interp.report.node_circuits import head_scores

PROMPT = "The Eiffel Tower is in the city of"
METRIC = metrics.logit_diff(40, 41)


def use(monkeypatch, model):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: model)
    return model


def run_cli(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def spec(model):
    return "logit-diff:" + ",".join(json.dumps(model.decode([t])) for t in (40, 41))


def saved_clean(model, tmp_path):
    clean = interp.generate(model, PROMPT, continuation=[40])
    clean.save(tmp_path / "clean")
    return clean


@pytest.mark.parametrize(
    "kind, method", [("tiny_gemma", "eap-ig"), ("tiny_llama", "eap")], ids=["gemma", "llama"]
)
def test_nodes_json_and_the_curve_are_the_librarys(
    kind, method, request, monkeypatch, tmp_path, capsys
):
    model = use(monkeypatch, request.getfixturevalue(kind))
    clean = saved_clean(model, tmp_path)
    options = ["--noise", "all", "--noise-seed", 2, "--metric", spec(model), "--seeds", 2]
    argv = ["circuit", tmp_path / "clean", "--nodes", "--method", method, "--steps", 2, *options]
    code, printed, err = run_cli(argv, capsys)
    assert code == 0, err
    out = tmp_path / "clean" / "circuits" / f"nodes-{method}"  # the default directory
    assert "CPR" in printed and f"written to {out}" in printed and "report: file://" in printed
    # the reference: the library in Python on the same pairs, the noise edit the options name
    noise = interp.edit("embed", "noise", seed=2)
    want = interp.node_scores(model, clean, noise, metric=METRIC, method=method, steps=2)
    record = json.loads((out / "nodes.json").read_text())
    assert record["format"] == "interp-node-circuit" and record["versions"]
    settings = record["circuit"]
    assert settings["model"] == model.name and settings["method"] == method
    assert (settings["steps"], settings["rows"]) == (want.steps, 1)
    assert settings["nodes"] == len(want.nodes) == 1 + model.n_layers * (model.n_heads + 1)
    assert settings["clean_metric"] == pytest.approx(want.clean_metric, abs=1e-5)
    assert settings["corrupted_metric"] == pytest.approx(want.corrupted_metric, abs=1e-5)
    assert len(settings["data_sha256"]) == 64
    assert list(record["nodes"]) == [str(n) for n in want.nodes]
    assert list(record["nodes"].values()) == pytest.approx(want.scores.tolist(), abs=1e-6)
    assert {"L0H1", "L0.mlp", "embed"} <= record["nodes"].keys()
    curve = json.loads((out / "curve.json").read_text())
    expected = want.curve(seeds=2)
    assert curve["unit"] == "nodes" and "sizes" not in curve
    for key, got in (("signed", expected.signed), ("abs", expected.absolute)):
        assert curve[key]["requested"] == got.requested
        assert curve[key]["faithfulness"] == pytest.approx(got.faithfulness, abs=1e-5)
        assert curve[key]["random"] == pytest.approx(got.random, abs=1e-5)
    assert curve["cpr"] == pytest.approx(expected.cpr, abs=1e-5)
    assert curve["cmd"] == pytest.approx(expected.cmd, abs=1e-5)
    assert (out / "figures" / "curve.svg").exists() and (out / "figures" / "heads.png").exists()


@pytest.fixture
def node_dir(tiny_gemma, monkeypatch, tmp_path, capsys):
    """A node circuit of the tiny Gemma as `interp circuit --nodes` writes it."""
    model = use(monkeypatch, tiny_gemma)
    saved_clean(model, tmp_path)
    out = tmp_path / "nodes"
    options = ["--noise", "all", "--method", "eap", "--metric", spec(model), "--seeds", 1]
    code, _, err = run_cli(
        ["circuit", tmp_path / "clean", "--nodes", *options, "--out", out], capsys
    )
    assert code == 0, err
    return out


def test_interp_report_rebuilds_the_page_from_the_json_alone(node_dir, monkeypatch, capsys):
    def no_model(*a, **k):
        raise AssertionError("the report loaded a model")

    monkeypatch.setattr(interp.models, "load_model", no_model)
    (node_dir / "index.html").unlink()
    shutil.rmtree(node_dir / "figures")
    code, printed, err = run_cli(["report", node_dir, "--format", "pdf"], capsys)
    assert code == 0 and "report written to" in printed, err
    names = {p.name for p in (node_dir / "figures").iterdir()}
    assert names == {f"{f}.{x}" for f in ("curve", "heads") for x in ("png", "svg", "pdf")}
    page = (node_dir / "index.html").read_text()
    record = json.loads((node_dir / "curve.json").read_text())
    nodes = json.loads((node_dir / "nodes.json").read_text())
    top = max(nodes["nodes"], key=lambda name: abs(nodes["nodes"][name]))
    assert f"CPR {record['cpr']:.3f}, CMD {record['cmd']:.3f}" in page
    assert nodes["circuit"]["model"] in page and f">{top}<" in page
    assert page.count("data:image/png;base64,") == 2
    # the curve figure plots curve.json's points, in nodes
    fig = report.curve_figure(load_nodes(node_dir).curve, nodes["circuit"]["nodes"], "nodes")
    drawn = {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in fig.axes[0].get_lines()
        if not line.get_label().startswith("_")
    }
    s, a = record["signed"], record["abs"]
    want = {
        f"signed ranking (CPR {record['cpr']:.3f})": (s["fractions"], s["faithfulness"]),
        f"|score| ranking (CMD {record['cmd']:.3f})": (a["fractions"], a["faithfulness"]),
        "random nodes (mean of seeds)": (s["fractions"], s["random"]),
    }
    assert drawn.keys() == want.keys()
    for label, (x, y) in want.items():
        np.testing.assert_allclose(drawn[label], (x, y), rtol=1e-12, err_msg=label)
    assert fig.axes[0].get_xlabel() == "fraction of the nodes kept"
    # the heatmap's cells are the heads' scores, found by name
    heads = head_scores(load_nodes(node_dir))
    layers, n_heads = heads.shape
    by_name = [[nodes["nodes"][f"L{i}H{h}"] for h in range(n_heads)] for i in range(layers)]
    np.testing.assert_allclose(heads, by_name, rtol=1e-12)


def test_a_changed_file_is_refused_by_the_report(node_dir, tmp_path, capsys):
    nodes = json.loads((node_dir / "nodes.json").read_text())
    curve = json.loads((node_dir / "curve.json").read_text())
    cut = {**nodes, "nodes": dict(list(nodes["nodes"].items())[1:])}
    changes = {
        "a node missing": ("nodes.json", cut, "not every node of one model"),
        "an edge's curve": ("curve.json", {**curve, "unit": "edges"}, "not a curve in nodes"),
        "cpr changed": ("curve.json", {**curve, "cpr": curve["cpr"] + 0.1}, "cpr"),
        "no curve": ("curve.json", None, "holds no curve.json"),
    }
    for case, (name, record, words) in changes.items():
        directory = tmp_path / case.replace(" ", "-")
        shutil.copytree(node_dir, directory)
        shutil.rmtree(directory / "figures")
        (directory / "index.html").unlink()
        if record is None:
            (directory / name).unlink()
        else:
            (directory / name).write_text(json.dumps(record))
        code, _, err = run_cli(["report", directory], capsys)
        assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and words in err, (case, err)
        assert not (directory / "index.html").exists() and not (directory / "figures").exists()


def test_bad_input_is_one_line_and_writes_nothing(tiny_gemma, monkeypatch, tmp_path, capsys):
    model = use(monkeypatch, tiny_gemma)
    saved_clean(model, tmp_path)
    interp.generate(model, ["A day at the sea"], max_new_tokens=2).save(tmp_path / "ref")
    clean, noise = tmp_path / "clean", ["--noise", "all", "--metric", spec(model)]
    (tmp_path / "edges.txt").write_text("embed->logits\n")
    for argv, words in (
        ([*noise, "--nodes", "--kv", "per-head"], "--nodes does not take --kv per-head"),
        ([*noise, "--nodes", "--method", "exact"], "--nodes does not take --method exact"),
        ([*noise, "--nodes", "--evaluate", tmp_path / "edges.txt"], "does not take --evaluate"),
        ([tmp_path / "ref", "--nodes", "--ablation", "mean"], "does not take --ablation"),
        ([tmp_path / "ref", "--nodes", "--ablation", "mean-positional"], "take --ablation"),
        ([*noise, "--nodes", "--sizes", "10,20"], "--nodes does not take --sizes"),
        ([*noise, "--nodes", "--ray"], "--nodes does not take --ray"),
        ([*noise, "--nodes", "--steps", 0], "--steps and --seeds must be at least 1"),
        # Gemma's edges are refused, and the line names the mode that works
        ([*noise, "--method", "eap"], "score its nodes instead with --nodes"),
        ([*noise, "--evaluate", tmp_path / "edges.txt"], "score its nodes instead with --nodes"),
    ):
        out = tmp_path / "out"
        code, _, err = run_cli(["circuit", clean, *argv, "--out", out], capsys)
        assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and words in err, (argv, err)
        assert not out.exists() and not (clean / "circuits").exists()


def test_no_curve_writes_the_scores_alone_and_never_over_an_edge_circuit(
    tiny_gemma, monkeypatch, tmp_path, capsys
):
    model = use(monkeypatch, tiny_gemma)
    saved_clean(model, tmp_path)
    out = tmp_path / "nodes"
    argv = ["circuit", tmp_path / "clean", "--nodes", "--noise", "all", "--metric", spec(model)]
    code, printed, err = run_cli([*argv, "--method", "eap", "--no-curve", "--out", out], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"nodes.json"} and "report" not in printed
    code, _, err = run_cli(["report", out], capsys)
    assert code == cli.EXIT_BAD_INPUT and "holds no curve.json" in err
    edges = tmp_path / "edges"
    edges.mkdir()
    (edges / "circuit.json").write_text(json.dumps({"format": "interp-circuit"}))
    code, _, err = run_cli([*argv, "--no-curve", "--out", edges], capsys)
    assert code == cli.EXIT_BAD_INPUT and "is not an interp node circuit" in err, err
    assert {p.name for p in edges.iterdir()} == {"circuit.json"}
