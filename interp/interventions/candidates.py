"""What a patching's candidates are, beside heads: each layer alone or a window of layers
around it, and the *columns* of the per-position sites: every prompt position, every position,
or groups of positions named as an intervention's edits name them (indices, slices, labels,
`"last_prompt"`, `interp.span("Eiffel Tower").middle`), resolved per row, so rows of different
lengths line up by role: a group is each row's own set of positions, of its own size, patched
at once. A span's role that names no token in a row (the middle of a two-token subject) leaves
that row's cell NaN, and means over rows are over the rows that have it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from interp.edits.positions import Position, Span, as_positions, positions_label
from interp.edits.resolving import Row, resolve_positions
from interp.errors import InvalidSettingError
from interp.trace.trace import Trace

EachPosition = Literal["prompt", "all"]  # a column for each (prompt) position
Columns = list[list[list[int]]]  # [row][column] -> the row's absolute positions


def check_positions(value: Any) -> EachPosition | tuple[Position, ...]:
    """`positions=` checked: "prompt", "all", or a list of groups (each a position, slice,
    label or span)."""
    if value == "prompt" or value == "all":
        return "prompt" if value == "prompt" else "all"
    if isinstance(value, (str, int, slice, Span)) or not isinstance(value, Sequence):
        raise InvalidSettingError(
            f"positions must be 'prompt', 'all' or a list of groups (positions, slices, labels, "
            f"spans), got {value!r:.60}"
        )
    groups = as_positions(list(value))
    assert groups is not None
    return groups


def labels(positions: EachPosition | tuple[Position, ...], run: Trace) -> list[str]:
    """The columns' labels: the first row's tokens, or each group's spelling."""
    if positions == "prompt":
        return list(run.token_strs[: run.prompt_len])
    if positions == "all":
        return list(run.token_strs)
    return [positions_label((g,)) for g in positions]


def columns(targets: Sequence[Trace], positions: EachPosition | tuple[Position, ...]) -> Columns:
    """Each row's positions of each column. One column a position needs rows of one length
    (and one prompt length); a group resolves in each row on its own, and may name no
    position in a row only if it is a span's role (its cell is then NaN); another group
    empty in a row is refused, naming the row."""
    if positions in ("prompt", "all"):
        first = targets[0]
        for i, t in enumerate(targets):
            if t.n_positions != first.n_positions or t.prompt_len != first.prompt_len:
                raise InvalidSettingError(
                    f"a per-position site needs rows of one length ({first.n_positions} tokens, "
                    f"{first.prompt_len} of prompt), row {i} has {t.n_positions} "
                    f"({t.prompt_len}); or give positions as groups (spans, labels)"
                )
        n = first.prompt_len if positions == "prompt" else first.n_positions
        return [[[p] for p in range(n)] for _ in targets]
    out: Columns = []
    for t in targets:
        row = Row.of(t)
        at = [resolve_positions((g,), row, empty_ok=True) for g in positions]
        empty = [
            positions_label((g,))
            for g, p in zip(positions, at, strict=True)
            if not p and not (isinstance(g, Span) and g.role is not None)
        ]
        if empty:
            raise InvalidSettingError(f"{row.origin}: the position group {empty[0]} is empty")
        out.append(at)
    return out


def estimates(site: str, rows: list[Tensor], cols: Columns | None) -> Tensor:
    """The attribution estimate of each row `[row, ...]` from its per-position one (`[layer,
    pos, ...]`), shaped as the site's effects: a column's is the sum of its positions' (first
    order: the changes add up); NaN where a group names no position in the row."""
    if site == "heads":
        return torch.stack([e.sum(1) for e in rows])  # [layer, pos, head] -> [layer, head]
    assert cols is not None
    nan = torch.tensor(float("nan"))
    by_col = [
        torch.stack([e[:, at].sum(1) if at else nan.expand_as(e[:, 0]) for at in row_cols], 1)
        for e, row_cols in zip(rows, cols, strict=True)
    ]  # each [layer, column, ...]
    if site == "heads-by-pos":
        return torch.stack([e.permute(0, 2, 1) for e in by_col])  # [layer, head, column]
    return torch.stack(by_col)  # [layer, column]


def window_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """The `window` consecutive layers around `layer` (ROME: from layer - window // 2), cut at
    the model's first and last layers."""
    first = max(0, layer - window // 2)
    return list(range(first, min(n_layers, layer - window // 2 + window)))


def check_window(window: int, sites: Sequence[str], method: str) -> None:
    """A window is a whole number of layers, for a layer's sites, patched exactly."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InvalidSettingError(f"window must be an integer >= 1, got {window!r}")
    if window > 1 and any(site.startswith("heads") for site in sites):
        raise InvalidSettingError("a window of layers goes with resid, attn-out or mlp-out")
    if window > 1 and method == "triage":
        raise InvalidSettingError("a triage estimates one layer at a time: no window with it")
