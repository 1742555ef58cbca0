"""A circuit's metric, exactly (EAP-IG's `evaluate_graph`): one forward of the clean tokens in
which every edge outside the circuit carries the corrupted run's value of its writer and every
edge inside carries what the circuit itself computes. Each reader's own copy of its input is
rebuilt as it is read: its input in this run plus, over the writers whose edge into it is
excluded, (corrupted output - output in this run). The empty circuit is the corrupted run and
the full circuit the clean one; dropping one edge u->v is path patching of u into v."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from interp.circuits.graph import Graph
from interp.circuits.runs import batches, forward, writes
from interp.interventions.metrics import Metric
from interp.interventions.replay import replay_hooks
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.surgery import split_qkv_input
from interp.trace import components
from interp.trace.trace import Trace


def circuit_metric(
    model: Model,
    cleans: Sequence[Trace],
    corrupts: Sequence[Trace],
    metric: Metric,
    graph: Graph,
    included: Tensor,
    batch_size: int = 16,
) -> Tensor:
    """Each pair's metric with only the `included` edges (bool `[writer, reader]`) carrying
    what the circuit computes (see the module's docstring): `[row]`."""
    excluded = (graph.mask & ~included).float()
    out = torch.zeros(len(cleans))
    for rows in batches(cleans, batch_size):
        clean = [cleans[i] for i in rows]
        corrupt_out = writes(model, [corrupts[i] for i in rows])
        bound = metric.bind(model, clean)
        hooks = replay_hooks(model, clean) + _rebuilding(model, graph, excluded, corrupt_out)
        with torch.no_grad(), split_qkv_input(model):
            logits = forward(model, clean, hooks)
            out[rows] = bound.score(logits[:, bound.start :]).float().cpu()
    return out


def _rebuilding(model: Model, graph: Graph, excluded: Tensor, corrupt_out: Tensor) -> list:
    """Hooks that keep each writer's output in this run as it is computed, and add to each
    reader's input the excluded writers' (corrupted - this run's) outputs."""
    device = model.device
    corrupt = corrupt_out.to(device)
    live: list[Tensor] = []  # this run's writer outputs so far, in the graph's writer order
    index = {site: i for i, site in enumerate(graph.readers)}

    def keep_embed(x: Tensor, hook: object) -> Tensor:
        live.clear()
        live.append(x.float())
        return x

    def keep_heads(layer: int) -> Callable:
        def hook(z: Tensor, hook: object) -> Tensor:
            live.extend(components.head_outputs(model, z, layer).to(device).unbind(2))
            return z

        return hook

    def keep_mlp(x: Tensor, hook: object) -> Tensor:
        live.append(x.float())
        return x

    def rebuild(readers: list[int], per_head: bool) -> Callable:
        def hook(x: Tensor, hook: object) -> Tensor:
            n = len(live)
            diff = corrupt[:, :, :n] - torch.stack(live, dim=2)  # [b, p, writer, d]
            cut = excluded[:n, readers].to(device)  # [writer, reader]
            if per_head:
                return x + torch.einsum("bpwd,wr->bprd", diff, cut).to(x.dtype)
            return x + torch.einsum("bpwd,w->bpd", diff, cut[:, 0]).to(x.dtype)

        return hook

    hooks: list = [(H.EMBED, keep_embed)]
    for layer in range(model.n_layers):
        attention = graph.attention_readers(layer)
        for kind in "qkv":
            readers = [index[s] for s in attention if s.input == kind]
            hooks.append((H.qkv_input(layer, kind), rebuild(readers, True)))
        hooks.append((H.z(layer), keep_heads(layer)))
        mlp = index[next(s for s in graph.readers if s.kind == "mlp" and s.layer == layer)]
        hooks.append((H.mlp_reader(layer), rebuild([mlp], False)))
        hooks.append((H.mlp_out(layer), keep_mlp))
    hooks.append((H.LOGITS_IN, rebuild([len(graph.readers) - 1], False)))
    return hooks
