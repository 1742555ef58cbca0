"""The logit lens over a recorded continuation: what each layer would predict at each step.

Each layer's residual stream (entering the block; the last block's output for "final") is read
through the model's own final norm, with statistics recomputed per vector, and unembedding,
by TransformerLens's `logit_readout`. The "final" row therefore reproduces the model's logits.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def logit_lens(model: Model, trace: Trace, *, top_k: int = 5) -> LogitLensResult:
    """The logit lens at every layer and every generated position of `trace`."""
    from transformer_lens.tools.analysis.logit_lens import logit_readout

    trace.bind(model)
    names = lens_hooks(model.n_layers)
    trace.require_hooks(names, "the logit lens")
    p, n = trace.prompt_len, trace.n_positions
    positions = list(range(p - 1, n - 1))
    targets = trace.token_ids[p:n]
    rows = torch.arange(len(positions))
    layers = [f"L{layer}" for layer in range(model.n_layers)] + ["final"]

    logprobs_final = _read(model, trace.activations[names[-1]][p - 1 : n - 1], logit_readout)
    top_ids, top_probs, target_probs, target_ranks, kl = [], [], [], [], []
    for name in names:
        if name == names[-1]:
            logprobs = logprobs_final
        else:
            logprobs = _read(model, trace.activations[name][p - 1 : n - 1], logit_readout)
        top = logprobs.topk(top_k, dim=-1)
        top_ids.append(top.indices)
        top_probs.append(top.values.exp())
        target_lp = logprobs[rows, targets]
        target_probs.append(target_lp.exp())
        target_ranks.append((logprobs > target_lp[:, None]).sum(-1) + 1)
        p_final = logprobs_final.exp()
        kl.append((p_final * (logprobs_final - logprobs)).sum(-1).clamp_min(0.0))

    top_ids_t = torch.stack(top_ids)
    return LogitLensResult(
        layers=layers,
        positions=positions,
        target_ids=targets.clone(),
        top_ids=top_ids_t,
        top_probs=torch.stack(top_probs),
        target_probs=torch.stack(target_probs),
        target_ranks=torch.stack(target_ranks),
        kl=torch.stack(kl),
        prediction_depth=prediction_depth(top_ids_t[:, :, 0]),
    )


def prediction_depth(top1: Int[Tensor, "layer step"]) -> Int[Tensor, " step"]:
    """First layer index from which every later layer's top-1 equals the final top-1."""
    agrees = top1 == top1[-1:]
    # a layer counts if it and all layers after it agree: a reversed cumulative AND
    stays = agrees.flip(0).int().cumprod(0).flip(0).bool()
    n_layers = top1.shape[0]
    return n_layers - stays.sum(0)


def _read(model: Model, vectors: Float[Tensor, "step d_model"], logit_readout) -> Tensor:
    with torch.no_grad():
        readout = logit_readout(
            model.bridge, vectors.to(model.device), return_type="log_probs", chunk_size=128
        )
    return readout.values.float().cpu()
