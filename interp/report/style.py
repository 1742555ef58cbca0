"""One style for every figure, and writing figures out: sizes that fit a paper's column or page,
fonts embedded in PDF and SVG, and each figure in every format asked for."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any, ParamSpec

import matplotlib
from matplotlib.figure import Figure

from interp.report.formats import Format

Figures = dict[str, Figure]  # "name.png" -> the figure (the page shows the PNG)

COLUMN = 3.4  # inches: one column of a two-column paper
PAGE = 7.0  # inches: the text width of a page
DPI = 150  # PNG resolution

RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
    "pdf.fonttype": 42,  # TrueType, embedded: the text stays text
    "ps.fonttype": 42,
    "svg.fonttype": "path",  # glyphs as paths: no font needed to view it
}

P = ParamSpec("P")
_UNDATED: dict[str, dict[str, Any]] = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def styled(build: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build a figure under the style (matplotlib reads sizes and fonts as artists are made)."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(RC):  # type: ignore[arg-type]
            return build(*args, **kwargs)

    return wrapper


def render(figures: Figures, formats: Sequence[Format] = ("png",)) -> dict[str, bytes]:
    """Each figure in each format: "name.png" -> "name.png", "name.svg", "name.pdf"."""
    out = {}
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        for name, fig in figures.items():
            stem = PurePath(name).stem
            for fmt in formats:
                buf = io.BytesIO()
                undated = _UNDATED.get(fmt)  # no creation date: the same figure, the same file
                fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", metadata=undated)
                out[f"{stem}.{fmt}"] = buf.getvalue()
    return out


def pngs(files: dict[str, bytes]) -> dict[str, bytes]:
    """The PNG files among rendered ones (what a page inlines)."""
    return {name: data for name, data in files.items() if name.endswith(".png")}
