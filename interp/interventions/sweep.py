"""Sweeps: every head ablated alone, exactly, or triaged by the attribution-patching estimate.

Ablating a head in layer L cannot change anything before layer L, so the exact sweep runs only
blocks L.. on the recorded residual stream entering block L (`interp.surgery.run_from_layer`),
one batch item per head of the layer; the result equals a full forward per head (tested).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from interp import hooks as H
from interp import store
from interp.errors import InvalidSettingError
from interp.heads import head_label, rank_heads
from interp.interventions.ablation import Ablation, AblationMode, make_ablation
from interp.interventions.attribution_patching import attribution_estimate
from interp.interventions.effect import continuation_logprobs
from interp.models.model import Model
from interp.surgery import run_from_layer
from interp.trace import Trace

SweepMethod = Literal["exact", "triage"]

TRIAGE_FRACTION = 3 / 8  # of all heads, verified exactly by a triage sweep


@dataclass
class SweepResult:
    """Change in the continuation's total log-prob with each head ablated alone.

    `delta[l, h]` is exact where `verified[l, h]`; with the triage method the others are NaN.
    `estimate` is the attribution-patching estimate (always an estimate, never exact)."""

    mode: AblationMode
    method: SweepMethod
    delta: Float[Tensor, "layer head"]
    delta_per_token: Float[Tensor, "layer head step"]
    estimate: Float[Tensor, "layer head"]
    verified: Bool[Tensor, "layer head"]
    timings: dict[str, float] = field(default_factory=dict)

    def top_heads(self, k: int = 10) -> list[tuple[str, float]]:
        """The k largest exact effects, signed, largest magnitude first."""
        scores = torch.where(self.verified, self.delta, torch.zeros_like(self.delta))
        ranked = rank_heads(scores, None, by_magnitude=True)
        verified = {head_label(int(l_), int(h_)) for l_, h_ in self.verified.nonzero().tolist()}
        return [(label, value) for label, value in ranked if label in verified][:k]

    @property
    def estimate_spearman(self) -> float:
        """Rank correlation of the estimate with the exact effect over the verified heads."""
        return spearman(self.estimate[self.verified], self.delta[self.verified])

    @property
    def verified_heads(self) -> list[str]:
        return [head_label(l_, h_) for l_, h_ in self.verified.nonzero().tolist()]

    def summary(self, k: int = 10) -> dict[str, Any]:
        rho = self.estimate_spearman
        return {
            "mode": self.mode,
            "method": self.method,
            "top_heads": [[h, round(v, 5)] for h, v in self.top_heads(k)],
            # None where it is undefined (fewer than two heads verified): JSON has no NaN
            "estimate_spearman": None if math.isnan(rho) else round(rho, 4),
            "verified_heads": self.verified_heads,
            "timings": self.timings,
        }

    def tensors(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in _TENSORS}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write sweep.safetensors and summary.json's `sweep` into a trace directory."""
        store.write_results(directory, KEY, self.summary(), self.tensors(), store.SWEEP_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SweepResult:
        """The sweep saved in a trace directory."""
        summary, tensors = store.read_results(directory, KEY, store.SWEEP_FILE, _TENSORS)
        return cls(
            mode=summary["mode"],
            method=summary["method"],
            **{name: tensors[name] for name in _TENSORS},
            timings=dict(summary.get("timings", {})),
        )

    @staticmethod
    def saved_in(directory: str | os.PathLike[str]) -> bool:
        return store.has_results(directory, KEY, store.SWEEP_FILE)


KEY = "sweep"
_TENSORS = ("delta", "delta_per_token", "estimate", "verified")


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation (no tie correction; ties are measure-zero here)."""
    if a.numel() < 2:
        return float("nan")
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt(float((ra * ra).sum() * (rb * rb).sum())))


def sweep(
    model: Model,
    trace: Trace,
    mode: AblationMode = "mean",
    *,
    method: SweepMethod = "exact",
    verify: int | None = None,
    resample_text: str | None = None,
    progress: bool = False,
) -> SweepResult:
    """Ablate every head alone. `method="exact"` runs them all (fast path); `"triage"` ranks
    heads by the attribution-patching estimate and verifies the `verify` largest exactly
    (default: 3/8 of the heads, since the estimate ranks loosely: benchmarks/sweep.py counts
    how many of the exact top 20 a triage recovers)."""
    if method not in ("exact", "triage"):
        raise InvalidSettingError(f"unknown sweep method {method!r}; choose exact or triage")
    trace.bind(model)
    n_layers, n_heads = model.n_layers, model.n_heads
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    ablation = make_ablation(model, trace, all_heads, mode, resample_text=resample_text)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    estimate = attribution_estimate(model, trace, ablation)
    timings["estimate_s"] = round(time.perf_counter() - t0, 4)
    if method == "exact":
        chosen = all_heads
    else:
        if verify is None:
            verify = max(1, round(TRIAGE_FRACTION * len(all_heads)))
        order = estimate.abs().flatten().argsort(descending=True)[: max(1, verify)]
        chosen = sorted((int(i) // n_heads, int(i) % n_heads) for i in order)
    t0 = time.perf_counter()
    per_token = exact_effects(model, trace, ablation, chosen, progress=progress)
    timings["exact_s"] = round(time.perf_counter() - t0, 4)
    steps = trace.n_generated
    delta_tok = torch.full((n_layers, n_heads, steps), float("nan"))
    verified = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for (layer, head), row in per_token.items():
        delta_tok[layer, head] = row
        verified[layer, head] = True
    return SweepResult(
        mode=mode,
        method=method,
        delta=delta_tok.sum(-1),
        delta_per_token=delta_tok,
        estimate=estimate,
        verified=verified,
        timings=timings,
    )


def exact_effects(
    model: Model,
    trace: Trace,
    ablation: Ablation,
    heads: Sequence[tuple[int, int]],
    *,
    progress: bool = False,
    max_logits: int = 64_000_000,
) -> dict[tuple[int, int], Tensor]:
    """Per-token change in log-prob with each head in `heads` ablated alone (exact).

    Runs blocks L.. only, on the recorded residual entering block L, one batch item per head;
    the batch is capped so that its logits stay under `max_logits` numbers.
    """
    trace.require_hooks([H.resid_pre(layer) for layer, _ in heads], "the exact sweep")
    base, _ = continuation_logprobs(model, trace)
    p, n = trace.prompt_len, trace.n_positions
    targets = trace.token_ids[p:n].to(model.device)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    batch_cap = max(1, max_logits // (n * model.d_vocab))
    out: dict[tuple[int, int], Tensor] = {}
    bar = tqdm(total=len(heads), desc="sweep", unit="head", disable=not progress, file=sys.stderr)
    for layer, layer_heads in sorted(by_layer.items()):
        resid = trace.activations[H.resid_pre(layer)].to(model.device)
        value = ablation.values[layer].to(model.device)
        for start in range(0, len(layer_heads), batch_cap):
            group = layer_heads[start : start + batch_cap]
            hook = _one_head_per_item_hook(group, value)
            batch = resid.unsqueeze(0).expand(len(group), -1, -1).contiguous()
            with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(H.z(layer), hook)]):
                logits = run_from_layer(model, batch, layer, keep=n - p + 1)
            lp = logits[:, -(n - p + 1) : -1].float().log_softmax(-1)
            lp = lp.gather(-1, targets.view(1, -1, 1).expand(len(group), -1, 1))[..., 0].cpu()
            for i, head in enumerate(group):
                out[(layer, head)] = lp[i] - base
            bar.update(len(group))
    bar.close()
    return out


def _one_head_per_item_hook(heads: list[int], value: Tensor) -> Callable:
    """Batch item i ablates head heads[i] (value: [1 or pos, head, d_head])."""

    def hook(z: Tensor, hook) -> Tensor:
        z = z.clone()
        n = z.shape[1]
        rows = value if value.shape[0] == 1 else value[:n]
        for i, head in enumerate(heads):
            z[i, :, head] = rows[:, head].to(z.dtype).expand(n, -1)
        return z

    return hook
