"""Path patching (Wang et al. 2023; Goldowsky-Dill et al. 2023): each sender head's output
patched only along its direct path into the receivers, everything else at the run the patch
goes into (the target; see `interp.interventions.patching` for the directions).

A sender's write into the residual stream is `z_h @ W_O[h]`; between the runs it differs by
`delta` (per position). The receivers are
- `logits`: `delta` is added to the target's final residual stream, which the model's own
  final norm and unembedding read (no other component sees it);
- heads' query, key or value inputs (`L23H3.q`): each receiver recomputes its output with
  `delta` added to its own copy of that input (TransformerLens's per-head Q/K/V input, as
  `get_act_patch_direct_path` does), every other input as in the target run; then the target
  run goes on from the first receiver's layer with the receivers' outputs replaced, and their
  change reaches the logits through everything downstream.
- with grouped-query attention a key or value input belongs to a KV group, not to a query
  head: the receiver is the group (`L23.kv1.k`), `delta` is added to the group's own copy of
  the input, and every query head of the group recomputes its output. TransformerLens refuses
  K/V direct paths on such models; this definition is interp's own (it is TransformerLens's on
  a model with one KV head per query head, where `L23.kv3.k` is `L23H3.k`).
- an MLP's input (`L5.mlp`): the MLP recomputes its output from the target's residual after
  its block's attention plus `delta` (so senders in its own layer reach it too), and the
  target run goes on with that output replaced, as for heads.
Senders with no path into any receiver (at or after its layer; after, for an MLP) have
effect 0. The receivers' spelling is `interp.interventions.receivers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from interp.edits import applying
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, describe
from interp.interventions.ablation import replacing
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.patching_result import Patching
from interp.interventions.patching_runs import Runs, paired_rows, paired_traces
from interp.interventions.patching_site import Direction
from interp.interventions.preflight import check_before_running
from interp.interventions.receivers import (
    Input,
    Receiver,
    parse_receivers,
    receivers_label,
    receiving_heads,
)
from interp.interventions.replay import intervention_of
from interp.interventions.runner import MAX_LOGITS, Candidate, run_jobs
from interp.interventions.sites import Target, activation
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.qkv import split_qkv_input as split_qkv
from interp.models.surgery import head_write_obstruction, readout, run_from_layer
from interp.trace import components
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

BLOCK_BATCH = 256  # candidates of one receiver block run together


def path_patch(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet,
    *,
    receivers: str | Sequence[Receiver] = "logits",
    metric: Metric | MetricFn | str | None = None,
    direction: Direction = "denoise",
    executor: Executor | None = None,
) -> Patching:
    """Every sender head patched along its direct path into `receivers` (see the module's
    docstring), the rows where `executor` runs them (`interp.Ray(...)`; default this
    process). Returns a `Patching`: `result["path"]` is `[layer, head]` over senders, as
    `patch`'s results are."""
    chosen = parse_receivers(receivers, model)
    obstruction = head_write_obstruction(model, range(model.n_layers))
    if obstruction is not None:
        raise InvalidSettingError(
            f"a head's write into the residual stream is not z @ W_O here ({obstruction}), "
            "so it has no direct path of its own to patch"
        )
    check_before_running(model, clean, "path patching", metric=metric)
    cleans, corrupts = paired_traces(model, clean, corrupted, "path patching", direction)
    for run in corrupts if direction == "denoise" else cleans:
        _check_paths(run)
    scores_of = partial(_path_scores, receivers=chosen)
    runs, scores = paired_rows(
        model, cleans, corrupts, metric, direction, "path patching", scores_of, executor
    )
    label = receivers_label(chosen, model)
    where = {} if executor is None else describe(executor)
    return runs.patching(
        {"path": runs.result("path", scores["path"])}, receivers=label, executor=where
    )


def _path_scores(
    model: Model, runs: Runs, extras: list[Any], receivers: list[Receiver] | None
) -> dict[str, Tensor]:
    """Each sender's patched metric for some pairs: `path_patch`'s scores."""
    if receivers is None:
        return {"path": _into_logits(model, runs)}
    return {"path": _into_receivers(model, runs, receivers)}


