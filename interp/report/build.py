"""`build_report`: the page of whatever a directory holds: a trace, a trace set, a patching
result, a circuit or a node circuit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from interp.files.store import FORMAT, SET_FORMAT, read_summary
from interp.interventions.patching_result import PATCH_FORMAT
from interp.report.circuit_reading import is_circuit_dir, is_nodes_dir
from interp.report.circuits import build_circuit_report
from interp.report.formats import parse_formats
from interp.report.node_circuits import build_node_report
from interp.report.page import build_trace_report
from interp.report.patching import Show, build_patching_report
from interp.report.set_page import build_set_report


def build_report(
    directory: str | os.PathLike[str],
    title: str | None = None,
    formats: str | Sequence[str] = "png",
    show: Show = "effect",
) -> Path:
    """Write DIR/index.html (and its figures) from the saved results; returns the page's
    path. Of a trace set: the set's page, and one page per row under DIR/rows/.
    Of a patching result: its sites' heatmaps and tables. Of a circuit: its curve, its
    layered drawing and its top edges; of a node circuit: its curve, its heads and its top
    nodes. `formats` ("png,svg,pdf", or a
    list): every figure is also written in each (PNG always: the page shows it). `show`: a
    patching result's heatmaps of the effect or of the patched metric."""
    chosen = parse_formats(formats)
    if is_circuit_dir(directory):
        return build_circuit_report(directory, title, chosen)
    if is_nodes_dir(directory):
        return build_node_report(directory, title, chosen)
    kind = read_summary(Path(directory), (FORMAT, SET_FORMAT, PATCH_FORMAT))["format"]
    if kind == PATCH_FORMAT:
        return build_patching_report(directory, title, chosen, show)
    if kind == SET_FORMAT:
        return build_set_report(directory, title, chosen)
    return build_trace_report(directory, title, chosen)
