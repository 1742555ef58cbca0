"""Direct logit attribution of dictionary features: feature i at position p contributes
`f_i(p) * (W_dec[i] . d)` to the logit, where `d` is the target token's unembedding direction
through the final norm with its recorded scale frozen, exactly as heads are attributed in
`interp.analysis.attribution`. The decoder bias and the reconstruction error (what the
dictionary misses) are terms of their own, so the three sum to the direct effect of the hook's
activation itself: for a residual-stream SAE, everything written up to that layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analysis.attribution import logit_projector
from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import check
from interp.errors import InvalidSettingError
from interp.features.reading import hook_values
from interp.models import hooks as H
from interp.models.model import Model
from interp.trace.answers import single_token
from interp.trace.trace import Trace


@dataclass
class FeatureAttribution:
    """Per step `j` (read at `positions[j]`, scoring `target_ids[j]`): each feature's direct
    logit attribution (0 where it is inactive), the decoder bias's, the reconstruction
    error's, and their sum `total`, the direct effect of the hook's activation."""

    hook: str
    positions: list[int]
    target_ids: Int[Tensor, " step"]
    features: Float[Tensor, "step d_sae"]
    activations: Float[Tensor, "step d_sae"]
    bias: Float[Tensor, " step"]
    error: Float[Tensor, " step"]
    total: Float[Tensor, " step"]

    def top(self, step: int, k: int = 10) -> list[tuple[int, float]]:
        """The `k` features with the largest attribution by magnitude at `step`, signed."""
        row = self.features[step]
        idx = row.abs().topk(min(k, len(row))).indices
        return [(int(i), float(row[i])) for i in idx if float(row[i]) != 0.0]


def feature_attribution(
    model: Model,
    trace: Trace,
    d: Dictionary,
    *,
    positions: Sequence[int] | None = None,
    answer: str | int | None = None,
) -> FeatureAttribution:
    """Each feature's attribution to the logit of the token that follows each position (by
    default every position that predicts a generated token), or of `answer` there."""
    check(d, model)
    trace.bind(model)
    trace.require_hooks([H.FINAL_SCALE], "feature attribution")
    if positions is None:
        positions = list(range(trace.prompt_len - 1, trace.n_positions - 1))
    positions = [p if p >= 0 else trace.n_positions + p for p in positions]
    if not positions or any(not 0 <= p < trace.n_positions for p in positions):
        raise InvalidSettingError(f"positions must lie in 0..{trace.n_positions - 1}")
    if answer is not None:
        targets = torch.full((len(positions),), single_token(model, answer, "the answer"))
    elif max(positions) >= trace.n_positions - 1:
        raise InvalidSettingError(
            f"position {trace.n_positions - 1} predicts no token of the trace; give answer="
        )
    else:
        targets = trace.token_ids[torch.tensor(positions) + 1]
    at = torch.tensor(positions)
    x = hook_values(model, trace, d.hook)[at]
    written = x if d.writes == d.hook else hook_values(model, trace, d.writes)[at]
    with torch.no_grad():
        w_u = model.bridge.W_U.detach().float().cpu()[:, targets]  # [d_model, step]
        project = logit_projector(model, w_u, trace.activations[H.FINAL_SCALE][at])
        f = d.encode(x)
        per_feature = f * project(d.W_dec.float(), shared=True)
        bias = project(d.b_dec.float()[None].expand(len(at), -1))
        total = project(written)
        error = total - per_feature.sum(-1) - bias
    return FeatureAttribution(d.hook, list(positions), targets, per_feature, f, bias, error, total)
