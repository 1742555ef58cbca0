"""Statistics over the rows of a set: means with their standard errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def mean_and_se(values: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """The mean over rows of equally shaped per-row values, and its standard error (the
    sample standard deviation over sqrt(rows); NaN for a single row)."""
    stacked = torch.stack([v.double() for v in values])
    mean = stacked.mean(0)
    if len(values) < 2:
        return mean.float(), torch.full_like(mean, math.nan).float()
    se = stacked.std(0, correction=1) / math.sqrt(len(values))
    return mean.float(), se.float()
