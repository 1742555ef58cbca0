"""A plain report page for experiments that are not one trace: sections of text, tables and
figures, written with the figures and a summary.json, atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp import atomic
from interp.errors import OutputPathError
from interp.report import style
from interp.report.formats import Format
from interp.report.html import b64

EXPERIMENT_FORMAT = "interp-experiment"


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    table: list[list[Any]] | None = None  # first row: column names
    images: list[str] = field(default_factory=list)  # names of figures (PNG files)


def check_experiment_dir(path: Path) -> None:
    """An experiment may replace its own earlier output, never anything else."""
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputPathError(f"output path {path} exists and is not a directory")
    if not any(path.iterdir()):
        return
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict) or summary.get("format") != EXPERIMENT_FORMAT:
        raise OutputPathError(
            f"output directory {path} exists and is not an interp experiment; refusing to "
            "overwrite it (choose another --out)"
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


def write_pages(directory: Path, html: str, figures: dict[str, bytes]) -> Path:
    """DIR/index.html and DIR/figures/ (each replaced atomically), beside what DIR holds."""
    with atomic.atomic_dir(directory / "figures") as tmp:
        for name, data in figures.items():
            (tmp / name).write_bytes(data)
    atomic.write_text(directory / "index.html", html)
    return directory / "index.html"


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
    with atomic.atomic_dir(target) as tmp:
        (tmp / "figures").mkdir()
        for name, data in files.items():
            (tmp / "figures" / name).write_bytes(data)
        (tmp / "index.html").write_text(html, encoding="utf-8")
        record = {"format": EXPERIMENT_FORMAT, **summary}
        (tmp / "summary.json").write_text(json.dumps(record, indent=1, ensure_ascii=False))
    return target / "index.html"
