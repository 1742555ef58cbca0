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

import random
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.generation.generate import generate, row_seed
from interp.interventions import sites
from interp.interventions.measuring import measure
from interp.interventions.metrics import kl_divergence
from interp.interventions.regenerate import first_divergence
from interp.interventions.replay import intervention_of
from interp.interventions.sample_stats import Pair, PairedSamples, stats_of
from interp.models.machine import available_memory
from interp.models.model import Model
from interp.trace.trace import Trace

MAX_SAMPLED_TOKENS = 2_000_000  # tokens one paired-samples call may generate
MAX_CONTROLS = 256  # control interventions of one call (each is a batch of its own)


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
        return rows, _logprobs(model, rows)

    def pairs_of(
        move: Intervention, run: dict[str, Any], rows: list[Trace], logp: Tensor, seeds: list
    ) -> list[Pair]:
        edits = move if recorded is None else recorded + move
        moved = list(generate(model, prompt, intervention=edits, **run))
        moved_logp = _logprobs(model, rows, move)
        return [
            _pair(model, seed, b, m, logp[i], moved_logp[i])
            for i, (seed, b, m) in enumerate(zip(seeds, rows, moved, strict=True))
        ]

    rows, logp = baseline_of(sampled)  # shared by the intervention and every control
    effect = stats_of(
        _label(intervention), horizon, pairs_of(intervention, sampled, rows, logp, seeds)
    )
    out_controls = [
        stats_of(_label(c), horizon, pairs_of(c, sampled, rows, logp, seeds)) for c in controls
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


def _logprobs(model: Model, rows: list[Trace], move: Intervention | None = None) -> Tensor:
    """Each row's log-softmax at every position, teacher-forced on its own tokens, as it ran
    or under `move` too (`[row, pos, vocab]`, right-padded)."""
    logits = measure(model, rows, intervention=move, purpose="paired samples").logits
    return logits.float().log_softmax(-1).cpu()


def _pair(
    model: Model, seed: int | None, base: Trace, moved: Trace, logp: Tensor, moved_logp: Tensor
) -> Pair:
    p, n = base.prompt_len, base.n_positions
    steps = slice(p - 1, n - 1)  # the positions predicting each continuation token
    lp, mlp = logp[steps], moved_logp[steps]
    tokens = base.token_ids[p:n, None]
    kl = kl_divergence(lp, mlp)
    delta = (mlp.gather(-1, tokens) - lp.gather(-1, tokens))[:, 0]
    parted = first_divergence(base, moved)
    chars = None
    if parted is not None:
        chars = (
            len(model.decode(base.continuation_ids[:parted])),
            len(model.decode(moved.continuation_ids[:parted])),
        )
    return Pair(seed, base.continuation, moved.continuation, parted, kl, delta, chars)


def _label(intervention: Intervention) -> str:
    """An ablation's targets ("L5H1,L9H3"), or any other intervention's own label."""
    described = sites.describe(intervention)
    return intervention.label if described is None else described.label
