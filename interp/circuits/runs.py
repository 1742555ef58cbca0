"""What circuit discovery reads from the runs: every writer's output in the graph's order, one
forward over a batch of runs, every reader's gradient in one backward, and batches of one
length."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor
from tqdm import tqdm  # not tqdm.auto: it warns in a notebook without ipywidgets

from interp.circuits.graph import Graph
from interp.interventions.attribution_patching import metric_gradients
from interp.interventions.metrics import Bound
from interp.interventions.replay import replay_hooks
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.qkv import split_qkv_input, ungrouped_kv
from interp.models.surgery import logits_from
from interp.trace import components
from interp.trace.trace import Trace


def writes(model: Model, runs: Sequence[Trace]) -> Tensor:
    """Every writer's output in each run (replayed under what it was recorded under), in the
    graph's writer order: `[row, pos, writer, d_model]`."""
    return writes_of(model, node_values(model, runs))


def writes_of(model: Model, seen: dict[str, Tensor]) -> Tensor:
    """Every writer's output from its node's value (`seen`, by hook name, as `node_values`
    gives it): `[row, pos, writer, d_model]`."""
    parts = [seen[H.EMBED][:, :, None]]
    for layer in range(model.n_layers):
        parts.append(components.head_outputs(model, seen[H.z(layer)], layer))
        parts.append(seen[H.mlp_out(layer)][:, :, None])
    return torch.cat(parts, dim=2)


def node_values(model: Model, runs: Sequence[Trace]) -> dict[str, Tensor]:
    """Each node's own value in each run (replayed under what it was recorded under): the
    embedding, every layer's z and MLP output, `[row, pos, ...]` by hook name."""
    seen: dict[str, Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(x: Tensor, hook: object) -> Tensor:
            seen[name] = x.detach().float().cpu()
            return x

        return hook

    hooks = replay_hooks(model, runs) + [(name, keep(name)) for name in node_hooks(model)]
    with torch.no_grad():
        forward(model, runs, hooks)
    return seen


def node_hooks(model: Model) -> list[str]:
    """The hooks of every node's value in the graph's writer order: the embedding, then each
    layer's heads (`z`) and MLP."""
    return [H.EMBED] + [
        n for layer in range(model.n_layers) for n in (H.z(layer), H.mlp_out(layer))
    ]


def forward(model: Model, runs: Sequence[Trace], hooks: list, start: int = -1) -> Tensor:
    """The runs' logits (one length) from position `start` on (-1: the last alone), under
    `hooks`."""
    ids = torch.stack([r.token_ids for r in runs]).to(model.device)
    with model.bridge.hooks(fwd_hooks=hooks):
        return logits_from(model, ids, start % ids.shape[1])


def batches(runs: Sequence[Trace], size: int) -> list[list[int]]:
    """Row indices in batches of one length each (no padding), at most `size` rows a batch."""
    by_length: dict[int, list[int]] = {}
    for i, run in enumerate(runs):
        by_length.setdefault(run.n_positions, []).append(i)
    return [rows[j : j + size] for rows in by_length.values() for j in range(0, len(rows), size)]


def bar(groups: list[list[int]], rows: int, what: str, enabled: bool) -> Iterator[list[int]]:
    """`groups` of rows in turn, under a progress bar of pairs (on stderr, where enabled)."""
    with tqdm(total=rows, desc=what, unit="pair", disable=not enabled, file=sys.stderr) as b:
        for group in groups:
            yield group
            b.update(len(group))


def reader_grads(
    model: Model,
    runs: Sequence[Trace],
    bound: Bound,
    graph: Graph,
    embed: Tensor | None = None,
    values: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The gradient of the summed metric at every reader's own copy of its input, in one
    forward and backward pass over the runs' tokens (from `embed` in place of the token
    embeddings where given): `[row, pos, reader, d_model]`; with `values`, also every node's
    value in that forward (as `node_values` gives them; else an empty dict)."""
    names = [n for layer in range(model.n_layers) for n in _reader_hooks(layer)] + [H.LOGITS_IN]
    nodes = node_hooks(model) if values else []
    hooks = []
    if embed is not None:
        start = embed.to(model.device).requires_grad_()  # every reader's copy descends from it
        hooks.append((H.EMBED, lambda x, hook: start.to(x.dtype)))
    with reader_copies(model, graph):
        seen, grads = metric_gradients(model, runs, bound, names, hooks, also=nodes)
    parts = []
    for layer in range(model.n_layers):
        q, k, v, mlp = (grads.pop(name) for name in _reader_hooks(layer))
        parts += [q, k, v, mlp[:, :, None]]
    parts.append(grads.pop(H.LOGITS_IN)[:, :, None])
    grads.clear()
    out = torch.cat(parts, dim=2)
    assert out.shape[2] == len(graph.readers), (out.shape, len(graph.readers))
    return out, {name: seen[name] for name in nodes}


@contextlib.contextmanager
def reader_copies(model: Model, graph: Graph) -> Iterator[None]:
    """Each reader's own copy of its input, a fresh node only it consumes (TransformerLens's
    split Q/K/V input), for the call; with `kv="per-head"` on a grouped-query model, a key
    and value input per query head (the model ungrouped, its function unchanged)."""
    per_head = graph.kv == "per-head" and graph.n_kv != graph.n_heads
    with split_qkv_input(model), ungrouped_kv(model) if per_head else contextlib.nullcontext():
        yield


def _reader_hooks(layer: int) -> list[str]:
    return [*(H.qkv_input(layer, kind) for kind in "qkv"), H.mlp_reader(layer)]
