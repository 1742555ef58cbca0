"""The logit lens over a recorded continuation: what each layer would predict at each step.

Each layer's residual stream (entering the block; the last block's output for "final") is read
through the model's own final norm module (statistics recomputed per vector, as
TransformerLens's `logit_readout` does) and unembedding, so the "final" row reproduces the
model's logits. The readout is most of the lens's cost (layers x positions x vocabulary
logits): `interp.analysis.readout` runs it in tiles of rows (layer x position) by vocabulary
ids, each tile reduced while it is in cache; no [rows, vocabulary] block of logits is ever
held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analysis.readout import Unembedding, reduce_tiles
from interp.analysis.stats import mean_and_se
from interp.models import hooks as H
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


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


@dataclass
class LogitLensSetResult:
    """The lens of every row of a `TraceSet` (`rows[i]`, as for one trace), and its per-layer
    figures as means over rows with their standard errors (each row weighs the same; padding
    is never part of a row)."""

    rows: list[LogitLensResult]

    @property
    def layers(self) -> list[str]:
        return self.rows[0].layers

    @property
    def mean_kl(self) -> tuple[Float[Tensor, " layer"], Float[Tensor, " layer"]]:
        """(mean over rows, standard error) of each row's mean KL(final || layer)."""
        return mean_and_se([r.mean_kl for r in self.rows])

    @property
    def top1_agreement(self) -> tuple[Float[Tensor, " layer"], Float[Tensor, " layer"]]:
        return mean_and_se([r.top1_agreement for r in self.rows])

    @property
    def mean_rank(self) -> tuple[Float[Tensor, " layer"], Float[Tensor, " layer"]]:
        return mean_and_se([r.mean_rank for r in self.rows])


@overload
def logit_lens(
    model: Model,
    trace: Trace,
    *,
    top_k: int = ...,
    rows_per_chunk: int = ...,
    vocab_block: int | None = ...,
) -> LogitLensResult: ...


@overload
def logit_lens(
    model: Model,
    trace: TraceSet,
    *,
    top_k: int = ...,
    rows_per_chunk: int = ...,
    vocab_block: int | None = ...,
) -> LogitLensSetResult: ...


def logit_lens(
    model: Model,
    trace: Trace | TraceSet,
    *,
    top_k: int = 5,
    rows_per_chunk: int = 512,
    vocab_block: int | None = None,
) -> LogitLensResult | LogitLensSetResult:
    """The logit lens at every layer and every generated position of `trace`; of a
    `TraceSet`, every row's in one readout (the rows' steps side by side), then split.

    `rows_per_chunk` (layer x step rows) and `vocab_block` (vocabulary ids; by default 4,096
    on the CPU, the whole vocabulary elsewhere) set the readout's tiles; results do not
    depend on them beyond rounding.

    The readout is the whole cost: `interp.analysis.readout.reduce_tiles` reads each chunk
    of rows (layer x step) out and reduces it tile by tile without ever holding its logits.
    KL(final || layer) needs no pass over the vocabulary: with p the final distribution,
    sum_v p_v logits_v = normed . (W_U p) + b_U . p, so
    KL = sum_v p_v log p_v - normed . (W_U p) - b_U . p + lse, with W_U p computed once per
    step. The final row's KL is 0 by definition (it is the model's own distribution).
    """
    traces = [trace] if isinstance(trace, Trace) else list(trace)
    names = lens_hooks(model.n_layers)
    for t in traces:
        t.bind(model)
        t.require_hooks(names, "the logit lens")
    reads = [slice(t.prompt_len - 1, t.n_positions - 1) for t in traces]
    steps = sum(r.stop - r.start for r in reads)
    device = model.device
    targets = torch.cat([t.token_ids[t.prompt_len :] for t in traces])
    # [layer, step, d_model]: the residual stream at each read position, final layer last;
    # a set's rows side by side along the steps
    stack = torch.cat(
        [
            torch.stack([t.activations[name][r] for name in names])
            for t, r in zip(traces, reads, strict=True)
        ],
        dim=1,
    )
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
            reduced.append(reduce_tiles(unembed.tiles(x), x_targets, threshold, top_k))
        final_targets = targets.to(device)
        final_threshold = final.gather(-1, final_targets[:, None])[:, 0]
        reduced.append(reduce_tiles([(0, final)], final_targets, final_threshold, top_k))
        top_ids, top_vals, target_logits, ranks, lses = (
            list(column) for column in zip(*reduced, strict=True)
        )

    def layered(parts: list[Tensor]) -> Tensor:
        return einops.rearrange(torch.cat(parts), "(l s) ... -> l s ...", s=steps).cpu()

    lse_t = layered(lses)
    kl = (neg_entropy.cpu()[None] - expected.cpu() + lse_t.double()).float().clamp_min(0)
    kl[-1] = 0.0
    top_ids_t = layered(top_ids).long()
    fields = {
        "top_ids": top_ids_t,
        "top_probs": (layered(top_vals) - lse_t[..., None]).exp(),
        "target_probs": (layered(target_logits) - lse_t).exp(),
        "target_ranks": layered(ranks).long(),
        "kl": kl,
    }
    results, start = [], 0
    for r in reads:
        cut = slice(start, start + r.stop - r.start)
        start = cut.stop
        row = {key: value[:, cut] for key, value in fields.items()}
        results.append(
            LogitLensResult(
                layers=[f"L{layer}" for layer in range(model.n_layers)] + ["final"],
                positions=list(range(r.start, r.stop)),
                target_ids=targets[cut].clone(),
                prediction_depth=prediction_depth(row["top_ids"][:, :, 0]),
                **row,
            )
        )
    return results[0] if isinstance(trace, Trace) else LogitLensSetResult(results)


def prediction_depth(top1: Int[Tensor, "layer step"]) -> Int[Tensor, " step"]:
    """First layer index from which every later layer's top-1 equals the final top-1."""
    agrees = top1 == top1[-1:]
    # a layer counts if it and all layers after it agree: a reversed cumulative AND
    stays = agrees.flip(0).int().cumprod(0).flip(0).bool()
    n_layers = top1.shape[0]
    return n_layers - stays.sum(0)
