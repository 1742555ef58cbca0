"""The logit lens over a recorded continuation: what each layer would predict at each step.

Each layer's residual stream (entering the block; the last block's output for "final") is read
through the model's own final norm module (statistics recomputed per vector, as
TransformerLens's `logit_readout` does) and unembedding, so the "final" row reproduces the
model's logits. The readout is most of the lens's cost (layers x positions x vocabulary
logits): it runs through oneDNN on the CPU (see
`interp.kernels`) in tiles of rows (layer x position) by vocabulary ids, each tile reduced while
it is in cache (see `_reduce`); no [rows, vocabulary] block of logits is ever held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import hooks as H
from interp.kernels import onednn_linear
from interp.models.model import Model
from interp.trace import Trace

# Vocabulary ids per tile on the CPU: a tile of [512 rows, 4,096 ids] of logits stays in the
# L3 cache of this project's machines through its reductions (DEVELOPERS.md).
VOCAB_BLOCK = 4096


@dataclass
class LogitLensResult:
    """Per layer x generated step. Row `i` of the layer axis is labelled `layers[i]`; `L5` is
    the residual stream entering block 5, `final` the last block's output. Step `j` reads the
    position before generated token `j` and scores that token (`target_ids[j]`)."""

    layers: list[str]
    positions: list[int]  # sequence positions read (each predicts the next token)
    target_ids: Int[Tensor, " step"]  # the token that was actually generated next
    top_ids: Int[Tensor, "layer step k"]
    top_probs: Float[Tensor, "layer step k"]
    target_probs: Float[Tensor, "layer step"]
    target_ranks: Int[Tensor, "layer step"]  # 1 = the layer's most likely token
    kl: Float[Tensor, "layer step"]  # KL(final || layer) in nats
    prediction_depth: Int[Tensor, " step"]  # first layer index whose top-1 stays the final's

    @property
    def mean_kl(self) -> Float[Tensor, " layer"]:
        return self.kl.mean(dim=1)

    @property
    def mean_rank(self) -> Float[Tensor, " layer"]:
        return self.target_ranks.float().mean(dim=1)

    @property
    def top1_agreement(self) -> Float[Tensor, " layer"]:
        """Fraction of steps where the layer's top-1 equals the final layer's top-1."""
        return (self.top_ids[:, :, 0] == self.top_ids[-1:, :, 0]).float().mean(dim=1)

    def summary(self) -> dict:
        return {
            "layers": self.layers,
            "mean_kl": [round(float(x), 5) for x in self.mean_kl],
            "mean_rank": [round(float(x), 3) for x in self.mean_rank],
            "top1_agreement": [round(float(x), 4) for x in self.top1_agreement],
        }


def lens_hooks(n_layers: int) -> list[str]:
    return [H.resid_pre(layer) for layer in range(n_layers)] + [H.resid_post(n_layers - 1)]


def logit_lens(
    model: Model,
    trace: Trace,
    *,
    top_k: int = 5,
    rows_per_chunk: int = 512,
    vocab_block: int | None = None,
) -> LogitLensResult:
    """The logit lens at every layer and every generated position of `trace`.

    `rows_per_chunk` (layer x step rows) and `vocab_block` (vocabulary ids; by default 4,096
    on the CPU, the whole vocabulary elsewhere) set the readout's tiles; results do not
    depend on them beyond rounding.

    The readout is the whole cost: see `_reduce` for how each chunk of rows (layer x step)
    is read out and reduced tile by tile without ever holding its logits.
    KL(final || layer) needs no pass over the vocabulary: with p the final distribution,
    sum_v p_v logits_v = normed . (W_U p) + b_U . p, so
    KL = sum_v p_v log p_v - normed . (W_U p) - b_U . p + lse, with W_U p computed once per
    step. The final row's KL is 0 by definition (it is the model's own distribution).
    """
    trace.bind(model)
    names = lens_hooks(model.n_layers)
    trace.require_hooks(names, "the logit lens")
    p, n = trace.prompt_len, trace.n_positions
    positions = list(range(p - 1, n - 1))
    steps = len(positions)
    device = model.device
    targets = trace.token_ids[p:n]
    # [layer, step, d_model]: the residual stream at each read position, final layer last
    stack = torch.stack([trace.activations[name][p - 1 : n - 1] for name in names])
    n_rows = stack.shape[0]
    unembed = Unembedding(model, vocab_block=vocab_block)
    w_u, b_u = unembed.w_u, unembed.b_u
    with torch.no_grad():
        normed = model.bridge.ln_final(stack.to(device)).float()  # [layer, step, d_model]

        final = unembed(normed[-1])  # [step, vocab]: the model's own logits
        final_lp = final.log_softmax(-1)
        final_p = final_lp.exp()
        neg_entropy = (final_p * final_lp).sum(-1, dtype=torch.float64)  # [step]
        u = final_p @ w_u.T  # [step, d_model]: W_U p for each step
        expected = (normed.double() * u.double()).sum(-1)  # [layer, step]: E_p[logits] - b.p
        if b_u is not None:
            expected = expected + (final_p.double() @ b_u.double())

        rows = einops.rearrange(normed[:-1], "l s d -> (l s) d")
        row_targets = targets.to(device).repeat(n_rows - 1)
        chunk = max(1, rows_per_chunk)
        reduced = []
        for i in range(0, rows.shape[0], chunk):
            x, x_targets = rows[i : i + chunk].contiguous(), row_targets[i : i + chunk]
            threshold = unembed.logits_at(x, x_targets)  # the target's logit, before the tiles
            reduced.append(_reduce(unembed.tiles(x), x_targets, threshold, top_k))
        final_targets = targets.to(device)
        final_threshold = final.gather(-1, final_targets[:, None])[:, 0]
        reduced.append(_reduce([(0, final)], final_targets, final_threshold, top_k))
        top_ids, top_vals, target_logits, ranks, lses = (
            list(column) for column in zip(*reduced, strict=True)
        )

    def layered(parts: list[Tensor]) -> Tensor:
        return einops.rearrange(torch.cat(parts), "(l s) ... -> l s ...", s=steps).cpu()

    lse_t = layered(lses)
    kl = (neg_entropy.cpu()[None] - expected.cpu() + lse_t.double()).float().clamp_min(0)
    kl[-1] = 0.0
    top_ids_t = layered(top_ids).long()
    return LogitLensResult(
        layers=[f"L{layer}" for layer in range(model.n_layers)] + ["final"],
        positions=positions,
        target_ids=targets.clone(),
        top_ids=top_ids_t,
        top_probs=(layered(top_vals) - lse_t[..., None]).exp(),
        target_probs=(layered(target_logits) - lse_t).exp(),
        target_ranks=layered(ranks).long(),
        kl=kl,
        prediction_depth=prediction_depth(top_ids_t[:, :, 0]),
    )


def _reduce(
    tiles: Iterable[tuple[int, Tensor]], targets: Tensor, threshold: Tensor, top_k: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Top-k ids and logits, the target's logit, its rank and the log-sum-exp of each row's
    logits, from `(first vocabulary id, logits [rows, block])` tiles that together cover the
    vocabulary (`Unembedding.tiles`, or one whole-vocabulary tile). A tile of a few MB stays
    in cache through its reductions, where a [rows, vocab] block would go through memory once
    per reduction.

    Per tile: its top-k (merged at the end), the count of logits above `threshold` (the
    target's logit, needed before the tiles), and its log-sum-exp, from torch's softmax kernel
    (whose exp beats `torch.exp` here): with p the tile's softmax,
    lse = max - log p[argmax]. The target's own tile value replaces the threshold afterwards,
    so where the threshold was computed apart (a dot product) a rank can differ from a count
    over the tile values only among logits equal to the target's within rounding.
    """
    target = threshold.clone()
    above = torch.zeros_like(targets)
    values, ids, lses = [], [], []
    buf = None
    for start, tile in tiles:
        width = tile.shape[1]
        if buf is None:
            buf = torch.empty(tile.numel(), device=tile.device)
        # contiguous, also for a narrower last tile: the softmax kernel writes rows densely
        scratch = buf[: tile.numel()].view_as(tile)
        top_values, top_ids = top_k_rows(tile, min(top_k, width))
        values.append(top_values)
        ids.append(top_ids + start)
        # a float 0/1 buffer: its sum is faster than a bool one's, and exact (< 2**24)
        above += torch.gt(tile, threshold[:, None], out=scratch).sum(-1).long()
        inside = (targets >= start) & (targets < start + width)
        if inside.any():
            local = (targets - start).clamp(0, width - 1)[:, None]
            target = torch.where(inside, tile.gather(-1, local)[:, 0], target)
        torch.ops.aten._softmax.out(tile, -1, False, out=scratch)
        lses.append(top_values[:, 0] - scratch.gather(-1, top_ids[:, :1])[:, 0].log())
    merged = torch.cat(values, dim=-1).topk(top_k, dim=-1)
    top_ids = torch.cat(ids, dim=-1).gather(-1, merged.indices)
    rank = above + 1 - (target > threshold).long()  # the target never outranks itself
    lse = torch.logsumexp(torch.stack(lses, dim=-1), dim=-1)
    return top_ids, merged.values, target, rank, lse


