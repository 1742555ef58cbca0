"""Merging the parts of a run's chunks, in row order: per-row values concatenated, and means
merged from sums and counts in float64, so that where the rows ran never changes a result."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def rows(parts: Sequence[Tensor]) -> Tensor:
    """Per-row values of every chunk, one after another (rows first)."""
    return parts[0] if len(parts) == 1 else torch.cat(list(parts))


def mean(means: Sequence[Tensor], counts: Sequence[int]) -> Tensor:
    """The mean over every row of chunks' means over theirs: sum of mean x count / rows, in
    float64, returned in the means' dtype."""
    if len(means) == 1:
        return means[0]
    total = torch.stack([m.double() * n for m, n in zip(means, counts, strict=True)]).sum(0)
    return (total / sum(counts)).to(means[0].dtype)
