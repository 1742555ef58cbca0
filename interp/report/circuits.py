"""A circuit directory on a page: circuit.json and curve.json (read by `circuit_reading`)
become index.html and figures/ (PNG and SVG): the settings, CPR and CMD, the top edges, the
faithfulness curve on a log axis with the random control, and a layered drawing of the top
edges by |score|, pruned as the curve prunes. Reads the saved circuit; never runs the model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

from interp.circuits.curve import Faithfulness, prune, ranked, top_n
from interp.circuits.files import Unit
from interp.circuits.graph import Graph
from interp.errors import InvalidSettingError
from interp.models.site import Site
from interp.report import style
from interp.report.circuit_reading import SavedCircuit, load_circuit
from interp.report.formats import FORMATS, parse_formats
from interp.report.simple import Section, render_experiment
from interp.report.style import PAGE, styled
from interp.report.writing import write_report

TOP_K = 50  # the edges the layered drawing starts from, by |score|
TABLE_ROWS = 20
# diverging at zero as the report's heatmaps, less its white middle: every edge shows
_CMAP = ListedColormap(
    colormaps["RdBu_r"](np.r_[np.linspace(0, 0.38, 128), np.linspace(0.62, 1, 128)])
)


def drawn_edges(saved: SavedCircuit, k: int = TOP_K) -> list[tuple[Site, Site, float]]:
    """The layered drawing's edges: the top `k` by |score|, pruned as the curve prunes
    (`curve.prune`), largest |score| first."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidSettingError(f"the drawing's edges must be at least 1, got {k!r}")
    g = saved.graph
    kept = prune(g, top_n(g, saved.scores, k, "abs")).flatten()
    order = [int(i) for i in ranked(g, saved.scores, "abs") if kept[i]]
    return [(*_ends(g, i), float(saved.scores.flatten()[i])) for i in order]


def _ends(graph: Graph, flat: int) -> tuple[Site, Site]:
    w, r = divmod(flat, len(graph.readers))
    return graph.writers[w], graph.readers[r]


def curve_points(
    curve: Faithfulness, unit: Unit = "edges"
) -> dict[str, tuple[list[float], list[float]]]:
    """What the curve figure plots, by its legend's label: (fraction of the edges, or of the
    nodes, f)."""
    s, a = curve.signed, curve.absolute
    out = {
        f"signed ranking (CPR {curve.cpr:.3f})": (s.fractions, s.faithfulness),
        f"|score| ranking (CMD {curve.cmd:.3f})": (a.fractions, a.faithfulness),
        f"random {unit} (mean of seeds)": (s.fractions, s.random),
    }
    if curve.by_size is not None:
        bs, ba = curve.by_size["signed"], curve.by_size["abs"]
        out["signed, at sizes in edges"] = (bs.fractions, bs.faithfulness)
        out["|score|, at sizes in edges"] = (ba.fractions, ba.faithfulness)
        out["random, at sizes in edges"] = (bs.fractions, bs.random)
    return out


_CURVE_STYLE = {
    "signed": {"color": "tab:red", "marker": "o"},
    "|score|": {"color": "tab:blue", "marker": "s"},
    "random": {"color": "0.5", "marker": ".", "linestyle": "--"},
}


@styled
def curve_figure(curve: Faithfulness, total: int, unit: Unit = "edges") -> Figure:
    """f against the fraction of the graph's edges, or nodes (`unit`; log axis, their number
    on top), both rankings and the random control; the points at absolute sizes hollow,
    without lines."""
    fig = Figure(figsize=(PAGE * 0.62, 2.8), layout="constrained")
    ax = fig.add_subplot()
    for value in (0.0, 1.0):
        ax.axhline(value, color="0.2", linewidth=0.6, linestyle=":")
    for label, (x, y) in curve_points(curve, unit).items():
        kw: dict[str, Any] = dict(_CURVE_STYLE[label.split(" ")[0].rstrip(",")])
        if "sizes" in label:
            kw.update(linestyle="none", markerfacecolor="none", markersize=5)
        ax.plot(x, y, label=label, linewidth=1, markersize=kw.pop("markersize", 3.5), **kw)
    ax.set_xscale("log")

    def to_edges(fraction: Any) -> Any:
        return np.asarray(fraction) * total

    def to_fractions(edges: Any) -> Any:
        return np.asarray(edges) / total

    top = ax.secondary_xaxis("top", functions=(to_edges, to_fractions))
    top.set_xlabel(f"{unit} (of {total:,})")
    pruned = " (before pruning)" if unit == "edges" else ""
    ax.set_xlabel(f"fraction of the {unit} kept{pruned}")
    ax.set_ylabel("faithfulness f")
    ax.set_title(f"CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}")
    ax.legend(fontsize=6, loc="best")
    return fig


