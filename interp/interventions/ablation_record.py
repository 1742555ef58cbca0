"""What `ablate` returns and saves beside the trace: the effect, the regenerated texts and the
paired samples (`AblationReport`), and its record in `effect.json` (`AblationRecord`)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError, TraceFormatError
from interp.files import store
from interp.interventions.effect import AblationEffect
from interp.interventions.regenerate import Regeneration
from interp.interventions.sample_stats import PairedSamples
from interp.models.heads import Head, parse_label
from interp.trace import schema
from interp.trace.trace import Trace


@dataclass
class AblationReport:
    """What `interp ablate` computes: the teacher-forced effect and the regenerated texts."""

    ablation: Intervention
    effect: AblationEffect
    regeneration: Regeneration | None
    samples: PairedSamples | None = None  # paired regenerations, with `samples=N`

    def record(self) -> AblationRecord:
        e, r = self.effect, self.regeneration
        return AblationRecord(
            heads=list(e.heads),
            targets=list(e.targets),
            mode=e.mode,
            source=e.source,
            delta_logprob_total=round(e.delta_logprob_total, 6),
            delta_logprob=[round(float(x), 6) for x in e.delta_logprob],
            kl=[round(float(x), 6) for x in e.kl],
            baseline_logprobs=[round(float(x), 6) for x in e.baseline_logprobs],
            ablated_logprobs=[round(float(x), 6) for x in e.ablated_logprobs],
            hardest=e.hardest(),
            site=e.site,
            metric=e.metric,
            baseline_metric=round(e.baseline_metric, 6),
            ablated_metric=round(e.ablated_metric, 6),
            baseline_text=r.baseline.continuation if r else None,
            ablated_text=r.ablated.continuation if r else None,
            first_divergence=r.first_divergence if r else None,
            baseline_divergence_char=_char_offset(r.baseline, r.first_divergence) if r else None,
            ablated_divergence_char=_char_offset(r.ablated, r.first_divergence) if r else None,
            paired=None if self.samples is None else self.samples.summary(),
            held_callable=e.held_callable,
        )

    def summary(self) -> dict[str, Any]:
        """The content of effect.json (paired samples' keys beside the others; what was
        ablated under "heads", as its labels)."""
        out = asdict(self.record())
        out["heads"] = out.pop("targets")
        return out | (out.pop("paired") or {})


@dataclass
class AblationRecord:
    """An ablation as saved in effect.json: its effect, and both texts with where they part
    (`*_divergence_char`: the character offset of the first diverging token in each text).
    `heads` the heads ablated (none for a layer's site or an intervention), `targets` what
    was ablated as labelled for display (stored as effect.json's "heads")."""

    heads: list[Head]
    targets: list[str]
    mode: str
    source: str
    delta_logprob_total: float
    delta_logprob: list[float]
    kl: list[float]
    baseline_logprobs: list[float]
    ablated_logprobs: list[float]
    hardest: list[int]
    site: str
    metric: str
    baseline_metric: float
    ablated_metric: float
    baseline_text: str | None
    ablated_text: str | None
    first_divergence: int | None
    baseline_divergence_char: int | None
    ablated_divergence_char: int | None
    paired: dict[str, Any] | None = None  # `PairedSamples.summary()`, with --samples
    held_callable: bool = False  # a callable edit ran (in the process that ablated)

    @classmethod
    def from_json(cls, value: dict[str, Any], where: Path) -> AblationRecord:
        """An effect.json's content, every field of its type (or a `TraceFormatError`)."""
        f, items = schema.field, schema.items
        targets = items(value, "heads", str, where)
        # effect.json before metrics: heads, measured by the continuation's log-prob
        site = f(value, "site", str, where) if "site" in value else "heads"
        return cls(
            heads=_heads(targets, where) if site == "heads" else [],
            targets=targets,
            mode=f(value, "mode", str, where),
            source=f(value, "source", str, where),
            delta_logprob_total=f(value, "delta_logprob_total", float, where),
            delta_logprob=items(value, "delta_logprob", float, where),
            kl=items(value, "kl", float, where),
            baseline_logprobs=items(value, "baseline_logprobs", float, where),
            ablated_logprobs=items(value, "ablated_logprobs", float, where),
            hardest=items(value, "hardest", int, where),
            site=site,
            metric=f(value, "metric", str, where) if "metric" in value else "logprob",
            baseline_metric=f(value, "baseline_metric", float, where)
            if "baseline_metric" in value
            else math.fsum(items(value, "baseline_logprobs", float, where)),
            ablated_metric=f(value, "ablated_metric", float, where)
            if "ablated_metric" in value
            else math.fsum(items(value, "ablated_logprobs", float, where)),
            baseline_text=f(value, "baseline_text", str, where, none=True),
            ablated_text=f(value, "ablated_text", str, where, none=True),
            first_divergence=f(value, "first_divergence", int, where, none=True),
            baseline_divergence_char=f(value, "baseline_divergence_char", int, where, none=True),
            ablated_divergence_char=f(value, "ablated_divergence_char", int, where, none=True),
            paired=_paired(value, where),
            held_callable=f(value, "held_callable", bool, where)
            if "held_callable" in value
            else False,
        )

    @property
    def delta_metric(self) -> float:
        return self.ablated_metric - self.baseline_metric

    @classmethod
    def load_all(cls, directory: str | os.PathLike[str]) -> list[AblationRecord]:
        """Every ablation saved under a trace directory, in name order. A malformed effect.json
        is an error naming it; a directory without one is skipped (an unfinished write)."""
        pattern = f"{store.ABLATIONS_DIR}/*/{store.EFFECT_FILE}"
        out = []
        for file in sorted(Path(directory).glob(pattern)):
            value = store.read_json(file)
            if not isinstance(value, dict):
                raise TraceFormatError(f"{file} is not a JSON object")
            out.append(cls.from_json(value, file))
        return out

    def parts(self, ablated: bool = False) -> tuple[str, str]:
        """One text split at its first diverging token: (before, from there on)."""
        text = self.ablated_text if ablated else self.baseline_text
        if text is None:
            return "", ""
        cut = self.ablated_divergence_char if ablated else self.baseline_divergence_char
        if cut is None or self.first_divergence is None:
            return text, ""
        return text[:cut], text[cut:]


PAIRED_KEYS = (
    "samples",
    "horizon",
    "pairs",
    "divergence_rate",
    "first_divergence_median",
    "kl_mean",
    "delta_logprob_per_token",
    "kl_curve",
    "greedy",
    "controls",
    "control_first_divergences",
)


def _heads(labels: list[str], where: Path) -> list[Head]:
    """The ablated heads, read back from their labels ("L5H1")."""
    try:
        return [parse_label(label) for label in labels]
    except InvalidSettingError as exc:
        raise TraceFormatError(f"{where}: {exc}") from None


def _paired(value: dict[str, Any], where: Path) -> dict[str, Any] | None:
    """The paired samples' keys of an effect.json (checked for their kinds), or None."""
    if "samples" not in value:
        return None
    schema.field(value, "samples", int, where)
    for key in ("pairs", "controls"):
        if not isinstance(value.get(key), list):
            raise TraceFormatError(f"{where}: {key!r} is not a list")
    for key in ("divergence_rate", "first_divergence_median", "kl_mean", "delta_logprob_per_token"):
        if not isinstance(value.get(key), dict):
            raise TraceFormatError(f"{where}: {key!r} is not an object")
    return {key: value.get(key) for key in PAIRED_KEYS}


def _char_offset(trace: Trace, step: int | None) -> int | None:
    if step is None or trace.model is None:
        return None
    return len(trace.model.decode(trace.continuation_ids[:step]))
