"""All analyses of a trace (or of every row of a trace set) together: the headline figures
`interp analyze` writes, and the whole result saved beside the trace and read back typed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, overload

import torch
from torch import Tensor

from interp.analysis.attention import (
    PROBE_BLOCK,
    AttentionResult,
    AttentionSetResult,
    HeadRoles,
    attention,
    head_roles,
    recorded_patterns,
)
from interp.analysis.attribution import (
    AttributionResult,
    AttributionSetResult,
    direct_logit_attribution,
)
from interp.analysis.logit_lens import LogitLensResult, LogitLensSetResult, logit_lens
from interp.analysis.stored import (
    ANALYSIS_FORMAT_VERSION,
    KEY,
    ROW_FIELDS,
    read,
    role_tensors,
    rounded,
    row_parts,
    shared,
    shared_summary,
)
from interp.errors import TraceFormatError
from interp.executors import Executor, describe, merging, run_rows
from interp.files import store
from interp.models.model import Model
from interp.trace import schema
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

T = TypeVar("T")


@dataclass
class Analysis:
    """The results of every analysis of one trace."""

    logit_lens: LogitLensResult
    attention: AttentionResult
    head_roles: HeadRoles
    attribution: AttributionResult
    vocab: dict[int, str] = field(default_factory=dict)  # strings of every token id referenced
    timings: dict[str, float] = field(default_factory=dict)

    def row_summary(self, k: int = 10) -> dict[str, Any]:
        """The headline figures of the trace's own analyses (not the model's head roles)."""
        return {
            "logit_lens": self.logit_lens.summary(),
            "prediction_depth": self.logit_lens.prediction_depth.tolist(),
            "dla_top_heads": [[str(h), round(v, 5)] for h, v in self.attribution.top_heads(k)],
        }

    def summary(self, k: int = 10) -> dict[str, Any]:
        """Headline figures, under the names reports and users' scripts read."""
        return {
            "format_version": ANALYSIS_FORMAT_VERSION,
            **self.row_summary(k),
            **shared_summary(self.head_roles, self.vocab, self.timings, k),
        }

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Every result tensor, keyed `<analysis>.<field>` (safetensors-ready)."""
        out = {
            f"{prefix}{part}.{name}": getattr(getattr(self, part), name)
            for part, names in ROW_FIELDS.items()
            for name in names
        }
        if not prefix:
            out |= role_tensors(self.head_roles)
        return out

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
        summary, t, roles, where = read(directory)
        parts = row_parts(directory, trace, summary, t, "", roles, pattern_window)
        return cls(*parts[:2], roles, parts[2], *shared(summary, where))


@dataclass
class SetAnalysis:
    """Every analysis of every row of a `TraceSet`: `rows[i]` is row i's `Analysis` (the
    head-role probe, a property of the model, is run once and shared), and the set results
    carry the means over rows with their standard errors."""

    rows: list[Analysis]
    logit_lens: LogitLensSetResult
    attention: AttentionSetResult | None  # None when loaded: the report reads rows only
    attribution: AttributionSetResult
    head_roles: HeadRoles
    vocab: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)  # where the rows ran; {}: here

    def summary(self, k: int = 10) -> dict[str, Any]:
        lens = self.logit_lens
        means: dict[str, Any] = {"layers": lens.layers}
        for name in ("mean_kl", "top1_agreement", "mean_rank"):
            mean, se = getattr(lens, name)
            means[name] = rounded(mean)
            means[f"{name}_se"] = rounded(se)
        heads_mean, heads_se = self.attribution.heads_mean()
        return {
            "format_version": ANALYSIS_FORMAT_VERSION,
            "rows": [row.row_summary(k) for row in self.rows],
            "set": {
                "rows": len(self.rows),
                "logit_lens": means,
                "dla_top_heads": [[str(h), round(v, 5)] for h, v in self.attribution.top_heads(k)],
                "dla_heads_mean": rounded(heads_mean),
                "dla_heads_se": rounded(heads_se),
            },
            **shared_summary(self.head_roles, self.vocab, self.timings, k),
            **({"executor": self.executor} if self.executor else {}),
        }

    def tensors(self) -> dict[str, Tensor]:
        out = role_tensors(self.head_roles)
        for i, row in enumerate(self.rows):
            out |= row.tensors(f"row{i}.")
        return out

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write analysis.safetensors and summary.json's `analysis` into a set directory."""
        store.write_results(directory, KEY, self.summary(), self.tensors(), store.ANALYSIS_FILE)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        traces: TraceSet,
        *,
        pattern_window: int | None = None,
    ) -> SetAnalysis:
        """The analysis saved beside the set `traces` (loaded from `directory`)."""
        summary, t, roles, where = read(directory)
        vocab, timings = shared(summary, where)
        row_summaries = schema.items(summary, "rows", dict, where)
        if len(row_summaries) != len(traces):
            raise TraceFormatError(
                f"{where}: the analysis has {len(row_summaries)} rows, the set {len(traces)}"
            )
        rows = []
        for i, (trace, part) in enumerate(zip(traces, row_summaries, strict=True)):
            lens, att, dla = row_parts(directory, trace, part, t, f"row{i}.", roles, pattern_window)
            rows.append(Analysis(lens, att, roles, dla, vocab, timings))
        return cls(
            rows,
            LogitLensSetResult([r.logit_lens for r in rows]),
            None,
            AttributionSetResult([r.attribution for r in rows]),
            roles,
            vocab,
            timings,
            schema.field(summary, "executor", dict, where) if "executor" in summary else {},
        )