def node_position(graph: Graph, site: Site) -> tuple[float, float]:
    """Where a node is drawn: layer l's heads on row l + 1 (x = head), its MLP in a column of
    its own half a row above, the embedding below and the logits above them all; a head's q
    (and per-head k, v) at the head; a KV group's k and v as two markers below its heads."""
    middle = (graph.n_heads - 1) / 2
    if site.kind == "embed":
        return middle, 0.0
    if site.kind == "logits":
        return middle, graph.n_layers + 1.0
    if site.kind == "mlp":
        return float(graph.n_heads), site.layer + 1.5
    if site.kind == "kv_input":
        per = graph.n_heads // graph.n_kv
        x = site.index * per + (per - 1) / 2 + (-0.18 if site.input == "k" else 0.18)
        return x, site.layer + 0.75
    return float(site.index), site.layer + 1.0


def _arc(a: tuple[float, float], b: tuple[float, float], middle: float) -> np.ndarray:
    """A quadratic curve from a to b bowed sideways towards the middle, so that edges along
    one line (the embedding, the MLPs, the logits) stay apart and pass beside the nodes."""
    (x0, y0), (x1, y1) = a, b
    bow = min(0.1 * (abs(x1 - x0) + abs(y1 - y0)), 1.5) * (-1 if (x0 + x1) / 2 > middle else 1)
    control = np.array([(x0 + x1) / 2 + bow, (y0 + y1) / 2])
    t = np.linspace(0, 1, 24)[:, None]
    return (1 - t) ** 2 * np.array(a) + 2 * t * (1 - t) * control + t**2 * np.array(b)


@styled
def circuit_figure(graph: Graph, edges: Sequence[tuple[Site, Site, float]], title: str) -> Figure:
    """The chosen edges over the model's layers: colour by sign (red: corrupting the edge
    raises the metric, blue: lowers it), width by |score|, dashed into a key, dotted into a
    value."""
    n, mid = graph.n_layers, graph.n_heads / 2
    fig = Figure(figsize=(PAGE * 0.75, 1.4 + 0.24 * (n + 2)), layout="constrained")
    ax = fig.add_subplot()
    nodes = [*graph.writers, *(r for r in graph.readers if r.kind == "kv_input")]
    used = {s for sender, receiver, _ in edges for s in (sender, receiver)}
    for shown, size, colour, z in (
        (nodes, 8, "0.8", 1),
        ([s for s in nodes if s in used], 14, "0.15", 3),
    ):
        xy = np.array([node_position(graph, s) for s in shown]).reshape(-1, 2)
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color=colour, zorder=z)
    for head in (s for s in graph.writers if s in used and s.kind == "head"):
        x, y = node_position(graph, head)
        ax.annotate(str(head), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=5.5)
    order = sorted(edges, key=lambda e: abs(e[2]))  # the strongest drawn last, on top
    bound = max((abs(v) for *_, v in edges), default=0.0) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    lines = LineCollection(
        [_arc(node_position(graph, s), node_position(graph, r), mid) for s, r, _ in order],
        colors=[_CMAP(norm(v)) for *_, v in order],
        linewidths=[0.4 + 2.6 * abs(v) / bound for *_, v in order],
        linestyles=[{"k": "--", "v": ":"}.get(r.input, "-") for _, r, _ in order],
        zorder=2,
    )
    ax.add_collection(lines)
    ax.set_xlim(-0.8, graph.n_heads + 0.8)
    ax.set_ylim(-0.5, n + 1.5)
    ax.set_xticks(range(graph.n_heads + 1), [*(f"H{h}" for h in range(graph.n_heads)), "MLP"])
    ax.set_yticks(range(n + 2), ["embed", *(f"L{i}" for i in range(n)), "logits"])
    ax.set_xlabel("head (KV groups' k, v: below their heads); MLP (half a row up)")
    ax.set_title(title)
    scale = ScalarMappable(norm=norm, cmap=_CMAP)
    fig.colorbar(scale, ax=ax, label="edge score", shrink=0.6)
    return fig


