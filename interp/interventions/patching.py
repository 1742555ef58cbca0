"""Activation patching between a clean and a corrupted run (Meng et al. 2022; Wang et al.
2023; Heimersheim & Nanda 2024), exact, through the intervention mechanism: the patch is a
`resample` intervention whose source is the other run, and every candidate of a layer runs in
one batch from that layer on (`interp.interventions.runner`).

- `direction="denoise"`: the corrupted input with the clean value patched in;
  effect = m(patched) - m(corrupted), normalised by m(clean) - m(corrupted).
- `direction="noise"`: the clean input with the corrupted value patched in;
  effect = m(patched) - m(clean), normalised by m(corrupted) - m(clean).
1 means the patch moved the metric all the way to the other run, 0 no effect. Over a set
(rows paired by index, each pair of one token length), effects are means over rows with
their standard errors, each row's kept; the normalisation divides the mean effect by the
mean difference of the two runs' metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor

from interp.edits import noise
from interp.edits.positions import Position, Positions
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, describe
from interp.generation.generate import record_pairs
from interp.interventions import candidates
from interp.interventions.ablation import replacing
from interp.interventions.attribution_patching import patch_estimates
from interp.interventions.candidates import EachPosition, check_window
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.patching_result import Patching
from interp.interventions.patching_runs import Runs, pair_runs, paired_rows, paired_traces
from interp.interventions.patching_site import (
    PATCH_SITES,
    Direction,
    PatchingResult,
    PatchSite,
    ResultSite,
)
from interp.interventions.preflight import check_before_running
from interp.interventions.runner import Candidate, run_jobs
from interp.interventions.sites import Site, Target, activation
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

TRIAGE_FRACTION = 3 / 8  # of a site's candidates, patched exactly by a triage


def patch(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet | Intervention,
    *,
    sites: Sequence[PatchSite] = ("heads",),
    metric: Metric | MetricFn | str | None = None,
    direction: Direction = "denoise",
    method: Literal["exact", "triage"] = "exact",
    verify: int | None = None,
    window: int = 1,
    positions: Positions | str = "prompt",
    executor: Executor | None = None,
) -> Patching:
    """Patch every candidate of each site (see the module's docstring), measured by `metric`
    (a logit difference with each clean row's answer and distractor is the usual one; its
    answers are read from the clean rows). `method="triage"` ranks the candidates by the
    attribution-patching estimate (kept as `estimate`, labelled as one) and patches only the
    `verify` largest exactly (default: 3/8 of each site's candidates); the others' effects
    are NaN. `window=k` patches a layer's site (resid, attn-out, mlp-out) in the k layers
    around each layer at once, as ROME's restorations do. The per-position sites' columns are
    the prompt's positions (`positions="prompt"`, where a metric at the last prompt position
    can be moved), every position of the runs ("all": a metric over the continuation), or
    groups patched at once, resolved per row (`[interp.span("Eiffel Tower"), "last_prompt"]`:
    rows of different lengths line up by role).
    `corrupted` may be an `interp.Intervention`: the clean runs recorded under it
    (`record_pairs`: a noise edit's draws=K makes each clean run K rows, its seeds in turn).
    `executor`: where the rows run (`interp.Ray(...)`; default this process); exact only.
    Returns a `Patching`: `result[site]` holds each candidate's effect (`[layer, head]`,
    `[layer, head, pos]` or `[layer, pos]`), normalised, per row, and its patched metric."""
    for site in sites:
        if site not in PATCH_SITES:
            raise InvalidSettingError(
                f"unknown site {site!r}; choose from {', '.join(PATCH_SITES)}"
            )
    if method not in ("exact", "triage"):
        raise InvalidSettingError(f"method must be 'exact' or 'triage', got {method!r}")
    if verify is not None and verify < 1:
        raise InvalidSettingError(f"verify must be at least 1, got {verify}")
    check_window(window, sites, method)
    chosen = candidates.check_positions(positions)
    check_before_running(
        model,
        clean,
        "activation patching",
        metric=metric,
        intervention=corrupted,
        groups=chosen,
        pairs_draws=True,
    )
    draws = 1
    if isinstance(corrupted, Intervention):  # the clean runs under it, each draw a row
        draws = noise.draws(corrupted)
        clean, corrupted = record_pairs(model, clean, corrupted)
    if method == "exact":
        return _exact(
            model, clean, corrupted, metric, direction, sites, window, chosen, executor, draws
        )
    if executor is not None:
        raise InvalidSettingError(
            "a triage picks the candidates it verifies from every row's estimate: run it in "
            "one process (no executor)"
        )
    runs = pair_runs(model, clean, corrupted, metric, direction)
    per_position = any(site != "heads" for site in sites)
    cols = candidates.columns(runs.targets, chosen) if per_position else None
    at = sorted({_layer_site(site) for site in sites})
    estimates = patch_estimates(model, runs.targets, runs.sources, runs.cleans, runs.metric, at)
    results: dict[ResultSite, PatchingResult] = {}
    for site in sites:
        estimate = candidates.estimates(site, estimates[_layer_site(site)], cols).nanmean(0)
        k = verify if verify is not None else max(1, round(TRIAGE_FRACTION * estimate.numel()))
        only = estimate.abs().flatten().argsort(descending=True, stable=True)[:k].tolist()
        verified = torch.zeros(estimate.numel(), dtype=torch.bool)
        verified[only] = True
        scores = _site_effects(model, site, runs, only, cols=cols)
        results[site] = runs.result(
            site, scores, estimate=estimate, verified=verified.view(estimate.shape)
        )
    return runs.patching(results, chosen, method="triage", draws=draws)


def _exact(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet,
    metric: Metric | MetricFn | str | None,
    direction: Direction,
    sites: Sequence[PatchSite],
    window: int,
    chosen: EachPosition | tuple[Position, ...],
    executor: Executor | None,
    draws: int,
) -> Patching:
    """Every candidate patched exactly, the rows in chunks where `executor` runs them, merged
    from each row's metrics (the normalisation needs every row's)."""
    cleans, corrupts = paired_traces(model, clean, corrupted, "activation patching", direction)
    targets = corrupts if direction == "denoise" else cleans
    per_position = any(site != "heads" for site in sites)
    cols = candidates.columns(targets, chosen) if per_position else None
    scores_of = partial(_site_scores, sites=sites, window=window)
    runs, scores = paired_rows(
        model, cleans, corrupts, metric, direction, "activation patching", scores_of, executor, cols
    )
    results: dict[ResultSite, PatchingResult] = {
        site: runs.result(site, scores[site]) for site in sites
    }
    where = {} if executor is None else describe(executor)
    return runs.patching(results, chosen, window=window, draws=draws, executor=where)


def _site_scores(
    model: Model, runs: Runs, cols: list[Any], sites: Sequence[PatchSite], window: int
) -> dict[str, Tensor]:
    """m(patched) of every candidate of each site, for some pairs: `patch`'s scores."""
    each = None if cols[0] is None else cols
    return {site: _site_effects(model, site, runs, window=window, cols=each) for site in sites}


