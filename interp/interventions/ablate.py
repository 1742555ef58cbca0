"""`ablate`: one call for an ablation's teacher-forced effect and its regenerated text, and
the record of it saved beside the trace (`effect.json`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, overload

from interp import schema, store
from interp.errors import InvalidSettingError, TraceFormatError
from interp.interventions import sites
from interp.interventions.ablation import Ablation, AblationMode, make_intervention
from interp.interventions.effect import AblationEffect, ablation_effect
from interp.interventions.regenerate import Regeneration, regenerate
from interp.interventions.samples import (
    PairedSamples,
    check_size,
    control_targets,
    paired_samples,
    pool,
)
from interp.interventions.sites import Site, Target
from interp.metrics import Metric, MetricFn
from interp.models.model import Model
from interp.trace import Trace
from interp.traceset import TraceSet


@dataclass
class AblationReport:
    """What `interp ablate` computes: the teacher-forced effect and the regenerated texts."""

    ablation: Ablation
    effect: AblationEffect
    regeneration: Regeneration | None
    samples: PairedSamples | None = None  # paired regenerations, with `samples=N`

    def record(self) -> AblationRecord:
        e, r = self.effect, self.regeneration
        return AblationRecord(
            heads=e.heads,
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
        )

    def summary(self) -> dict[str, Any]:
        """The content of effect.json (paired samples' keys beside the others)."""
        out = asdict(self.record())
        return out | (out.pop("paired") or {})


@dataclass
class AblationRecord:
    """An ablation as saved in effect.json: its effect, and both texts with where they part
    (`*_divergence_char`: the character offset of the first diverging token in each text)."""

    heads: list[str]
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

    @classmethod
    def from_json(cls, value: dict[str, Any], where: Path) -> AblationRecord:
        """An effect.json's content, every field of its type (or a `TraceFormatError`)."""
        f, items = schema.field, schema.items
        return cls(
            heads=items(value, "heads", str, where),
            mode=f(value, "mode", str, where),
            source=f(value, "source", str, where),
            delta_logprob_total=f(value, "delta_logprob_total", float, where),
            delta_logprob=items(value, "delta_logprob", float, where),
            kl=items(value, "kl", float, where),
            baseline_logprobs=items(value, "baseline_logprobs", float, where),
            ablated_logprobs=items(value, "ablated_logprobs", float, where),
            hardest=items(value, "hardest", int, where),
            # effect.json before metrics: heads, measured by the continuation's log-prob
            site=f(value, "site", str, where) if "site" in value else "heads",
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
    "samples", "horizon", "pairs", "divergence_rate", "first_divergence_median", "kl_mean",
    "delta_logprob_per_token", "kl_curve", "greedy", "controls", "control_first_divergences",
)  # fmt: skip


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


@overload
def ablate(
    model: Model,
    trace: Trace,
    heads: str | Sequence[Target],
    mode: AblationMode = ...,
    *,
    site: Site = ...,
    metric: Metric | MetricFn | str | None = ...,
    reference: TraceSet | Trace | None = ...,
    resample_text: str | None = ...,
    regenerate_text: bool = ...,
    samples: int = ...,
    controls: int = ...,
    exclude: Sequence[tuple[int, int]] = ...,
    max_new_tokens: int | None = ...,
    progress: bool = ...,
) -> AblationReport: ...


@overload
def ablate(
    model: Model,
    trace: TraceSet,
    heads: str | Sequence[Target],
    mode: AblationMode = ...,
    *,
    site: Site = ...,
    metric: Metric | MetricFn | str | None = ...,
    reference: TraceSet | Trace | None = ...,
    resample_text: str | None = ...,
    regenerate_text: bool = ...,
    samples: int = ...,
    controls: int = ...,
    exclude: Sequence[tuple[int, int]] = ...,
    max_new_tokens: int | None = ...,
    progress: bool = ...,
) -> PairedSamples: ...


def ablate(
    model: Model,
    trace: Trace | TraceSet,
    heads: str | Sequence[Target],
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    metric: Metric | MetricFn | str | None = None,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    regenerate_text: bool = True,
    samples: int = 0,
    controls: int = 0,
    exclude: Sequence[tuple[int, int]] = (),
    max_new_tokens: int | None = None,
    progress: bool = False,
) -> AblationReport | PairedSamples:
    """Ablate `heads` ("L5H1,L9H3", "L5", or (layer, head) pairs; for a layer's `site`, layers
    "L5,L7" or (layer, None) pairs): the effect on the recorded continuation (per token, and
    by `metric`), and (unless `regenerate_text=False`) a regeneration with the same seed.

    `samples=N`: N paired regenerations, one seed each for the baseline and the ablated run,
    `max_new_tokens` long (`interp.interventions.samples`), with `controls` random head sets of
    the same size drawn outside the ablated heads and `exclude` (the heads that matter: the
    CLI excludes the strongest by role score and by the trace's sweep). Of a `TraceSet`: the
    paired samples of every row, pooled (`ablate_samples`; `samples` is then required)."""
    if isinstance(trace, TraceSet):
        if samples < 1:
            raise InvalidSettingError(
                "a set's ablation is measured over paired samples of its rows: give samples=N"
            )
        return ablate_samples(
            model, trace, heads, mode, site=site, samples=samples, controls=controls,
            exclude=exclude, max_new_tokens=max_new_tokens, reference=reference,
            resample_text=resample_text, progress=progress,
        )  # fmt: skip
    targets = sites.parse_targets(heads, site, model) if isinstance(heads, str) else heads
    if samples or controls:
        check_size(model, [trace], samples, controls, max_new_tokens)
    ablation = make_intervention(
        model, trace, targets, mode, site=site, reference=reference, resample_text=resample_text
    )
    effect = ablation_effect(model, trace, ablation, metric=metric)
    regeneration = (
        regenerate(model, trace, ablation, progress=progress) if regenerate_text else None
    )
    paired = None
    if samples or controls:
        paired = ablate_samples(
            model, trace, targets, mode, site=site, samples=samples, controls=controls,
            exclude=exclude, max_new_tokens=max_new_tokens, reference=reference,
            resample_text=resample_text, progress=progress,
        )  # fmt: skip
    return AblationReport(ablation, effect, regeneration, paired)


def ablate_samples(
    model: Model,
    runs: Trace | TraceSet,
    heads: str | Sequence[Target],
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    samples: int = 16,
    controls: int = 0,
    exclude: Sequence[tuple[int, int]] = (),
    max_new_tokens: int | None = None,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    progress: bool = False,
) -> PairedSamples:
    """Paired samples of ablating `heads` (see `ablate`) on a trace, or on every row of a set
    (each row with its own replacement values, such as its own means, and the same control
    heads), the rows' pairs pooled into one sample."""
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    if samples < 1:
        raise InvalidSettingError(
            f"samples must be at least 1, got {samples} (controls need samples: give samples=N)"
        )
    if controls and site != "heads":
        raise InvalidSettingError("controls are random heads: they need the heads site")
    targets = sites.parse_targets(heads, site, model) if isinstance(heads, str) else heads
    targets = sites.check_targets(site, targets, model)
    check_size(model, rows, samples, controls, max_new_tokens)  # before the controls are drawn
    strong = [(layer, head) for layer, head in targets if head is not None]
    drawn = control_targets(
        model, len(targets), controls, [*strong, *exclude], seed=rows[0].settings.seed or 0
    )
    parts = []
    for row in rows:

        def build(on: Sequence[Target], row: Trace = row) -> Ablation:
            return make_intervention(
                model, row, on, mode, site=site, reference=reference, resample_text=resample_text
            )

        parts.append(
            paired_samples(
                model,
                row,
                build(targets),
                samples=samples,
                max_new_tokens=max_new_tokens,
                controls=[build(c) for c in drawn],
                progress=progress,
            )  # fmt: skip
        )
    return parts[0] if isinstance(runs, Trace) else pool(parts)