def default_probe_block(model: Model) -> int:
    """The head-role probe's block length: `PROBE_BLOCK`, or less where the context is short."""
    return min(PROBE_BLOCK, (model.n_ctx - len(model.encode(""))) // 2)


@overload
def analyze(
    model: Model,
    trace: Trace,
    *,
    roles: HeadRoles | None = ...,
    executor: Executor | None = ...,
) -> Analysis: ...


@overload
def analyze(
    model: Model,
    trace: TraceSet,
    *,
    roles: HeadRoles | None = ...,
    executor: Executor | None = ...,
) -> SetAnalysis: ...


def analyze(
    model: Model,
    trace: Trace | TraceSet,
    *,
    roles: HeadRoles | None = None,
    executor: Executor | None = None,
) -> Analysis | SetAnalysis:
    """Run the logit lens, attention, head roles and direct logit attribution on `trace`, or
    on every row of a set at once. The head roles are a property of the model, not of the
    trace: pass `roles` to reuse a probe already run (`interp.workflow.model_head_roles`).
    `executor`: where a set's rows run (`interp.Ray(...)`: chunks of rows on Ray workers, the
    head roles probed here once; default this process); the result is the same.
    Returns an `Analysis` (of a set, a `SetAnalysis`: `rows[i]` is row i's)."""
    timings: dict[str, float] = {}
    if roles is None:
        t0 = time.perf_counter()
        with torch.no_grad():
            roles = head_roles(model, block_len=default_probe_block(model))
        timings["head_roles_s"] = round(time.perf_counter() - t0, 4)
    if isinstance(trace, Trace):
        lens, att, dla, own = _analyses(model, trace)
        assert isinstance(lens, LogitLensResult) and isinstance(att, AttentionResult)
        assert isinstance(dla, AttributionResult)
        return Analysis(lens, att, roles, dla, _vocab(model, [trace], [lens]), timings | own)
    traces = list(trace)
    task = partial(_chunk, patterns=executor is None)
    parts = run_rows(executor, model, task, traces, "analyze")
    for part in parts:
        for name, seconds in part[3].items():
            timings[name] = round(timings.get(name, 0.0) + seconds, 4)
    lens = LogitLensSetResult([row for part in parts for row in part[0].rows])
    att = AttentionSetResult(
        [row for part in parts for row in part[1].rows],
        merging.rows([part[1].row_stats for part in parts]),
    )
    if executor is not None:  # the patterns stayed on the workers: the trace holds them
        for row, t in zip(att.rows, traces, strict=True):
            row.patterns = recorded_patterns(model, t)
    dla = AttributionSetResult([row for part in parts for row in part[2].rows])
    vocab = _vocab(model, traces, lens.rows)
    rows = [
        Analysis(row_lens, row_att, roles, row_dla, vocab, timings)
        for row_lens, row_att, row_dla in zip(lens.rows, att.rows, dla.rows, strict=True)
    ]
    ran = {} if executor is None else describe(executor)
    return SetAnalysis(rows, lens, att, dla, roles, vocab, timings, ran)


SetParts = tuple[LogitLensSetResult, AttentionSetResult, AttributionSetResult, dict[str, float]]


def _analyses(model: Model, trace: Trace | TraceSet) -> tuple[Any, Any, Any, dict[str, float]]:
    """The lens, attention and attribution of a trace or a set, with their timings."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        out = fn()
        timings[f"{name}_s"] = round(time.perf_counter() - t0, 4)
        return out

    with torch.no_grad():
        lens = timed("logit_lens", lambda: logit_lens(model, trace))
        att = timed("attention", lambda: attention(model, trace))
        dla = timed("attribution", lambda: direct_logit_attribution(model, trace))
    return lens, att, dla, timings


def _chunk(model: Model, rows: list[Trace], patterns: bool) -> SetParts:
    """Some rows' set results (a chunk of `analyze`); without `patterns`, the attention
    patterns are left out (the driver's traces hold them: nothing to send back)."""
    lens, att, dla, timings = _analyses(model, TraceSet(rows))
    assert isinstance(att, AttentionSetResult)
    if not patterns:
        for row in att.rows:
            row.patterns = row.patterns.new_empty(0)
    return lens, att, dla, timings


def _vocab(model: Model, traces: list[Trace], lenses: list[LogitLensResult]) -> dict[int, str]:
    """The string of every token id the results reference, in id order."""
    ids: set[int] = set()
    for t in traces:
        ids |= set(t.token_ids.tolist()) | set(t.top_ids.flatten().tolist())
    for part in lenses:
        ids |= set(part.top_ids.flatten().tolist())
    order = sorted(ids)
    return dict(zip(order, model.token_strs(order), strict=True))
