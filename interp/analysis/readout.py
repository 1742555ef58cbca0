"""The lens's readout: normalised residual rows through the unembedding, in tiles of rows by
vocabulary ids, each tile reduced (top-k, the target's rank, log-sum-exp) while it is in
cache, so that no [rows, vocabulary] block of logits is ever held."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from interp.models.kernels import onednn_linear
from interp.models.model import Model

# Vocabulary ids per tile on the CPU: a tile of [512 rows, 4,096 ids] of logits stays in the
# L3 cache of this project's machines through its reductions (DEVELOPERS.md).
VOCAB_BLOCK = 4096


def reduce_tiles(
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


class Unembedding:
    """The model's final unembedding as one readout: normalised residual rows -> logits.

    On the CPU in fp32 the product runs through oneDNN's inner product (`interp.models.kernels`):
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
