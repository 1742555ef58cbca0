"""Positions, one type wherever positions are taken (edits, patching candidates, groups): an
index, a slice, a name ("prompt", "last_prompt", "generated", a prompts file's label) or a
`span` of the prompt's text (or a role within it: `.first`, `.middle`, `.last`, `.after`,
`.further`), alone or several; None for every position."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from interp.errors import InvalidSettingError

# A role within a span's tokens s_0..s_k of a prompt of n tokens (ROME's categories): `first`
# s_0, `middle` s_1..s_(k-1) (none for a span of 1 or 2 tokens), `last` s_k, `after` the
# token after it (none where the span ends the prompt), `further` the tokens after that up to,
# not including, the last prompt token.
Role = Literal["first", "middle", "last", "after", "further"]
ROLES: tuple[Role, ...] = get_args(Role)
ROME_CATEGORIES = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first after the subject",
    "further tokens",
    "last token",
)


@dataclass(frozen=True)
class Span:
    """The tokens of a substring of each row's prompt (its first occurrence), resolved per row:
    `text`, or each row's own text in its `field` (a prompts file's "subject"); with a `role`,
    only those of that role (see `Role`). A role may name no token in a row (the middle of a
    two-token span): an edit refuses that row, a patching group leaves its cell NaN,
    `trace.positions` gives []."""

    text: str | None
    role: Role | None = None
    field: str | None = None

    def __post_init__(self) -> None:
        if self.field is not None:
            if self.text is not None or not isinstance(self.field, str) or not self.field:
                raise InvalidSettingError(
                    f"a span is a text or a field's name, got {self.text!r:.40} and "
                    f"{self.field!r:.40}"
                )
        elif not isinstance(self.text, str) or not self.text.strip():
            raise InvalidSettingError(f"a span is a non-empty text, got {self.text!r:.40}")
        if self.role is not None and self.role not in ROLES:
            raise InvalidSettingError(
                f"a span's role is one of {', '.join(ROLES)}, got {self.role!r:.40}"
            )

    def _as(self, role: Role) -> Span:
        if self.role is not None:
            raise InvalidSettingError(f"{position_label(self)} already names a role")
        return replace(self, role=role)

    @property
    def first(self) -> Span:
        """The span's first token."""
        return self._as("first")

    @property
    def middle(self) -> Span:
        """The tokens strictly between the span's first and last (none for 1 or 2 tokens)."""
        return self._as("middle")

    @property
    def last(self) -> Span:
        """The span's last token."""
        return self._as("last")

    @property
    def after(self) -> Span:
        """The first token after the span (none where it ends the prompt)."""
        return self._as("after")

    @property
    def further(self) -> Span:
        """The prompt tokens after `after`, the last prompt token excluded."""
        return self._as("further")

    def rome(self) -> dict[str, Position]:
        """ROME's six position categories of this span as the subject (Meng et al. 2022,
        Figure 2), named as ROME names them: first, middle and last subject token, first
        token after the subject, further tokens, last token. Tokens before the subject are in
        none; the last subject token may also be the last token, as in ROME's code."""
        if self.role is not None:
            raise InvalidSettingError(f"ROME's categories are of a whole span, not its {self.role}")
        groups: list[Position] = [
            self.first,
            self.middle,
            self.last,
            self.after,
            self.further,
            "last_prompt",
        ]
        return dict(zip(ROME_CATEGORIES, groups, strict=True))


SPAN_SPELLINGS = (
    "span:TEXT (each row's tokens of TEXT), span.ROLE:TEXT (a role within it: "
    f"{', '.join(ROLES)}), field:NAME / field.ROLE:NAME (each row's own text in its field NAME), "
    "rome:TEXT / rome-field:NAME (ROME's six categories)"
)


def parse_spans(spelling: str) -> list[Position] | None:
    """A span as the command line spells it (`SPAN_SPELLINGS`): its groups (six for ROME's
    categories), or None where `spelling` names no span."""
    head, colon, rest = spelling.partition(":")
    kind, _, role = head.partition(".")
    if not colon or kind not in ("span", "field", "rome", "rome-field"):
        return None
    if not rest or (role and (kind.startswith("rome") or role not in ROLES)):
        raise InvalidSettingError(f"{spelling!r:.60}: write {SPAN_SPELLINGS}")
    whole = Span(rest) if kind in ("span", "rome") else Span(None, field=rest)
    if kind.startswith("rome"):
        return list(whole.rome().values())
    return [whole if not role else replace(whole, role=role)]


def span(text: str | None = None, role: Role | None = None, *, field: str | None = None) -> Span:
    """Positions: each row's own token span of `text` in its prompt (`field="subject"`: of
    each row's own text in that field); `.first`, `.middle`, `.last`, `.after`, `.further` name
    a role within it, `.rome()` ROME's six categories."""
    return Span(text, role, field)


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


def position_label(p: Position) -> str:
    """One position as labels show it (`span 'Eiffel Tower'.middle`)."""
    if isinstance(p, slice):
        return f"{'' if p.start is None else p.start}:{'' if p.stop is None else p.stop}"
    if isinstance(p, Span):
        text = f"<{p.field}>" if p.field is not None else repr(p.text)
        return f"span {text}" + ("" if p.role is None else f".{p.role}")
    return str(p)


def positions_label(positions: tuple[Position, ...]) -> str:
    return ",".join(position_label(p) for p in positions)


def to_json(p: Position) -> Any:
    if isinstance(p, slice):
        return {"slice": [p.start, p.stop, p.step]}
    if isinstance(p, Span):
        out = {"span": p.text} if p.field is None else {"span_field": p.field}
        return out if p.role is None else {**out, "role": p.role}
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
        elif isinstance(item, dict) and set(item) - {"role"} in ({"span"}, {"span_field"}):
            out.append(Span(item.get("span"), item.get("role"), item.get("span_field")))
        else:
            out.append(item)
    return out
