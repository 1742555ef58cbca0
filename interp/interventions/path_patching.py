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
Senders at or after every receiver's layer have no such path: their effect is 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from interp import components
from interp import hooks as H
from interp.edits import applying
from interp.errors import InvalidSettingError
from interp.heads import head_label
from interp.interventions.ablation import Replacement
from interp.interventions.patching import Runs, pair_runs
from interp.interventions.patching_result import Direction, Patching
from interp.interventions.replay import intervention_of
from interp.interventions.runner import MAX_LOGITS, run_jobs
from interp.interventions.sites import Target, activation
from interp.metrics import Metric, MetricFn
from interp.models.model import Model
from interp.surgery import head_write_obstruction, kv_heads, readout, run_from_layer
from interp.surgery import split_qkv_input as split_qkv
from interp.trace import Trace
from interp.traceset import TraceSet

Input = Literal["q", "k", "v"]
_OFF_PATH = ("hook_embed", "hook_pos_embed")  # before every sender
_RESID = re.compile(r"hook_resid_(pre|mid|post)$|^ln_final|\.ln[12]\.")
Receiver = tuple[int, int, Input]  # (layer, head, which input)
_RECEIVER = re.compile(r"^L([0-9]{1,6})H([0-9]{1,6})\.([qkv])$", re.IGNORECASE)
BLOCK_BATCH = 256  # candidates of one receiver block run together


def parse_receivers(spec: str | Sequence[Receiver], model: Model | None) -> list[Receiver] | None:
    """`"logits"` -> None; `"L23H3.q,L23H3.k"` (or (layer, head, "q") tuples) -> sorted unique
    receivers, checked against the model (without one: their spelling alone)."""
    if isinstance(spec, str):
        if spec.strip().lower() == "logits":
            return None
        items = [item.strip() for item in spec.split(",")]
        if len(items) > 1 and any(item.lower() == "logits" for item in items):
            raise InvalidSettingError(
                f"receivers {spec!r}: 'logits' cannot be combined with head receivers; path "
                "patch into the logits and into the heads' inputs in two runs"
            )
        parsed: list[Receiver] = []
        for item in items:
            match = _RECEIVER.match(item)
            if match is None:
                raise InvalidSettingError(
                    f"unknown receiver {item!r}: write 'logits', or heads' inputs as "
                    "L23H3.q,L23H3.k,L23H3.v"
                )
            kind: Input = match[3].lower()  # type: ignore[assignment]
            parsed.append((int(match[1]), int(match[2]), kind))
    else:
        parsed = list(spec)
    if not parsed:
        raise InvalidSettingError("no receivers: write 'logits' or heads' inputs (L23H3.q)")
    if model is None:
        return sorted(set(parsed))
    for layer, head, kind in parsed:
        if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads) or kind not in "qkv":
            raise InvalidSettingError(
                f"receiver {head_label(layer, head)}.{kind} is out of range; valid: "
                f"L0..L{model.n_layers - 1}, H0..H{model.n_heads - 1}, .q .k .v"
            )
        if kind != "q" and kv_heads(model) != model.n_heads:
            raise InvalidSettingError(
                f"receiver {head_label(layer, head)}.{kind}: with grouped-query attention "
                f"({kv_heads(model)} key/value heads for {model.n_heads} query heads) a query "
                "head has no key or value input of its own; path patch into .q"
            )
    return sorted(set(parsed))


def receivers_label(receivers: list[Receiver] | None) -> str:
    if receivers is None:
        return "logits"
    return ",".join(f"{head_label(layer, head)}.{kind}" for layer, head, kind in receivers)


def path_patch(
    model: Model,
    clean: Trace | TraceSet,
    corrupted: Trace | TraceSet,
    *,
    receivers: str | Sequence[Receiver] = "logits",
    metric: Metric | MetricFn | str | None = None,
    direction: Direction = "denoise",
) -> Patching:
    """Every sender head patched along its direct path into `receivers` (see the module's
    docstring): `result["path"]` is `[layer, head]` over senders, as `patch`'s results are."""
    chosen = parse_receivers(receivers, model)
    obstruction = head_write_obstruction(model, range(model.n_layers))
    if obstruction is not None:
        raise InvalidSettingError(
            f"a head's write into the residual stream is not z @ W_O here ({obstruction}), "
            "so it has no direct path of its own to patch"
        )
    runs = pair_runs(model, clean, corrupted, metric, direction, "path patching")
    for run in runs.targets:
        _check_paths(run)
    scores = _into_logits(model, runs) if chosen is None else _into_heads(model, runs, chosen)
    return runs.patching({"path": runs.result("path", scores)}, receivers=receivers_label(chosen))


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


