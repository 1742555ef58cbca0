"""A circuit directory's report, read from circuit.json and curve.json alone: the curve figure
plots curve.json's points, the layered drawing draws the top-k edges pruned exactly as a
plain loop over circuit.json's names prunes them, PNG and SVG are written, and a missing or
changed curve.json is one line and exit 2 with nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from matplotlib.collections import LineCollection

import interp
from interp import cli, metrics
from interp.circuits import circuit, files
from interp.report import circuits as report
from interp.report.circuit_reading import load_circuit

PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """A circuit of each tiny layout saved as `interp circuit` saves it (no report yet): the
    grouped-query Llama with kv="group", the multi-head GPT-2 with kv="per-head"."""
    kv = "group" if tiny.name.endswith("llama") else "per-head"
    clean = interp.generate(tiny, PROMPT, continuation=[40])
    noise = interp.edit("embed", "noise", seed=2)
    scores = circuit(tiny, clean, noise, metric=metrics.logit_diff(40, 41), method="eap", kv=kv)
    out = tmp_path_factory.mktemp(f"circuit-{kv}") / "circ"
    files.save(scores, out, scores.curve(seeds=2, sizes=(10, 20, 50)))
    return out


def fresh(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "c")
    return tmp_path / "c"


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_interp_report_writes_the_page_and_each_figure_as_png_and_svg(saved, tmp_path, capsys):
    directory = fresh(saved, tmp_path)
    code, printed, err = run_cli(["report", directory, "--format", "pdf"], capsys)
    assert code == 0, err
    assert "report written to" in printed
    names = {p.name for p in (directory / "figures").iterdir()}
    assert names == {f"{f}.{x}" for f in ("curve", "circuit") for x in ("png", "svg", "pdf")}
    page = (directory / "index.html").read_text()
    record = json.loads((directory / "curve.json").read_text())
    settings = json.loads((directory / "circuit.json").read_text())["circuit"]
    assert f"CPR {record['cpr']:.3f}, CMD {record['cmd']:.3f}" in page
    assert settings["metric"] in page and settings["model"] in page
    assert settings["ablation"] == "patch" and ">ablation<" in page  # what a cut edge carries
    assert page.count("data:image/png;base64,") == 2


def lines_of(fig):
    """Each labelled line of the curve figure: its label -> (x, y) as drawn."""
    ax = fig.axes[0]
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def test_the_curve_figure_plots_the_points_of_curve_json(saved):
    record = json.loads((saved / "curve.json").read_text())
    total = json.loads((saved / "circuit.json").read_text())["circuit"]["edges"]
    fig = report.curve_figure(load_circuit(saved).curve, total)
    drawn = lines_of(fig)
    s, a = record["signed"], record["abs"]
    want = {
        f"signed ranking (CPR {record['cpr']:.3f})": (s["fractions"], s["faithfulness"]),
        f"|score| ranking (CMD {record['cmd']:.3f})": (a["fractions"], a["faithfulness"]),
        "random edges (mean of seeds)": (s["fractions"], s["random"]),
    }
    assert record["sizes"]["signed"]["requested"] == [10, 20, 50]
    bs, ba = record["sizes"]["signed"], record["sizes"]["abs"]
    want["signed, at sizes in edges"] = ([n / total for n in bs["requested"]], bs["faithfulness"])
    want["|score|, at sizes in edges"] = ([n / total for n in ba["requested"]], ba["faithfulness"])
    want["random, at sizes in edges"] = ([n / total for n in bs["requested"]], bs["random"])
    assert drawn.keys() == want.keys()
    for label, (x, y) in want.items():
        np.testing.assert_allclose(drawn[label][0], x, rtol=1e-12, err_msg=label)
        np.testing.assert_allclose(drawn[label][1], y, rtol=1e-12, err_msg=label)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    flat = [line.get_ydata() for line in ax.get_lines() if line.get_label().startswith("_")]
    assert sorted(float(y[0]) for y in flat) == [0.0, 1.0]  # the lines f = 0 and f = 1


def naive_circuit(edges: dict[str, float], k: int) -> set[tuple[str, str]]:
    """The top k names by |score|, then EAP-IG's pruning by hand over the names: a head or MLP
    with no edge in or no edge out goes (embed a source, logits a sink), then every edge with
    a missing end, until nothing changes."""
    ranked = sorted(edges, key=lambda name: -abs(edges[name]))
    kept = {tuple(name.split("->")) for name in ranked[:k]}
    senders = {name.split("->")[0] for name in edges}
    n_heads = len({s.split("H")[1] for s in senders if "H" in s})
    groups = {name.split(".kv")[1].split(".")[0] for name in edges if ".kv" in name}
    per_group = n_heads // max(len(groups), 1)

    def nodes_read(receiver):  # the nodes whose input a reader is
        if ".kv" in receiver:
            layer, group = receiver.split(".kv")[0], int(receiver.split(".kv")[1].split(".")[0])
            return {f"{layer}H{h}" for h in range(group * per_group, (group + 1) * per_group)}
        if receiver.endswith((".q", ".k", ".v")):
            return {receiver[:-2]}
        return {receiver}  # an MLP, or the logits

    while True:
        into = {n for _, r in kept for n in nodes_read(r)} | {"embed"}
        out_of = {s for s, _ in kept} | {"logits"}
        alive = into & out_of
        pruned = {(s, r) for s, r in kept if s in alive and nodes_read(r) & alive}
        if pruned == kept:
            return kept
        kept = pruned


def test_the_drawing_is_the_top_k_edges_pruned(saved):
    edges = json.loads((saved / "circuit.json").read_text())["edges"]
    circuit_read = load_circuit(saved)
    pruned_something = False
    for k in (3, 10, 20, 40, len(edges)):
        want = naive_circuit(edges, k)
        pruned_something |= len(want) < k
        drawn = report.drawn_edges(circuit_read, k)
        assert {(str(s), str(r)) for s, r, _ in drawn} == want, k
        assert [v for *_, v in drawn] == [edges[f"{s}->{r}"] for s, r, _ in drawn]
        fig = report.circuit_figure(circuit_read.graph, drawn, "t")
        (lines,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
        ends = {(tuple(seg[0]), tuple(seg[-1])) for seg in lines.get_segments()}
        graph = circuit_read.graph
        assert ends == {
            (report.node_position(graph, s), report.node_position(graph, r)) for s, r, _ in drawn
        }
    assert pruned_something


def test_a_missing_or_changed_curve_is_one_line_and_exit_2(saved, tmp_path, capsys):
    record = json.loads((saved / "curve.json").read_text())
    changes = {
        "missing": None,
        "not json": "{",
        "cpr changed": json.dumps({**record, "cpr": record["cpr"] + 0.1}),
        "a point cut": json.dumps(
            {**record, "abs": {**record["abs"], "kept": record["abs"]["kept"][:-1]}}
        ),
    }
    for case, text in changes.items():
        directory = fresh(saved, tmp_path / case.replace(" ", "-"))
        if text is None:
            (directory / "curve.json").unlink()
        else:
            (directory / "curve.json").write_text(text)
        code, _, err = run_cli(["report", directory], capsys)
        assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1, (case, err)
        assert "curve.json" in err, (case, err)
        assert not (directory / "index.html").exists() and not (directory / "figures").exists()


def test_an_edge_interp_did_not_write_is_refused(saved, tmp_path, capsys):
    directory = fresh(saved, tmp_path)
    record = json.loads((directory / "circuit.json").read_text())
    record["edges"].pop(next(iter(record["edges"])))
    (directory / "circuit.json").write_text(json.dumps(record))
    code, _, err = run_cli(["report", directory], capsys)
    assert code == cli.EXIT_BAD_INPUT and "not every edge" in err, err
    assert not (directory / "index.html").exists()


def test_interp_circuit_writes_its_report_after_the_circuit(
    monkeypatch, tiny_llama, tmp_path, capsys
):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    interp.generate(tiny_llama, PROMPT, continuation=[40]).save(tmp_path / "clean")
    spec = "logit-diff:" + ",".join(json.dumps(tiny_llama.decode([t])) for t in (40, 41))
    for extra, report_written in (([], True), (["--no-curve"], False)):
        out = tmp_path / f"circ{len(extra)}"
        options = ["--noise", "all", "--method", "eap", "--metric", spec, "--seeds", 1]
        argv = ["circuit", tmp_path / "clean", *options, "--sizes", "none", "--out", out, *extra]
        code, printed, err = run_cli(argv, capsys)
        assert code == 0, err
        assert ("report: file://" in printed) == report_written
        assert (out / "index.html").exists() == report_written
        assert (out / "figures" / "circuit.svg").exists() == report_written