def top_k_rows(x: Tensor, k: int, block: int = 64) -> tuple[Tensor, Tensor]:
    """Exact `x.topk(k, dim=-1)` (values, indices) of a [rows, n] tensor, faster than
    torch's on wide rows of logits: the k largest values of a row lie in the k blocks of
    `block` columns with the largest maxima (any other block's maximum is below k distinct
    larger values), so one max per block and a top-k over k * block candidates suffice.
    Indices can differ from torch's only between exactly equal values."""
    rows, n = x.shape
    n_full = n // block
    if n_full + (n % block > 0) <= k:
        top = x.topk(k, dim=-1)
        return top.values, top.indices
    maxima = x[:, : n_full * block].view(rows, n_full, block).amax(-1)
    if n % block:  # the last, shorter block
        maxima = torch.cat([maxima, x[:, n_full * block :].amax(-1, keepdim=True)], dim=-1)
    best = maxima.topk(k, dim=-1).indices  # [rows, k]
    columns = (best[..., None] * block + torch.arange(block, device=x.device)).view(rows, -1)
    candidates = x.gather(-1, columns.clamp(max=n - 1))
    if n % block:  # columns past the end (of the shorter block) never win
        candidates.masked_fill_(columns >= n, float("-inf"))
    top = candidates.topk(k, dim=-1)
    return top.values, columns.gather(-1, top.indices)