def build_circuit_report(
    directory: str | os.PathLike[str],
    title: str | None = None,
    formats: str | Sequence[str] = "png",
    top: int = TOP_K,
) -> Path:
    """Write DIR/index.html and DIR/figures/ (each figure as PNG, SVG and each of `formats`,
    "pdf" or a list) of a saved circuit; `top`: the edges the layered drawing starts from."""
    chosen = parse_formats(formats)
    path = Path(directory)
    saved = load_circuit(path)
    c, graph = saved.settings, saved.graph
    edges = drawn_edges(saved, top)
    name = f"{c['method']}, kv {c['kv']}, {c['metric']}"
    figs: style.Figures = {
        "curve.png": curve_figure(saved.curve, graph.n_edges),
        "circuit.png": circuit_figure(
            graph, edges, f"The top {top} edges by |score|, pruned: {len(edges)} kept"
        ),
    }
    files = style.render(figs, tuple(f for f in FORMATS if f in ("png", "svg", *chosen)))
    html = render_experiment(
        title or f"interp: circuit ({name})",
        f"{c['model']}; {c['rows']} pair(s) of runs; {graph.n_edges:,} edges; CPR "
        f"{saved.curve.cpr:.3f}, CMD {saved.curve.cmd:.3f}.",
        circuit_sections(saved, edges, top),
        style.pngs(files),
    )
    return write_report(path, html, files)


def settings_table(
    c: dict[str, Any], curve: Faithfulness, unit: Unit, total: int
) -> list[list[object]]:
    """The settings a circuit was found with and its figures, as a table (a node circuit's
    settings have no kv)."""
    table: list[list[object]] = [["setting", "value"]]
    table += [[k, c[k]] for k in ("model", "method", "steps", "kv", "metric") if k in c]
    if isinstance(c.get("ablation"), str):  # what an excluded edge carries (files before: patch)
        table.append(["ablation", c["ablation"]])
    table += [
        ["pairs (rows)", c["rows"]],
        ["clean metric", f"{c['clean_metric']:.4f}"],
        ["corrupted metric", f"{c['corrupted_metric']:.4f}"],
        [unit, f"{total:,}"],
        ["CPR", f"{curve.cpr:.4f}"],
        ["CMD", f"{curve.cmd:.4f}"],
    ]
    if isinstance(c.get("data_sha256"), str):
        table.append(["data sha256", c["data_sha256"]])
    return table


def circuit_sections(
    saved: SavedCircuit, edges: Sequence[tuple[Site, Site, float]], top: int
) -> list[Section]:
    c, curve, graph = saved.settings, saved.curve, saved.graph
    settings = settings_table(c, curve, "edges", graph.n_edges)
    points: list[list[object]] = [
        ["fraction", "edges", "kept (signed)", "f (signed)", "kept (|score|)", "f (|score|)"]
    ]
    s, a = curve.signed, curve.absolute
    for i, fraction in enumerate(s.fractions):
        f_s, f_a = s.faithfulness[i], a.faithfulness[i]
        points.append([fraction, s.requested[i], s.kept[i], f"{f_s:.3f}", a.kept[i], f"{f_a:.3f}"])
    order = ranked(graph, saved.scores, "abs")[:TABLE_ROWS]
    table: list[list[object]] = [["sender", "receiver", "score"]]
    for i in order.tolist():
        sender, receiver = _ends(graph, i)
        table.append([str(sender), str(receiver), f"{float(saved.scores.flatten()[i]):+.5f}"])
    return [
        Section("Settings", [], settings),
        Section(
            "Faithfulness",
            [
                "f = (m(C) - m(empty)) / (m(full) - m(empty)) on the dataset mean, each circuit "
                "evaluated exactly: the top edges of each ranking, pruned (a node cut off "
                "from the embedding or the logits goes). Signed: the edges whose corruption "
                "lowers the metric most first; CPR is the area under its f over the fractions "
                "(linear axis, as MIB). |score|: CMD is the area under |1 - f|. The random "
                f"control keeps random edges at the same sizes. m(full) {curve.full:.4f}, "
                f"m(empty) {curve.empty:.4f}."
            ],
            points,
            ["curve.png"],
        ),
        Section(
            "The circuit",
            [
                f"The top {top} edges by |score|, pruned as the curve prunes: {len(edges)} "
                "kept. Red: the estimate says corrupting the edge alone raises the metric; "
                "blue: lowers it. Width: |score|. Dashed edges end at a key input, dotted ones "
                "at a value input; the KV groups' inputs are the pairs of markers below their "
                "heads (kv group), or the heads themselves (kv per-head)."
            ],
            None,
            ["circuit.png"],
        ),
        Section(f"The top {TABLE_ROWS} edges by |score|", [], table),
    ]
