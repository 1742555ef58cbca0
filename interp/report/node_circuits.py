"""A node circuit's directory on a page: nodes.json and curve.json (read by `circuit_reading`)
become index.html and figures/ (PNG and SVG): the settings, CPR and CMD, each point of both
node curves, the curve on a log axis with the random control (the edge curve's figure, in
nodes), every head's score as a heatmap and the top nodes. Reads the saved scores; never runs
the model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from interp.report import style
from interp.report.circuit_reading import SavedNodes, load_nodes
from interp.report.circuits import TABLE_ROWS, curve_figure, settings_table
from interp.report.figures import head_heatmap
from interp.report.formats import FORMATS, parse_formats
from interp.report.simple import Section, render_experiment
from interp.report.writing import write_report


def head_scores(saved: SavedNodes) -> np.ndarray:
    """Every head's score as `[layer, head]` (the nodes between the embedding and each MLP)."""
    per_layer = saved.scores[1:].reshape(saved.n_layers, saved.n_heads + 1)
    return per_layer[:, : saved.n_heads].numpy()


def build_node_report(
    directory: str | os.PathLike[str],
    title: str | None = None,
    formats: str | Sequence[str] = "png",
) -> Path:
    """Write DIR/index.html and DIR/figures/ (each figure as PNG, SVG and each of `formats`)
    of a saved node circuit."""
    chosen = parse_formats(formats)
    path = Path(directory)
    saved = load_nodes(path)
    c, total = saved.settings, len(saved.nodes)
    figs: style.Figures = {
        "curve.png": curve_figure(saved.curve, total, "nodes"),
        "heads.png": head_heatmap(
            head_scores(saved),
            f"Each head's node score ({c['method']}, {c['metric']})",
            "node score",
            diverging=True,
        ),
    }
    files = style.render(figs, tuple(f for f in FORMATS if f in ("png", "svg", *chosen)))
    html = render_experiment(
        title or f"interp: node circuit ({c['method']}, {c['metric']})",
        f"{c['model']}; {c['rows']} pair(s) of runs; {total:,} nodes; CPR "
        f"{saved.curve.cpr:.3f}, CMD {saved.curve.cmd:.3f}.",
        node_sections(saved),
        style.pngs(files),
    )
    return write_report(path, html, files)


def node_sections(saved: SavedNodes) -> list[Section]:
    curve, total = saved.curve, len(saved.nodes)
    points: list[list[object]] = [["fraction", "nodes", "f (signed)", "f (|score|)", "f (random)"]]
    s, a = curve.signed, curve.absolute
    for i, fraction in enumerate(s.fractions):
        row = (s.faithfulness[i], a.faithfulness[i], s.random[i])
        points.append([fraction, s.requested[i], *(f"{f:.3f}" for f in row)])
    order = saved.scores.abs().argsort(descending=True, stable=True)[:TABLE_ROWS]
    table: list[list[object]] = [["node", "score"]]
    table += [[str(saved.nodes[i]), f"{float(saved.scores[i]):+.5f}"] for i in order.tolist()]
    return [
        Section("Settings", [], settings_table(saved.settings, curve, "nodes", total)),
        Section(
            "Faithfulness",
            [
                "f = (m(C) - m(empty)) / (m(full) - m(empty)) on the dataset mean, each circuit "
                "evaluated exactly: the top nodes of each ranking keep the clean run's output, "
                "every other node (the embedding, a head's z, an MLP's output) carries the "
                "corrupted run's. Signed: the nodes whose corruption lowers the metric most "
                "first; CPR is the area under its f over the fractions (linear axis, as MIB). "
                "|score|: CMD is the area under |1 - f|. The random control keeps random nodes "
                f"at the same sizes. m(full) {curve.full:.4f}, m(empty) {curve.empty:.4f}."
            ],
            points,
            ["curve.png"],
        ),
        Section(
            "Heads",
            [
                "Each head's score: the estimated change in the metric when its output alone "
                "carries the corrupted run's value (red: raises the metric, blue: lowers it)."
            ],
            None,
            ["heads.png"],
        ),
        Section(f"The top {TABLE_ROWS} nodes by |score|", [], table),
    ]