def _site_effects(
    model: Model,
    site: PatchSite,
    runs: Runs,
    only: list[int] | None = None,
    window: int = 1,
    cols: candidates.Columns | None = None,
) -> Tensor:
    """m(patched) `[row, ...]` for every candidate of `site` (or those at flat indices `only`;
    NaN elsewhere): each row's target run with its source run's value, the rows of a length
    batched together, layer by layer. A layer's site with `window` k patches the k layers
    around each layer at once (ROME's restoration windows). The per-position sites' columns
    are `cols` (each row's positions of each; `candidates.columns`)."""
    targets, sources = runs.targets, runs.sources
    n_layers, n_heads = model.n_layers, model.n_heads
    if cols is None:  # the heads site has no columns
        cols = [[] for _ in targets] if site == "heads" else candidates.columns(targets, "all")
    n = len(cols[0])
    cells: list[tuple[list[Target], int | None]]  # (targets, column), row-major
    if site == "heads":
        shape: tuple[int, ...] = (n_layers, n_heads)
        cells = [([(l_, h)], None) for l_ in range(n_layers) for h in range(n_heads)]
    elif site == "heads-by-pos":
        shape = (n_layers, n_heads, n)
        cells = [([(l_, h)], p) for l_ in range(n_layers) for h in range(n_heads) for p in range(n)]
    else:
        shape = (n_layers, n)
        cells = [
            ([(w, None) for w in candidates.window_layers(l_, window, n_layers)], p)
            for l_ in range(n_layers)
            for p in range(n)
        ]
    layer_site = _layer_site(site)
    values = {
        layer: [activation(model, s.activations, layer_site, layer) for s in sources]
        for layer in range(n_layers)
    }
    chosen = range(len(cells)) if only is None else only
    # (row, cell) pairs to patch; a group naming no position in a row leaves its cell NaN
    keys = [(r, c) for r in range(len(targets)) for c in chosen if _at(cols[r], cells[c][1]) != []]
    jobs: list[tuple[int, Candidate]] = [
        (
            r,
            replacing(
                layer_site,
                cells[c][0],
                {t[0]: values[t[0]][r] for t in cells[c][0]},
                positions=_at(cols[r], cells[c][1]),
                origin="the other run",
            ),
        )
        for r, c in keys
    ]
    out = torch.full((len(targets), len(cells)), math.nan)
    if keys:
        scores = run_jobs(model, jobs, targets, runs.cleans, runs.metric, runs.target_windows)
        out[[r for r, _ in keys], [c for _, c in keys]] = scores
    return out.view(len(targets), *shape)


def _at(row_cols: list[list[int]], column: int | None) -> list[int] | None:
    return None if column is None else row_cols[column]


def _layer_site(site: PatchSite) -> Site:
    """The intervention site a patching site patches (heads-by-pos: heads, at a position)."""
    return "heads" if site == "heads-by-pos" else site
