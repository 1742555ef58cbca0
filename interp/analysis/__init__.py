"""Analyses: pure functions `(model, trace, options) -> result` that never print or write."""

from interp.analysis.attention import (
    AttentionResult,
    AttentionSetResult,
    HeadRoles,
    attention,
    head_roles,
)
from interp.analysis.attribution import (
    AttributionResult,
    AttributionSetResult,
    direct_logit_attribution,
)
from interp.analysis.logit_lens import LogitLensResult, LogitLensSetResult, logit_lens
from interp.analysis.suite import Analysis, SetAnalysis, analyze

__all__ = [
    "Analysis",
    "AttentionResult",
    "AttentionSetResult",
    "AttributionResult",
    "AttributionSetResult",
    "HeadRoles",
    "LogitLensResult",
    "LogitLensSetResult",
    "SetAnalysis",
    "analyze",
    "attention",
    "direct_logit_attribution",
    "head_roles",
    "logit_lens",
]
