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
from interp.interventions.sites import Site, activation
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
    per_site: dict[str, list[Tensor]] = {site: [] for site in sites}
    clean_m, corrupt_m = [], []
    for c, k in zip(cleans, corrupts, strict=True):
        target, source = (k, c) if direction == "denoise" else (c, k)
        bound = chosen.bind(model, [c])  # the clean row's answers, at positions both share
        windows = {
            "clean": forced_logits(model, [c])[:, bound.start :],
            "corrupted": forced_logits(model, [k])[:, bound.start :],
        }
        bound.prepare(windows["clean" if direction == "noise" else "corrupted"])
        with torch.no_grad():
            m_clean = float(bound.score(windows["clean"])[0])
            m_corrupt = float(bound.score(windows["corrupted"])[0])
        clean_m.append(m_clean)
        corrupt_m.append(m_corrupt)
        base = m_corrupt if direction == "denoise" else m_clean
        for site in sites:
            per_site[site].append(_site_effects(model, site, target, source, c, chosen) - base)
    results: dict[PatchSite, PatchingResult] = {}
    clean_mean, corrupt_mean = sum(clean_m) / len(clean_m), sum(corrupt_m) / len(corrupt_m)
    span = clean_mean - corrupt_mean if direction == "denoise" else corrupt_mean - clean_mean
    for site in sites:
        rows = torch.stack(per_site[site])
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
    model: Model, site: PatchSite, target: Trace, source: Trace, answers: Trace, metric: Metric
) -> Tensor:
    """m(patched) for every candidate of `site`, on `target` with `source`'s values."""
    n_layers, n_heads, n = model.n_layers, model.n_heads, target.n_positions
    out: Tensor
    cells: list[tuple[Any, Any, Any]]  # (index into out, target, positions)
    if site == "heads":
        out = torch.zeros(n_layers, n_heads)
        cells = [
            ((layer, head), (layer, head), None)
            for layer in range(n_layers)
            for head in range(n_heads)
        ]
    elif site == "heads-by-pos":
        out = torch.zeros(n_layers, n_heads, n)
        cells = [
            ((layer, head, p), (layer, head), [p])
            for layer in range(n_layers)
            for head in range(n_heads)
            for p in range(n)
        ]
    else:
        out = torch.zeros(n_layers, n)
        cells = [((layer, p), (layer, None), [p]) for layer in range(n_layers) for p in range(n)]
    layer_site: Site = "heads" if site.startswith("heads") else _LAYER_SITE[site]
    values: dict[int, Tensor] = {}
    by_layer: dict[int, list[tuple[Any, Any, Any]]] = {}
    for cell in cells:
        by_layer.setdefault(cell[1][0], []).append(cell)
    bounds: dict[int, Any] = {}
    window = n - metric.bind(model, [answers]).start
    cap = max(1, MAX_LOGITS // (window * model.d_vocab))
    for layer, layer_cells in sorted(by_layer.items()):
        if layer not in values:
            values[layer] = activation(model, source.activations, layer_site, layer)
        for i in range(0, len(layer_cells), cap):
            group = layer_cells[i : i + cap]
            candidates = [
                Intervention([target_], "resample", {layer: values[layer]}, "the other run",
                             layer_site, positions)
                for _, target_, positions in group
            ]  # fmt: skip
            if len(group) not in bounds:  # the metric over copies; KL from the target's run
                bound = metric.bind(model, [answers] * len(group))
                base = forced_logits(model, [target])[:, bound.start :]
                bound.prepare(base.expand(len(group), -1, -1))
                bounds[len(group)] = bound
            scores, _ = run_candidates(model, target, candidates, bounds[len(group)])
            for (index, _, _), score in zip(group, scores.float().cpu().tolist(), strict=True):
                out[index] = score
    return out
