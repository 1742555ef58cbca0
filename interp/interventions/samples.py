"""An intervention's effect on generated text over many paired samples.

Pair k generates from the prompt twice with one seed, as it is and intervened on: both draw the
same Gumbel noise at every step, so the texts part only where the intervention moved the
distribution far enough. One sample cannot tell an effect from luck; N pairs (run as one
batch each side) give rates and means with percentile-bootstrap 95% intervals. Greedy decoding
is one more pair, reported apart. Per pair: both texts, the first diverging token, the per-step
KL(baseline || intervened) along the baseline's tokens, and the change in the baseline text's
log-prob under the intervened model (both teacher-forced on the baseline's tokens).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.generation.generate import generate, row_seed
from interp.interventions import sites
from interp.interventions.effect import forced_logits
from interp.interventions.regenerate import first_divergence
from interp.interventions.replay import hooks_under, intervention_of
from interp.models.machine import available_memory
from interp.models.model import Model
from interp.stats import Estimate, bootstrap, median
from interp.trace.trace import Trace

MAX_SAMPLED_TOKENS = 2_000_000  # tokens one paired-samples call may generate
MAX_CONTROLS = 256  # control interventions of one call (each is a batch of its own)


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
            ],  # fmt: skip
        }

    def comparison(self) -> str:
        """The effect beside its controls, e.g. "KL 1.8 [1.5, 2.1] vs controls 0.2 [0.1,
        0.3]" (pooled over the controls' pairs), without a verdict."""
        if not self.controls:
            return f"KL {self.effect.kl_mean.text()}"
        pooled = torch.cat([p.kl.mean().view(1) for c in self.controls for p in c.pairs])
        return f"KL {self.effect.kl_mean.text()} vs controls {bootstrap(pooled).text()}"


def paired_samples(
    model: Model,
    trace: Trace,
    intervention: Intervention,
    *,
    samples: int = 16,
    max_new_tokens: int | None = None,
    controls: Sequence[Intervention] = (),
    greedy: bool = True,
    progress: bool = False,
) -> PairedSamples:
    """`samples` pairs of generations from the trace's prompt with its sampling settings
    (seed k of the batch is `row_seed(trace's seed, k)`), as it is and with `intervention`
    (and with each of `controls`), `max_new_tokens` each (default: the trace's). An
    intervention is an ablation's edits or any `interp.Intervention`."""
    if samples < 1:
        raise InvalidSettingError(f"samples must be at least 1, got {samples}")
    trace.bind(model)
    trace.require_plain("paired samples", replayed=True)
    recorded = intervention_of(trace)  # both sides of every pair run under it
    s = trace.settings
    horizon = max_new_tokens if max_new_tokens is not None else max(trace.n_generated, 1)
    if horizon < 1:
        raise InvalidSettingError(f"max new tokens must be at least 1, got {horizon}")
    check_size(model, [trace], samples, len(controls), max_new_tokens)
    prompt = [trace.token_ids[: trace.prompt_len].tolist()]
    base_seed = s.seed if s.seed is not None else 0
    options: dict[str, Any] = {
        "max_new_tokens": horizon,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "stop_at_eos": s.stop_at_eos,
        "hooks": [],
        "progress": progress,
    }
    sampled = {"num_samples": samples, "temperature": s.temperature, "seed": base_seed, **options}
    seeds = [row_seed(base_seed, k) for k in range(samples)]

    def baseline_of(run: dict[str, Any]) -> tuple[list[Trace], Tensor]:
        rows = list(generate(model, prompt, intervention=recorded, **run))
        return rows, _logprobs(model, rows, recorded)

    def pairs_of(
        move: Intervention, run: dict[str, Any], rows: list[Trace], logp: Tensor, seeds: list
    ) -> list[Pair]:
        edits = move if recorded is None else recorded + move
        moved = list(generate(model, prompt, intervention=edits, **run))
        moved_logp = _logprobs(model, rows, edits)
        return [_pair(model, seed, b, m, logp[i], moved_logp[i])
                for i, (seed, b, m) in enumerate(zip(seeds, rows, moved, strict=True))]  # fmt: skip

    rows, logp = baseline_of(sampled)  # shared by the intervention and every control
    effect = _stats(
        _label(intervention), horizon, pairs_of(intervention, sampled, rows, logp, seeds)
    )
    out_controls = [
        _stats(_label(c), horizon, pairs_of(c, sampled, rows, logp, seeds)) for c in controls
    ]
    greedy_pairs = []
    if greedy:
        greedy_run = {"num_samples": 1, "temperature": 0.0, "seed": 0, **options}
        g_rows, g_logp = baseline_of(greedy_run)
        greedy_pairs = pairs_of(intervention, greedy_run, g_rows, g_logp, [None])
    return PairedSamples(samples, effect, greedy_pairs, out_controls)


