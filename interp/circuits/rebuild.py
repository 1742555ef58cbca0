"""The exact forward a circuit is evaluated by (EAP-IG's `evaluate_graph`): the clean tokens,
every edge outside the circuit carrying the corrupted run's value of its writer (or its mean,
with mean ablation) and every edge inside what the circuit itself computes. Each reader's own
copy of its input is rebuilt as it is read: its input in this run plus, over the writers whose
edge into it is excluded, (corrupted output - output in this run).

Since a reader's input is the sum of every earlier writer's output (and terms common to both
runs), the excluded edges' sum is the whole difference less the included edges': each reader
is rebuilt from whichever side has fewer writers, so a small circuit (or a nearly full one)
costs little more than a forward. The corrupted writes are computed once a batch for every
circuit evaluated."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from interp.circuits.graph import Graph
from interp.circuits.runs import bar, batches, forward, reader_copies, writes
from interp.interventions.metrics import Metric
from interp.interventions.replay import replay_hooks
from interp.models import hooks as H
from interp.models.model import Model
from interp.trace import components
from interp.trace.trace import Trace


def circuit_metrics(
    model: Model,
    cleans: Sequence[Trace],
    corrupts: Sequence[Trace],
    metric: Metric,
    graph: Graph,
    circuits: Sequence[Tensor],
    batch_size: int = 16,
    progress: bool = False,
    means: Tensor | None = None,
) -> Tensor:
    """Each pair's metric under each circuit (a bool `[writer, reader]` mask of the edges
    carrying what the circuit computes; see the module's docstring): `[circuit, row]`. With
    `means` (`[writer, d_model]`, mean ablation; `[pos, writer, d_model]`, mean-positional)
    an excluded edge carries its writer's mean instead of the corrupted run's value."""
    out = torch.zeros(len(circuits), len(cleans))
    included = [c & graph.mask for c in circuits]
    what = f"evaluating {len(circuits)} circuit(s)"
    for rows in bar(batches(cleans, batch_size), len(cleans), what, progress):
        clean = [cleans[i] for i in rows]
        # [writer, row, pos, d]: one writer's values contiguous, as the rebuild reads them
        if means is None:
            corrupt = writes(model, [corrupts[i] for i in rows]).permute(2, 0, 1, 3)
        elif means.dim() == 3:  # [pos, writer, d]: each position's mean (mean-positional)
            corrupt = means.permute(1, 0, 2)[:, None].expand(-1, len(rows), -1, -1)
        else:
            shape = (len(rows), clean[0].n_positions)
            corrupt = means[:, None, None, :].expand(-1, *shape, -1)
        corrupt = corrupt.contiguous().to(model.device)
        bound = metric.bind(model, clean)
        for c, kept in enumerate(included):
            hooks = replay_hooks(model, clean) + _rebuilding(model, graph, kept, corrupt)
            with torch.no_grad(), reader_copies(model, graph):
                logits = forward(model, clean, hooks, bound.start)
                out[c, rows] = bound.score(logits).float().cpu()
    return out


class _Rebuild:
    """One forward's state: each writer's (corrupted - this run's) output as it is computed,
    and their running sum, the whole difference at the current point of the residual."""

    def __init__(self, corrupt: Tensor, included: Tensor) -> None:
        self.corrupt = corrupt  # [writer, row, pos, d]
        self.diff = torch.empty_like(corrupt)
        self.total = torch.zeros_like(corrupt[0])
        self.n = 0  # writers computed so far
        self.included = included.float()

    def wrote(self, outputs: Tensor) -> None:
        """Writers' outputs in this run, `[k, row, pos, d]`, next in the graph's order."""
        k = outputs.shape[0]
        part = self.corrupt[self.n : self.n + k] - outputs.float()
        self.diff[self.n : self.n + k] = part
        self.total += part.sum(0)
        self.n += k

    def excluded_sum(self, readers: list[int], lo: int = 0) -> Tensor:
        """Σ over each reader's excluded writers (from writer `lo` to the last computed) of
        their differences: `[reader, row, pos, d]`; from all writers, from the excluded side
        or as the whole difference less the included side, whichever has fewer writers."""
        kept = self.included[lo : self.n, readers]  # [writer, reader]
        cut = 1 - kept
        kept_rows, cut_rows = kept.any(1).nonzero()[:, 0], cut.any(1).nonzero()[:, 0]
        from_cut = lo > 0 or len(cut_rows) <= len(kept_rows)
        weights, rows = (cut, cut_rows) if from_cut else (kept, kept_rows)
        shape = (len(readers), *self.diff.shape[1:])
        diff = self.diff[lo : self.n]
        if len(rows) == 0:
            part = self.diff.new_zeros(shape)
        elif 2 * len(rows) > len(diff):  # most writers: read them in place (zero weights)
            part = (weights.T @ diff.flatten(1)).view(shape)
        else:  # a few: gather them first
            part = (weights[rows].T @ diff[rows].flatten(1)).view(shape)
        return part if from_cut else self.total[None] - part


def _rebuilding(model: Model, graph: Graph, included: Tensor, corrupt: Tensor) -> list:
    """Hooks that keep each writer's output in this run as it is computed, and add to each
    reader's input its excluded writers' (corrupted - this run's) outputs."""
    state = _Rebuild(corrupt, included.to(corrupt.device))
    index = {site: i for i, site in enumerate(graph.readers)}

    def keep_embed(x: Tensor, hook: object) -> Tensor:
        state.n = 0
        state.total.zero_()
        state.wrote(x[None])
        return x

    def keep_heads(layer: int) -> Callable:
        def hook(z: Tensor, hook: object) -> Tensor:
            state.wrote(components.head_outputs(model, z, layer).permute(2, 0, 1, 3))
            return z

        return hook

    def keep_mlp(x: Tensor, hook: object) -> Tensor:
        state.wrote(x[None])
        return x

    def rebuild_logits(x: Tensor, hook: object) -> Tensor:
        return x + state.excluded_sum([len(graph.readers) - 1])[0].to(x.dtype)

    # A layer's attention readers and its MLP's are summed in one pass over the writers
    # before the layer (the MLP's then adds the layer's heads): each writer's difference is
    # read once a layer.
    sums: dict[int, tuple[Tensor, int]] = {}  # layer -> (its readers' sums, writers summed)

    def rebuild_attention(layer: int, readers: list[int], at: slice) -> Callable:
        def hook(x: Tensor, hook: object) -> Tensor:
            if at.start == 0:  # the query input comes first
                sums[layer] = (state.excluded_sum(readers), state.n)
            add = sums[layer][0][at]
            return x + add.permute(1, 2, 0, 3).to(x.dtype)

        return hook

    def rebuild_mlp(layer: int, reader: int) -> Callable:
        def hook(x: Tensor, hook: object) -> Tensor:
            before, n = sums.pop(layer)
            add = before[-1] + state.excluded_sum([reader], lo=n)[0]
            return x + add.to(x.dtype)

        return hook

    hooks: list = [(H.EMBED, keep_embed)]
    for layer in range(model.n_layers):
        attention = graph.attention_readers(layer)  # the queries, then the keys, the values
        mlp = index[next(s for s in graph.readers if s.kind == "mlp" and s.layer == layer)]
        readers = [index[s] for s in attention] + [mlp]
        begin = 0
        for kind in "qkv":
            n = sum(s.input == kind for s in attention)
            at = slice(begin, begin + n)
            hooks.append((H.qkv_input(layer, kind), rebuild_attention(layer, readers, at)))
            begin += n
        hooks.append((H.z(layer), keep_heads(layer)))
        hooks.append((H.mlp_reader(layer), rebuild_mlp(layer, mlp)))
        hooks.append((H.mlp_out(layer), keep_mlp))
    hooks.append((H.LOGITS_IN, rebuild_logits))
    return hooks
