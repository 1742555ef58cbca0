"""The teacher-forced effect of an ablation on a trace's recorded continuation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.heads import head_label
from interp.interventions.ablation import Ablation
from interp.models.model import Model
from interp.trace import Trace


@dataclass
class AblationEffect:
    """Per generated token: log-prob of the recorded token with and without the ablation, and
    the KL divergence KL(baseline || ablated) of the next-token distribution."""

    heads: list[str]
    mode: str  # an AblationMode
    source: str
    baseline_logprobs: Float[Tensor, " step"]
    ablated_logprobs: Float[Tensor, " step"]
    kl: Float[Tensor, " step"]

    @property
    def delta_logprob(self) -> Float[Tensor, " step"]:
        return self.ablated_logprobs - self.baseline_logprobs

    @property
    def delta_logprob_total(self) -> float:
        return float(self.delta_logprob.sum())

    def hardest(self, k: int = 5) -> list[int]:
        """Generated-token indices whose log-prob moved most, largest |change| first."""
        order = self.delta_logprob.abs().argsort(descending=True, stable=True)
        return order[:k].tolist()


def continuation_logprobs(
    model: Model, trace: Trace, fwd_hooks: Sequence = ()
) -> tuple[Float[Tensor, " step"], Float[Tensor, "step vocab"]]:
    """Teacher-forced log-probs of the recorded continuation: (of each token, full rows)."""
    p, n = trace.prompt_len, trace.n_positions
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks)):
        logits = model.bridge(trace.token_ids[None].to(model.device), return_type="logits")
    rows = logits[0, p - 1 : n - 1].float().log_softmax(-1).cpu()
    return rows.gather(-1, trace.token_ids[p:n, None])[:, 0], rows


def ablation_effect(model: Model, trace: Trace, ablation: Ablation) -> AblationEffect:
    """The teacher-forced effect of `ablation` on the trace's continuation."""
    trace.bind(model)
    base, base_rows = continuation_logprobs(model, trace)
    abl, abl_rows = continuation_logprobs(model, trace, ablation.hooks(model.device))
    kl = (base_rows.exp() * (base_rows - abl_rows)).sum(-1).clamp_min(0)
    return AblationEffect(
        heads=[head_label(layer, head) for layer, head in ablation.heads],
        mode=ablation.mode,
        source=ablation.source,
        baseline_logprobs=base,
        ablated_logprobs=abl,
        kl=kl,
    )
