"""How a metric reads its rows' logits: the position each row is read at, a window's rows at
those positions, and each continuation step's predicting position and token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.trace.trace import Trace

Position = int | Literal["last_prompt"]


def positions(traces: Sequence[Trace], position: Position) -> list[int]:
    """The absolute position each row is read at."""
    out = []
    for trace in traces:
        if position == "last_prompt":
            out.append(trace.prompt_len - 1)
            continue
        if isinstance(position, bool) or not isinstance(position, int):
            raise InvalidSettingError(f"a position is an index or 'last_prompt', got {position!r}")
        at = position if position >= 0 else trace.n_positions + position
        if not 0 <= at < trace.n_positions:
            raise InvalidSettingError(
                f"position {position} is outside a row of {trace.n_positions} positions"
            )
        out.append(at)
    return out


def at(window: Tensor, positions: list[int], start: int) -> Tensor:
    index = torch.tensor([p - start for p in positions], device=window.device)
    return window[torch.arange(len(positions), device=window.device), index]


def continuation_index(traces: Sequence[Trace], start: int) -> tuple[Tensor, Tensor]:
    """For each row and continuation step: the window position that predicts the step's
    token, and the token ([row, step] each, padded), and a mask of real steps."""
    steps = max(t.n_generated for t in traces)
    pos = torch.zeros(len(traces), steps, dtype=torch.long)
    tok = torch.zeros(len(traces), steps, dtype=torch.long)
    mask = torch.zeros(len(traces), steps)
    for i, t in enumerate(traces):
        g = t.n_generated
        pos[i, :g] = torch.arange(t.prompt_len - 1, t.n_positions - 1) - start
        tok[i, :g] = t.token_ids[t.prompt_len :]
        mask[i, :g] = 1.0
    return torch.stack([pos, tok]), mask


def token_logprobs(window: Tensor, index: Tensor) -> Float[Tensor, "row step"]:
    pos, tok = index[0].to(window.device), index[1].to(window.device)
    rows = torch.arange(window.shape[0], device=window.device)[:, None]
    picked = window[rows, pos].float()  # [row, step, vocab]
    return picked.log_softmax(-1).gather(-1, tok[..., None])[..., 0]
