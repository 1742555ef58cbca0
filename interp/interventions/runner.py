"""The exact fast runner: many candidate interventions on one trace, one batch item each, run
from the first intervened layer on.

Nothing before layer L changes when the intervention is at layer L or later, so the batch
starts from the recorded residual stream entering the first intervened block
(`interp.models.surgery.run_from_layer`) and unembeds only the positions the metric reads.
Every candidate is an `Intervention`: an edit of the starting block's input goes into the
batch itself, every other one through one hook a site that edits each batch item by its own
candidate's edits. The result equals a full forward per candidate (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from interp.edits import applying
from interp.edits.value import Edit, Intervention
from interp.errors import InvalidSettingError
from interp.interventions.metrics import Bound, Metric
from interp.interventions.replay import replay_hooks
from interp.models import hooks as H
from interp.models.engine import direct_engine
from interp.models.model import Model
from interp.models.surgery import run_from_layer
from interp.trace.trace import Trace

MAX_LOGITS = 64_000_000  # numbers of logits one batch of candidates may hold
Candidate = Intervention  # one candidate: the edits one batch item runs under


def first_layer(candidate: Intervention) -> int:
    """The earliest block a candidate edits (where its runs can start)."""
    if not candidate.edits:
        raise InvalidSettingError("a candidate of the exact runner edits nothing")
    layer = min(e.layer for e in candidate.edits)
    if layer < 0:
        raise InvalidSettingError(
            f"the exact runner starts at a block; {candidate.label} edits before the first "
            "(run it with interp.evaluate)"
        )
    return layer


def run_candidates(
    model: Model,
    trace: Trace | Sequence[Trace],
    candidates: Sequence[Intervention],
    bound: Bound,
) -> tuple[Tensor, Tensor]:
    """(the metric of each candidate's run `[candidate]`, its logits window `[candidate,
    pos - bound.start, vocab]`). `trace` is the run every candidate edits, or one run per
    candidate (all of one length: the rows of a set, batched together); `bound` is bound to
    the candidates' rows."""
    runs = [trace] * len(candidates) if isinstance(trace, Trace) else list(trace)
    if len(runs) != len(candidates) or len({r.n_positions for r in runs}) != 1:
        raise InvalidSettingError("the exact runner takes one run per candidate, all of one length")
    start = min(first_layer(c) for c in candidates)
    for run in {id(r): r for r in runs}.values():
        run.require_hooks([H.resid_pre(start)], "the exact runner")
        run.require_plain("the exact runner", replayed=True)
    batch = torch.stack([r.activations[H.resid_pre(start)] for r in runs]).to(model.device)
    rows = [applying.Row.of(r) for r in runs]
    by_site: dict[str, list[tuple[int, Edit]]] = {}
    for i, candidate in enumerate(candidates):
        for e in candidate.edits:
            if e.hook == H.resid_pre(start):  # the batch is this site's value: edit it there
                batch[i : i + 1] = applying.edit_hook(e, model, [rows[i]])(batch[i : i + 1])
                continue
            by_site.setdefault(e.hook, []).append((i, e))
    # each run's own intervention (the part from `start` on) first, then the candidates
    hooks = replay_hooks(model, runs, start_layer=start)
    hooks += [(site, _per_item_hook(items, model, rows)) for site, items in by_site.items()]
    keep = runs[0].n_positions - bound.start
    direct, _ = direct_engine(model)  # the plain modules, where they serve every hook
    if direct is not None and direct.serves([], [name for name, _ in hooks]) is None:
        with torch.no_grad(), direct.hooked(hooks):
            logits = direct.from_layer(batch, start, keep=keep)
        if logits is not None:
            window = logits[:, -keep:]
            return bound.score(window), window
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
        window = run_from_layer(model, batch, start, keep=keep)[:, -keep:]
        return bound.score(window), window


def _per_item_hook(
    items: list[tuple[int, Edit]], model: Model, rows: Sequence[applying.Row]
) -> Callable[[Tensor, object], Tensor]:
    """One hook at a site for the whole batch: item i gets candidate i's edits there, in
    order (one full forward each, so each edit's positions start at 0)."""
    prepared = [(i, applying.edit_hook(e, model, [rows[i]])) for i, e in items]

    def hook(x: Tensor, hook: object = None) -> Tensor:
        x = x.clone()
        for i, apply in prepared:
            x[i : i + 1] = apply(x[i : i + 1])
        return x

    return hook


def run_jobs(
    model: Model,
    jobs: Sequence[tuple[int, Candidate]],
    targets: list[Trace],
    answers: list[Trace],
    metric: Metric,
    target_windows: Tensor,
    on_batch: Callable[[list[int], Tensor], None] | None = None,
) -> Tensor:
    """m(row's target run with the intervention) for each job `(row, intervention)` `[job]`:
    jobs of one first layer and one row length share a batch, run from that layer on.
    `target_windows`: the target runs' own logits from the metric's first position (a KL
    compares with them). `on_batch(jobs, window)` sees each batch's logits window (`[job,
    pos - metric start, vocab]`), for what a score alone does not say (per-token parts)."""
    start0 = metric.bind(model, answers).start  # where `target_windows` begin
    longest = max(t.n_positions for t in targets) - start0
    cap = max(1, MAX_LOGITS // (longest * model.d_vocab))
    groups: dict[tuple[int, int, int], list[int]] = {}
    for j, (r, intervention) in enumerate(jobs):
        key = (first_layer(intervention), targets[r].n_positions, targets[r].prompt_len)
        groups.setdefault(key, []).append(j)
    out = torch.zeros(len(jobs))
    for _, members in sorted(groups.items()):
        for i in range(0, len(members), cap):
            group = members[i : i + cap]
            rows = [jobs[j][0] for j in group]
            bound = metric.bind(model, [answers[r] for r in rows])
            runs = [targets[r] for r in rows]
            cut = slice(bound.start - start0, runs[0].n_positions - start0)
            bound.prepare(target_windows[rows][:, cut])  # KL: the target's run
            scores, window = run_candidates(model, runs, [jobs[j][1] for j in group], bound)
            out[group] = scores.float().cpu()
            if on_batch is not None:
                on_batch(group, window)
    return out
