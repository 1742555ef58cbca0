"""`build_report`: the page of whatever a directory holds, a trace or a trace set."""

from __future__ import annotations

import os
from pathlib import Path

from interp.report.page import build_trace_report
from interp.report.set_page import build_set_report
from interp.store import FORMAT, SET_FORMAT, read_summary


def build_report(directory: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write DIR/index.html (and its figures) from the saved results; returns the page's
    path. Of a trace set: the set's page, and one page per row under DIR/rows/."""
    if read_summary(Path(directory), (FORMAT, SET_FORMAT))["format"] == SET_FORMAT:
        return build_set_report(directory, title)
    return build_trace_report(directory, title)
