"""The logit lens over a recorded continuation: what each layer would predict at each step.

Each layer's residual stream (entering the block; the last block's output for "final") is read
through the model's own final norm module (statistics recomputed per vector, as
TransformerLens's `logit_readout` does) and unembedding, so the "final" row reproduces the
model's logits. The readout is the lens's whole cost (31 x positions x 49,152 logits on
SmolLM2, about six forward passes of arithmetic): it runs as a few large matrix products over
chunks of layers rather than one call per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import hooks as H
from interp.models import Model
from interp.trace import Trace


@dataclass
class LogitLensResult:
    """Per layer x generated step. Row `i` of the layer axis is labelled `layers[i]`; `L5` is
    the residual stream entering block 5, `final` the last block's output. Step `j` reads the
    position before generated token `j` and scores that token (`target_ids[j]`)."""

    def _repr_html_(self) -> str:
        from interp.report.notebook import lens_html

        return lens_html(self)

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
    model: Model, trace: Trace, *, top_k: int = 5, rows_per_chunk: int = 2048
) -> LogitLensResult:
    """The logit lens at every layer and every generated position of `trace`."""
    trace.bind(model)
    names = lens_hooks(model.n_layers)
    trace.require_hooks(names, "the logit lens")
    p, n = trace.prompt_len, trace.n_positions
    positions = list(range(p - 1, n - 1))
    steps = len(positions)
    targets = trace.token_ids[p:n]
    # [layer, step, d_model]: the residual stream at each read position, final layer last
    stack = torch.stack([trace.activations[name][p - 1 : n - 1] for name in names])
    n_layers = stack.shape[0]

    final_logits = _logits(model, stack[-1])
    final_lp = final_logits.log_softmax(-1)
    final_p = final_lp.exp()
    top_ids, top_probs, target_probs, target_ranks, kl = [], [], [], [], []
    layers_per_chunk = max(1, rows_per_chunk // max(steps, 1))
    for start in range(0, n_layers, layers_per_chunk):
        chunk = stack[start : start + layers_per_chunk]
        k = chunk.shape[0]
        logits = _logits(model, einops.rearrange(chunk, "l s d -> (l s) d"))
        logits = einops.rearrange(logits, "(l s) v -> l s v", l=k)
        # log-probs are logits - lse; never materialised over the whole vocabulary
        lse = torch.logsumexp(logits, dim=-1)  # [l, s]
        top = logits.topk(top_k, dim=-1)
        top_ids.append(top.indices)
        top_probs.append((top.values - lse[..., None]).exp())
        target_logit = logits.gather(-1, targets.view(1, -1, 1).expand(k, -1, 1))  # [l, s, 1]
        target_probs.append((target_logit[..., 0] - lse).exp())
        target_ranks.append((logits > target_logit).sum(-1, dtype=torch.int32).long() + 1)
        # KL(final || layer) = sum_v p (log p - logits) + lse: the terms stay small where p is
        # large, which keeps float32 accumulation within 1e-3 of a float64 computation
        kl.append(((final_p * (final_lp - logits)).sum(-1) + lse).clamp_min(0))

    top_ids_t = torch.cat(top_ids)
    return LogitLensResult(
        layers=[f"L{layer}" for layer in range(model.n_layers)] + ["final"],
        positions=positions,
        target_ids=targets.clone(),
        top_ids=top_ids_t,
        top_probs=torch.cat(top_probs),
        target_probs=torch.cat(target_probs),
        target_ranks=torch.cat(target_ranks),
        kl=torch.cat(kl),
        prediction_depth=prediction_depth(top_ids_t[:, :, 0]),
    )


def prediction_depth(top1: Int[Tensor, "layer step"]) -> Int[Tensor, " step"]:
    """First layer index from which every later layer's top-1 equals the final top-1."""
    agrees = top1 == top1[-1:]
    # a layer counts if it and all layers after it agree: a reversed cumulative AND
    stays = agrees.flip(0).int().cumprod(0).flip(0).bool()
    n_layers = top1.shape[0]
    return n_layers - stays.sum(0)


def _logits(model: Model, vectors: Float[Tensor, "row d_model"]) -> Float[Tensor, "row vocab"]:
    """Logits of residual vectors read through the final norm module and the unembedding."""
    bridge = model.bridge
    with torch.no_grad():
        normed = bridge.ln_final(vectors.to(model.device))
        logits = normed @ bridge.W_U
        b_u = getattr(bridge, "b_U", None)
        if b_u is not None:
            logits = logits + b_u
        return logits.float().cpu()
