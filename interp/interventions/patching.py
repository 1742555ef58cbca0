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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from interp import atomic, store
from interp.errors import InvalidSettingError
from interp.heads import head_label
from interp.interventions.ablation import Intervention
from interp.interventions.effect import forced_logits
from interp.interventions.runner import run_candidates
from interp.interventions.sites import Site, Target, activation
from interp.metrics import Metric, MetricFn, as_metric
from interp.models.model import Model
from interp.trace import Trace
from interp.traceset import TraceSet

PatchSite = Literal["heads", "heads-by-pos", "resid", "attn-out", "mlp-out"]
PATCH_SITES: tuple[PatchSite, ...] = ("heads", "heads-by-pos", "resid", "attn-out", "mlp-out")
Direction = Literal["denoise", "noise"]
_LAYER_SITE: dict[str, Site] = {"resid": "resid_pre", "attn-out": "attn_out", "mlp-out": "mlp_out"}
MAX_LOGITS = 64_000_000  # numbers of logits one batch of candidates may hold


@dataclass
class PatchingResult:
    """One site's patching effects: `[layer, head]` (heads), `[layer, head, pos]`
    (heads-by-pos) or `[layer, pos]` (resid, attn-out, mlp-out); `per_row` rows first."""

    site: PatchSite
    direction: Direction
    metric: str
    effect: Tensor
    effect_normalized: Tensor
    stderr: Tensor | None  # over rows; None for one pair
    per_row: Tensor
    clean_metric: float  # means over rows
    corrupted_metric: float

    def label(self, index: Sequence[int]) -> str:
        if self.site == "heads":
            return head_label(index[0], index[1])
        if self.site == "heads-by-pos":
            return f"{head_label(index[0], index[1])}@{index[2]}"
        return f"L{index[0]}@{index[1]}"

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The k largest |effect|, signed, largest magnitude first."""
        flat = self.effect.flatten()
        order = flat.abs().argsort(descending=True, stable=True)[:k]
        shape = self.effect.shape
        out = []
        for i in order.tolist():
            index, rest = [], i
            for size in reversed(shape):
                index.append(rest % size)
                rest //= size
            out.append((self.label(list(reversed(index))), float(flat[i])))
        return out


@dataclass
class Patching:
    """Every site patched between the same runs (`patching[site]` is one `PatchingResult`),
    and its on-disk form: a directory with patch.safetensors (`<site>.effect`,
    `.effect_normalized`, `.stderr`, `.per_row`) and summary.json's `patching`."""

    results: dict[PatchSite, PatchingResult]
    direction: Direction
    metric: str
    clean_metric: float
    corrupted_metric: float
    rows: int

    def __getitem__(self, site: PatchSite) -> PatchingResult:
        return self.results[site]

    def summary(self, k: int = 10) -> dict[str, Any]:
        out: dict[str, Any] = {
            "direction": self.direction,
            "metric": self.metric,
            "rows": self.rows,
            "clean_metric": round(self.clean_metric, 6),
            "corrupted_metric": round(self.corrupted_metric, 6),
        }
        for site, result in self.results.items():
            out[site] = {"top": [[label, round(v, 6)] for label, v in result.top(k)]}
        return out

    def tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for site, r in self.results.items():
            out |= {f"{site}.effect": r.effect, f"{site}.effect_normalized": r.effect_normalized}
            out[f"{site}.per_row"] = r.per_row
            if r.stderr is not None:
                out[f"{site}.stderr"] = r.stderr
        return out

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the directory atomically (an earlier patching result there is replaced;
        anything else is refused)."""
        from safetensors.torch import save_file

        target = Path(directory)
        store.check_output_dir(
            target, own=frozenset({store.SUMMARY, PATCH_FILE}), formats=(PATCH_FORMAT,)
        )
        record = {
            "format": PATCH_FORMAT,
            "format_version": 1,
            "patching": self.summary(),
        }
        text = store.dumps(record)
        with atomic.atomic_dir(target) as tmp:
            save_file(
                {k: v.contiguous().cpu() for k, v in self.tensors().items()}, tmp / PATCH_FILE
            )
            (tmp / store.SUMMARY).write_text(text, encoding="utf-8")
        return target


PATCH_FORMAT = "interp-patching"
PATCH_FILE = "patch.safetensors"


def patch(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet,
    *,
    sites: Sequence[PatchSite] = ("heads",),
    metric: Metric | MetricFn | str | None = None,
    direction: Direction = "denoise",
) -> Patching:
    """Patch every candidate of each site (see the module's docstring), measured by `metric`
    (a logit difference with each clean row's answer and distractor is the usual one; its
    answers are read from the clean rows)."""
    cleans, corrupts = _pairs(model, clean, corrupted)
    if direction not in ("denoise", "noise"):
        raise InvalidSettingError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    for site in sites:
        if site not in PATCH_SITES:
            raise InvalidSettingError(
                f"unknown site {site!r}; choose from {', '.join(PATCH_SITES)}"
            )
    chosen = as_metric(metric)
    targets, sources = (corrupts, cleans) if direction == "denoise" else (cleans, corrupts)
    bound = chosen.bind(model, cleans)  # the clean rows' answers, at positions both share
    windows = {
        "clean": forced_logits(model, cleans)[:, bound.start :],
        "corrupted": forced_logits(model, corrupts)[:, bound.start :],
    }
    bound.prepare(windows["clean" if direction == "noise" else "corrupted"])
    with torch.no_grad():
        clean_m = bound.score(windows["clean"]).float().cpu()
        corrupt_m = bound.score(windows["corrupted"]).float().cpu()
    base = corrupt_m if direction == "denoise" else clean_m
    target_windows = windows["corrupted" if direction == "denoise" else "clean"]
    per_site = {
        site: _site_effects(model, site, targets, sources, cleans, chosen, target_windows)
        - base.view(-1, *([1] * (3 if site == "heads-by-pos" else 2)))
        for site in sites
    }
    clean_m_list, corrupt_m_list = clean_m.tolist(), corrupt_m.tolist()
    results: dict[PatchSite, PatchingResult] = {}
    clean_mean = sum(clean_m_list) / len(clean_m_list)
    corrupt_mean = sum(corrupt_m_list) / len(corrupt_m_list)
    span = clean_mean - corrupt_mean if direction == "denoise" else corrupt_mean - clean_mean
    for site in sites:
        rows = per_site[site]
        effect = rows.mean(0)
        stderr = rows.std(0) / math.sqrt(len(rows)) if len(rows) > 1 else None
        normalized = effect / span if span != 0 else torch.full_like(effect, math.nan)
        results[site] = PatchingResult(
            site, direction, chosen.label, effect, normalized, stderr, rows, clean_mean,
            corrupt_mean,
        )  # fmt: skip
    return Patching(results, direction, chosen.label, clean_mean, corrupt_mean, len(cleans))


def _pairs(model: Model, clean: Any, corrupted: Any) -> tuple[list[Trace], list[Trace]]:
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
        if c.n_positions != k.n_positions or c.prompt_len != k.prompt_len:
            raise InvalidSettingError(
                f"row {i}: the clean run has {c.n_positions} tokens ({c.prompt_len} of prompt), "
                f"the corrupted {k.n_positions} ({k.prompt_len}): a patch pairs positions"
            )
    return cleans, corrupts


def _site_effects(
    model: Model,
    site: PatchSite,
    targets: list[Trace],
    sources: list[Trace],
    answers: list[Trace],
    metric: Metric,
    target_windows: Tensor,
) -> Tensor:
    """m(patched) `[row, ...]` for every candidate of `site`: each row's target run with its
    source run's value, the rows of a length batched together, layer by layer."""
    n_layers, n_heads, n = model.n_layers, model.n_heads, targets[0].n_positions
    if site != "heads":
        for i, t in enumerate(targets):
            if t.n_positions != n:
                raise InvalidSettingError(
                    f"the {site} site is per position: every row needs one length ({n} "
                    f"tokens), row {i} has {t.n_positions}"
                )
    cells: list[tuple[Any, Target, list[int] | None]]  # (index into a row's out, target, positions)
    if site == "heads":
        shape: tuple[int, ...] = (n_layers, n_heads)
        cells = [((l_, h), (l_, h), None) for l_ in range(n_layers) for h in range(n_heads)]
    elif site == "heads-by-pos":
        shape = (n_layers, n_heads, n)
        cells = [
            ((l_, h, p), (l_, h), [p])
            for l_ in range(n_layers)
            for h in range(n_heads)
            for p in range(n)
        ]
    else:
        shape = (n_layers, n)
        cells = [((l_, p), (l_, None), [p]) for l_ in range(n_layers) for p in range(n)]
    layer_site: Site = "heads" if site.startswith("heads") else _LAYER_SITE[site]
    out = torch.zeros(len(targets), *shape)
    start0 = metric.bind(model, answers).start  # where `target_windows` begin
    cap = max(1, MAX_LOGITS // ((max(t.n_positions for t in targets) - start0) * model.d_vocab))
    # every (row, cell) of a layer is one candidate; rows of one shape share a batch
    by_layer: dict[tuple[int, int, int], list[tuple[int, Any]]] = {}
    for r, t in enumerate(targets):
        for cell in cells:
            key = (cell[1][0], t.n_positions, t.prompt_len)
            by_layer.setdefault(key, []).append((r, cell))
    for (layer, _, _), layer_jobs in sorted(by_layer.items()):
        values = [activation(model, s.activations, layer_site, layer) for s in sources]
        for i in range(0, len(layer_jobs), cap):
            group = layer_jobs[i : i + cap]
            candidates = [
                Intervention([target], "resample", {layer: values[r]}, "the other run",
                             layer_site, positions)
                for r, (_, target, positions) in group
            ]  # fmt: skip
            bound = metric.bind(model, [answers[r] for r, _ in group])
            runs = [targets[r] for r, _ in group]
            cut = slice(bound.start - start0, runs[0].n_positions - start0)
            bound.prepare(target_windows[[r for r, _ in group]][:, cut])  # KL: the target's run
            scores, _ = run_candidates(model, runs, candidates, bound)
            for (r, (index, _, _)), score in zip(group, scores.float().cpu().tolist(), strict=True):
                out[(r, *index)] = score
    return out
