"""Sweeps: every head ablated alone, exactly, or triaged by the attribution-patching estimate,
measured by any metric (`interp.metrics`; the continuation's total log-prob by default), on a
trace or on every row of a set.

Ablating a head in layer L cannot change anything before layer L, so the exact sweep runs only
blocks L.. on the recorded residual stream entering block L
(`interp.models.surgery.run_from_layer`), one batch item per head of the layer, and unembeds
only the positions the metric reads; the result equals a full forward per head (tested).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm import tqdm  # not tqdm.auto: it warns in a notebook without ipywidgets

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, describe, merging, run_rows
from interp.files import store
from interp.interventions.ablation import AblationMode, ablation_parts
from interp.interventions.attribution_patching import attribution_estimate
from interp.interventions.measuring import measure
from interp.interventions.metrics import KL, LogProb, Metric, MetricFn, as_metric
from interp.interventions.preflight import check_before_running
from interp.interventions.runner import Candidate, run_jobs
from interp.models.heads import Head, rank_heads
from interp.models.model import Model
from interp.trace import schema
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

SweepMethod = Literal["exact", "triage"]

TRIAGE_FRACTION = 3 / 8  # of all heads, verified exactly by a triage sweep


@dataclass
class SweepResult:
    """Change in the metric with each head ablated alone (of a set: the mean over rows, each
    row's in `delta_rows`).

    `delta[l, h]` is exact where `verified[l, h]`; with the triage method the others are NaN.
    `estimate` is the attribution-patching estimate (always an estimate, never exact; NaN for
    a metric without one, such as KL). `delta_per_token`: for the log-prob metric of one
    trace, each generated token's part of `delta`."""

    mode: AblationMode
    method: SweepMethod
    delta: Float[Tensor, "layer head"]
    delta_per_token: Float[Tensor, "layer head step"] | None
    estimate: Float[Tensor, "layer head"]
    verified: Bool[Tensor, "layer head"]
    timings: dict[str, float] = field(default_factory=dict)
    metric: str = "logprob"
    delta_rows: Float[Tensor, "row layer head"] | None = None
    executor: dict[str, Any] = field(default_factory=dict)  # where the rows ran; {}: here

    @property
    def delta_se(self) -> Float[Tensor, "layer head"] | None:
        """The standard error of `delta` over a set's rows (None for one trace)."""
        if self.delta_rows is None or self.delta_rows.shape[0] < 2:
            return None
        return self.delta_rows.std(0) / math.sqrt(self.delta_rows.shape[0])

    def top_heads(self, k: int = 10) -> list[tuple[Head, float]]:
        """The k largest exact effects, signed, largest magnitude first."""
        scores = torch.where(self.verified, self.delta, torch.zeros_like(self.delta))
        ranked = rank_heads(scores, None, by_magnitude=True)
        return [(head, value) for head, value in ranked if bool(self.verified[head])][:k]

    @property
    def estimate_spearman(self) -> float:
        """Rank correlation of the estimate with the exact effect over the verified heads."""
        return spearman(self.estimate[self.verified], self.delta[self.verified])

    @property
    def verified_heads(self) -> list[Head]:
        """The heads whose `delta` was computed exactly, in (layer, head) order."""
        return [Head(l_, h_) for l_, h_ in self.verified.nonzero().tolist()]

    def summary(self, k: int = 10) -> dict[str, Any]:
        rho = self.estimate_spearman
        return {
            "mode": self.mode,
            "method": self.method,
            "metric": self.metric,
            "rows": None if self.delta_rows is None else int(self.delta_rows.shape[0]),
            "top_heads": [[str(h), round(v, 5)] for h, v in self.top_heads(k)],
            # None where it is undefined (fewer than two heads verified): JSON has no NaN
            "estimate_spearman": None if math.isnan(rho) else round(rho, 4),
            "verified_heads": [str(h) for h in self.verified_heads],
            "timings": self.timings,
            **({"executor": self.executor} if self.executor else {}),
        }

    def tensors(self) -> dict[str, Tensor]:
        names = _TENSORS + tuple(n for n in _OPTIONAL if getattr(self, n) is not None)
        return {name: getattr(self, name) for name in names}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write sweep.safetensors and summary.json's `sweep` into a trace directory."""
        store.write_results(directory, KEY, self.summary(), self.tensors(), store.SWEEP_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SweepResult:
        """The sweep saved in a trace directory."""
        summary, tensors = store.read_results(directory, KEY, store.SWEEP_FILE, _TENSORS)
        where = Path(directory) / store.SUMMARY
        return cls(
            mode=summary["mode"],
            method=summary["method"],
            delta=tensors["delta"],
            delta_per_token=tensors.get("delta_per_token"),
            estimate=tensors["estimate"],
            verified=tensors["verified"],
            timings=dict(summary.get("timings", {})),
            metric=str(summary.get("metric", "logprob")),
            delta_rows=tensors.get("delta_rows"),
            executor=schema.field(summary, "executor", dict, where)
            if "executor" in summary
            else {},
        )

    @staticmethod
    def saved_in(directory: str | os.PathLike[str]) -> bool:
        return store.has_results(directory, KEY, store.SWEEP_FILE)


KEY = "sweep"
_TENSORS = ("delta", "estimate", "verified")
_OPTIONAL = ("delta_per_token", "delta_rows")


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation (no tie correction; ties are measure-zero here); NaN where
    either side has a NaN (a metric without an estimate)."""
    if a.numel() < 2 or bool(a.isnan().any() or b.isnan().any()):
        return float("nan")
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt(float((ra * ra).sum() * (rb * rb).sum())))


def sweep(
    model: Model,
    trace: Trace | TraceSet,
    mode: AblationMode = "mean",
    *,
    metric: Metric | MetricFn | str | None = None,
    reference: TraceSet | Trace | None = None,
    method: SweepMethod = "exact",
    verify: int | None = None,
    resample_text: str | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> SweepResult:
    """Ablate every head alone, measured by `metric`. `method="exact"` runs them all (fast
    path); `"triage"` ranks heads by the attribution-patching estimate and verifies the
    `verify` largest exactly (default: 3/8 of the heads, since the estimate ranks loosely:
    benchmarks/sweep.py counts how many of the exact top 20 a triage recovers). Of a set:
    every row swept (its own means, or the `reference` set's), the deltas averaged. Returns a
    `SweepResult` (`delta` `[layer, head]`, `top_heads`). `executor`: where a set's rows run
    (`interp.Ray(...)`; default this process); exact only."""
    if method not in ("exact", "triage"):
        raise InvalidSettingError(f"unknown sweep method {method!r}; choose exact or triage")
    chosen_metric = check_before_running(model, trace, "a sweep", metric=metric)
    if method == "triage" and isinstance(chosen_metric, KL):
        raise InvalidSettingError("a triage ranks by the first-order estimate, which a KL has not")
    rows = [trace] if isinstance(trace, Trace) else list(trace)
    for row in rows:
        row.bind(model)
        row.require_plain("a sweep", replayed=True)
    if executor is not None and isinstance(trace, TraceSet):
        if method != "exact":
            raise InvalidSettingError(
                "a triage picks the heads it verifies from every row's estimate: run it in one "
                "process (no executor)"
            )
        task = partial(
            _rows, mode=mode, metric=chosen_metric, reference=reference, resample_text=resample_text
        )
        result = merged(run_rows(executor, model, task, rows, "a sweep"))
        result.executor = describe(executor)
        return result
    n_layers, n_heads = model.n_layers, model.n_heads
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    # each row's candidates, one a head in `all_heads`' order (shared where the values are)
    if mode == "zero" or reference is not None:
        shared = ablation_parts(model, rows[0], all_heads, mode, reference=reference)
        ablations = [shared] * len(rows)
    else:
        ablations = [
            ablation_parts(model, row, all_heads, mode, resample_text=resample_text) for row in rows
        ]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(chosen_metric, KL):
        estimate = torch.full((n_layers, n_heads), math.nan)
    else:
        estimate = torch.stack(
            [
                attribution_estimate(model, row, ab, metric=chosen_metric).view(n_layers, n_heads)
                for row, ab in zip(rows, ablations, strict=True)
            ]
        ).mean(0)
    timings["estimate_s"] = round(time.perf_counter() - t0, 4)
    if method == "exact":
        chosen = all_heads
    else:
        if verify is None:
            verify = max(1, round(TRIAGE_FRACTION * len(all_heads)))
        order = estimate.abs().flatten().argsort(descending=True)[: max(1, verify)]
        chosen = sorted((int(i) // n_heads, int(i) % n_heads) for i in order)
    t0 = time.perf_counter()
    deltas = torch.full((len(rows), n_layers, n_heads), math.nan)
    per_token = None
    bar = tqdm(
        total=len(chosen) * len(rows),
        desc="sweep",
        unit="head",
        disable=not progress,
        file=sys.stderr,
    )
    for i, (row, ab) in enumerate(zip(rows, ablations, strict=True)):
        parts = {head: ab[k] for k, head in enumerate(all_heads)}
        effects = exact_effects(model, row, parts, chosen, metric=chosen_metric, bar=bar)
        if isinstance(trace, Trace) and isinstance(chosen_metric, LogProb):
            per_token = torch.full((n_layers, n_heads, row.n_generated), math.nan)
        for (layer, head), (delta, tokens) in effects.items():
            deltas[i, layer, head] = delta
            if per_token is not None and tokens is not None:
                per_token[layer, head] = tokens
    bar.close()
    timings["exact_s"] = round(time.perf_counter() - t0, 4)
    verified = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for layer, head in chosen:
        verified[layer, head] = True
    return SweepResult(
        mode=mode,
        method=method,
        delta=deltas.mean(0),
        delta_per_token=per_token,
        estimate=estimate,
        verified=verified,
        timings=timings,
        metric=chosen_metric.label,
        delta_rows=None if isinstance(trace, Trace) else deltas,
    )


def _rows(model: Model, rows: list[Trace], **options: Any) -> SweepResult:
    """An exact sweep of some rows: a chunk of a set's."""
    return sweep(model, TraceSet(rows), **options)


def merged(parts: Sequence[SweepResult]) -> SweepResult:
    """One sweep of every row from its chunks' sweeps, in row order: each row's deltas, their
    mean, and the estimates' mean over all rows (float64)."""
    rows = merging.rows([p.delta_rows for p in parts if p.delta_rows is not None])
    counts = [len(p.delta_rows) for p in parts if p.delta_rows is not None]
    timings = {k: round(sum(p.timings.get(k, 0.0) for p in parts), 4) for k in parts[0].timings}
    first = parts[0]
    return SweepResult(
        mode=first.mode,
        method=first.method,
        delta=rows.mean(0),
        delta_per_token=None,
        estimate=merging.mean([p.estimate for p in parts], counts),
        verified=first.verified,
        timings=timings,
        metric=first.metric,
        delta_rows=rows,
    )


def exact_effects(
    model: Model,
    trace: Trace,
    ablation: Mapping[tuple[int, int], Intervention],
    heads: Sequence[tuple[int, int]],
    *,
    metric: Metric | MetricFn | str | None = None,
    bar: Any = None,
) -> dict[tuple[int, int], tuple[float, Tensor | None]]:
    """The change in `metric` with each head in `heads` ablated alone (exact: `ablation[head]`
    is its ablation), and for the
    log-prob metric each generated token's part of it: the exact runner's jobs
    (`interp.interventions.runner.run_jobs`), one batch item per head of a layer."""
    chosen = as_metric(metric)
    logprob = isinstance(chosen, LogProb)
    measured = measure(model, trace, chosen, purpose="a sweep")
    base, base_window, start = float(measured.values[0]), measured.window, measured.bound.start
    with torch.no_grad():
        base_tokens = LogProb.per_token(base_window, [trace], start)[0].cpu() if logprob else None
    order = [Head(int(layer), int(head)) for layer, head in heads]
    jobs: list[tuple[int, Candidate]] = [(0, ablation[h]) for h in order]
    per_token: dict[int, Tensor] = {}

    def seen(group: list[int], window: Tensor) -> None:
        if base_tokens is not None:
            with torch.no_grad():
                tokens = LogProb.per_token(window, [trace] * len(group), start).cpu()
            for k, j in enumerate(group):
                per_token[j] = tokens[k] - base_tokens  # the total: their sum
        if bar is not None:
            bar.update(len(group))

    scores = run_jobs(model, jobs, [trace], [trace], chosen, base_window, on_batch=seen)
    if logprob:
        return {h: (float(per_token[j].sum()), per_token[j]) for j, h in enumerate(order)}
    return {h: (float(scores[j]) - base, None) for j, h in enumerate(order)}
