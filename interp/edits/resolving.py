"""Where an edit acts: its positions resolved in one row (indices, slices, names, labels and
spans of the prompt's text, by role), the one resolver every consumer of positions uses
(edits as they run, patching's columns, `trace.positions`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from interp.edits.positions import Position, Span, position_label
from interp.errors import AttentionSinkWarning, InvalidSettingError


@dataclass(frozen=True)
class Row:
    """What an edit's positions resolve against: one row's prompt length, its tokens' texts
    (at least the prompt's), how many positions its run has (generated ones included), its
    left padding in the batch, its fields (position labels) and where it came from."""

    prompt_len: int
    token_strs: Sequence[str]
    n_positions: int
    pad: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    @classmethod
    def of(cls, run: Any) -> Row:
        """A recorded run's (a `Trace`: unpadded), named by its origin or its prompt."""
        where = run.origin or f"the row of {run.prompt[:40]!r}"
        return cls(run.prompt_len, run.token_strs, run.n_positions, 0, run.meta, where)


def resolve_positions(
    positions: Sequence[Position] | None, row: Row, *, empty_ok: bool = False, edit: bool = False
) -> list[int]:
    """The absolute positions (sorted, unique) `positions` name in `row` (None: all). A span's
    role that names no token there is refused, unless `empty_ok`; an `edit` at a span that
    starts at position 0 warns (`AttentionSinkWarning`)."""
    n_positions = row.n_positions
    if positions is None:
        return list(range(n_positions))
    where = row.origin or "a row"
    out: set[int] = set()
    for p in positions:
        if isinstance(p, slice):
            out.update(range(n_positions)[p])
        elif isinstance(p, Span):
            found = span_positions(p, row)
            if not found and not empty_ok:
                raise InvalidSettingError(
                    f"{where}: {position_label(p)} names no token there (its span has "
                    f"{len(span_positions(replace(p, role=None), row))} tokens)"
                )
            if edit and 0 in found:
                warnings.warn(
                    AttentionSinkWarning(
                        f"{where}: {position_label(p)} starts at position 0, with no BOS token "
                        "before it: an edit there also hits the attention sink"
                    ),
                    stacklevel=2,
                )
            out.update(found)
        elif p == "last_prompt":
            out.add(row.prompt_len - 1)
        elif p == "prompt":
            out.update(range(row.prompt_len))
        elif p == "generated":
            out.update(range(row.prompt_len, n_positions))
        elif isinstance(p, str):
            value = row.meta.get(p)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSettingError(
                    f"{where}: no position {p!r} (a position label is an integer field of the "
                    f"row, such as {{{p!r}: 9}})"
                )
            out.add(value)
        else:
            at = p if p >= 0 else n_positions + p
            if not 0 <= at < n_positions:
                raise _outside(p, at, n_positions, where)
            out.add(at)
    bad = [p for p in out if not 0 <= p < n_positions]
    if bad:
        raise _outside(bad[0], bad[0], n_positions, where)
    return sorted(out)


def _outside(p: int, at: int, n_positions: int, where: str) -> InvalidSettingError:
    side = "past the end of" if at >= n_positions else "before the start of"
    return InvalidSettingError(f"{where}: position {p} is {side} its {n_positions} positions")


def span_positions(span: Span, row: Row) -> list[int]:
    """The prompt positions of `span` in `row`: its tokens, or those of its role (`Role`)."""
    tokens = _span_positions(_text(span, row), row)
    first, last, end = tokens[0], tokens[-1], row.prompt_len - 1
    if span.role is None:
        return tokens
    return {
        "first": [first],
        "middle": tokens[1:-1],
        "last": [last],
        "after": [last + 1] if last < end else [],
        "further": list(range(last + 2, end)),
    }[span.role]


def _text(span: Span, row: Row) -> str:
    """The span's text: its own, or the row's own in its field."""
    if span.field is None:
        assert span.text is not None
        return span.text
    text = row.meta.get(span.field)
    if not isinstance(text, str) or not text.strip():
        raise InvalidSettingError(
            f"{row.origin or 'a row'}: no text field {span.field!r} for {position_label(span)} "
            f"(got {text!r:.40})"
        )
    return text


def _span_positions(text: str, row: Row) -> list[int]:
    """The prompt tokens whose characters overlap the first occurrence of `text`."""
    prompt = row.token_strs[: row.prompt_len]
    joined = "".join(prompt)
    at = joined.find(text)
    if at < 0:
        stripped = text.strip()
        at = joined.find(stripped) if stripped else -1
        text = stripped
    if at < 0:
        raise InvalidSettingError(f"{row.origin or 'a row'}: its prompt has no span {text!r}")
    out, offset = [], 0
    for i, token in enumerate(prompt):
        if offset < at + len(text) and at < offset + len(token):
            out.append(i)
        offset += len(token)
    return out
