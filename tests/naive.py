"""Reference implementations, slow and plainly right: what the tests and the benchmarks hold
interp's fast paths to."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp import metrics
from interp.interventions import Replacement, continuation_logprobs
from interp.models import Model
from interp.trace.trace import Trace


def naive_sweep(
    model: Model, trace: Trace, ablation: Replacement, metric: metrics.Metric | None = None
) -> Float[Tensor, "layer head"]:
    """Reference sweep: one full forward per head with a hook on its z (slow, for checks);
    by the continuation's total log-prob, or by `metric` read from the full logits."""
    out = torch.zeros(model.n_layers, model.n_heads)
    if metric is None:
        base, _ = continuation_logprobs(model, trace)
        for layer, head in ablation.heads:
            lp, _ = continuation_logprobs(
                model, trace, ablation.only([(layer, head)]).hooks(model.device)
            )
            out[layer, head] = (lp - base).sum()
        return out
    bound = metric.bind(model, [trace])
    ids = trace.token_ids[None].to(model.device)

    def window(hooks) -> Tensor:
        with torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
            return model.bridge(ids, return_type="logits")[:, bound.start :]

    def value(hooks) -> float:
        return float(bound.score(window(hooks))[0])

    bound.prepare(window([]))  # the baseline (the KL metric keeps it)
    base_value = value([])
    for layer, head in ablation.heads:
        out[layer, head] = value(ablation.only([(layer, head)]).hooks(model.device)) - base_value
    return out
