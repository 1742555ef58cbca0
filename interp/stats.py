"""Statistics over rows: a value with its percentile-bootstrap 95% interval over paired
samples, and means over rows with their standard errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

BOOTSTRAP_DRAWS = 2000


@dataclass(frozen=True)
class Estimate:
    """A statistic of the samples and its 95% interval (NaN where it is undefined)."""

    value: float
    lo: float
    hi: float

    def json(self) -> dict[str, Any]:
        """`{"value": x, "ci95": [lo, hi]}`, None for an undefined number (JSON has no NaN)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {"value": num(self.value), "ci95": [num(self.lo), num(self.hi)]}

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def bootstrap(
    values: Sequence[float] | Tensor,
    statistic: Callable[[Tensor], Tensor] = lambda x: x.mean(-1),
    *,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> Estimate:
    """`statistic` of `values` with the 2.5th and 97.5th percentiles of the statistic over
    `draws` resamples (with replacement, seeded: the same values give the same interval).
    `statistic` maps `[..., n]` to `[...]`. One value: its interval is the value itself."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() == 0:
        return Estimate(math.nan, math.nan, math.nan)
    value = float(statistic(x))
    if x.numel() == 1:
        return Estimate(value, value, value)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, x.numel(), (draws, x.numel()), generator=generator)
    stats = statistic(x[index])
    lo, hi = torch.quantile(stats, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Estimate(value, lo, hi)


def median(x: Tensor) -> Tensor:
    """The median along the last axis (the mean of the two middle values for an even count)."""
    return x.quantile(0.5, dim=-1)


def mean_and_se(values: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor]:
    """The mean over rows of equally shaped per-row values (a sequence, or a tensor's first
    axis), and its standard error (the sample standard deviation over sqrt(rows); NaN for a
    single row), computed in float64 and returned as float32."""
    stacked = (
        values.double() if isinstance(values, Tensor) else torch.stack([v.double() for v in values])
    )
    mean = stacked.mean(0)
    if len(stacked) < 2:
        return mean.float(), torch.full_like(mean, math.nan).float()
    se = stacked.std(0, correction=1) / math.sqrt(len(stacked))
    return mean.float(), se.float()


def present_mean_se(values: Tensor) -> tuple[Tensor, Tensor]:
    """`mean_and_se` over the first axis where a NaN is a row without that value (a patching
    group that names no position in the row): each value's mean and standard error are over
    the rows that have it (NaN with none; the SE NaN with fewer than two)."""
    stacked = values.double()
    have = ~stacked.isnan()
    n = have.sum(0)
    mean = stacked.nansum(0) / n  # 0 / 0: NaN where no row has it
    var = (stacked - mean).square().nansum(0) / (n - 1).clamp_min(1)
    se = torch.where(n >= 2, (var / n).sqrt(), torch.full_like(mean, math.nan))
    return mean.float(), se.float()
