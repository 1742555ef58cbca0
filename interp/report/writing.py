"""The one way a report is written: DIR/figures/ (replaced whole, so no figure of an earlier
report is left behind) and DIR/index.html, through `interp.files.atomic`. A directory holding other
results keeps them; a report's own directory is replaced whole, with its records."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from interp.files import atomic
from interp.files.store import FIGURES_DIR, REPORT_FILE

# a file's content: text (UTF-8), bytes, or a writer given the path to write
Content = str | bytes | Callable[[Path], object]


def write_report(
    directory: str | os.PathLike[str],
    html: str,
    figures: Mapping[str, bytes],
    *,
    folders: Mapping[str, Mapping[str, Content]] | None = None,
    records: Mapping[str, Content] | None = None,
) -> Path:
    """Write DIR/figures/ and DIR/index.html; returns the page's path.

    Without `records`, DIR holds other results (a trace's, a patching's): each of `folders`
    (name -> its files), then figures/, is replaced whole, then the page; nothing else in DIR
    is touched. With `records` (file name -> content), DIR is the report's own and is
    replaced whole: the records, folders, figures and page appear together or not at all.
    Check DIR with `interp.store.check_output_dir` first."""
    target = Path(directory)
    parts = {**(folders or {}), FIGURES_DIR: figures}
    if records is None:
        for name, files in parts.items():
            with atomic.atomic_dir(target / name) as tmp:
                _write_all(tmp, files)
        atomic.write_text(target / REPORT_FILE, html)
        return target / REPORT_FILE
    with atomic.atomic_dir(target) as tmp:
        _write_all(tmp, records)
        for name, files in parts.items():
            (tmp / name).mkdir()
            _write_all(tmp / name, files)
        (tmp / REPORT_FILE).write_text(html, encoding="utf-8")
    return target / REPORT_FILE


def _write_all(directory: Path, files: Mapping[str, Content]) -> None:
    for name, content in files.items():
        if isinstance(content, bytes):
            (directory / name).write_bytes(content)
        elif isinstance(content, str):
            (directory / name).write_text(content, encoding="utf-8")
        else:
            content(directory / name)
