"""Reference implementations, slow and plainly right: what the tests and the benchmarks hold
interp's fast paths to."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp import metrics
from interp.edits import applying
from interp.edits.value import Intervention
from interp.interventions import ablation_parts, continuation_logprobs
from interp.models import Model
from interp.trace.trace import Trace


def naive_sweep(
    model: Model,
    trace: Trace,
    ablation: dict[tuple[int, int], Intervention],
    metric: metrics.Metric | None = None,
) -> Float[Tensor, "layer head"]:
    """Reference sweep: one full forward per head (`ablation[head]`, its edits' own hooks;
    slow, for checks); by the continuation's total log-prob, or by `metric` read from the
    full logits."""
    out = torch.zeros(model.n_layers, model.n_heads)

    def hooks(head: tuple[int, int]) -> list:
        return applying.hooks(ablation[head], model, [applying.Row.of(trace)])

    if metric is None:
        base, _ = continuation_logprobs(model, trace)
        for layer, head in ablation:
            lp, _ = continuation_logprobs(model, trace, hooks((layer, head)))
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
    for layer, head in ablation:
        out[layer, head] = value(hooks((layer, head))) - base_value
    return out


def per_head(model: Model, trace: Trace, heads, mode="mean", **options) -> dict:
    """Each head's own ablation (`naive_sweep`'s input), the values computed once."""
    heads = sorted(heads)
    parts = ablation_parts(model, trace, heads, mode, **options)
    return dict(zip(heads, parts, strict=True))
