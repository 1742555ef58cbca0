"""`TraceSet`: the rows of one batched run (several prompts, several samples each), each a
real `Trace`, with a padded batched view for vectorised work."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import torch
from jaxtyping import Bool
from torch import Tensor

from interp import hooks as H
from interp.trace import GenerationSettings, Trace


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
