"""Reference implementations, slow and plainly right: what the tests and the benchmarks hold
interp's fast paths to."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.interventions import Ablation, continuation_logprobs
from interp.models import Model
from interp.trace import Trace


def naive_sweep(model: Model, trace: Trace, ablation: Ablation) -> Float[Tensor, "layer head"]:
    """Reference sweep: one full forward per head with a hook on its z (slow, for checks)."""
    base, _ = continuation_logprobs(model, trace)
    out = torch.zeros(model.n_layers, model.n_heads)
    for layer, head in ablation.heads:
        single = Ablation([(layer, head)], ablation.mode, ablation.values, ablation.source)
        lp, _ = continuation_logprobs(model, trace, single.hooks(model.device))
        out[layer, head] = (lp - base).sum()
    return out
