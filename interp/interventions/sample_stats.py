"""What paired samples return: each pair (`Pair`), the aggregates over an intervention's pairs
with their 95% intervals (`SampleStats`), the whole (`PairedSamples`) and the pooling of a
set's rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.stats import Estimate, bootstrap, median


@dataclass
class Pair:
    """One pair: the baseline and intervened continuations of one seed (None: greedy), of
    one row of a set (`row`; None for a trace)."""

    seed: int | None
    baseline_text: str
    ablated_text: str
    first_divergence: int | None  # continuation index; None: identical
    kl: Tensor  # [step] KL(baseline || intervened) at each baseline token
    delta_logprob: Tensor  # [step] intervened minus baseline log-prob of each baseline token
    divergence_chars: tuple[int, int] | None = None  # where each text parts, in characters
    row: int | None = None

    def json(self) -> dict[str, Any]:
        return {
            **({} if self.row is None else {"row": self.row}),
            "seed": self.seed,
            "baseline_text": self.baseline_text,
            "ablated_text": self.ablated_text,
            "first_divergence": self.first_divergence,
            "kl_mean": _mean(self.kl),
            "delta_logprob_mean": _mean(self.delta_logprob),
            "divergence_chars": None
            if self.divergence_chars is None
            else list(self.divergence_chars),
        }


@dataclass
class SampleStats:
    """Aggregates over the pairs of one intervention (`label`: its targets), each with its
    95% interval. A pair counts as diverged when its texts differ within the first `horizon`
    tokens; the first-divergence median counts an undiverged pair at `horizon` (censored)."""

    label: str
    horizon: int
    pairs: list[Pair]
    divergence_rate: Estimate
    first_divergence_median: Estimate
    kl_mean: Estimate
    delta_logprob_per_token: Estimate
    kl_curve: Tensor  # [3, step]: the mean KL over pairs at each step, and its 95% band

    def aggregates(self) -> dict[str, Any]:
        return {
            "divergence_rate": self.divergence_rate.json(),
            "first_divergence_median": self.first_divergence_median.json(),
            "kl_mean": self.kl_mean.json(),
            "delta_logprob_per_token": self.delta_logprob_per_token.json(),
        }

    def line(self) -> str:
        return (
            f"divergence {self.divergence_rate.text(2)}, first divergence (median) "
            f"{self.first_divergence_median.text(1)}, KL {self.kl_mean.text()}, change in "
            f"log-prob per token {self.delta_logprob_per_token.text()}"
        )


@dataclass
class PairedSamples:
    """The intervention's pairs and aggregates, the greedy pair (one per row), and the same for
    each control (random targets of the same size)."""

    samples: int  # pairs per row
    effect: SampleStats
    greedy: list[Pair]
    controls: list[SampleStats]

    def summary(self) -> dict[str, Any]:
        """The keys `interp ablate --samples` adds to effect.json."""
        return {
            "samples": self.samples,
            "horizon": self.effect.horizon,
            "pairs": [p.json() for p in self.effect.pairs],
            **self.effect.aggregates(),
            "kl_curve": _curve(self.effect.kl_curve),
            "greedy": [g.json() for g in self.greedy],
            "controls": [
                {"heads": c.label.split(","), **c.aggregates(), "kl_curve": _curve(c.kl_curve)}
                for c in self.controls
            ],
            # each control pair's first divergence, censored at the horizon (the histogram's)
            "control_first_divergences": [
                self.effect.horizon
                if p.first_divergence is None
                else min(p.first_divergence, self.effect.horizon)
                for c in self.controls
                for p in c.pairs
            ],
        }

    def comparison(self) -> str:
        """The effect beside its controls, e.g. "KL 1.8 [1.5, 2.1] vs controls 0.2 [0.1,
        0.3]" (pooled over the controls' pairs), without a verdict."""
        if not self.controls:
            return f"KL {self.effect.kl_mean.text()}"
        pooled = torch.cat([p.kl.mean().view(1) for c in self.controls for p in c.pairs])
        return f"KL {self.effect.kl_mean.text()} vs controls {bootstrap(pooled).text()}"


def pool(rows: Sequence[PairedSamples]) -> PairedSamples:
    """The pairs of several rows (a set's, each with its own interventions on the same
    targets) as one sample: every aggregate over all of their pairs, each pair keeping its
    row."""
    if not rows:
        raise InvalidSettingError("nothing to pool: no rows")

    def numbered(i: int, pairs: list[Pair]) -> list[Pair]:
        return [replace(p, row=i) for p in pairs]

    def pooled(parts: list[SampleStats]) -> SampleStats:
        pairs = [p for i, part in enumerate(parts) for p in numbered(i, part.pairs)]
        return stats_of(parts[0].label, parts[0].horizon, pairs)

    first = rows[0]
    controls = [pooled([r.controls[k] for r in rows]) for k in range(len(first.controls))]
    greedy = [p for i, r in enumerate(rows) for p in numbered(i, r.greedy)]
    return PairedSamples(first.samples, pooled([r.effect for r in rows]), greedy, controls)


def stats_of(label: str, horizon: int, pairs: list[Pair]) -> SampleStats:
    parted = [p.first_divergence for p in pairs]
    diverged = [1.0 if d is not None and d < horizon else 0.0 for d in parted]
    censored = [float(d) if d is not None and d < horizon else float(horizon) for d in parted]
    kl = [_mean(p.kl) for p in pairs]
    delta = [_mean(p.delta_logprob) for p in pairs]
    return SampleStats(
        label,
        horizon,
        pairs,
        bootstrap(diverged),
        bootstrap(censored, median),
        bootstrap([x for x in kl if not math.isnan(x)]),
        bootstrap([x for x in delta if not math.isnan(x)]),
        _band([p.kl for p in pairs], horizon),
    )


def _band(curves: list[Tensor], horizon: int) -> Tensor:
    """Mean over pairs at each step (of the pairs that reached it) and mean ± 1.96 SE."""
    out = torch.full((3, horizon), math.nan)
    for j in range(horizon):
        at = torch.tensor([float(c[j]) for c in curves if c.numel() > j])
        if at.numel():
            mean = float(at.mean())
            se = float(at.std() / math.sqrt(at.numel())) if at.numel() > 1 else 0.0
            out[:, j] = torch.tensor([mean, mean - 1.96 * se, mean + 1.96 * se])
    return out


def _mean(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else math.nan


def _curve(band: Tensor) -> dict[str, list[float | None]]:
    def clean(row: Tensor) -> list[float | None]:
        return [None if math.isnan(v) else round(v, 6) for v in row.tolist()]

    return {"mean": clean(band[0]), "lo": clean(band[1]), "hi": clean(band[2])}