def check_size(
    model: Model, rows: Sequence[Trace], samples: int, controls: int, max_new_tokens: int | None
) -> None:
    """Refuse, before anything runs, paired samples that would generate more than
    `MAX_SAMPLED_TOKENS` tokens or hold more logits than the memory available."""
    for name, value in (("samples", samples), ("controls", controls)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSettingError(f"{name} must be an integer, got {value!r}")
    if controls > MAX_CONTROLS:
        raise InvalidSettingError(
            f"{controls:,} controls is more than the {MAX_CONTROLS} one call runs (each is a "
            "batch of generations of its own); use fewer"
        )
    horizons = [max_new_tokens or max(t.n_generated, 1) for t in rows]
    tokens = samples * (2 + controls) * sum(horizons) + 2 * sum(horizons)  # and greedy pairs
    if tokens > MAX_SAMPLED_TOKENS:
        raise InvalidSettingError(
            f"{samples} paired samples with {controls} controls over {len(rows)} row(s) would "
            f"generate about {tokens:,} tokens, more than the {MAX_SAMPLED_TOKENS:,} one call "
            "may; use fewer samples, controls or new tokens"
        )
    longest = max(t.prompt_len + h for t, h in zip(rows, horizons, strict=True))
    need = 3 * samples * longest * model.d_vocab * 4  # both sides' log-probs and the logits
    have = available_memory()
    if have is not None and need > have:
        raise InvalidSettingError(
            f"{samples} paired samples of {longest} positions need about {need / 1e9:.1f} GB "
            f"for their log-probs, more than the {have / 1e9:.1f} GB available; use fewer "
            "samples or new tokens"
        )


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
        return _stats(parts[0].label, parts[0].horizon, pairs)

    first = rows[0]
    controls = [pooled([r.controls[k] for r in rows]) for k in range(len(first.controls))]
    greedy = [p for i, r in enumerate(rows) for p in numbered(i, r.greedy)]
    return PairedSamples(first.samples, pooled([r.effect for r in rows]), greedy, controls)


def control_targets(
    model: Model,
    size: int,
    count: int,
    exclude: Sequence[tuple[int, int]],
    seed: int = 0,
) -> list[list[tuple[int, int]]]:
    """`count` random sets of `size` heads, none of them in `exclude` (the heads that matter:
    the intervened ones, the strongest by role score or by a sweep), seeded."""
    banned = set(exclude)
    pool = [(l_, h) for l_ in range(model.n_layers) for h in range(model.n_heads)]
    pool = [head for head in pool if head not in banned]
    if len(pool) < size:
        raise InvalidSettingError(
            f"only {len(pool)} heads are left outside the {len(banned)} excluded: too few for "
            f"a control of {size}"
        )
    rng = random.Random(seed)
    return [sorted(rng.sample(pool, size)) for _ in range(count)]


def _logprobs(model: Model, rows: list[Trace], edits: Intervention | None) -> Tensor:
    """Each row's log-softmax at every position, teacher-forced on its own tokens, as it is or
    under `edits` (`[row, pos, vocab]`, right-padded)."""
    hooks = hooks_under(model, rows, edits)
    return forced_logits(model, rows, hooks).float().log_softmax(-1).cpu()


def _pair(
    model: Model, seed: int | None, base: Trace, moved: Trace, logp: Tensor, moved_logp: Tensor
) -> Pair:
    p, n = base.prompt_len, base.n_positions
    steps = slice(p - 1, n - 1)  # the positions predicting each continuation token
    lp, mlp = logp[steps], moved_logp[steps]
    tokens = base.token_ids[p:n, None]
    kl = (lp.exp() * (lp - mlp)).sum(-1).clamp_min(0.0)
    delta = (mlp.gather(-1, tokens) - lp.gather(-1, tokens))[:, 0]
    parted = first_divergence(base, moved)
    chars = None
    if parted is not None:
        chars = (
            len(model.decode(base.continuation_ids[:parted])),
            len(model.decode(moved.continuation_ids[:parted])),
        )
    return Pair(seed, base.continuation, moved.continuation, parted, kl, delta, chars)


def _stats(label: str, horizon: int, pairs: list[Pair]) -> SampleStats:
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


def _label(intervention: Intervention) -> str:
    """An ablation's targets ("L5H1,L9H3"), or any other intervention's own label."""
    described = sites.describe(intervention)
    return intervention.label if described is None else described.label
