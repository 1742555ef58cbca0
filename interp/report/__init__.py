"""Reports: read saved results, write one self-contained HTML page and figures; register the
notebook display of results (`display`). Nothing here runs the model.

Public: `build_report` (a trace's, a set's, a patching result's, a circuit's or a node
circuit's page), `build_circuit_report` (a circuit's, with the drawing's number of edges),
`patching_sections` (patching results as sections of another page), `write_experiment` and
`Section` (an experiment's page), `write_steering` (a steering evaluation's directory), the
directory checks, `parse_formats` (`--format png,svg,pdf`), and the `figures` module. Imported
lazily, so `import interp` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "build_report": "interp.report.build",
    "build_circuit_report": "interp.report.circuits",
    "write_experiment": "interp.report.simple",
    "check_experiment_dir": "interp.report.simple",
    "Section": "interp.report.simple",
    "patching_sections": "interp.report.patching",
    "parse_formats": "interp.report.formats",
    "write_steering": "interp.report.steering",
    "check_steering_dir": "interp.report.steering",
}

__all__ = [
    "Section",
    "build_circuit_report",
    "build_report",
    "check_experiment_dir",
    "figures",
    "parse_formats",
    "patching_sections",
    "check_steering_dir",
    "write_experiment",
    "write_steering",
]

if TYPE_CHECKING:
    from interp.report import figures
    from interp.report.build import build_report
    from interp.report.circuits import build_circuit_report
    from interp.report.formats import parse_formats
    from interp.report.patching import patching_sections
    from interp.report.simple import Section, check_experiment_dir, write_experiment
    from interp.report.steering import check_steering_dir, write_steering


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "figures":
        return importlib.import_module("interp.report.figures")
    raise AttributeError(f"module 'interp.report' has no attribute {name!r}")
