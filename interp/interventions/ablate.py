"""`ablate`: one call for an ablation's (or any intervention's) teacher-forced effect, its
regenerated text and its paired samples; their record is `ablation_record`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, overload

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, run_rows
from interp.interventions import sites
from interp.interventions.ablation import AblationMode, make_intervention
from interp.interventions.ablation_record import AblationReport
from interp.interventions.effect import ablation_effect
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.preflight import check_before_running
from interp.interventions.regenerate import regenerate
from interp.interventions.sample_stats import PairedSamples, pool
from interp.interventions.samples import check_size, control_targets, paired_samples
from interp.interventions.sites import Site, Target
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@overload
def ablate(
    model: Model,
    trace: Trace,
    heads: str | Sequence[Target] | Intervention,
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
    executor: Executor | None = ...,
) -> AblationReport: ...


@overload
def ablate(
    model: Model,
    trace: TraceSet,
    heads: str | Sequence[Target] | Intervention,
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
    executor: Executor | None = ...,
) -> PairedSamples: ...


def ablate(
    model: Model,
    trace: Trace | TraceSet,
    heads: str | Sequence[Target] | Intervention,
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
    executor: Executor | None = None,
) -> AblationReport | PairedSamples:
    """Ablate `heads` ("L5H1,L9H3", "L5", or (layer, head) pairs; for a layer's `site`, layers
    "L5,L7" or (layer, None) pairs): the effect on the recorded continuation (per token, and
    by `metric`), and (unless `regenerate_text=False`) a regeneration with the same seed.

    `samples=N`: N paired regenerations, one seed each for the baseline and the ablated run,
    `max_new_tokens` long (`interp.interventions.samples`), with `controls` random head sets of
    the same size drawn outside the ablated heads and `exclude` (the heads that matter: the
    CLI excludes the strongest by role score and by the trace's sweep). Of a `TraceSet`: the
    paired samples of every row, pooled (`ablate_samples`; `samples` is then required), its
    rows run where `executor` says (`interp.Ray(...)`; default this process).

    `heads` may be any `interp.edits` intervention instead: its effect, regeneration and
    paired samples (without controls, which are random heads: give `paired_samples` yours).

    Returns an `AblationReport` (`.effect`, `.regeneration`, `.samples`); of a set, the pooled
    `PairedSamples`."""
    if isinstance(heads, Intervention):
        _check_own(heads, controls, reference, resample_text)
    check_before_running(
        model,
        trace,
        "an ablation",
        metric=metric if isinstance(trace, Trace) else None,
        intervention=heads if isinstance(heads, Intervention) else None,
    )
    if isinstance(trace, TraceSet):
        if samples < 1:
            raise InvalidSettingError(
                "a set's ablation is measured over paired samples of its rows: give samples=N"
            )
        return ablate_samples(
            model,
            trace,
            heads,
            mode,
            site=site,
            samples=samples,
            controls=controls,
            exclude=exclude,
            max_new_tokens=max_new_tokens,
            reference=reference,
            resample_text=resample_text,
            progress=progress,
            executor=executor,
        )
    targets = sites.parse_targets(heads, site, model) if isinstance(heads, str) else heads
    if samples or controls:
        check_size(model, [trace], samples, controls, max_new_tokens)
    ablation = (
        targets
        if isinstance(targets, Intervention)
        else make_intervention(
            model,
            trace,
            targets,
            mode,
            site=site,
            reference=reference,
            resample_text=resample_text,
        )
    )
    effect = ablation_effect(model, trace, ablation, metric=metric)
    regeneration = (
        regenerate(model, trace, ablation, progress=progress) if regenerate_text else None
    )
    paired = None
    if samples or controls:
        paired = ablate_samples(
            model,
            trace,
            targets,
            mode,
            site=site,
            samples=samples,
            controls=controls,
            exclude=exclude,
            max_new_tokens=max_new_tokens,
            reference=reference,
            resample_text=resample_text,
            progress=progress,
        )
    return AblationReport(ablation, effect, regeneration, paired)


def ablate_samples(
    model: Model,
    runs: Trace | TraceSet,
    heads: str | Sequence[Target] | Intervention,
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
    executor: Executor | None = None,
) -> PairedSamples:
    """Paired samples of ablating `heads` (see `ablate`) on a trace, or on every row of a set
    (each row with its own replacement values, such as its own means, and the same control
    heads), the rows' pairs pooled into one sample."""
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    if samples < 1:
        raise InvalidSettingError(
            f"samples must be at least 1, got {samples} (controls need samples: give samples=N)"
        )
    drawn: list[Any] = []
    if isinstance(heads, Intervention):
        _check_own(heads, controls, reference, resample_text)
        check_size(model, rows, samples, 0, max_new_tokens)
    else:
        if controls and site != "heads":
            raise InvalidSettingError("controls are random heads: they need the heads site")
        targets = sites.parse_targets(heads, site, model) if isinstance(heads, str) else heads
        heads = sites.check_targets(site, targets, model)
        check_size(model, rows, samples, controls, max_new_tokens)  # before controls are drawn
        strong = [(layer, head) for layer, head in heads if head is not None]
        drawn = control_targets(
            model, len(heads), controls, [*strong, *exclude], seed=rows[0].settings.seed or 0
        )
    options = {"mode": mode, "site": site, "reference": reference, "resample_text": resample_text}
    task = partial(
        _samples,
        heads=heads,
        drawn=drawn,
        samples=samples,
        max_new_tokens=max_new_tokens,
        progress=progress and executor is None,
        options=options,
    )
    parts = [s for part in run_rows(executor, model, task, rows, "paired samples") for s in part]
    return parts[0] if isinstance(runs, Trace) else pool(parts)


def _samples(
    model: Model,
    rows: list[Trace],
    heads: Sequence[Target] | Intervention,
    drawn: list[Any],
    samples: int,
    max_new_tokens: int | None,
    progress: bool,
    options: dict[str, Any],
) -> list[PairedSamples]:
    """Each row's paired samples (its own replacement values, the same control heads): a chunk
    of `ablate_samples`."""
    out = []
    for row in rows:

        def build(on: Sequence[Target], row: Trace = row) -> Intervention:
            return make_intervention(model, row, on, **options)

        own = isinstance(heads, Intervention)
        out.append(
            paired_samples(
                model,
                row,
                heads if isinstance(heads, Intervention) else build(heads),
                samples=samples,
                max_new_tokens=max_new_tokens,
                controls=[] if own else [build(c) for c in drawn],
                progress=progress,
            )
        )
    return out


def _check_own(
    intervention: Intervention, controls: int, reference: object, resample_text: object
) -> None:
    """An intervention brings its own values: no reference, resample text or random controls."""
    if controls:
        raise InvalidSettingError(
            "controls are random head sets of an ablation's size; for an intervention, give "
            "paired_samples controls of your own"
        )
    if reference is not None or resample_text is not None:
        raise InvalidSettingError(
            f"a reference or a resample text says what replaces heads; the intervention "
            f"{intervention.label} holds its own values"
        )
