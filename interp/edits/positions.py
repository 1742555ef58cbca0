"""Positions, one type wherever positions are taken (edits, patching candidates, groups): an
index, a slice, a name ("prompt", "last_prompt", "generated", a prompts file's label) or a
`span` of the prompt's text, alone or several; None for every position."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interp.errors import InvalidSettingError


@dataclass(frozen=True)
class Span:
    """The tokens of a substring of each row's prompt (its first occurrence), resolved per row."""

    text: str


def span(text: str) -> Span:
    """Positions: each row's own token span of `text` in its prompt."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSettingError(f"a span is a non-empty text, got {text!r:.40}")
    return Span(text)


Position = int | slice | str | Span
Positions = Position | Sequence[Position] | None  # what a `positions=` argument takes


def as_positions(value: Any) -> tuple[Position, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[Position] = []
    for item in items:
        if isinstance(item, bool):
            raise InvalidSettingError(
                f"a position is an index, a slice, a name or a span, got {item!r}"
            )
        bounds = (item.start, item.stop, item.step) if isinstance(item, slice) else ()
        if any(isinstance(b, bool) or not isinstance(b, numbers.Integral | None) for b in bounds):
            raise InvalidSettingError(f"a slice's bounds and step are integers, got {item!r:.40}")
        if bounds and item.step == 0:
            raise InvalidSettingError("a slice's step cannot be 0")
        if isinstance(item, (numbers.Integral, slice, Span)):
            out.append(int(item) if isinstance(item, numbers.Integral) else item)
        elif isinstance(item, str) and item.strip():
            out.append(item)
        else:
            raise InvalidSettingError(
                f"a position is an index, a slice, a name or a span, got {item!r:.40}"
            )
    if not out:
        raise InvalidSettingError("positions= is empty (leave it out for every position)")
    return tuple(out)


def positions_label(positions: tuple[Position, ...]) -> str:
    def one(p: Position) -> str:
        if isinstance(p, slice):
            return f"{'' if p.start is None else p.start}:{'' if p.stop is None else p.stop}"
        return f"span {p.text!r}" if isinstance(p, Span) else str(p)

    return ",".join(one(p) for p in positions)


def to_json(p: Position) -> Any:
    if isinstance(p, slice):
        return {"slice": [p.start, p.stop, p.step]}
    if isinstance(p, Span):
        return {"span": p.text}
    return p


def from_json(value: Any, where: str) -> list[Position] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidSettingError(f"{where}.positions is not a list")
    out: list[Position] = []
    for item in value:
        if isinstance(item, dict) and set(item) == {"slice"} and isinstance(item["slice"], list):
            if len(item["slice"]) != 3:  # its bounds are checked where it is built
                raise InvalidSettingError(f"{where}.positions: a slice is [start, stop, step]")
            out.append(slice(*item["slice"]))
        elif isinstance(item, dict) and set(item) == {"span"}:
            out.append(span(item["span"]))
        else:
            out.append(item)
    return out
