"""A saved circuit directory read back for its report: circuit.json (the settings and every
edge's score, the graph rebuilt from the edges' names), or a node circuit's nodes.json (every
node's score), and curve.json, each checked as it is read, so that a changed or cut file is
refused in one line and never drawn."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.circuits.curve import Curve, Faithfulness
from interp.circuits.files import (
    CIRCUIT_FILE,
    CIRCUIT_FORMAT,
    CIRCUIT_VERSION,
    CURVE_FILE,
    NODES_FILE,
    NODES_FORMAT,
    Unit,
)
from interp.circuits.graph import KVS, Graph
from interp.errors import InvalidSettingError, TraceFormatError
from interp.files import store
from interp.models import site as site_values
from interp.models.site import Site

_NUMBERS = ("clean_metric", "corrupted_metric")
_CURVE_NUMBERS = ("full", "empty", "cpr", "cmd")
RANKINGS = ("signed", "abs")
_SETTINGS = {"model": str, "method": str, "steps": int, "metric": str, "rows": int}


@dataclass(frozen=True)
class SavedCircuit:
    """A circuit directory as read: its settings, its graph (rebuilt from the edges' names),
    every edge's score as a `[writer, reader]` tensor, and its faithfulness curves."""

    settings: dict[str, Any]
    graph: Graph
    scores: Tensor
    curve: Faithfulness


@dataclass(frozen=True)
class SavedNodes:
    """A node circuit's directory as read: its settings, its nodes in the model's order (the
    embedding, then each layer's heads and its MLP), their scores and the curve in nodes."""

    settings: dict[str, Any]
    nodes: list[Site]
    scores: Tensor
    n_layers: int
    n_heads: int
    curve: Faithfulness


def is_circuit_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / CIRCUIT_FILE).is_file() and not (Path(path) / store.SUMMARY).exists()


def is_nodes_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / NODES_FILE).is_file() and not (Path(path) / store.SUMMARY).exists()


def load_circuit(directory: str | os.PathLike[str]) -> SavedCircuit:
    """circuit.json and curve.json of `directory`, refused in one line where either is
    missing, of another format, or inconsistent (an edge the graph lacks, CPR or CMD that are
    not the areas of the points beside them)."""
    path = Path(directory)
    settings, edges = _record(path / CIRCUIT_FILE, CIRCUIT_FORMAT, "edges")
    if settings.get("kv") not in KVS:
        raise TraceFormatError(f"{path / CIRCUIT_FILE}: circuit.kv is not interp's")
    graph, scores = _edges(edges, settings["kv"], path / CIRCUIT_FILE)
    return SavedCircuit(settings, graph, scores, load_curve(path, "edges"))


def load_nodes(directory: str | os.PathLike[str]) -> SavedNodes:
    """nodes.json and curve.json of `directory`, refused in one line where either is missing,
    of another format, or inconsistent (not every node of one model, a curve in edges)."""
    path = Path(directory)
    where = path / NODES_FILE
    settings, named = _record(where, NODES_FORMAT, "nodes", ("nodes",))
    try:
        sites = {site_values.parse(name): value for name, value in named.items()}
        layered = [s for s in sites if s.kind != "embed"]
        n_layers = max(s.layer for s in layered) + 1
        n_heads = max(s.index for s in layered if s.kind == "head") + 1
    except (InvalidSettingError, TypeError, ValueError) as exc:
        raise TraceFormatError(f"{where}: a node interp's graph does not have ({exc})") from None
    nodes = [site_values.embed()]
    for layer in range(n_layers):
        nodes += [site_values.head(layer, h) for h in range(n_heads)]
        nodes.append(site_values.of_layer("mlp", layer))
    if set(sites) != set(nodes) or not all(map(_finite, sites.values())):
        raise TraceFormatError(f"{where}: the nodes are not every node of one model's graph")
    scores = torch.tensor([float(sites[n]) for n in nodes], dtype=torch.float64)
    return SavedNodes(settings, nodes, scores, n_layers, n_heads, load_curve(path, "nodes"))


