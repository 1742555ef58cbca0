"""The on-disk form of an analysis: the tensors file's keys, and reading summary.json's
`analysis` and the tensors back into typed results, every field checked."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.analysis.attention import AttentionResult, HeadRoles
from interp.analysis.attribution import AttributionResult
from interp.analysis.logit_lens import LogitLensResult
from interp.errors import TraceFormatError
from interp.files import store
from interp.models import hooks as H
from interp.trace import schema
from interp.trace.trace import Trace

KEY = "analysis"
ANALYSIS_FORMAT_VERSION = 2

# The tensors file's keys: `<analysis>.<field>`, each a field of that analysis's result (a
# set's per-row parts under `row<i>.<analysis>.<field>`; its head roles once).
ROW_FIELDS = {
    "logit_lens": (
        "top_ids",
        "top_probs",
        "target_probs",
        "target_ranks",
        "kl",
        "prediction_depth",
    ),
    "attention": ("top_positions", "top_weights"),
    "attribution": ("embed", "heads", "attn_bias", "mlp", "constant", "logits"),
}
ROLE_FIELDS = ("scores", "score_se", "probe_tokens", "token_loss")


def rounded(x: Tensor) -> list:
    """A tensor as nested lists for JSON, NaN (a one-row standard error) as null."""
    values = x.tolist()

    def clean(v: Any) -> Any:
        if isinstance(v, list):
            return [clean(u) for u in v]
        return None if math.isnan(v) else round(v, 5)

    return clean(values)


def shared_summary(
    roles: HeadRoles, vocab: dict[int, str], timings: dict[str, float], k: int
) -> dict[str, Any]:
    return {
        "head_roles": roles.summary(k),
        "probe": roles.probe_summary(),
        "timings": timings,
        "vocab": {str(i): v for i, v in sorted(vocab.items())},
    }


def role_tensors(roles: HeadRoles) -> dict[str, Tensor]:
    return {f"head_roles.{name}": getattr(roles, name) for name in ROLE_FIELDS}


def read(directory: str | os.PathLike[str]) -> tuple[dict, dict[str, Tensor], HeadRoles, Path]:
    """summary.json's `analysis`, the tensors and the head roles, checked."""
    path = str(directory)
    missing = f"{path} has no analysis results: run `interp analyze {path}` first (or `interp run`)"
    summary, t = store.read_results(directory, KEY, store.ANALYSIS_FILE, missing=missing)
    version = summary.get("format_version")
    if version != ANALYSIS_FORMAT_VERSION or "vocab" not in summary:
        raise TraceFormatError(
            f"{path} holds analysis results of an older format (version {version}); "
            f"run `interp analyze {path}` again"
        )
    where = Path(directory) / store.SUMMARY
    probe = schema.field(summary, "probe", dict, where)
    block_len = schema.field(probe, "block_len", int, where)
    roles_summary = schema.field(summary, "head_roles", dict, where)
    roles = roles_from(t, Path(directory) / store.ANALYSIS_FILE, block_len, tuple(roles_summary))
    return summary, t, roles, where


def roles_from(
    t: dict[str, Tensor], file: Path, block_len: int, names: tuple[str, ...]
) -> HeadRoles:
    """The head roles stored under `head_roles.` keys, checked."""
    scores = schema.tensor(t, "head_roles.scores", file, "float", [len(names), None, None])
    tokens = schema.tensor(t, "head_roles.probe_tokens", file, "int", [None, None])
    fields = {
        "scores": scores,
        "score_se": schema.tensor(t, "head_roles.score_se", file, "float", list(scores.shape)),
        "probe_tokens": tokens,
        "token_loss": schema.tensor(
            t, "head_roles.token_loss", file, "float", [tokens.shape[0], tokens.shape[1] - 1]
        ),
    }
    offset = tokens.shape[1] - 2 * block_len
    if offset < 0:
        raise TraceFormatError(f"{file}: the probe is shorter than two blocks of {block_len}")
    return HeadRoles(block_len=block_len, offset=offset, roles=names, **fields)