def prediction_depth(top1: Int[Tensor, "layer step"]) -> Int[Tensor, " step"]:
    """First layer index from which every later layer's top-1 equals the final top-1."""
    agrees = top1 == top1[-1:]
    # a layer counts if it and all layers after it agree: a reversed cumulative AND
    stays = agrees.flip(0).int().cumprod(0).flip(0).bool()
    n_layers = top1.shape[0]
    return n_layers - stays.sum(0)


class Unembedding:
    """The model's final unembedding as one readout: normalised residual rows -> logits.

    On the CPU in fp32 the product runs through oneDNN's inner product (`interp.kernels`):
    faster than MKL in the lens's tiles (DEVELOPERS.md).
    Elsewhere (CUDA, or a torch built without oneDNN) it is a plain matmul. Both are
    fp32 products (the lens reads in fp32 whatever the model's dtype) in different summation
    orders: logits agree to ~1e-6 relative.
    """

    def __init__(
        self, model: Model, *, onednn: bool = True, vocab_block: int | None = None
    ) -> None:
        bridge = model.bridge
        b_u = getattr(bridge, "b_U", None)
        if b_u is not None and not torch.any(b_u != 0):
            b_u = None
        self.w_u: Tensor = bridge.W_U.float()  # [d_model, vocab]
        self.b_u: Tensor | None = None if b_u is None else b_u.float()
        kernel = onednn_linear() if onednn else None
        if self.w_u.device.type != "cpu":
            kernel = None
        self._kernel = kernel
        # [vocab, d_model]: for tied weights this is the embedding matrix itself, not a copy
        self._w_rows = self.w_u.T.contiguous() if kernel is not None else None
        if vocab_block is None:  # the whole vocabulary in one tile off the CPU
            vocab_block = VOCAB_BLOCK if self.w_u.device.type == "cpu" else self.w_u.shape[1]
        self.vocab_block = vocab_block

    @property
    def kernel(self) -> str:
        return "onednn" if self._kernel is not None else "matmul"

    def __call__(self, normed: Tensor) -> Tensor:
        """Logits [rows, vocab] of normalised rows [rows, d_model]."""
        return self._readout(normed.contiguous(), 0, self.w_u.shape[1])

    def tiles(self, rows: Tensor) -> Iterator[tuple[int, Tensor]]:
        """(first vocabulary id, logits [rows, block]) for each block of `vocab_block` ids."""
        vocab = self.w_u.shape[1]
        for start in range(0, vocab, self.vocab_block):
            yield start, self._readout(rows, start, min(start + self.vocab_block, vocab))

    def _readout(self, rows: Tensor, start: int, stop: int) -> Tensor:
        """Logits [rows, stop - start] of vocabulary ids start..stop-1 (`rows` contiguous)."""
        bias = None if self.b_u is None else self.b_u[start:stop]
        if self._kernel is not None and self._w_rows is not None:
            return self._kernel(rows, self._w_rows[start:stop], bias, "none", [], "")
        logits = rows @ self.w_u[:, start:stop]
        return logits if bias is None else logits.add_(bias)

    def logits_at(self, rows: Tensor, ids: Tensor) -> Tensor:
        """Row i's logit for token ids[i], as one dot product per row."""
        logits = (rows * self.w_u.T[ids]).sum(-1)
        return logits if self.b_u is None else logits + self.b_u[ids]
