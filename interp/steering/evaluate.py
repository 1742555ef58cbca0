"""`steer_eval`: a steering vector's effect on sampled text, as honestly as an ablation's. For
each prompt, N seeds; each seed is sampled unsteered, steered at every scale, along K random
directions of the vector's norm at every scale (the controls), and from the prompt with an
instruction prepended (the prompting baseline): all rows of one batched generation (the
paired-sample engine's parts, `interventions/conditions.py`; on an executor, each chunk of
slots one, `steering/slots.py`), so row k of every condition draws the same Gumbel noise as
the unsteered row k. Each text is then
scored teacher-forced: its run reproduced (under its own edit) against the unsteered model
from the original prompt."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch

from interp import inputs
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, describe, run_rows
from interp.generation.generate import row_seed
from interp.interventions.conditions import check_rows
from interp.models.model import Model
from interp.stats import Estimate
from interp.steering import measures
from interp.steering.measures import ConceptFn, ConceptWords
from interp.steering.result import Measures, Scored, SteeringEval
from interp.steering.slots import Slot, sample_slots
from interp.steering.vector import SteeringVector, SteerOp, Unit, Where, check_scale

Concept = Literal["words", "mass"] | ConceptFn


@dataclass(frozen=True)
class _Condition:
    kind: Literal["unsteered", "steered", "control", "prompted"]
    scale: float = 0.0
    direction: int = -1  # the control direction's index
    intervention: Intervention | None = None


def steer_eval(
    model: Model,
    prompts: Sequence[str],
    vector: SteeringVector,
    *,
    scales: Sequence[float],
    samples: int = 16,
    controls: int = 4,
    max_new_tokens: int = 40,
    concept_words: Sequence[str] = (),
    concept_patterns: Sequence[str] = (),
    concept: Concept = "words",
    prompt_baseline: str | None = None,
    op: SteerOp = "add",
    positions: Where = "all",
    unit: Unit = "vector",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    separability_by_layer: Sequence[Estimate] | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> SteeringEval:
    """Sample `samples` pairs per prompt at each scale (see the module) and measure the
    concept (`concept`: "words", the rate of words in the text that are forms of
    `concept_words` (any case, plurals, possessives) or match a `concept_patterns` regular
    expression; "mass", the log-probability on the words per step; or a callable of the text),
    the damage (KL from the unsteered model along the text, the text's log-prob per token
    under it, repeated 3-grams) and where each text first parts from its unsteered twin, each
    with a bootstrap 95% interval. Controls: `controls` random directions (seeded by
    `seed`) of the vector's norm, scaled alike. `prompt_baseline`: an instruction prepended
    to each prompt, unsteered, sampled with the same seeds. `executor`: where the slots (a
    prompt and a seed, under every condition) run (`interp.Ray(...)`; default this process);
    each slot's seed is its own wherever it runs, and the intervals are taken over every
    slot here. Returns a `SteeringEval`."""
    vector.check(model)
    texts = _prompts(prompts)
    scale_list = _scales(scales)
    check_counts(samples, controls)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise InvalidSettingError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    words = None
    if concept_words or concept_patterns:
        words = measures.concept_words(model, concept_words, concept_patterns)
    by_layer = _by_layer(separability_by_layer)
    concept_fn, concept_name = _concept(concept, words)
    instruction = None
    if prompt_baseline is not None:
        instruction = inputs.text(prompt_baseline, "the prompting baseline's instruction")
    vector.intervention(1.0, op=op, positions=positions, unit=unit)  # every setting, checked
    conditions = _conditions(vector, scale_list, controls, op, positions, unit, seed)
    conditions += [_Condition("prompted")] if instruction is not None else []
    check_rows(len(conditions), len(texts), samples)  # the whole evaluation, not a chunk's
    slots = len(texts) * samples
    ids = [model.encode(t) for t in texts]
    instructed = [model.encode(f"{instruction} {t}") for t in texts] if instruction else None
    task = partial(
        sample_slots,
        conditions=[(c.intervention, c.kind == "prompted") for c in conditions],
        seed=seed,
        concept_ids=list(words.token_ids) if words is not None else [],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        batch_size=batch_size,
        progress=progress and executor is None,
    )
    items = [
        Slot(j, ids[j // samples], None if instructed is None else instructed[j // samples])
        for j in range(slots)
    ]
    parts = run_rows(executor, model, task, items, "steer_eval")
    scored = [
        [
            Scored(
                j // samples,
                j % samples,
                row_seed(seed, j),
                row.text,
                concept_fn(row.text, row.mass),
                row.mass,
                row.kl,
                row.logprob_per_token,
                row.repetition,
                row.first_divergence,
                row.divergence_chars,
            )
            for j, row in enumerate(r for part in parts for r in part[c])
        ]
        for c in range(len(conditions))
    ]
    horizon = max_new_tokens

    def of(label: str, picked: list[int]) -> Measures:
        return Measures.of(label, [s for i in picked for s in scored[i]], horizon, seed)

    kinds = [(i, c) for i, c in enumerate(conditions)]
    steered = [
        of(f"scale {s:g}", [i for i, c in kinds if c.kind == "steered" and c.scale == s])
        for s in scale_list
    ]
    control_each = [
        [
            of(f"control {c.direction} at scale {s:g}", [i])
            for i, c in kinds
            if c.kind == "control" and c.scale == s
        ]
        for s in scale_list
    ]
    pooled = [
        of(
            f"controls at scale {s:g}",
            [i for i, c in kinds if c.kind == "control" and c.scale == s],
        )
        for s in scale_list
    ]
    prompted = of("prompting", [len(conditions) - 1]) if instruction is not None else None
    return SteeringEval(
        vector.record(),
        vector.layer,
        op,
        unit,
        positions,
        scale_list,
        samples,
        texts,
        horizon,
        concept_name,
        list(words.words) if words else [],
        list(words.patterns) if words else [],
        list(words.warnings) if words else [],
        of("unsteered", [0]),
        steered,
        pooled,
        control_each,
        instruction,
        prompted,
        by_layer,
        settings={
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "seed": seed,
            "controls": controls,
            **({} if executor is None else {"executor": describe(executor)}),
        },
    )


def _conditions(
    vector: SteeringVector,
    scales: list[float],
    controls: int,
    op: SteerOp,
    positions: Where,
    unit: Unit,
    seed: int,
) -> list[_Condition]:
    """Unsteered, then each scale steered, then each scale along each control direction."""
    g = torch.Generator().manual_seed(seed)
    randoms = torch.randn(controls, vector.vector.shape[0], generator=g)
    randoms = randoms / randoms.norm(dim=-1, keepdim=True) * vector.norm
    out = [_Condition("unsteered")]
    for s in scales:
        edits = vector.intervention(s, op=op, positions=positions, unit=unit)
        out.append(_Condition("steered", s, -1, edits))
    for s in scales:
        for d in range(controls):
            twin = SteeringVector(
                randoms[d],
                vector.layer,
                vector.model_name,
                "random",
                vector.position,
                None,
                vector.resid_norm,
                {},
                vector.provenance,
            )
            edits = twin.intervention(s, op=op, positions=positions, unit=unit)
            out.append(_Condition("control", s, d, edits))
    return out


def _concept(concept: Any, words: ConceptWords | None) -> tuple[Any, str]:
    """The concept measure as `(text, mass) -> float`, and what it is called."""
    if concept == "words" or concept == "mass":
        if words is None:
            raise InvalidSettingError(f"the concept measure {concept!r} needs concept words")
        if concept == "words":
            return (lambda text, mass: words.rate(text)), "concept-word rate"
        if not words.token_ids:  # no words, or none one token
            raise InvalidSettingError("no concept word is one token: the mass has no tokens")
        return (lambda text, mass: mass), "log-probability mass on the concept words per step"
    if callable(concept):
        name = getattr(concept, "__name__", "a callable")

        def call(text: str, mass: float) -> float:
            value = concept(text)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InvalidSettingError(f"the concept callable {name} returned {value!r:.40}")
            return float(value)

        return call, name
    raise InvalidSettingError(f"concept is 'words', 'mass' or a callable, got {concept!r:.40}")


def check_counts(samples: Any, controls: Any) -> None:
    """At least one sample per prompt; no fewer than zero controls (what the CLI checks
    before any model loads)."""
    for name, value, low in (("samples", samples, 1), ("controls", controls, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidSettingError(f"{name} must be an integer >= {low}, got {value!r}")


def _prompts(value: Sequence[str]) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise InvalidSettingError("the prompts are a non-empty list of texts")
    return [inputs.text(p, "a prompt") for p in value]


def _scales(value: Sequence[float]) -> list[float]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise InvalidSettingError("scales are a non-empty list of numbers")
    out = [check_scale(s) for s in value]
    if len(set(out)) != len(out):
        raise InvalidSettingError("scales are listed twice")
    return out


def _by_layer(value: Sequence[Estimate] | None) -> list[Estimate] | None:
    """Each layer's separability as the vectors give it (`SteeringVectors.separability`)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidSettingError("separability_by_layer is a list, one Estimate a layer")
    if not all(isinstance(e, Estimate) for e in value):
        raise InvalidSettingError(
            "separability_by_layer holds the vectors' separability (each an Estimate: "
            "SteeringVectors.separability)"
        )
    return list(value)
