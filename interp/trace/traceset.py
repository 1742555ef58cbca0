"""`TraceSet`: the rows of one batched run (several prompts, several samples each), each a
real `Trace`, with a padded batched view for vectorised work, and its on-disk form: one
directory whose summary.json holds every row's record and whose two safetensors files hold
every row's tensors under `row<i>.` keys (nothing duplicated per row)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

import torch
from jaxtyping import Bool
from torch import Tensor

from interp.edits.positions import Positions
from interp.errors import TraceFormatError
from interp.files import atomic
from interp.files.store import (
    ACTIVATIONS,
    FORMAT,
    FORMAT_VERSION,
    SET_FORMAT,
    STEPS,
    SUMMARY,
    TRACE_ENTRIES,
    SourceFiles,
    check_output_dir,
    dumps,
    load_tensors,
    read_summary,
)
from interp.models import hooks as H
from interp.trace import schema
from interp.trace.trace import GenerationSettings, Trace

if TYPE_CHECKING:
    from transformer_lens import ActivationCache

    from interp.models.model import Model


@dataclass(eq=False)
class TraceSet:
    """Rows in prompt-major order (prompt 0's samples, then prompt 1's, ...). `ts[i]` is a
    `Trace`: every analysis, ablation and report works on it."""

    traces: list[Trace]

    def __len__(self) -> int:
        return len(self.traces)

    @overload
    def __getitem__(self, index: int) -> Trace: ...

    @overload
    def __getitem__(self, index: slice) -> TraceSet: ...

    def __getitem__(self, index: int | slice) -> Trace | TraceSet:
        if isinstance(index, slice):
            return TraceSet(self.traces[index])
        return self.traces[index]

    def __iter__(self) -> Iterator[Trace]:
        return iter(self.traces)

    @property
    def prompts(self) -> list[str]:
        return [t.prompt for t in self.traces]

    @property
    def seeds(self) -> list[int | None]:
        return [t.settings.seed for t in self.traces]

    @property
    def settings(self) -> list[GenerationSettings]:
        return [t.settings for t in self.traces]

    @property
    def lengths(self) -> list[int]:
        return [t.n_positions for t in self.traces]

    def positions(self, positions: Positions) -> list[list[int]]:
        """Each row's positions that `positions` name (`Trace.positions`), so a span's role
        gives each row its own, of its own length."""
        return [t.positions(positions) for t in self.traces]

    @property
    def mask(self) -> Bool[Tensor, "row pos"]:
        """True where a row has a position (rows are aligned at their first token)."""
        n = max(self.lengths)
        return torch.arange(n)[None, :] < torch.tensor(self.lengths)[:, None]

    def stacked(self, hook: str) -> Tensor:
        """One hook of every row, padded with zeros after each row's end: [row, pos, ...], or
        [row, head, query, key] for attention patterns and scores; `mask` says which
        positions are real."""
        n = max(self.lengths)
        parts: Sequence[Tensor] = [t.activations[hook] for t in self.traces]
        first = parts[0]
        if H.is_query_key(hook):
            out = first.new_zeros((len(parts), first.shape[0], n, n))
            for i, part in enumerate(parts):
                out[i, :, : part.shape[1], : part.shape[2]] = part
        else:
            out = first.new_zeros((len(parts), n, *first.shape[1:]))
            for i, part in enumerate(parts):
                out[i, : part.shape[0]] = part
        return out

    @property
    def cache(self) -> ActivationCache:
        """Every recorded hook as a TransformerLens `ActivationCache` over the padded batch
        ([row, pos, ...], zeros after each row's end: read it with `mask`; the norm scale
        is 1 there), bound to the first row's model where it has one, its norm-dependent
        methods right as `Trace.cache`'s are."""
        from transformer_lens import ActivationCache

        from interp.trace.activation_cache import InterpCache, pad_scale

        model = self.traces[0].model
        stacked = {name: self.stacked(name) for name in self.traces[0].hook_names}
        if H.FINAL_SCALE in stacked:
            stacked[H.FINAL_SCALE] = pad_scale(stacked[H.FINAL_SCALE], self.mask)
        if model is None:
            return ActivationCache(stacked, None)
        ids = torch.zeros(len(self), max(self.lengths), dtype=torch.long)
        for i, trace in enumerate(self.traces):
            ids[i, : trace.n_positions] = trace.token_ids
        return InterpCache(stacked, model, ids)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the set atomically (an existing trace or set there is replaced; anything
        else is refused, as for a trace)."""
        from safetensors.torch import save_file

        if not self.traces:
            raise TraceFormatError("an empty trace set cannot be saved")
        target = Path(directory)
        check_output_dir(target, own=TRACE_ENTRIES)
        steps, acts = {}, {}
        for i, trace in enumerate(self.traces):
            steps.update(
                {f"row{i}.{k}": v.contiguous().cpu() for k, v in trace.step_tensors().items()}
            )
            acts.update({f"row{i}.{k}": v.contiguous().cpu() for k, v in trace.activations.items()})
        record = {
            "format": SET_FORMAT,
            "format_version": FORMAT_VERSION,
            "rows": [trace.summary() for trace in self.traces],
        }
        text = dumps(record)  # refused before any write if interp could not read it back
        with atomic.atomic_dir(target) as tmp:
            save_file(steps, tmp / STEPS)
            save_file(acts, tmp / ACTIVATIONS)
            (tmp / SUMMARY).write_text(text, encoding="utf-8")
        return target

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        model: Model | None = None,
        *,
        activations: bool = True,
    ) -> TraceSet:
        """Read a set written by `save`, every row checked as `Trace.load` checks a trace;
        with `model`, bind every row to it (the same model only); `activations=False` as for
        `Trace.load`."""
        path = Path(directory)
        summary = read_summary(path, (SET_FORMAT,))
        rows = schema.items(summary, "rows", dict, path / SUMMARY)
        if not rows:
            raise TraceFormatError(f"{path / SUMMARY}: the set has no rows")
        steps = load_tensors(path / STEPS, "per-step tensors")
        acts = load_tensors(path / ACTIVATIONS, "activations") if activations else {}
        traces = []
        for i, row in enumerate(rows):
            prefix = f"row{i}."
            traces.append(
                Trace.from_record(
                    row,
                    {k[len(prefix) :]: v for k, v in steps.items() if k.startswith(prefix)},
                    {k[len(prefix) :]: v for k, v in acts.items() if k.startswith(prefix)}
                    if activations
                    else None,
                    SourceFiles(path, f" (row {i})"),
                )
            )
        _check_rows_agree(traces, path / ACTIVATIONS)
        out = cls(traces)
        if model is not None:
            for trace in out:
                trace.bind(model)
        return out


def load_recorded(
    directory: str | os.PathLike[str], model: Model | None = None, *, activations: bool = True
) -> Trace | TraceSet:
    """The trace or the trace set in `directory`, whichever it holds."""
    kind = read_summary(Path(directory), (FORMAT, SET_FORMAT))["format"]
    if kind == SET_FORMAT:
        return TraceSet.load(directory, model, activations=activations)
    return Trace.load(directory, model, activations=activations)


def _check_rows_agree(traces: list[Trace], where: Path) -> None:
    """Every row records the same hooks with the same widths (all but the position axes)."""
    first = traces[0]
    for i, trace in enumerate(traces[1:], start=1):
        if trace.activations.keys() != first.activations.keys():
            raise TraceFormatError(f"{where}: row {i} records other hooks than row 0")
        for name, value in trace.activations.items():
            ref = first.activations[name]
            got, want = _widths(name, value), _widths(name, ref)
            if got != want or value.dtype != ref.dtype:
                raise TraceFormatError(
                    f"{where}: row {i}'s {name} has widths {got} ({value.dtype}), row 0's "
                    f"{want} ({ref.dtype})"
                )


def _widths(name: str, value: Tensor) -> list[int]:
    return list(value.shape[:1] if H.is_query_key(name) else value.shape[1:])
