"""The one paired-sample engine: conditions x seeds as the rows of one batched generation.

A condition is a way to sample (plain, under an intervention, from a prompt of its own); slot j
is a prompt and a seed, `row_seed(seed, j)`, prompt-major. Every condition samples every slot
as rows of one `generate` call with per-row interventions and seeds, so row j of each
condition draws the same Gumbel noise as row j of the baseline (condition 0): two rows of a
slot part only where the conditions moved the distribution. Here too, once: where each row
parts from its baseline row, and the teacher-forced log-probs the consumers score
(`paired_samples`: the baseline's texts under each intervention; `steer_eval`: each
condition's texts under the unsteered model).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.generation.generate import generate, row_seed
from interp.interventions.measuring import logits_of, measure
from interp.interventions.regenerate import first_divergence
from interp.models.model import Model
from interp.trace.trace import Trace

MAX_ROWS = 20_000  # sampled continuations one call may generate
SCORE_BYTES = 400 << 20  # logits held at once while scoring
PURPOSE = "paired samples"

Steps = Float[Tensor, "step vocab"]


@dataclass(frozen=True)
class Condition:
    """One way to sample: under `intervention` (on top of what every row runs under; None:
    nothing more) and from `prompts`, its own token ids for each shared prompt (a prompting
    baseline; None: the shared prompts)."""

    intervention: Intervention | None = None
    prompts: Sequence[Sequence[int]] | None = None


@dataclass(frozen=True)
class Parting:
    """Where a row first parts from the baseline row of its slot: the continuation index
    (`token`; None: identical) and each text's length in characters before it (`chars`:
    the baseline's, the row's)."""

    token: int | None
    chars: tuple[int, int] | None


@dataclass
class ConditionRuns:
    """Every condition's rows (`rows[c][j]`: condition c at slot j; condition 0 is the
    baseline), each slot's seed and each row's parting from the baseline row of its slot."""

    prompts: list[list[int]]
    conditions: list[Condition]
    under: Intervention | None  # what every row runs under, before its condition's
    samples: int  # slots per prompt: slot j is prompt j // samples, sample j % samples
    seeds: list[int]
    rows: list[list[Trace]]
    parted: list[list[Parting]]

    def baseline_steps(self, model: Model, condition: int | None = None) -> Iterator[Steps]:
        """Each baseline row's log-probs at its continuation's steps, teacher-forced as it
        ran, or under condition `condition`'s intervention too (the same tokens, moved); all
        in one forward, whose memory the caller bounds (`samples.check_size`)."""
        move = None if condition is None else self.conditions[condition].intervention
        rows = self.rows[0]
        own = measure(model, rows, intervention=move, purpose=PURPOSE).logits.float()
        for i, run in enumerate(rows):
            yield _steps(own[i], run.prompt_len, run.n_generated)

    def against_baseline(self, model: Model) -> Iterator[tuple[Steps, Steps]]:
        """Every row (condition-major): its continuation's log-probs at each step as it ran,
        beside the same tokens' under the baseline, after its slot's shared prompt on the
        plain model (so the baseline must be that: no intervention, the shared prompts); in
        chunks of rows whose logits hold at most `SCORE_BYTES`."""
        base = self.conditions[0]
        if self.under is not None or base.intervention is not None or base.prompts is not None:
            raise InvalidSettingError(
                "scoring against the baseline needs a plain baseline from the shared prompts"
            )
        rows = [row for block in self.rows for row in block]
        slots = len(self.seeds)
        longest = max(r.n_positions for r in rows) + max(len(p) for p in self.prompts)
        size = max(1, min(64, SCORE_BYTES // (2 * longest * model.d_vocab * 4)))
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            own = measure(model, chunk, purpose=PURPOSE).logits.float()
            before = [self.prompts[(start + i) % slots // self.samples] for i in range(len(chunk))]
            refs = [b + list(r.continuation_ids) for b, r in zip(before, chunk, strict=True)]
            ref = logits_of(model, refs).float()
            for i, run in enumerate(chunk):
                t = run.n_generated
                yield _steps(own[i], run.prompt_len, t), _steps(ref[i], len(before[i]), t)


def run_conditions(
    model: Model,
    prompts: Sequence[Sequence[int]],
    conditions: Sequence[Condition],
    *,
    samples: int,
    seed: int,
    max_new_tokens: int,
    under: Intervention | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_at_eos: bool = True,
    batch_size: int | None = None,
    progress: bool = False,
    seeds: Sequence[int] | None = None,
) -> ConditionRuns:
    """Sample `samples` seeds of each of `prompts` (token ids) under each of `conditions`
    (the first is the baseline), every row under `under` first, as one batched generation
    (see the module). `seeds`: each slot's own (default: slot j's `row_seed(seed, j)`), so a
    chunk of a larger run keeps its slots' seeds. Returns the rows and where each parts from
    its baseline row."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InvalidSettingError(f"samples must be an integer >= 1, got {samples!r}")
    if not conditions:
        raise InvalidSettingError("paired samples need at least one condition: the baseline")
    check_rows(len(conditions), len(prompts), samples)
    slots = len(prompts) * samples
    run_prompts: list[list[int]] = []
    run_edits: list[Intervention | None] = []
    for c in conditions:
        own = prompts if c.prompts is None else c.prompts
        if len(own) != len(prompts):
            raise InvalidSettingError(
                f"a condition's own prompts are one per shared prompt ({len(prompts)}), got "
                f"{len(own)}"
            )
        move = c.intervention
        edits = move if under is None else under if move is None else under + move
        run_prompts += [list(p) for p in own for _ in range(samples)]
        run_edits += [edits] * slots
    own_seeds = [row_seed(seed, j) for j in range(slots)] if seeds is None else list(seeds)
    if len(own_seeds) != slots:
        raise InvalidSettingError(
            f"seeds= takes one seed per slot ({slots}), got {len(seeds or [])}"
        )
    runs = list(
        generate(
            model,
            run_prompts,
            seeds=own_seeds * len(conditions),
            intervention=run_edits,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_at_eos=stop_at_eos,
            hooks=[],
            batch_size=batch_size,
            progress=progress,
        )
    )
    rows = [runs[c * slots : (c + 1) * slots] for c in range(len(conditions))]
    parted = [[parting(model, b, r) for b, r in zip(rows[0], block, strict=True)] for block in rows]
    shared = [list(p) for p in prompts]
    return ConditionRuns(shared, list(conditions), under, samples, own_seeds, rows, parted)


def check_rows(conditions: int, prompts: int, samples: int) -> None:
    """Refuse more sampled continuations than one call runs (`MAX_ROWS`), before any runs."""
    rows = conditions * prompts * samples
    if rows > MAX_ROWS:
        raise InvalidSettingError(
            f"{rows:,} sampled continuations ({conditions} conditions x {prompts} prompts x "
            f"{samples} samples) is more than the {MAX_ROWS:,} one call runs; use fewer"
        )


def parting(model: Model, base: Trace, run: Trace) -> Parting:
    """Where `run` first parts from `base`: the token, and each text's characters before it."""
    token = first_divergence(base, run)
    if token is None:
        return Parting(None, None)
    chars = (
        len(model.decode(base.continuation_ids[:token])),
        len(model.decode(run.continuation_ids[:token])),
    )
    return Parting(token, chars)


def _steps(logits: Float[Tensor, "pos vocab"], first: int, n: int) -> Steps:
    """The log-probs at the `n` steps predicting the tokens from position `first` on."""
    return logits[first - 1 : first - 1 + n].log_softmax(-1)