def _into_heads(model: Model, runs: Runs, receivers: list[Receiver]) -> Tensor:
    """m(target with the receivers' outputs recomputed from each sender's delta), `[row,
    layer, head]`; senders with no path into any receiver keep the target's own metric."""
    n_layers, n_heads = model.n_layers, model.n_heads
    last = max(layer for layer, _, _ in receivers)
    senders = [(l_, h) for l_ in range(last) for h in range(n_heads)]
    by_layer: dict[int, list[tuple[int, Input]]] = {}
    for layer, head, kind in receivers:
        by_layer.setdefault(layer, []).append((head, kind))
    targets = runs.targets
    # z of each receiver layer for every (row, sender): the target's, receivers recomputed
    z_new: dict[int, list[Tensor]] = {}
    for layer, inputs in sorted(by_layer.items()):
        z_new[layer] = _receiver_outputs(model, runs, senders, layer, inputs)
    jobs = []
    heads: list[Target] = [(layer, head) for layer, head, _ in receivers]
    for r in range(len(targets)):
        for s in range(len(senders)):
            values = {layer: z_new[layer][r * len(senders) + s] for layer in z_new}
            jobs.append((r, Replacement(heads, "resample", values, "path-patched", "heads")))
    scores = run_jobs(model, jobs, targets, runs.cleans, runs.metric, runs.target_windows)
    out = runs.base.view(-1, 1, 1).repeat(1, n_layers, n_heads)
    out[:, :last] = scores.view(len(targets), last, n_heads)
    return out


def _receiver_outputs(
    model: Model,
    runs: Runs,
    senders: list[tuple[int, int]],
    layer: int,
    inputs: list[tuple[int, Input]],
) -> list[Tensor]:
    """Block `layer`'s `hook_z` (`[pos, head, d_head]`) for each (row, sender), row-major, with
    each receiver head's own Q/K/V input moved by the sender's delta (senders in `layer` or
    later reach it by no path: the target's own z)."""
    out: list[Tensor] = []
    for r, target in enumerate(runs.targets):
        own = activation(model, target.activations, "heads", layer)
        resid = target.activations[H.resid_pre(layer)].float()
        by_layer = {l_: _deltas(model, runs, r, l_) for l_ in range(layer)}
        deltas = [by_layer[l_][h] if l_ < layer else None for l_, h in senders]  # [pos, d_model]
        reach = [i for i, d in enumerate(deltas) if d is not None]
        z_r: list[Tensor] = [own] * len(senders)
        for i in range(0, len(reach), BLOCK_BATCH):
            chunk = reach[i : i + BLOCK_BATCH]
            delta = torch.stack([deltas[j] for j in chunk]).to(model.device)  # type: ignore[misc]
            batch = resid.expand(len(chunk), *resid.shape).to(model.device)
            seen: dict[str, Tensor] = {}
            hooks = _replayed(model, target, len(chunk), layer) + [(H.z(layer), _keep(seen))]
            for kind in sorted({k for _, k in inputs}):
                moved = [h for h, k in inputs if k == kind]
                hooks.append((H.qkv_input(layer, kind), _add_to_heads(delta, moved)))
            with torch.no_grad(), split_qkv(model), model.bridge.hooks(fwd_hooks=hooks):
                run_from_layer(model, batch, layer, keep=1, until=layer + 1)
            z = seen["z"].float().cpu()
            for k, j in enumerate(chunk):
                z_r[j] = z[k]
        out += z_r
    return out


def _check_paths(run: Trace) -> None:
    """Refuse a run recorded under edits on the residual stream after the embedding: the
    direct paths run through it, so a sender's delta would be edited on its way (or cut)."""
    recorded = intervention_of(run)
    for e in [] if recorded is None else recorded.edits:
        before = e.site.startswith(_OFF_PATH) or e.site == H.resid_pre(0)
        if not before and (not e.site.startswith("blocks.") or _RESID.search(e.site)):
            raise InvalidSettingError(
                f"the run of {run.origin or repr(run.prompt[:40])} was recorded under an edit of "
                f"{e.site}, on the residual stream that path patching's direct paths run "
                "through; record it with edits of heads, attention or MLPs only"
            )


def _replayed(model: Model, run: Trace, size: int, layer: int) -> list:
    """The run's own edits in block `layer` (its input, recorded, excepted), for `size` copies."""
    recorded = intervention_of(run)
    if recorded is None:
        return []
    return applying.hooks(recorded, model, [applying.Row.of(run)] * size, start_layer=layer)


def _keep(seen: dict[str, Tensor]) -> Callable:
    def hook(z: Tensor, hook: object) -> Tensor:
        seen["z"] = z.detach().clone()
        return z

    return hook


def _add_to_heads(delta: Tensor, heads: list[int]) -> Callable:
    """Add each batch item's delta ([batch, pos, d_model]) to the listed heads' own copies of
    the input ([batch, pos, head, d_model])."""

    def hook(x: Tensor, hook: object) -> Tensor:
        x = x.clone()
        x[:, :, heads] += delta[:, :, None].to(x.dtype)
        return x

    return hook