def shared(summary: dict, where: Path) -> tuple[dict[int, str], dict[str, float]]:
    vocab = schema.mapping(summary, "vocab", str, where)
    if not all(k.isdigit() for k in vocab):
        raise TraceFormatError(f"{where}: the keys of 'vocab' must be token ids")
    timings = schema.mapping(summary, "timings", float, where) if "timings" in summary else {}
    return {int(k): v for k, v in vocab.items()}, timings


def row_parts(
    directory: str | os.PathLike[str],
    trace: Trace,
    summary: dict,
    t: dict[str, Tensor],
    prefix: str,
    roles: HeadRoles,
    pattern_window: int | None,
) -> tuple[LogitLensResult, AttentionResult, AttributionResult]:
    """One trace's (or one row's) results from its summary part and its tensors."""
    where = Path(directory) / store.SUMMARY
    layers = schema.items(schema.field(summary, "logit_lens", dict, where), "layers", str, where)
    p, n = trace.prompt_len, trace.n_positions
    n_layers, heads = roles.scores.shape[1:]
    if len(layers) != n_layers + 1:
        raise TraceFormatError(f"{where}: {len(layers)} lens layers for {n_layers} layers")
    fields = _check_tensors(
        t, Path(directory) / store.ANALYSIS_FILE, prefix, len(layers), heads, n - p
    )
    positions = list(range(p - 1, n - 1))
    targets = trace.token_ids[p:n].clone()
    lens = LogitLensResult(
        layers=layers, positions=positions, target_ids=targets, **fields["logit_lens"]
    )
    start = 0 if pattern_window is None else max(0, n - pattern_window)
    names = [H.pattern(layer) for layer in range(n_layers)]
    patterns = store.read_window(directory, names, start, prefix)
    if len(patterns) != n_layers:
        raise TraceFormatError(f"{directory} lacks the attention patterns its analysis read")
    att = AttentionResult(
        patterns=torch.stack(patterns),
        query_positions=positions,
        tokens=list(trace.token_strs),
        window_start=start,
        **fields["attention"],
    )
    dla = AttributionResult(positions=positions, target_ids=targets, **fields["attribution"])
    return lens, att, dla


def _check_tensors(
    t: dict[str, Tensor], where: Path, prefix: str, n_rows: int, heads: int, steps: int
) -> dict[str, dict[str, Tensor]]:
    """The stored tensors, each of its kind and shape (rows = layers + 1, steps generated)."""
    shapes: dict[str, tuple[schema.Kind, list[int | None]]] = {
        "logit_lens.top_ids": ("int", [n_rows, steps, None]),
        "logit_lens.top_probs": ("float", [n_rows, steps, None]),
        "logit_lens.target_probs": ("float", [n_rows, steps]),
        "logit_lens.target_ranks": ("int", [n_rows, steps]),
        "logit_lens.kl": ("float", [n_rows, steps]),
        "logit_lens.prediction_depth": ("int", [steps]),
        "attention.top_positions": ("int", [n_rows - 1, heads, steps, None]),
        "attention.top_weights": ("float", [n_rows - 1, heads, steps, None]),
        "attribution.embed": ("float", [steps]),
        "attribution.heads": ("float", [steps, n_rows - 1, heads]),
        "attribution.attn_bias": ("float", [steps, n_rows - 1]),
        "attribution.mlp": ("float", [steps, n_rows - 1]),
        "attribution.constant": ("float", [steps]),
        "attribution.logits": ("float", [steps]),
    }
    out: dict[str, dict[str, Tensor]] = {part: {} for part in ROW_FIELDS}
    for part, names in ROW_FIELDS.items():
        for name in names:
            kind, shape = shapes[f"{part}.{name}"]
            out[part][name] = schema.tensor(t, f"{prefix}{part}.{name}", where, kind, shape)
    return out
