"""Heads as values (`Head(layer, head)`, labelled "L5H1" for display only), head specs ("L5H1",
"L5" for a whole layer) parsed and validated once, and head rankings."""

from __future__ import annotations

import re
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InvalidSettingError

# ASCII digits only (`\d` would read other scripts' digits), and few of them
_SPEC = re.compile(r"^L([0-9]{1,6})(?:H([0-9]{1,6}))?$", re.IGNORECASE)


class Head(NamedTuple):
    """One attention head: a `(layer, head)` pair (it unpacks, compares and hashes as one);
    `str()` and formatting give its label, "L5H1"."""

    layer: int
    head: int

    def __str__(self) -> str:
        return head_label(self.layer, self.head)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def head_label(layer: int, head: int) -> str:
    """The one spelling of a head's label, for display: "L5H1"."""
    return f"L{layer}H{head}"


def parse_label(label: str | Head) -> Head:
    """`"L5H1"` (as `head_label` writes it, or a `Head`) -> Head(5, 1)."""
    if isinstance(label, tuple):
        return Head(int(label[0]), int(label[1]))
    match = _SPEC.match(label.strip())
    if match is None or match.group(2) is None:
        raise InvalidSettingError(f"malformed head label {label!r}; expected e.g. L5H1")
    return Head(int(match.group(1)), int(match.group(2)))


def check_spec(spec: str, valid: str = "") -> list[re.Match[str]]:
    """The spelling of a head spec (before a model gives its ranges): each item matched."""
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise InvalidSettingError(f"empty head spec {spec!r}; write heads as L5H1,L9H3 or L5")
    matches = []
    for item in items:
        match = _SPEC.match(item)
        if match is None:
            raise InvalidSettingError(
                f"malformed head {item!r}: write heads as L5H1 (layer 5, head 1) or L5"
                + (f"; {valid}" if valid else "")
            )
        matches.append(match)
    return matches


def parse_heads(spec: str, n_layers: int, n_heads: int) -> list[Head]:
    """`"L5H1,L9H3"` or `"L5"` (every head of layer 5) -> sorted unique (layer, head) pairs."""
    valid = f"valid: L0..L{n_layers - 1} and H0..H{n_heads - 1}"
    heads: set[Head] = set()
    for match in check_spec(spec, valid):
        item = match.group(0)
        layer = int(match.group(1))
        if layer >= n_layers:
            raise InvalidSettingError(f"layer {layer} in {item!r} is out of range; {valid}")
        if match.group(2) is None:
            heads.update(Head(layer, h) for h in range(n_heads))
            continue
        head = int(match.group(2))
        if head >= n_heads:
            raise InvalidSettingError(f"head {head} in {item!r} is out of range; {valid}")
        heads.add(Head(layer, head))
    return sorted(heads)


def rank_heads(
    scores: Float[Tensor, "layer head"], k: int | None = 10, *, by_magnitude: bool = False
) -> list[tuple[Head, float]]:
    """Heads with their (signed) values, largest first (by absolute value if `by_magnitude`)."""
    n_heads = scores.shape[1]
    flat = scores.detach().flatten().float()
    key = flat.abs() if by_magnitude else flat
    order = torch.argsort(key, descending=True, stable=True)
    if k is not None:
        order = order[:k]
    return [(Head(int(i) // n_heads, int(i) % n_heads), float(flat[i])) for i in order]
