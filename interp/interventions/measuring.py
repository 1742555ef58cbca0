"""The one way to measure: a metric on runs, teacher-forced on their recorded tokens, each run
under the intervention it was recorded under and then under `intervention`, in one batched
forward. Every consumer that scores a run calls `measure`; the exact runner
(`interventions/runner.py`) is its batched fast path for many candidates, through the same
metric objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits.value import Intervention
from interp.interventions.metrics import KL, Bound, Metric, MetricFn, as_metric
from interp.interventions.replay import hooks_under, replay_hooks
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@dataclass
class Measured:
    """Each row's value (`values`, on the CPU), the logits it was read from (`logits`, every
    position, right-padded) and the metric bound to the rows (`bound`: its label and the first
    position it reads)."""

    values: Float[Tensor, " row"]
    logits: Float[Tensor, "row pos vocab"]
    bound: Bound

    @property
    def window(self) -> Float[Tensor, "row window vocab"]:
        """The logits from the metric's first position on: what it scored."""
        return self.logits[:, self.bound.start :]


def measure(
    model: Model,
    runs: Trace | TraceSet | Sequence[Trace],
    metric: Metric | MetricFn | str | None = None,
    intervention: Intervention | None = None,
    *,
    answers: Sequence[Trace] | None = None,
    baseline: Tensor | None = None,
    purpose: str = "measuring",
) -> Measured:
    """`metric` (default: the continuation's log-prob) on every row of `runs`, each row under
    the intervention it was recorded under and then `intervention`. `answers`: the rows the
    metric reads its answers from (default: `runs`, row for row). `baseline`: the logits window
    a KL compares with (default: the runs as recorded). A run under raw hooks is refused for
    `purpose`."""
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    for row in rows:
        row.bind(model)
        row.require_plain(purpose, replayed=True)
    chosen = as_metric(metric)
    bound = chosen.bind(model, rows if answers is None else list(answers))
    hooks = replay_hooks(model, rows) + hooks_under(model, rows, intervention)
    logits = forced_logits(model, rows, hooks)
    window = logits[:, bound.start :]
    if baseline is None and intervention is not None and isinstance(chosen, KL):
        baseline = measure(model, rows, chosen, answers=answers, purpose=purpose).window
    with torch.no_grad():
        bound.prepare(window if baseline is None else baseline)
        values = bound.score(window).float().cpu()
    return Measured(values, logits, bound)


def forced_logits(
    model: Model, traces: Sequence[Trace], fwd_hooks: Sequence = ()
) -> Float[Tensor, "row pos vocab"]:
    """Logits of a full teacher-forced forward over the traces' tokens (right-padded: a causal
    model's real positions never see the padding after them)."""
    return logits_of(model, [t.token_ids for t in traces], fwd_hooks)


def logits_of(
    model: Model, sequences: Sequence[Tensor | Sequence[int]], fwd_hooks: Sequence = ()
) -> Float[Tensor, "row pos vocab"]:
    """Logits of one forward over token sequences, right-padded (see `forced_logits`)."""
    rows = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks)):
        return model.bridge(ids.to(model.device), return_type="logits")
