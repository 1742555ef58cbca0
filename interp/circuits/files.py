"""A circuit directory: `circuit.json` (the settings, the model, the data's hash, library
versions and every real edge's score, "SENDER->RECEIVER"), `curve.json` (both rankings'
points, CPR, CMD, the random control, m(full) and m(empty), and its unit) and, with
`kv="per-head"`, `importances.json` in EAP-IG's Graph JSON with MIB's node names
(`Graph.from_json` loads it), written atomically. A node circuit's directory holds
`nodes.json` (the same settings, every node's score by name: "embed", "L5H1", "L5.mlp") and
its `curve.json` in nodes."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from interp.circuits.curve import Faithfulness
from interp.circuits.evaluate import Evaluated
from interp.circuits.nodes import NodeScores
from interp.circuits.scores import CircuitScores
from interp.errors import InvalidSettingError
from interp.files import atomic, store
from interp.interventions.patching_runs import Runs
from interp.models.provenance import library_versions
from interp.models.site import Site

CIRCUIT_FORMAT = "interp-circuit"
CIRCUIT_VERSION = 1
CIRCUIT_FILE = "circuit.json"
CURVE_FILE = "curve.json"
IMPORTANCES_FILE = "importances.json"
EVALUATION_FILE = "evaluation.json"
ENTRIES = frozenset(
    {CIRCUIT_FILE, CURVE_FILE, IMPORTANCES_FILE, EVALUATION_FILE, "index.html", "figures"}
)
Unit = Literal["edges", "nodes"]  # what a circuit is made of, and its curve counts
NODES_FORMAT = "interp-node-circuit"
NODES_FILE = "nodes.json"
NODE_ENTRIES = frozenset({NODES_FILE, CURVE_FILE, "index.html", "figures"})
_MIB_NODE = re.compile(r"^(?:input|logits|a(\d+)\.h(\d+)(?:<([qkv])>)?|m(\d+))$")


# what each kind of circuit directory holds: its entries, its format and record, its name
_KINDS = {
    "edges": (ENTRIES, CIRCUIT_FORMAT, CIRCUIT_FILE, "an interp circuit"),
    "nodes": (NODE_ENTRIES, NODES_FORMAT, NODES_FILE, "an interp node circuit"),
}


def check_output(directory: str | os.PathLike[str], unit: Unit = "edges") -> None:
    """Refuse, before any work, a directory a circuit (of edges, or of nodes) may not be
    written to."""
    own, kind, record, what = _KINDS[unit]
    store.check_output_dir(Path(directory), own=own, formats=(kind,), record=record, what=what)


def save(
    scores: CircuitScores, directory: str | os.PathLike[str], curve: Faithfulness | None = None
) -> Path:
    """Write the circuit (and its curve) to `directory`, replacing an earlier circuit there."""
    target = Path(directory)
    check_output(target)
    record = {
        "format": CIRCUIT_FORMAT,
        "format_version": CIRCUIT_VERSION,
        "circuit": summary(scores),
        "versions": library_versions(),
        "edges": {name: round(v, 8) for name, v in scores.edges().items()},
    }
    text = store.dumps(record)
    with atomic.atomic_dir(target) as tmp:
        (tmp / CIRCUIT_FILE).write_text(text, encoding="utf-8")
        if curve is not None:
            (tmp / CURVE_FILE).write_text(store.dumps(curve_record(curve)), encoding="utf-8")
        if scores.graph.kv == "per-head":
            (tmp / IMPORTANCES_FILE).write_text(store.dumps(mib_graph(scores)), encoding="utf-8")
    return target


def mib_graph(scores: CircuitScores) -> dict[str, Any]:
    """Every edge in EAP-IG's Graph JSON (`{"cfg", "nodes", "edges"}`) with MIB's names
    (`input`, `a5.h1`, `m5`, `logits`; a head's readers `a5.h1<q>`) and MIB's sign: an edge's
    score is the estimated *drop* in the metric when it alone is corrupted (minus interp's).
    No edge is marked in the graph: a circuit is chosen from the scores."""
    graph = scores.graph
    if graph.kv != "per-head":
        raise InvalidSettingError(
            "MIB's graph has a key and value input per query head: score with kv='per-head'"
        )
    cfg = {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": False}
    if scores.runs is not None:
        cfg["d_model"] = scores.runs[0].d_model
    nodes: dict[str, dict[str, Any]] = {"input": {"in_graph": True}}
    for layer in range(graph.n_layers):
        for head in range(graph.n_heads):
            nodes[f"a{layer}.h{head}"] = {"in_graph": False}
        nodes[f"m{layer}"] = {"in_graph": False}
    nodes["logits"] = {"in_graph": True}
    edges = {}
    for w, r in graph.mask.nonzero().tolist():
        name = f"{_mib_writer(graph.writers[w])}->{_mib_reader(graph.readers[r])}"
        edges[name] = {"score": -float(scores.scores[w, r]), "in_graph": False}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def _mib_writer(site: Site) -> str:
    if site.kind == "embed":
        return "input"
    return f"a{site.layer}.h{site.index}" if site.kind == "head" else f"m{site.layer}"


def _mib_reader(site: Site) -> str:
    if site.kind == "logits":
        return "logits"
    if site.kind == "mlp":
        return f"m{site.layer}"
    return f"a{site.layer}.h{site.index}<{site.input}>"


def summary(scores: CircuitScores) -> dict[str, Any]:
    """The settings and the runs' figures, and a hash of the pairs' tokens."""
    out: dict[str, Any] = {
        "model": scores.model_name,
        "method": scores.method,
        "steps": scores.steps,
        "kv": scores.graph.kv,
        "metric": scores.metric,
        "ablation": scores.ablation,
        "rows": scores.rows,
        "edges": scores.graph.n_edges,
        "clean_metric": round(scores.clean_metric, 6),
        "corrupted_metric": round(scores.corrupted_metric, 6),
    }
    if scores.executor:
        out["executor"] = dict(scores.executor)
    if scores.runs is not None:
        out["data_sha256"] = data_hash(scores.runs[1])
    return out


def data_hash(runs: Runs) -> str:
    """A hash of the pairs' tokens and of what each side ran under."""
    digest = hashlib.sha256()
    for run in [*runs.cleans, *runs.corrupts]:
        digest.update(",".join(map(str, run.token_ids.tolist())).encode() + b";")
        digest.update((run.intervention_label or "").encode() + b";")
    return digest.hexdigest()


def curve_record(curve: Faithfulness, unit: Unit = "edges") -> dict[str, Any]:
    """curve.json's record: both rankings' points, CPR, CMD and what a point counts (`unit`:
    edges, or nodes)."""
    out = {
        "unit": unit,
        "full": curve.full,
        "empty": curve.empty,
        "cpr": curve.cpr,
        "cmd": curve.cmd,
        "signed": asdict(curve.signed),
        "abs": asdict(curve.absolute),
    }
    if curve.by_size is not None:
        out["sizes"] = {ranking: asdict(c) for ranking, c in curve.by_size.items()}
    return out


def save_nodes(
    scores: NodeScores, directory: str | os.PathLike[str], curve: Faithfulness | None = None
) -> Path:
    """Write the node scores (`nodes.json`) and their curve in nodes (`curve.json`) to
    `directory`, replacing an earlier node circuit there; the scores must hold their runs."""
    target = Path(directory)
    check_output(target, "nodes")
    if scores.runs is None:
        raise InvalidSettingError("these node scores hold no runs: save them where they ran")
    model, runs = scores.runs
    settings = {
        "model": model.name,
        "method": scores.method,
        "steps": scores.steps,
        "metric": scores.metric,
        "ablation": "patch",
        "rows": scores.rows,
        "nodes": len(scores.nodes),
        "clean_metric": round(scores.clean_metric, 6),
        "corrupted_metric": round(scores.corrupted_metric, 6),
        "data_sha256": data_hash(runs),
    }
    record = {
        "format": NODES_FORMAT,
        "format_version": CIRCUIT_VERSION,
        "circuit": settings,
        "versions": library_versions(),
        "nodes": {
            str(n): round(float(v), 8) for n, v in zip(scores.nodes, scores.scores, strict=True)
        },
    }
    with atomic.atomic_dir(target) as tmp:
        (tmp / NODES_FILE).write_text(store.dumps(record), encoding="utf-8")
        if curve is not None:
            text = store.dumps(curve_record(curve, "nodes"))
            (tmp / CURVE_FILE).write_text(text, encoding="utf-8")
    return target


def read_edges(path: str | os.PathLike[str]) -> list[str]:
    """A circuit's edges from a file: one "SENDER->RECEIVER" a line (`#` comments), a JSON
    list of them, or MIB's Graph JSON (its edges with `"in_graph": true`, MIB's names)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSettingError(f"cannot read the edges file {source}: {exc}") from None
    if text.lstrip().startswith(("[", "{")):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSettingError(f"{source} is not valid JSON: {exc}") from None
        if isinstance(record, dict) and isinstance(record.get("edges"), dict):
            edges = [_from_mib(n) for n, e in record["edges"].items() if _in_graph(e, n)]
        elif isinstance(record, list) and all(isinstance(e, str) for e in record):
            edges = record
        else:
            raise InvalidSettingError(
                f"{source}: expected a JSON list of edges or MIB's graph JSON ({{'edges': ...}})"
            )
    else:
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        edges = [line for line in lines if line]
    if not edges:
        raise InvalidSettingError(f"the edges file {source} names no edge")
    return edges


def _in_graph(entry: Any, name: str) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("in_graph"), bool):
        raise InvalidSettingError(f"MIB's edge {name!r:.60} has no true/false in_graph")
    return entry["in_graph"]


def _from_mib(name: str) -> str:
    """MIB's edge name ("a3.h2->a7.h1<v>") as interp's ("L3H2->L7H1.v")."""
    sender, _, receiver = name.partition("->")
    parts = [_MIB_NODE.match(sender), _MIB_NODE.match(receiver)]
    if parts[0] is None or parts[1] is None or "<" in sender:
        raise InvalidSettingError(f"{name!r:.60} is not an edge in MIB's names")
    return f"{_mib_to_site(parts[0])}->{_mib_to_site(parts[1])}"


def _mib_to_site(match: re.Match[str]) -> str:
    layer, head, qkv, mlp = match.groups()
    if match.group(0) in ("input", "logits"):
        return "embed" if match.group(0) == "input" else "logits"
    if mlp is not None:
        return f"L{mlp}.mlp"
    return f"L{layer}H{head}" + (f".{qkv}" if qkv else "")


def save_evaluation(
    evaluated: Evaluated, edges: list[str], directory: str | os.PathLike[str]
) -> Path:
    """Write a given circuit's exact evaluation (`evaluation.json`) to `directory`, replacing
    an earlier circuit there."""
    target = Path(directory)
    check_output(target)
    record = {
        "format": CIRCUIT_FORMAT,
        "format_version": CIRCUIT_VERSION,
        "evaluation": {
            "edges": edges,
            "kept": evaluated.edges,
            "mean": evaluated.mean,
            "per_row": evaluated.per_row.tolist(),
            "full": evaluated.full,
            "empty": evaluated.empty,
            "faithfulness": evaluated.faithfulness,
        },
        "versions": library_versions(),
    }
    with atomic.atomic_dir(target) as tmp:
        (tmp / EVALUATION_FILE).write_text(store.dumps(record), encoding="utf-8")
    return target
