"""The formats figures are written in (no matplotlib here: the CLI checks `--format` before
it imports anything heavy)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from interp.errors import InvalidSettingError

Format = Literal["png", "svg", "pdf"]
FORMATS: tuple[Format, ...] = get_args(Format)


def parse_formats(spec: str | Iterable[str] | None) -> tuple[Format, ...]:
    """Formats from "png,svg,pdf" or a list; PNG always (the pages show it), each once."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    names = [item.strip().lower() for item in items if item.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise InvalidSettingError(
            f"unknown figure format {unknown[0]!r}; choose among {', '.join(FORMATS)}"
        )
    return tuple(f for f in FORMATS if f == "png" or f in names)
