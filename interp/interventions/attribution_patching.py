"""Attribution patching: a first-order estimate of any intervention's effect, and of every
candidate's activation-patching effect, from one forward and one backward pass (Syed et al.
2023; Kramar et al. 2024): both are (new value - value) . gradient, from `gradients`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import applying
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.interventions import sites
from interp.interventions.metrics import KL, Bound, Metric, MetricFn, as_metric
from interp.interventions.replay import replay_hooks
from interp.interventions.sites import Site
from interp.models.model import Model
from interp.models.surgery import logits_from
from interp.trace.trace import Trace


def attribution_estimate(
    model: Model,
    trace: Trace,
    candidates: Sequence[Intervention],
    *,
    metric: Metric | MetricFn | str | None = None,
) -> Float[Tensor, " candidate"]:
    """First-order estimate of each candidate intervention's effect on `metric` (default: the
    continuation's total log-prob): the sum over its edits of (edited x - x) . d(metric)/dx
    at the run's own values x, from one forward and one backward pass for all of them
    (attribution patching, Kramar et al. 2024), whatever the edit: an ablation, a patch, a
    steering addition, a feature edit or noise. An estimate, not an effect: it can rank
    candidates only loosely and get the sign of the largest effects wrong
    (benchmarks/sweep.py measures its rank correlation with the exact sweep). A KL from the
    unedited run has no first-order term (it is zero, and flat, there), so it has no
    estimate."""
    chosen = as_metric(metric)
    names = sorted({e.hook for c in candidates for e in c.edits})
    here, grads = gradients(model, trace, trace, chosen, names)
    row = applying.Row.of(trace)
    out = torch.zeros(len(candidates))
    for k, candidate in enumerate(candidates):
        edited: dict[str, Tensor] = {}
        for e in candidate.edits:  # in order: edits at one site compose
            x = edited.get(e.hook, here[e.hook])
            edited[e.hook] = applying.edit_hook(e, model, [row])(x[None])[0]
        out[k] = sum(float(((v - here[s]) * grads[s]).sum()) for s, v in edited.items())
    return out


def patch_estimates(
    model: Model,
    targets: list[Trace],
    sources: list[Trace],
    answers: list[Trace],
    metric: Metric,
    at: Sequence[Site],
) -> dict[Site, list[Tensor]]:
    """Attribution patching of every candidate at each site (Syed et al. 2023): (source value
    - target value) . d(metric)/d(value) at the target run, from one forward and one backward
    pass per row: each row's `[layer, pos]` (heads: `[layer, pos, head]`), summed over the
    value's last axis (d_head or d_model)."""
    layers = range(model.n_layers)
    out: dict[Site, list[Tensor]] = {site: [] for site in at}
    for target, source, answer in zip(targets, sources, answers, strict=True):
        names = [sites.hook_name(site, layer) for site in at for layer in layers]
        here, grads = gradients(model, target, answer, metric, names)
        for site in at:
            per_layer = []
            for layer in layers:
                name = sites.hook_name(site, layer)
                there = sites.activation(model, source.activations, site, layer)
                per_layer.append(
                    ((there[: here[name].shape[0]] - here[name]) * grads[name]).sum(-1)
                )
            out[site].append(torch.stack(per_layer))
    return out


def gradients(
    model: Model, run: Trace, answer: Trace, metric: Metric, names: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The values at hook points `names` in a teacher-forced forward over `run`'s tokens (under
    the intervention it was recorded under), and the gradient of `metric` (its answers from
    `answer`) with respect to each (`[pos, ...]` each): the one forward and backward pass
    every first-order estimate takes. A KL from the run itself has no first-order term."""
    if isinstance(metric, KL):
        raise InvalidSettingError(
            "the KL from the run itself has no first-order estimate (zero, with zero gradient, "
            "there): use the exact runs"
        )
    bound = metric.bind(model, [answer])
    here, grads = metric_gradients(model, [run], bound, names)
    return {n: v[0] for n, v in here.items()}, {n: g[0] for n, g in grads.items()}


def metric_gradients(
    model: Model,
    runs: Sequence[Trace],
    bound: Bound,
    names: Sequence[str],
    hooks: Sequence = (),
    also: Sequence[str] = (),
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One teacher-forced forward over `runs` (each under the intervention it was recorded
    under, then `hooks`) and one backward pass of the summed metric: the values at hook points
    `names` and the gradient at each, as fresh nodes (`[row, pos, ...]` each, on the CPU); the
    values at hook points `also` too, without gradients."""
    seen: dict[str, Tensor] = {}

    def look(name: str) -> Callable:
        def hook(x: Tensor, hook) -> Tensor:
            seen[name] = x.detach()
            return x

        return hook

    def fresh(name: str) -> Callable:
        def hook(x: Tensor, hook) -> Tensor:
            # a fresh node that the rest of the forward consumes, so autograd can reach it
            # (TransformerLens 4.3's backward hooks on hook_z deliver no gradient here)
            seen[name] = x * 1.0
            return seen[name]

        return hook

    hooked = replay_hooks(model, runs) + list(hooks) + [(name, fresh(name)) for name in names]
    hooked += [(name, look(name)) for name in also]
    ids = torch.stack([r.token_ids for r in runs]).to(model.device)
    with torch.enable_grad(), model.bridge.hooks(fwd_hooks=hooked):
        value = bound.score(logits_from(model, ids, bound.start)).sum()
        try:
            found = torch.autograd.grad(value, [seen[name] for name in names])
        except RuntimeError as exc:
            raise InvalidSettingError(
                f"the metric {bound.label!r} is not differentiable, so it has no first-order "
                f"estimate ({str(exc).splitlines()[0]})"
            ) from None
    here = {name: seen[name].detach().float().cpu() for name in (*names, *also)}
    grads = {name: g.detach().float().cpu() for name, g in zip(names, found, strict=True)}
    return here, grads
