"""What a steering evaluation found: each condition's measures with bootstrap 95% intervals
(unsteered, each scale steered, each scale's random-direction controls, the prompting
baseline), at each scale whether the steered interval clears the controls' (or the controls
are degenerate, and no claim is made), where prompting does better, and a few pairs to read.
Results only: `interp.report.steering` draws them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from interp.stats import Estimate, bootstrap

MEASURES = ("concept", "concept_mass", "kl", "logprob_per_token", "repetition", "first_divergence")
Verdict = Literal["clears", "does not clear", "controls degenerate", "no controls"]


@dataclass
class Scored:
    """One sampled continuation and what it scored: `concept` (the chosen concept measure),
    `concept_mass` (mean per step of the log-probability on the concept's tokens), `kl`
    (mean per step of KL(this run || the unsteered model) along its own text),
    `logprob_per_token` (its text under the unsteered model, from the original prompt),
    `repetition` (repeated 3-grams) and its first divergence from the unsteered sample of the
    same seed (None: identical)."""

    prompt: int
    sample: int
    seed: int
    text: str
    concept: float
    concept_mass: float
    kl: float
    logprob_per_token: float
    repetition: float
    first_divergence: int | None
    divergence_chars: tuple[int, int] | None = None  # where the texts part, in characters


@dataclass
class Measures:
    """A condition's measures over its samples, each a value with its 95% interval.
    `first_divergence`: the mean token index at which a text first parts from the unsteered
    text of its seed, censored at the horizon (a text that never parts counts as `horizon`)."""

    label: str
    samples: list[Scored]
    concept: Estimate
    concept_mass: Estimate
    kl: Estimate
    logprob_per_token: Estimate
    repetition: Estimate
    first_divergence: Estimate

    @classmethod
    def of(cls, label: str, samples: list[Scored], horizon: int, seed: int = 0) -> Measures:
        def est(values: list[float]) -> Estimate:
            return bootstrap([v for v in values if math.isfinite(v)], seed=seed)

        parted = [
            float(horizon if s.first_divergence is None else min(s.first_divergence, horizon))
            for s in samples
        ]

        def column(name: str) -> Estimate:
            return est([getattr(s, name) for s in samples])

        return cls(
            label,
            samples,
            column("concept"),
            column("concept_mass"),
            column("kl"),
            column("logprob_per_token"),
            column("repetition"),
            est(parted),
        )

    def json(self) -> dict[str, Any]:
        return {m: getattr(self, m).json() for m in MEASURES}


@dataclass
class SteeringEval:
    """A steering vector's effect on sampled text at each of `scales` (see `steer_eval`)."""

    vector: dict[str, Any]  # the vector's record (layer, site, norm, how it was made)
    layer: int
    op: str
    unit: str
    positions: str
    scales: list[float]
    samples: int  # pairs per prompt
    prompts: list[str]
    horizon: int
    concept: str  # what the concept measure is
    concept_words: list[str]
    concept_patterns: list[str]
    warnings: list[str]
    unsteered: Measures
    steered: list[Measures]  # one per scale
    controls: list[Measures]  # per scale, pooled over the control directions
    control_each: list[list[Measures]]  # [scale][direction]
    instruction: str | None
    prompt_baseline: Measures | None
    separability_by_layer: list[Estimate] | None = None  # mean and 2.5-97.5% over splits
    pairs_kept: int = 3
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[Verdict]:
        """Per scale, the steered concept interval against the control directions' at that
        scale: "clears" (its low end above every control's high end), "does not clear",
        "controls degenerate" (every control's interval has zero width or is undefined, as
        0 [0, 0] when no control text has a concept word: clearing it would only mean "above
        that constant", so no claim is made) or "no controls"."""
        out: list[Verdict] = []
        for steered, each in zip(self.steered, self.control_each, strict=True):
            if not each:
                out.append("no controls")
            elif all(degenerate(c.concept) for c in each):
                out.append("controls degenerate")
            elif steered.concept.lo > max(c.concept.hi for c in each):
                out.append("clears")
            else:
                out.append("does not clear")
        return out

    @property
    def smallest_clear_scale(self) -> float | None:
        """The smallest scale whose verdict is "clears" (None where none is: without
        controls, or where every control's interval is degenerate)."""
        clear = [s for s, v in zip(self.scales, self.verdicts, strict=True) if v == "clears"]
        return min(clear) if clear else None

    @property
    def prompting_better_at(self) -> list[float]:
        """The scales at which the prompting baseline has both a higher concept value and a
        lower KL than steering has."""
        b = self.prompt_baseline
        if b is None:
            return []
        return [
            scale
            for scale, s in zip(self.scales, self.steered, strict=True)
            if b.concept.value > s.concept.value and b.kl.value < s.kl.value
        ]

    def pairs(self) -> list[dict[str, Any]]:
        """A few pairs per scale: the unsteered and steered texts of one seed, and where they
        part."""
        base = {(s.prompt, s.sample): s for s in self.unsteered.samples}
        out = []
        for scale, steered in zip(self.scales, self.steered, strict=True):
            for s in steered.samples[: self.pairs_kept]:
                b = base[(s.prompt, s.sample)]
                out.append(
                    {
                        "scale": scale,
                        "prompt": self.prompts[s.prompt],
                        "seed": s.seed,
                        "unsteered_text": b.text,
                        "steered_text": s.text,
                        "first_divergence": s.first_divergence,
                        "divergence_chars": None
                        if s.divergence_chars is None
                        else list(s.divergence_chars),
                    }
                )
        return out

    def sentence(self) -> str:
        """What the numbers show, in one or two sentences, with no verdict word."""
        top = max(range(len(self.scales)), key=lambda i: self.steered[i].concept.value)
        text = (
            f"Unsteered, the concept measure is {self.unsteered.concept.text()}; steered at "
            f"layer {self.layer}, it is highest at scale {self.scales[top]:g}: "
            f"{self.steered[top].concept.text()} (KL {self.steered[top].kl.text(2)})."
        )
        clear = self.smallest_clear_scale
        verdicts = self.verdicts
        flat = [s for s, v in zip(self.scales, verdicts, strict=True) if v == "controls degenerate"]
        if not any(self.control_each):
            text += " No random-direction controls were run."
        elif len(flat) == len(self.scales):
            text += (
                " Every random direction's concept interval has zero width at every scale (the "
                "measure is constant along them), so clearing them would only mean exceeding "
                "that constant: no claim is made about the controls."
            )
        else:
            if clear is None:
                text += " At no scale does its interval clear every random direction's."
            else:
                text += (
                    f" The smallest scale whose interval clears every random direction's is "
                    f"{clear:g}."
                )
            if flat:
                text += (
                    f" At scale(s) {', '.join(f'{s:g}' for s in flat)} every random "
                    "direction's interval has zero width: no claim is made there."
                )
        b = self.prompt_baseline
        if b is not None:
            text += (
                f" Prompting with {self.instruction!r} gives {b.concept.text()} at KL "
                f"{b.kl.text(2)}"
            )
            better = self.prompting_better_at
            text += (
                f": more concept at less damage than steering at scale(s) "
                f"{', '.join(f'{s:g}' for s in better)}."
                if better
                else "; at every scale, steering has more concept or less damage."
            )
        return text

    def json(self) -> dict[str, Any]:
        """The keys of steering.json."""
        return {
            "layer": self.layer,
            "site": self.vector.get("site"),
            "op": self.op,
            "unit": self.unit,
            "positions": self.positions,
            "scales": self.scales,
            "samples": self.samples,
            "prompts": self.prompts,
            "max_new_tokens": self.horizon,
            "concept": self.concept,
            "concept_words": self.concept_words,
            "concept_patterns": self.concept_patterns,
            "warnings": self.warnings,
            "vector": self.vector,
            "unsteered": self.unsteered.json(),
            "steered": [
                {"scale": s, "verdict": v, **m.json()}
                for s, v, m in zip(self.scales, self.verdicts, self.steered, strict=True)
            ],
            "controls": [
                {"scale": s, "directions": len(each), **m.json()}
                for s, m, each in zip(self.scales, self.controls, self.control_each, strict=True)
            ],
            "prompt_baseline": None
            if self.prompt_baseline is None
            else {"instruction": self.instruction, **self.prompt_baseline.json()},
            "smallest_clear_scale": self.smallest_clear_scale,
            "prompting_better_at": self.prompting_better_at,
            "separability_by_layer": None
            if self.separability_by_layer is None
            else [e.json() for e in self.separability_by_layer],
            "pairs": self.pairs(),
            "summary": self.sentence(),
            "settings": self.settings,
        }


def degenerate(estimate: Estimate) -> bool:
    """An interval of zero width, or undefined: it cannot tell a value apart from anything."""
    return not (math.isfinite(estimate.lo) and math.isfinite(estimate.hi)) or (
        estimate.hi <= estimate.lo
    )
