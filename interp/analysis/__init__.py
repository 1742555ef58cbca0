"""Analyses: pure functions `(model, trace, options) -> result` that never print or write."""

from interp.analysis.attention import AttentionResult, HeadRoles, attention, head_roles
from interp.analysis.attribution import (
    AttributionResult,
    AttributionSetResult,
    direct_logit_attribution,
)
from interp.analysis.logit_lens import LogitLensResult, LogitLensSetResult, logit_lens

__all__ = [
    "AttentionResult",
    "AttributionResult",
    "AttributionSetResult",
    "HeadRoles",
    "LogitLensResult",
    "LogitLensSetResult",
    "attention",
    "direct_logit_attribution",
    "head_roles",
    "logit_lens",
]
