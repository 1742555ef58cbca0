"""Attribution patching: a first-order estimate of every head's ablation effect from one
forward and one backward pass (Kramar et al. 2024)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from interp import hooks as H
from interp.interventions.ablation import Ablation
from interp.models.model import Model
from interp.trace import Trace


def attribution_estimate(
    model: Model, trace: Trace, ablation: Ablation
) -> Float[Tensor, "layer head"]:
    """First-order estimate of each head's effect on the continuation's total log-prob:
    (z_ablated - z_clean) . d(total log-prob)/dz, from one forward and one backward pass
    (attribution patching, Kramar et al. 2024). An estimate, not an effect: it can rank heads
    only loosely and get the sign of the largest effects wrong (benchmarks/sweep.py measures
    its rank correlation with the exact sweep)."""
    p, n = trace.prompt_len, trace.n_positions
    targets = trace.token_ids[p:n].to(model.device)
    layers = sorted({layer for layer, _ in ablation.heads})
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
        lp = logits[0, p - 1 : n - 1].float().log_softmax(-1)
        metric = lp.gather(-1, targets[:, None]).sum()
        grads = torch.autograd.grad(metric, [seen[layer] for layer in layers])
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