def _deltas(model: Model, runs: Runs, row: int, layer: int) -> Tensor:
    """Each head's source-minus-target write in `layer`: `[head, pos, d_model]`."""
    writes = [
        components.head_outputs(model, activation(model, run.activations, "heads", layer), layer)
        for run in (runs.sources[row], runs.targets[row])
    ]  # [pos, head, d_model] each
    return (writes[0] - writes[1]).transpose(0, 1)


def _into_logits(model: Model, runs: Runs) -> Tensor:
    """m(target with one sender's delta added to the final residual stream), `[row, layer,
    head]`: the final norm and unembedding read it directly, no forward pass."""
    n_layers, n_heads = model.n_layers, model.n_heads
    out = torch.zeros(len(runs.targets), n_layers, n_heads)
    start0 = runs.metric.bind(model, runs.cleans).start
    for r, target in enumerate(runs.targets):
        bound = runs.metric.bind(model, [runs.cleans[r]] * n_heads)
        final = components.resid_after(model, target.activations, n_layers - 1)[bound.start :]
        window = runs.target_windows[r, bound.start - start0 : target.n_positions - start0]
        bound.prepare(window.expand(n_heads, *window.shape))
        for layer in range(n_layers):
            delta = _deltas(model, runs, r, layer)[:, bound.start :]  # [head, keep, d_model]
            resid = (final + delta).to(model.device)
            size = max(1, MAX_LOGITS // (resid.shape[1] * model.d_vocab))
            with torch.no_grad():
                logits = torch.cat([readout(model, chunk) for chunk in resid.split(size)])
                out[r, layer] = bound.score(logits).float().cpu()
    return out


def _into_receivers(model: Model, runs: Runs, receivers: list[Receiver]) -> Tensor:
    """m(target with the receivers' outputs recomputed from each sender's delta), `[row,
    layer, head]`; senders with no path into any receiver keep the target's own metric."""
    n_layers, n_heads = model.n_layers, model.n_heads
    reached = max(layer + (kind == "mlp") for layer, _, kind in receivers)  # senders before
    senders = [(l_, h) for l_ in range(reached) for h in range(n_heads)]
    by_layer: dict[int, list[tuple[int, Input]]] = {}
    for layer, head, kind in receivers:
        by_layer.setdefault(layer, []).append((head, kind))
    targets = runs.targets
    # each receiver layer's z and MLP output for every (row, sender), receivers recomputed
    new = {
        layer: _receiver_outputs(model, runs, senders, layer, inputs)
        for layer, inputs in sorted(by_layer.items())
    }
    heads: list[Target] = sorted(
        {(r[0], head) for r in receivers for head in receiving_heads(model, r)}
    )
    mlps: list[Target] = sorted({(r[0], None) for r in receivers if r[2] == "mlp"})
    jobs: list[tuple[int, Candidate]] = []
    for r in range(len(targets)):
        for s in range(len(senders)):
            i = r * len(senders) + s
            candidate = Intervention()
            if heads:
                z = {layer: new[layer][0][i] for layer, _ in heads}
                candidate += replacing("heads", heads, z, origin="path-patched")
            if mlps:
                after = {layer: new[layer][1][i] for layer, _ in mlps}
                candidate += replacing("mlp-out", mlps, after, origin="path-patched")
            jobs.append((r, candidate))
    scores = run_jobs(model, jobs, targets, runs.cleans, runs.metric, runs.target_windows)
    out = runs.base.view(-1, 1, 1).repeat(1, n_layers, n_heads)
    out[:, :reached] = scores.view(len(targets), reached, n_heads)
    return out


def _receiver_outputs(
    model: Model,
    runs: Runs,
    senders: list[tuple[int, int]],
    layer: int,
    inputs: list[tuple[int, Input]],
) -> tuple[list[Tensor], list[Tensor]]:
    """Block `layer`'s `hook_z` (`[pos, head, d_head]`) and MLP output (`[pos, d_model]`) for
    each (row, sender), row-major: each receiver head's own Q/K/V input moved by the delta of
    a sender before `layer`, the MLP's input (the target's residual after the block's
    attention) by that of a sender in `layer` or before; a sender with no path leaves them."""
    into_mlp = any(kind == "mlp" for _, kind in inputs)
    qkv = [(h, k) for h, k in inputs if k != "mlp"]
    reach_layer = layer + 1 if into_mlp else layer
    zs: list[Tensor] = []
    mlp_outs: list[Tensor] = []
    for r, target in enumerate(runs.targets):
        acts = target.activations
        own = activation(model, acts, "heads", layer)
        own_mlp = activation(model, acts, "mlp-out", layer) if into_mlp else own
        resid = acts[H.resid_pre(layer)].float()
        mid = resid + activation(model, acts, "attn-out", layer) if into_mlp else resid
        by_layer = {l_: _deltas(model, runs, r, l_) for l_ in range(reach_layer)}
        deltas = [by_layer[l_][h] if l_ < reach_layer else None for l_, h in senders]
        reach = [i for i, d in enumerate(deltas) if d is not None]
        z_r: list[Tensor] = [own] * len(senders)
        mlp_r: list[Tensor] = [own_mlp] * len(senders)
        for i in range(0, len(reach), BLOCK_BATCH):
            chunk = reach[i : i + BLOCK_BATCH]
            delta = torch.stack([deltas[j] for j in chunk]).to(model.device)  # type: ignore[misc]
            before = torch.tensor([senders[j][0] < layer for j in chunk], device=model.device)
            batch = resid.expand(len(chunk), *resid.shape).to(model.device)
            seen: dict[str, Tensor] = {}
            hooks = _replayed(model, target, len(chunk), layer) + [(H.z(layer), _keep(seen, "z"))]
            for kind in sorted({k for _, k in qkv}):
                moved = [h for h, k in qkv if k == kind]
                moving = delta * before[:, None, None]  # no path from the receiver's own layer
                hooks.append((H.qkv_input(layer, kind), _add_to_heads(moving, moved)))
            if into_mlp:  # the MLP reads the target's residual after attention, plus the delta
                hooks.append((H.resid_mid(layer), _replace(mid.to(model.device) + delta)))
                hooks.append((H.mlp_out(layer), _keep(seen, "mlp")))
            with torch.no_grad(), split_qkv(model), model.bridge.hooks(fwd_hooks=hooks):
                run_from_layer(model, batch, layer, keep=1, until=layer + 1)
            for k, j in enumerate(chunk):
                z_r[j] = seen["z"][k].float().cpu()
                if into_mlp:
                    mlp_r[j] = seen["mlp"][k].float().cpu()
        zs += z_r
        mlp_outs += mlp_r
    return zs, mlp_outs


def _check_paths(run: Trace) -> None:
    """Refuse a run recorded under edits on the residual stream after the embedding, or on
    a head's write into it (`hook_result`, the output projection, `hook_attn_out`): the
    direct paths run through them, so a sender's delta would be edited on its way (or cut)."""
    recorded = intervention_of(run)
    for e in [] if recorded is None else recorded.edits:
        before = e.layer < 0 or e.hook == H.resid_pre(0)
        if not before and (H.block_hook(e.hook) is None or H.on_residual_path(e.hook)):
            raise InvalidSettingError(
                f"the run of {run.origin or repr(run.prompt[:40])} was recorded under an edit of "
                f"{e.site}, on the residual stream (or a head's write into it) that path "
                "patching's direct paths run through; record it with edits of heads' z, q, k, "
                "v or MLPs only"
            )


def _replayed(model: Model, run: Trace, size: int, layer: int) -> list:
    """The run's own edits in block `layer` (its input, recorded, excepted), for `size` copies."""
    recorded = intervention_of(run)
    if recorded is None:
        return []
    return applying.hooks(recorded, model, [applying.Row.of(run)] * size, start_layer=layer)


def _keep(seen: dict[str, Tensor], key: str) -> Callable:
    def hook(x: Tensor, hook: object) -> Tensor:
        seen[key] = x.detach().clone()
        return x

    return hook


def _replace(value: Tensor) -> Callable:
    """Each batch item's value ([batch, pos, d_model]) in place of the activation."""

    def hook(x: Tensor, hook: object) -> Tensor:
        return value.to(x.dtype)

    return hook


def _add_to_heads(delta: Tensor, heads: list[int]) -> Callable:
    """Add each batch item's delta ([batch, pos, d_model]) to the listed heads' own copies of
    the input ([batch, pos, head, d_model])."""

    def hook(x: Tensor, hook: object) -> Tensor:
        x = x.clone()
        x[:, :, heads] += delta[:, :, None].to(x.dtype)
        return x

    return hook
