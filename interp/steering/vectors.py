"""Steering vectors from two prompt sets: the difference of the residual stream's means over
the sets (DiffMean), or the mean of per-pair differences over contrastive pairs (CAA; equal to
DiffMean in value, paired in its held-out split), read at `blocks.L.hook_resid_pre` at each
prompt's last token (or its mean over the prompt). Each layer's vector comes with the held-out
accuracy of projecting onto it (its mean over many random splits, with their spread), so the
user can choose a layer."""

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
from interp.stats import Estimate
from interp.steering.vector import SteeringVector, check_layer

Method = Literal["diffmean", "caa"]
ReadAt = Literal["last", "mean"]
MAX_PROMPTS = 4096
SPLITS = 200  # held-out splits a separability is averaged over
MAX_SPLITS = 100_000


@dataclass
class SteeringVectors:
    """One vector per layer (`vectors[L]` at `blocks.L.hook_resid_pre`), to choose from by
    their held-out separability."""

    vectors: list[SteeringVector]

    @property
    def separability(self) -> list[Estimate]:
        """Each layer's held-out accuracy: the mean over splits, and the 2.5th and 97.5th
        percentiles of the splits' accuracies."""
        return [v.separability or Estimate(0.0, 0.0, 0.0) for v in self.vectors]

    def at(self, layer: int) -> SteeringVector:
        if not 0 <= layer < len(self.vectors):
            raise InvalidSettingError(f"layer {layer} is out of range 0..{len(self.vectors) - 1}")
        return self.vectors[layer]

    def best(self) -> SteeringVector:
        """The layer whose vector separates the held-out prompts best (the earliest of ties)."""
        scores = [e.value for e in self.separability]
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
    splits: int = SPLITS,
) -> SteeringVector | SteeringVectors:
    """The vector mean(positive) - mean(negative) of the residual stream entering block `layer`
    (every layer's, as `SteeringVectors`, with `layer=None`), read at each prompt's last token
    or averaged over its tokens (`position="mean"`, the first token left out). `method="caa"`
    takes the sets as pairs (positive[i], negative[i]) and averages their differences. Each vector's
    separability is averaged over `splits` held-out splits drawn from `seed`."""
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
    check_splits(splits)
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
                separability(p, n, paired=method == "caa", seed=seed, splits=splits),
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
    positive: Tensor, negative: Tensor, *, paired: bool = False, seed: int = 0, splits: int = SPLITS
) -> Estimate:
    """Held-out balanced accuracy of the DiffMean direction over `splits` random splits: in
    each, the direction and the midpoint threshold are fitted on one half of each set and
    tested on the other half. Returns the mean accuracy over the splits, with the 2.5th and
    97.5th percentiles of the splits' accuracies (where one split's number falls; a single
    split of a few prompts is a noisy read). `paired`: the sets are pairs, split together.
    The splits' orders are drawn in turn from one generator seeded by `seed`. Needs two
    prompts a set."""
    n_p, n_n = len(positive), len(negative)
    if min(n_p, n_n) < 2:
        raise InvalidSettingError(
            f"separability needs at least 2 prompts a set, got {n_p} positive and {n_n} negative"
        )
    check_splits(splits)
    g = torch.Generator().manual_seed(seed)
    orders_p, orders_n = [], []
    for _ in range(splits):
        orders_p.append(torch.randperm(n_p, generator=g))
        orders_n.append(orders_p[-1] if paired else torch.randperm(n_n, generator=g))
    x_p, x_n = positive.double(), negative.double()
    train_p, test_p = _halves(torch.stack(orders_p), n_p)  # [split, prompt], 0 or 1 each
    train_n, test_n = _halves(torch.stack(orders_n), n_n)
    mean_p = train_p @ x_p / train_p.sum(-1, keepdim=True)  # [split, d_model]
    mean_n = train_n @ x_n / train_n.sum(-1, keepdim=True)
    direction = mean_p - mean_n
    threshold = ((mean_p + mean_n) * direction).sum(-1) / 2  # [split]
    hit_p = (x_p @ direction.T > threshold).double().T  # [split, prompt]
    hit_n = (x_n @ direction.T <= threshold).double().T
    rate_p = (hit_p * test_p).sum(-1) / test_p.sum(-1)
    rate_n = (hit_n * test_n).sum(-1) / test_n.sum(-1)
    accuracy = (rate_p + rate_n) / 2  # [split]
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    lo, hi = torch.quantile(accuracy, q).tolist()
    return Estimate(round(float(accuracy.mean()), 6), round(lo, 6), round(hi, 6))


def _halves(orders: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """`[split, n]` masks of each split's first n // 2 prompts in its order (the half fitted
    on) and of the rest (the half held out)."""
    train = torch.zeros(orders.shape, dtype=torch.float64)
    train.scatter_(1, orders[:, : n // 2], 1.0)
    return train, 1.0 - train


def check_splits(splits: object) -> int:
    """A number of held-out splits: an integer in 1..MAX_SPLITS."""
    if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= MAX_SPLITS:
        raise InvalidSettingError(f"splits must be an integer in 1..{MAX_SPLITS}, got {splits!r}")
    return splits


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
