"""A circuit directory: `circuit.json` (the settings, the model, the data's hash, library
versions and every real edge's score, "SENDER->RECEIVER"), `curve.json` (both rankings'
points, CPR, CMD, the random control, m(full) and m(empty)) and, with `kv="per-head"`,
`importances.json` in EAP-IG's Graph JSON with MIB's node names (`Graph.from_json` loads it),
written atomically."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from interp.circuits.curve import Faithfulness
from interp.circuits.scores import CircuitScores
from interp.errors import InvalidSettingError
from interp.files import atomic, store
from interp.models.provenance import library_versions
from interp.models.site import Site

CIRCUIT_FORMAT = "interp-circuit"
CIRCUIT_VERSION = 1
CIRCUIT_FILE = "circuit.json"
CURVE_FILE = "curve.json"
IMPORTANCES_FILE = "importances.json"
ENTRIES = frozenset({CIRCUIT_FILE, CURVE_FILE, IMPORTANCES_FILE, "index.html", "figures"})


def check_output(directory: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a directory a circuit may not be written to."""
    store.check_output_dir(
        Path(directory),
        own=ENTRIES,
        formats=(CIRCUIT_FORMAT,),
        record=CIRCUIT_FILE,
        what="an interp circuit",
    )


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
        "rows": scores.rows,
        "edges": scores.graph.n_edges,
        "clean_metric": round(scores.clean_metric, 6),
        "corrupted_metric": round(scores.corrupted_metric, 6),
    }
    if scores.runs is not None:
        _, runs = scores.runs
        digest = hashlib.sha256()
        for run in [*runs.cleans, *runs.corrupts]:
            digest.update(",".join(map(str, run.token_ids.tolist())).encode() + b";")
            digest.update((run.intervention_label or "").encode() + b";")
        out["data_sha256"] = digest.hexdigest()
    return out


def curve_record(curve: Faithfulness) -> dict[str, Any]:
    out = {
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
