"""Attribution patching: a first-order estimate of every head's ablation effect from one
forward and one backward pass (Kramar et al. 2024)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from interp import hooks as H
from interp.errors import InvalidSettingError
from interp.interventions.ablation import Intervention
from interp.metrics import KL, Metric, MetricFn, as_metric
from interp.models.model import Model
from interp.trace import Trace


def attribution_estimate(
    model: Model,
    trace: Trace,
    ablation: Intervention,
    *,
    metric: Metric | MetricFn | str | None = None,
) -> Float[Tensor, "layer head"]:
    """First-order estimate of each head's effect on `metric` (default: the continuation's
    total log-prob): (z_ablated - z_clean) . d(metric)/dz, from one forward and one backward
    pass (attribution patching, Kramar et al. 2024). An estimate, not an effect: it can rank
    heads only loosely and get the sign of the largest effects wrong (benchmarks/sweep.py
    measures its rank correlation with the exact sweep). A KL from the unablated run has no
    first-order term (it is zero, and flat, there), so it has no estimate."""
    chosen = as_metric(metric)
    if isinstance(chosen, KL):
        raise InvalidSettingError(
            "the KL from the baseline has no first-order estimate (zero, with zero gradient, at "
            "the baseline): use the exact sweep"
        )
    if ablation.site != "heads" or ablation.positions is not None:
        raise InvalidSettingError("the attribution estimate is of heads at every position")
    bound = chosen.bind(model, [trace])
    layers = ablation.layers
    seen: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable:
        def hook(z: Tensor, hook) -> Tensor:
            # a fresh node that the rest of the forward consumes, so autograd can reach it
            # (TransformerLens 4.3's backward hooks on hook_z deliver no gradient here)
            seen[layer] = z * 1.0
            return seen[layer]

        return hook

    with torch.enable_grad(), model.bridge.hooks(fwd_hooks=[(H.z(l_), keep(l_)) for l_ in layers]):
        logits = model.bridge(trace.token_ids[None].to(model.device), return_type="logits")
        value = bound.score(logits[:, bound.start :])[0]
        try:
            grads = torch.autograd.grad(value, [seen[layer] for layer in layers])
        except RuntimeError as exc:
            raise InvalidSettingError(
                f"the metric {bound.label!r} is not differentiable, so it has no attribution "
                f"estimate ({str(exc).splitlines()[0]})"
            ) from None
    out = torch.zeros(model.n_layers, model.n_heads)
    for layer, grad in zip(layers, grads, strict=True):
        z = seen[layer][0].detach().float().cpu()  # [pos, head, d_head]
        g = grad[0].float().cpu()
        value = ablation.values[layer]
        value = value if value.shape[0] == 1 else value[: z.shape[0]]
        out[layer] = ((value - z) * g).sum((0, 2))
    selected = torch.zeros_like(out, dtype=torch.bool)
    for layer, head in ablation.heads:
        selected[layer, head] = True
    return torch.where(selected, out, torch.zeros_like(out))
