"""A clean and a corrupted run paired row by row and measured (`pair_runs` -> `Runs`): what
activation patching, path patching and circuit scores all start from, and how a set of
patched metrics becomes a result (`Runs.result`, `Runs.patching`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from interp.edits.positions import Position
from interp.errors import InvalidSettingError
from interp.executors import Executor, merging, run_rows
from interp.interventions import candidates
from interp.interventions.candidates import EachPosition
from interp.interventions.measuring import measure
from interp.interventions.metrics import Metric, MetricFn, as_metric
from interp.interventions.patching_result import Patching
from interp.interventions.patching_site import Direction, PatchingResult, ResultSite
from interp.models.model import Model
from interp.stats import present_mean_se
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@dataclass
class Runs:
    """A clean and a corrupted run paired row by row, one metric and one direction: what every
    patching of them shares. The patch goes into `targets` from `sources`."""

    cleans: list[Trace]
    corrupts: list[Trace]
    metric: Metric
    direction: Direction
    clean_m: Tensor  # [row]
    corrupt_m: Tensor  # [row]
    target_windows: Tensor  # the target runs' logits from the metric's first position

    @property
    def targets(self) -> list[Trace]:
        return self.corrupts if self.direction == "denoise" else self.cleans

    @property
    def sources(self) -> list[Trace]:
        return self.cleans if self.direction == "denoise" else self.corrupts

    @property
    def base(self) -> Tensor:
        """m(target run) per row: what an effect is measured from."""
        return self.corrupt_m if self.direction == "denoise" else self.clean_m

    def result(self, site: ResultSite, scores: Tensor, **extra: Any) -> PatchingResult:
        """The effects of patched runs' metrics `scores` `[row, ...]` (kept, as are each row's
        clean and corrupted metrics): means over rows and their standard errors, of the effects
        and of the patched metrics; the effects normalised by the mean difference between the
        runs."""
        rows = scores - self.base.view(-1, *([1] * (scores.dim() - 1)))
        clean, corrupt = float(self.clean_m.mean()), float(self.corrupt_m.mean())
        span = clean - corrupt if self.direction == "denoise" else corrupt - clean
        (effect, stderr), (patched, patched_se) = present_mean_se(rows), present_mean_se(scores)
        one = len(rows) == 1
        normalized = effect / span if span != 0 else torch.full_like(effect, math.nan)
        return PatchingResult(
            site,
            self.direction,
            self.metric.label,
            effect,
            normalized,
            None if one else stderr,
            rows,
            clean,
            corrupt,
            **extra,
            patched=patched,
            patched_stderr=None if one else patched_se,
            patched_per_row=scores,
            clean_per_row=self.clean_m,
            corrupted_per_row=self.corrupt_m,
        )

    def patching(
        self,
        results: dict[ResultSite, PatchingResult],
        positions: EachPosition | tuple[Position, ...] = "all",
        **extra: Any,
    ) -> Patching:
        clean, corrupt = float(self.clean_m.mean()), float(self.corrupt_m.mean())
        kind = positions if isinstance(positions, str) else "groups"
        under = {}
        for side, runs in (("clean", self.cleans), ("corrupted", self.corrupts)):
            labels = dict.fromkeys(r.intervention_label for r in runs if r.intervention_label)
            if labels:
                under[side] = "; ".join(labels)
        held = any(
            r.intervention is not None and not r.intervention.replayable
            for r in self.cleans + self.corrupts
        )
        return Patching(
            results,
            self.direction,
            self.metric.label,
            clean,
            corrupt,
            len(self.cleans),
            tokens=candidates.labels(positions, self.cleans[0]),
            positions=kind,
            under=under,
            held_callable=held,
            **extra,
        )


def pair_runs(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet,
    metric: Metric | MetricFn | str | None,
    direction: Direction,
    purpose: str = "activation patching",
    *,
    distinct: bool = True,
    batch: int | None = None,
) -> Runs:
    """Check the pairing and the direction, and measure both runs, each under the
    intervention it was recorded under (the metric's answers are the clean rows'); a run
    under raw hooks is refused for `purpose`. `batch`: measure that many pairs a forward,
    whatever their number, and keep no logits window (for callers that never patch against
    it)."""
    cleans, corrupts = paired_traces(model, clean, corrupted, purpose, direction)
    chosen = as_metric(metric)
    # the target runs first (a KL compares with them); the answers are the clean rows'
    denoise = direction == "denoise"
    firsts, seconds = (corrupts, cleans) if denoise else (cleans, corrupts)
    size = batch or len(cleans)
    targets, others = [], []
    for i in range(0, len(cleans), size):
        answers = cleans[i : i + size]
        target = measure(model, firsts[i : i + size], chosen, answers=answers, purpose=purpose)
        targets.append(target)
        others.append(
            measure(
                model,
                seconds[i : i + size],
                chosen,
                answers=answers,
                baseline=target.window,
                purpose=purpose,
            ).values
        )
    target_m, other_m = torch.cat([t.values for t in targets]), torch.cat(others)
    clean_m, corrupt_m = (other_m, target_m) if denoise else (target_m, other_m)
    if distinct:  # (a chunk of a set is checked once merged: `check_distinct`)
        check_distinct(clean_m, corrupt_m, targets[0].bound.label)
    window = targets[0].window if batch is None else torch.empty(0)
    return Runs(cleans, corrupts, chosen, direction, clean_m, corrupt_m, window)


def paired_rows(
    model: Model,
    cleans: list[Trace],
    corrupts: list[Trace],
    metric: Metric | MetricFn | str | None,
    direction: Direction,
    purpose: str,
    scores_of: Callable[[Model, Runs, list[Any]], dict[str, Tensor]],
    executor: Executor | None,
    extras: Sequence[Any] | None = None,
) -> tuple[Runs, dict[str, Tensor]]:
    """Every pair measured and scored (`scores_of(model, runs, extras) -> {name: [row, ...]}`,
    each row's `extras` beside it) where `executor` runs the rows, merged in row order: the
    runs with every row's metrics (checked to differ), and each score's rows."""
    items = list(zip(cleans, corrupts, extras or [None] * len(cleans), strict=True))
    task = partial(_chunk, metric=metric, direction=direction, purpose=purpose, scores_of=scores_of)
    parts = run_rows(executor, model, task, items, purpose)
    clean_m, corrupt_m = merging.rows([p[0] for p in parts]), merging.rows([p[1] for p in parts])
    check_distinct(clean_m, corrupt_m, parts[0][3])
    runs = Runs(cleans, corrupts, as_metric(metric), direction, clean_m, corrupt_m, torch.empty(0))
    return runs, {name: merging.rows([p[2][name] for p in parts]) for name in parts[0][2]}


def _chunk(
    model: Model,
    items: list[tuple[Trace, Trace, Any]],
    metric: Metric | MetricFn | str | None,
    direction: Direction,
    purpose: str,
    scores_of: Callable[[Model, Runs, list[Any]], dict[str, Tensor]],
) -> tuple[Tensor, Tensor, dict[str, Tensor], str]:
    """Some pairs' metrics and scores: a chunk of `paired_rows`."""
    cleans, corrupts = TraceSet([c for c, _, _ in items]), TraceSet([k for _, k, _ in items])
    runs = pair_runs(model, cleans, corrupts, metric, direction, purpose, distinct=False)
    scores = scores_of(model, runs, [extra for _, _, extra in items])
    return runs.clean_m, runs.corrupt_m, scores, runs.metric.label


def check_distinct(clean_m: Tensor, corrupt_m: Tensor, label: str) -> None:
    """Refuse runs whose metrics agree on average: nothing to patch or to normalise by."""
    if float(clean_m.mean()) == float(corrupt_m.mean()):
        raise InvalidSettingError(
            f"the clean and the corrupted runs give the same {label} "
            f"({float(clean_m.mean()):.6g}): there is no difference to patch or to normalise "
            "by (are they the same run?)"
        )


def paired_traces(
    model: Model, clean: Any, corrupted: Any, purpose: str, direction: Direction
) -> tuple[list[Trace], list[Trace]]:
    """The clean and corrupted rows, bound to `model` and checked to pair up (a count, each
    pair one length, no raw hooks) for `purpose`, and the direction checked."""
    if direction not in ("denoise", "noise"):
        raise InvalidSettingError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    cleans = [clean] if isinstance(clean, Trace) else list(clean)
    corrupts = [corrupted] if isinstance(corrupted, Trace) else list(corrupted)
    if len(cleans) != len(corrupts):
        raise InvalidSettingError(
            f"the clean runs have {len(cleans)} rows, the corrupted {len(corrupts)}: they pair "
            "up by index"
        )
    for i, (c, k) in enumerate(zip(cleans, corrupts, strict=True)):
        c.bind(model)
        k.bind(model)
        c.require_plain(purpose, replayed=True)
        k.require_plain(purpose, replayed=True)
        if c.n_positions != k.n_positions or c.prompt_len != k.prompt_len:
            raise InvalidSettingError(
                f"row {i}: the clean run has {c.n_positions} tokens ({c.prompt_len} of prompt), "
                f"the corrupted {k.n_positions} ({k.prompt_len}): a patch pairs positions"
            )
    return cleans, corrupts
