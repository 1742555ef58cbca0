"""All analyses of one trace together: the headline figures `interp analyze` writes, and the
whole result saved beside the trace and read back typed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from interp import hooks as H
from interp import schema, store
from interp.analysis.attention import AttentionResult, HeadRoles, attention, head_roles
from interp.analysis.attribution import AttributionResult, direct_logit_attribution
from interp.analysis.logit_lens import LogitLensResult, logit_lens
from interp.errors import TraceFormatError
from interp.models.model import Model
from interp.trace import Trace

KEY = "analysis"
ANALYSIS_FORMAT_VERSION = 1
T = TypeVar("T")

# The tensors file's keys: `<analysis>.<field>`, each a field of that analysis's result.
_FIELDS = {
    "logit_lens": (
        "top_ids",
        "top_probs",
        "target_probs",
        "target_ranks",
        "kl",
        "prediction_depth",
    ),
    "attention": ("top_positions", "top_weights"),
    "head_roles": ("scores", "probe_tokens", "token_loss"),
    "attribution": ("embed", "heads", "attn_bias", "mlp", "constant", "logits"),
}


@dataclass
class Analysis:
    """The results of every analysis of one trace."""

    logit_lens: LogitLensResult
    attention: AttentionResult
    head_roles: HeadRoles
    attribution: AttributionResult
    vocab: dict[int, str] = field(default_factory=dict)  # strings of every token id referenced
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self, k: int = 10) -> dict[str, Any]:
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
        return {
            f"{part}.{name}": getattr(getattr(self, part), name)
            for part, names in _FIELDS.items()
            for name in names
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write analysis.safetensors and summary.json's `analysis` into a trace directory."""
        store.write_results(directory, KEY, self.summary(), self.tensors(), store.ANALYSIS_FILE)

    def token_str(self, token_id: int) -> str:
        """A token id's string, for every id the results reference."""
        return self.vocab.get(int(token_id), f"<{int(token_id)}>")

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], trace: Trace, *, pattern_window: int | None = None
    ) -> Analysis:
        """The analysis saved beside `trace` (loaded from `directory`). The attention
        patterns are read from the trace's activations; with `pattern_window`, only those of
        the last that-many positions."""
        path = str(directory)
        missing = (
            f"{path} has no analysis results: run `interp analyze {path}` first (or `interp run`)"
        )
        summary, t = store.read_results(directory, KEY, store.ANALYSIS_FILE, missing=missing)
        version = summary.get("format_version")
        if version != ANALYSIS_FORMAT_VERSION or "vocab" not in summary:
            raise TraceFormatError(
                f"{path} holds analysis results of an older format (version {version}); "
                f"run `interp analyze {path}` again"
            )
        where = Path(directory) / store.SUMMARY
        layers = schema.items(
            schema.field(summary, "logit_lens", dict, where), "layers", str, where
        )
        roles_summary = schema.field(summary, "head_roles", dict, where)
        probe = schema.field(summary, "probe", dict, where)
        block_len = schema.field(probe, "block_len", int, where)
        vocab = schema.mapping(summary, "vocab", str, where)
        if not all(k.isdigit() for k in vocab):
            raise TraceFormatError(f"{where}: the keys of 'vocab' must be token ids")
        p, n = trace.prompt_len, trace.n_positions
        fields = _check_tensors(t, Path(directory) / store.ANALYSIS_FILE, len(layers), n - p)
        positions = list(range(p - 1, n - 1))
        targets = trace.token_ids[p:n].clone()
        lens = LogitLensResult(
            layers=layers, positions=positions, target_ids=targets, **fields["logit_lens"]
        )
        n_layers = len(layers) - 1
        start = 0 if pattern_window is None else max(0, n - pattern_window)
        names = [H.pattern(layer) for layer in range(n_layers)]
        patterns = store.read_window(directory, names, start)
        if len(patterns) != n_layers:
            raise TraceFormatError(f"{path} lacks the attention patterns its analysis read")
        att = AttentionResult(
            patterns=torch.stack(patterns),
            query_positions=positions,
            tokens=list(trace.token_strs),
            window_start=start,
            **fields["attention"],
        )
        roles = HeadRoles(
            block_len=block_len,
            offset=len(fields["head_roles"]["probe_tokens"]) - 2 * block_len,
            roles=tuple(roles_summary),
            **fields["head_roles"],
        )
        dla = AttributionResult(positions=positions, target_ids=targets, **fields["attribution"])
        timings = schema.mapping(summary, "timings", float, where) if "timings" in summary else {}
        return cls(lens, att, roles, dla, {int(k): v for k, v in vocab.items()}, timings)


def _check_tensors(
    t: dict[str, Tensor], where: Path, n_rows: int, steps: int
) -> dict[str, dict[str, Tensor]]:
    """The stored tensors, each of its kind and shape (rows = layers + 1, steps generated)."""
    scores = schema.tensor(t, "head_roles.scores", where, "float", [None, n_rows - 1, None])
    heads = scores.shape[2]
    probe = schema.tensor(t, "head_roles.probe_tokens", where, "int", [None])
    shapes: dict[str, tuple[schema.Kind, list[int | None]]] = {
        "logit_lens.top_ids": ("int", [n_rows, steps, None]),
        "logit_lens.top_probs": ("float", [n_rows, steps, None]),
        "logit_lens.target_probs": ("float", [n_rows, steps]),
        "logit_lens.target_ranks": ("int", [n_rows, steps]),
        "logit_lens.kl": ("float", [n_rows, steps]),
        "logit_lens.prediction_depth": ("int", [steps]),
        "attention.top_positions": ("int", [n_rows - 1, heads, steps, None]),
        "attention.top_weights": ("float", [n_rows - 1, heads, steps, None]),
        "head_roles.scores": ("float", [None, n_rows - 1, heads]),
        "head_roles.probe_tokens": ("int", [None]),
        "head_roles.token_loss": ("float", [max(len(probe) - 1, 0)]),
        "attribution.embed": ("float", [steps]),
        "attribution.heads": ("float", [steps, n_rows - 1, heads]),
        "attribution.attn_bias": ("float", [steps, n_rows - 1]),
        "attribution.mlp": ("float", [steps, n_rows - 1]),
        "attribution.constant": ("float", [steps]),
        "attribution.logits": ("float", [steps]),
    }
    out: dict[str, dict[str, Tensor]] = {part: {} for part in _FIELDS}
    for part, names in _FIELDS.items():
        for name in names:
            kind, shape = shapes[f"{part}.{name}"]
            out[part][name] = schema.tensor(t, f"{part}.{name}", where, kind, shape)
    return out


def analyze(model: Model, trace: Trace) -> Analysis:
    """Run the logit lens, attention, head roles and direct logit attribution on `trace`."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], T]) -> T:
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
    order = sorted(ids)
    vocab = dict(zip(order, model.token_strs(order), strict=True))
    return Analysis(lens, att, roles, dla, vocab, timings)
