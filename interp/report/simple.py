"""A plain report page for experiments that are not one trace: sections of text, tables and
figures, written with the figures and a summary.json, atomically (`report.writing`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.files import store
from interp.report import style
from interp.report.formats import Format
from interp.report.html import b64
from interp.report.writing import write_report

EXPERIMENT_FORMAT = "interp-experiment"


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    table: list[list[Any]] | None = None  # first row: column names
    images: list[str] = field(default_factory=list)  # names of figures (PNG files)


def check_experiment_dir(path: str | os.PathLike[str]) -> None:
    """An experiment may replace its own earlier output, never anything else (all an
    experiment's directory holds is its own: its script writes pages beside the report)."""
    store.check_output_dir(
        Path(path),
        own=None,
        formats=(EXPERIMENT_FORMAT,),
        record=store.SUMMARY,
        what="an interp experiment",
    )


def render_experiment(
    title: str, intro: str, sections: list[Section], figures: dict[str, bytes]
) -> str:
    """The page: sections of text, tables and figures (inlined)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("interp.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    return env.get_template("experiment.html.j2").render(
        title=title,
        intro=intro,
        sections=sections,
        images={k: b64(v) for k, v in figures.items()},
    )


def write_experiment(
    directory: str | os.PathLike,
    title: str,
    intro: str,
    sections: list[Section],
    figures: style.Figures,
    summary: dict[str, Any],
    formats: Sequence[Format] = ("png",),
) -> Path:
    """Write index.html, figures/ (each figure in each of `formats`) and summary.json into
    `directory` (replaced whole)."""
    target = Path(directory)
    check_experiment_dir(target)
    files = style.render(figures, formats)
    html = render_experiment(title, intro, sections, style.pngs(files))
    record = json.dumps({"format": EXPERIMENT_FORMAT, **summary}, indent=1, ensure_ascii=False)
    return write_report(target, html, files, records={store.SUMMARY: record})
