"""All analyses of one trace together, with the headline figures `interp analyze` writes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.analysis.attention import AttentionResult, HeadRoles, attention, head_roles
from interp.analysis.attribution import AttributionResult, direct_logit_attribution
from interp.analysis.logit_lens import LogitLensResult, logit_lens
from interp.models import Model
from interp.trace import Trace

ANALYSIS_FILE = "analysis.safetensors"
ANALYSIS_FORMAT_VERSION = 1


@dataclass
class Analysis:
    """The results of every analysis of one trace."""

    logit_lens: LogitLensResult
    attention: AttentionResult
    head_roles: HeadRoles
    attribution: AttributionResult
    vocab: dict[int, str] = field(default_factory=dict)  # strings of every token id referenced
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self, k: int = 10) -> dict:
        """Headline figures, under the names reports and users' scripts read."""
        roles = self.head_roles
        return {
            "format_version": ANALYSIS_FORMAT_VERSION,
            "logit_lens": self.logit_lens.summary(),
            "prediction_depth": self.logit_lens.prediction_depth.tolist(),
            "head_roles": roles.summary(k),
            "dla_top_heads": [[h, round(v, 5)] for h, v in self.attribution.top_heads(k)],
            "probe": {
                "kind": "repeated random tokens",
                "block_len": roles.block_len,
                "loss_first_copy": round(roles.loss_first_copy, 4),
                "loss_second_copy": round(roles.loss_second_copy, 4),
            },
            "timings": self.timings,
            "vocab": {str(k): v for k, v in sorted(self.vocab.items())},
        }

    def tensors(self) -> dict[str, Tensor]:
        """Every result tensor, keyed `<analysis>.<field>` (safetensors-ready)."""
        lens, att, roles, dla = self.logit_lens, self.attention, self.head_roles, self.attribution
        return {
            "logit_lens.top_ids": lens.top_ids,
            "logit_lens.top_probs": lens.top_probs,
            "logit_lens.target_probs": lens.target_probs,
            "logit_lens.target_ranks": lens.target_ranks,
            "logit_lens.kl": lens.kl,
            "logit_lens.prediction_depth": lens.prediction_depth,
            "attention.top_positions": att.top_positions,
            "attention.top_weights": att.top_weights,
            "head_roles.scores": roles.scores,
            "head_roles.probe_tokens": roles.probe_tokens,
            "head_roles.token_loss": roles.token_loss,
            "attribution.embed": dla.embed,
            "attribution.heads": dla.heads,
            "attribution.attn_bias": dla.attn_bias,
            "attribution.mlp": dla.mlp,
            "attribution.constant": dla.constant,
            "attribution.logits": dla.logits,
        }


def analyze(model: Model, trace: Trace) -> Analysis:
    """Run the logit lens, attention, head roles and direct logit attribution on `trace`."""
    timings: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[f"{name}_s"] = round(time.perf_counter() - t0, 4)
        return out

    with torch.no_grad():
        lens = timed("logit_lens", lambda: logit_lens(model, trace))
        att = timed("attention", lambda: attention(model, trace))
        roles = timed("head_roles", lambda: head_roles(model))
        dla = timed("attribution", lambda: direct_logit_attribution(model, trace))
    ids = set(trace.token_ids.tolist()) | set(trace.top_ids.flatten().tolist())
    ids |= set(lens.top_ids.flatten().tolist())
    vocab = {i: model.tokenizer.decode([i]) for i in sorted(ids)}
    return Analysis(lens, att, roles, dla, vocab, timings)
