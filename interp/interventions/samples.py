"""An intervention's effect on generated text over many paired samples.

Pair k generates from the prompt twice with one seed, as it is and intervened on: both draw the
same Gumbel noise at every step, so the texts part only where the intervention moved the
distribution far enough. One sample cannot tell an effect from luck; N pairs (every side's
rows one batched generation, `conditions.run_conditions`) give rates and means with
percentile-bootstrap 95% intervals. Greedy decoding
is one more pair, reported apart. Per pair: both texts, the first diverging token, the per-step
KL(baseline || intervened) along the baseline's tokens, and the change in the baseline text's
log-prob under the intervened model (both teacher-forced on the baseline's tokens).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.interventions import sites
from interp.interventions.conditions import Condition, ConditionRuns, run_conditions
from interp.interventions.metrics import kl_divergence
from interp.interventions.replay import intervention_of
from interp.interventions.sample_stats import Pair, PairedSamples, stats_of
from interp.models.machine import available_memory
from interp.models.model import Model
from interp.trace.trace import Trace

MAX_SAMPLED_TOKENS = 2_000_000  # tokens one paired-samples call may generate
MAX_CONTROLS = 256  # control interventions of one call (each samples as many rows again)


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
    options: dict[str, Any] = {
        "max_new_tokens": horizon,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "stop_at_eos": s.stop_at_eos,
        "under": recorded,
        "progress": progress,
    }
    moves = [intervention, *controls]
    runs = run_conditions(
        model,
        prompt,
        [Condition(), *(Condition(m) for m in moves)],
        samples=samples,
        seed=s.seed if s.seed is not None else 0,
        temperature=s.temperature,
        **options,
    )
    effect, *out_controls = [
        stats_of(_label(m), horizon, pairs)
        for m, pairs in zip(moves, _pairs(model, runs), strict=True)
    ]
    greedy_pairs = []
    if greedy:
        plain = [Condition(), Condition(intervention)]
        greedy_run = run_conditions(
            model, prompt, plain, samples=1, seed=0, temperature=0.0, **options
        )
        greedy_pairs = [replace(p, seed=None) for p in _pairs(model, greedy_run)[0]]
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
            f"{controls:,} controls is more than the {MAX_CONTROLS} one call runs (each samples "
            "as many rows again); use fewer"
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


def _pairs(model: Model, runs: ConditionRuns) -> list[list[Pair]]:
    """Each condition's pairs (the baseline's aside): per seed, both texts, where they part,
    and along the baseline's tokens the KL(baseline || intervened) and the change in
    log-prob, both teacher-forced."""
    base = [lp.cpu() for lp in runs.baseline_steps(model)]  # shared by every condition
    out = []
    for c in range(1, len(runs.conditions)):
        pairs = []
        moved = runs.baseline_steps(model, c)
        for j, (b, lp, mlp) in enumerate(zip(runs.rows[0], base, moved, strict=True)):
            mlp = mlp.cpu()
            tokens = b.token_ids[b.prompt_len : b.n_positions, None]
            delta = (mlp.gather(-1, tokens) - lp.gather(-1, tokens))[:, 0]
            m, part = runs.rows[c][j], runs.parted[c][j]
            kl = kl_divergence(lp, mlp)
            pairs.append(
                Pair(
                    runs.seeds[j], b.continuation, m.continuation, part.token, kl, delta, part.chars
                )
            )
        out.append(pairs)
    return out


def _label(intervention: Intervention) -> str:
    """An ablation's targets ("L5H1,L9H3"), or any other intervention's own label."""
    described = sites.describe(intervention)
    return intervention.label if described is None else described.label