def _record(
    where: Path, kind: str, scored: str, counts: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A circuit record's checked settings and its scores by name (`scored`: edges, nodes)."""
    record = store.read_json(where)
    if not isinstance(record, dict) or record.get("format") != kind:
        raise TraceFormatError(f"{where} is not an interp circuit (no {kind!r} format)")
    if record.get("format_version") != CIRCUIT_VERSION:
        raise TraceFormatError(f"{where} is of format version {record.get('format_version')!r}")
    settings, scores = record.get("circuit"), record.get(scored)
    if not isinstance(settings, dict) or not isinstance(scores, dict) or not scores:
        raise TraceFormatError(f"{where} lacks its settings or its {scored}")
    for key, kind_of in {**_SETTINGS, **dict.fromkeys(counts, int)}.items():
        if not isinstance(settings.get(key), kind_of) or isinstance(settings.get(key), bool):
            raise TraceFormatError(f"{where}: circuit.{key} is not a {kind_of.__name__}")
    if not all(_finite(settings.get(k)) for k in _NUMBERS):
        raise TraceFormatError(f"{where}: the metrics are not interp's")
    return settings, scores


def load_curve(directory: str | os.PathLike[str], unit: Unit) -> Faithfulness:
    """curve.json of `directory`, its points in `unit` (edges; nodes), checked."""
    path = Path(directory)
    if not (path / CURVE_FILE).is_file():
        raise TraceFormatError(
            f"{path} holds no {CURVE_FILE} (written with --no-curve?): the report draws the curve"
        )
    record = store.read_json(path / CURVE_FILE)
    stored = record.get("unit", "edges") if isinstance(record, dict) else None  # before: edges
    if stored != unit:
        raise TraceFormatError(f"{path / CURVE_FILE} is not a curve in {unit}")
    return _curve(record, path)


def _edges(edges: dict[str, Any], kv: str, where: Path) -> tuple[Graph, Tensor]:
    """The graph whose real edges are exactly `edges`' names, and their scores."""
    sites: dict[str, Site] = {}
    pairs: list[tuple[Site, Site, float]] = []
    try:
        for name, value in edges.items():
            sender, arrow, receiver = name.partition("->")
            if not arrow or not _finite(value):
                raise InvalidSettingError(f"{name!r:.60}: {value!r:.20}")
            for part in (sender, receiver):
                sites.setdefault(part, site_values.parse(part))
            pairs.append((sites[sender], sites[receiver], float(value)))
        layered = [s for s in sites.values() if s.kind not in ("embed", "logits")]
        heads = [s.index + 1 for s in layered if s.kind in ("head", "head_input")]
        groups = [s.index + 1 for s in layered if s.kind == "kv_input"]
        n_layers = max(s.layer for s in layered) + 1
        graph = Graph(n_layers, max(heads), max(groups, default=1), kv)  # type: ignore[arg-type]
        at_w = {s: i for i, s in enumerate(graph.writers)}
        at_r = {s: i for i, s in enumerate(graph.readers)}
        scores = torch.zeros(graph.mask.shape, dtype=torch.float64)  # as written
        seen = torch.zeros_like(graph.mask)
        for writer, reader, value in pairs:
            w, r = at_w[writer], at_r[reader]
            scores[w, r], seen[w, r] = value, True
    except (InvalidSettingError, KeyError, ValueError) as exc:
        raise TraceFormatError(f"{where}: an edge interp's graph does not have ({exc})") from None
    if not torch.equal(seen, graph.mask):
        raise TraceFormatError(f"{where}: the edges are not every edge of one model's graph")
    return graph, scores


def _curve(record: Any, path: Path) -> Faithfulness:
    where = path / CURVE_FILE
    if not isinstance(record, dict) or not all(_finite(record.get(k)) for k in _CURVE_NUMBERS):
        raise TraceFormatError(f"{where} lacks full, empty, cpr or cmd")
    sizes = record.get("sizes")
    if sizes is not None and not isinstance(sizes, dict):
        raise TraceFormatError(f"{where}: sizes is not a pair of curves")
    signed, absolute = _one_curve(record.get("signed"), where), _one_curve(record.get("abs"), where)
    by_size = None if sizes is None else {r: _one_curve(sizes.get(r), where) for r in RANKINGS}
    out = Faithfulness(signed, absolute, record["full"], record["empty"], by_size)  # type: ignore[arg-type]
    for name, stored, area in (("cpr", record["cpr"], out.cpr), ("cmd", record["cmd"], out.cmd)):
        if abs(stored - area) > 1e-6:
            raise TraceFormatError(
                f"{where}: {name} {stored:.6g} is not its points' area {area:.6g}"
            )
    return out


def _one_curve(record: Any, where: Path) -> Curve:
    names = [f.name for f in fields(Curve)]
    if not isinstance(record, dict) or sorted(record) != sorted(names):
        raise TraceFormatError(f"{where}: a curve is not {', '.join(names)}")
    lists = [record[n] for n in names[1:]]
    n = len(lists[0]) if isinstance(lists[0], list) else 0
    ok = record["ranking"] in RANKINGS and n > 0
    ok = ok and all(isinstance(v, list) and len(v) == n and all(map(_finite, v)) for v in lists)
    ok = ok and all(0 < f <= 1 for f in record["fractions"])
    ok = ok and all(type(v) is int for v in [*record["requested"], *record["kept"]])
    if not ok or record["fractions"] != sorted(record["fractions"]):
        raise TraceFormatError(f"{where}: a {record.get('ranking')!r:.20} curve is not interp's")
    return Curve(**record)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
