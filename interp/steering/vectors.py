"""Steering vectors from two prompt sets: the difference of the residual stream's means over
the sets (DiffMean), or the mean of per-pair differences over contrastive pairs (CAA; equal to
DiffMean in value, paired in its held-out split), read at `blocks.L.hook_resid_pre` at each
prompt's last token (or its mean over the prompt). Each layer's vector comes with the held-out
accuracy of projecting onto it, so the user can choose a layer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from interp import inputs
from interp.errors import InvalidSettingError
from interp.generation.generate import generate
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.provenance import provenance
from interp.steering.vector import SteeringVector, check_layer

Method = Literal["diffmean", "caa"]
ReadAt = Literal["last", "mean"]
MAX_PROMPTS = 4096


@dataclass
class SteeringVectors:
    """One vector per layer (`vectors[L]` at `blocks.L.hook_resid_pre`), to choose from by
    their held-out separability."""

    vectors: list[SteeringVector]

    @property
    def separability(self) -> list[float]:
        return [float(v.separability or 0.0) for v in self.vectors]

    def at(self, layer: int) -> SteeringVector:
        if not 0 <= layer < len(self.vectors):
            raise InvalidSettingError(f"layer {layer} is out of range 0..{len(self.vectors) - 1}")
        return self.vectors[layer]

    def best(self) -> SteeringVector:
        """The layer whose vector separates the held-out prompts best (the earliest of ties)."""
        scores = self.separability
        return self.vectors[scores.index(max(scores))]


def steering_vector(
    model: Model,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    layer: int | None = None,
    position: ReadAt = "last",
    method: Method = "diffmean",
    seed: int = 0,
) -> SteeringVector | SteeringVectors:
    """The vector mean(positive) - mean(negative) of the residual stream entering block `layer`
    (every layer's, as `SteeringVectors`, with `layer=None`), read at each prompt's last token
    or averaged over its tokens (`position="mean"`, the first token left out). `method="caa"`
    takes the sets as pairs (positive[i], negative[i]) and averages their differences. `seed`
    draws the held-out split."""
    if method not in ("diffmean", "caa"):
        raise InvalidSettingError(f"method must be 'diffmean' or 'caa', got {method!r}")
    if position not in ("last", "mean"):
        raise InvalidSettingError(f"position must be 'last' or 'mean', got {position!r}")
    pos, neg = _prompts(positive, "positive"), _prompts(negative, "negative")
    if method == "caa" and len(pos) != len(neg):
        raise InvalidSettingError(
            f"CAA takes contrastive pairs: {len(pos)} positive and {len(neg)} negative prompts "
            "are unbalanced"
        )
    layers = list(range(model.n_layers)) if layer is None else [check_layer(model, layer)]
    acts_p, norms_p = residuals(model, pos, layers, position)  # [prompt, layer, d_model]
    acts_n, norms_n = residuals(model, neg, layers, position)
    norms = torch.cat([norms_p, norms_n])  # [token, layer]
    made = {k: v for k, v in provenance(model).items() if k != "torch_threads"}
    out = []
    for i, at in enumerate(layers):
        p, n = acts_p[:, i], acts_n[:, i]
        vector = (p - n).mean(0) if method == "caa" else p.mean(0) - n.mean(0)
        out.append(
            SteeringVector(
                vector,
                at,
                model.name,
                method,
                position,
                separability(p, n, paired=method == "caa", seed=seed),
                round(float(norms[:, i].median()), 6),
                {"positive": _digest(pos), "negative": _digest(neg)},
                dict(made),
            )
        )
    return out[0] if layer is not None else SteeringVectors(out)


def residuals(
    model: Model, prompts: list[str], layers: list[int], position: ReadAt
) -> tuple[Tensor, Tensor]:
    """The stream entering each of `layers` for each prompt (`[prompt, layer, d_model]`, read
    at its last token or averaged over its tokens after the first), and the stream's norm at
    every prompt token after the first (`[token, layer]`). One batched recorded run."""
    names = [H.resid_pre(layer) for layer in layers]
    runs = generate(
        model, prompts, max_new_tokens=1, temperature=0.0, hooks=names, stop_at_eos=False, seed=0
    )
    acts, norms = [], []
    for run in runs:
        stream = torch.stack([run.activations[n][: run.prompt_len].float() for n in names], 1)
        rest = stream[1:] if run.prompt_len > 1 else stream  # [pos, layer, d_model]
        acts.append(stream[-1] if position == "last" else rest.mean(0))
        norms.append(rest.norm(dim=-1))
    return torch.stack(acts), torch.cat(norms)


def separability(
    positive: Tensor, negative: Tensor, *, paired: bool = False, seed: int = 0
) -> float:
    """Held-out balanced accuracy of the DiffMean direction: fitted (the direction and the
    midpoint threshold) on one half of each set, tested on the other half. `paired`: the
    sets are pairs, split together. Needs two prompts a set."""
    n_p, n_n = len(positive), len(negative)
    if min(n_p, n_n) < 2:
        raise InvalidSettingError(
            f"separability needs at least 2 prompts a set, got {n_p} positive and {n_n} negative"
        )
    g = torch.Generator().manual_seed(seed)
    order_p = torch.randperm(n_p, generator=g)
    order_n = order_p if paired else torch.randperm(n_n, generator=g)
    train_p, test_p = order_p[: n_p // 2], order_p[n_p // 2 :]
    train_n, test_n = order_n[: n_n // 2], order_n[n_n // 2 :]
    mean_p, mean_n = positive[train_p].mean(0), negative[train_n].mean(0)
    direction = mean_p - mean_n
    threshold = float((mean_p + mean_n) @ direction) / 2
    hit_p = (positive[test_p] @ direction > threshold).float().mean()
    hit_n = (negative[test_n] @ direction <= threshold).float().mean()
    return round(float(hit_p + hit_n) / 2, 6)


def _prompts(value: Sequence[str], which: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidSettingError(f"the {which} set is a list of prompts")
    out = [inputs.text(p, f"a {which} prompt") for p in value]
    if len(out) < 2:
        raise InvalidSettingError(
            f"the {which} set has {len(out)} prompt(s); a vector and its held-out check need "
            "at least 2"
        )
    if len(out) > MAX_PROMPTS:
        raise InvalidSettingError(f"the {which} set has more than {MAX_PROMPTS} prompts")
    return out


def _digest(prompts: list[str]) -> dict[str, object]:
    text = json.dumps(prompts, ensure_ascii=False)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "size": len(prompts)}
