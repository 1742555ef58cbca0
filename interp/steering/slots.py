"""A chunk of `steer_eval`: some slots (a prompt and a seed each) sampled under every condition
and each continuation scored, on the paired-sample engine (`interventions/conditions`).
A slot's seed depends on its index in the whole evaluation, never on its chunk, so the rows are
the same wherever they ran; the statistics over every row are computed by the caller."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interp.edits.value import Intervention
from interp.generation.generate import row_seed
from interp.interventions.conditions import Condition, ConditionRuns, run_conditions
from interp.interventions.metrics import kl_divergence
from interp.models.model import Model
from interp.steering import measures


@dataclass(frozen=True)
class Slot:
    """Slot `index` of the evaluation: its prompt's token ids, and the same prompt with the
    prompting baseline's instruction prepended (None: no prompting baseline)."""

    index: int
    prompt: list[int]
    instructed: list[int] | None = None


@dataclass(frozen=True)
class Sampled:
    """One continuation and its scores (see `steering.result.Scored`); the concept measure
    itself is taken from `text` and `mass` by the caller, who holds the concept."""

    text: str
    mass: float
    kl: float
    logprob_per_token: float
    repetition: float
    first_divergence: int | None
    divergence_chars: tuple[int, int] | None


def sample_slots(
    model: Model,
    slots: list[Slot],
    conditions: Sequence[tuple[Intervention | None, bool]],
    *,
    seed: int,
    concept_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    batch_size: int | None,
    progress: bool,
) -> list[list[Sampled]]:
    """Every slot sampled under every condition (`(intervention, prompted)`: prompted rows
    start from the instructed prompt; the first condition is the plain baseline), as one
    batched generation, each row scored against the baseline: `[condition][slot]`."""
    own = [
        Condition(edit, [list(s.instructed or s.prompt) for s in slots] if prompted else None)
        for edit, prompted in conditions
    ]
    done = run_conditions(
        model,
        [list(slot.prompt) for slot in slots],
        own,
        samples=1,
        seed=seed,
        seeds=[row_seed(seed, slot.index) for slot in slots],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        batch_size=batch_size,
        progress=progress,
    )
    rows, parted = done.rows, done.parted
    scores = iter(_score(model, done, concept_ids))
    out: list[list[Sampled]] = []
    for block, parts in zip(rows, parted, strict=True):
        out.append([])
        for run, part in zip(block, parts, strict=True):
            kl, logprob, mass = next(scores)
            repetition = measures.repetition(run.continuation_ids)
            text = run.continuation
            out[-1].append(Sampled(text, mass, kl, logprob, repetition, part.token, part.chars))
    return out


def _score(
    model: Model, runs: ConditionRuns, concept_ids: Sequence[int]
) -> list[tuple[float, float, float]]:
    """Each run's (KL per step, log-prob per token under the unsteered model from the original
    prompt, concept mass per step), condition-major."""
    ids = list(concept_ids)
    out: list[tuple[float, float, float]] = []
    rows = [row for block in runs.rows for row in block]
    for run, (mine, theirs) in zip(rows, runs.against_baseline(model), strict=True):
        if run.n_generated == 0:
            out.append((math.nan, math.nan, math.nan))
            continue
        kl = kl_divergence(mine, theirs)
        tokens = torch.tensor(run.continuation_ids, device=theirs.device)[:, None]
        logprob = theirs.gather(-1, tokens)[:, 0]
        mass = measures.concept_mass(mine, ids) if ids else torch.tensor([math.nan])
        out.append((float(kl.mean()), float(logprob.mean()), float(mass.mean())))
    return out
