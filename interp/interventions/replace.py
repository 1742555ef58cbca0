"""How a replacement value goes in at a site: the values at chosen positions swapped, counting
absolute positions under the KV cache (one new position a call), for one batch item or all."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp.errors import InvalidSettingError


def replace_hook(heads: list[int] | None, value: Tensor, positions: list[int] | None) -> Callable:
    """A hook that replaces its activation's values (`replace_values`), counting the positions
    it has seen, so that with a KV cache (one new position a call) a position-dependent value,
    and a position list, are read at absolute positions."""
    seen = [0]

    def hook(x: Tensor, hook) -> Tensor:
        start = seen[0]
        seen[0] += x.shape[1]
        return replace_values(x, start, heads, value, positions)

    return hook


def replace_values(
    x: Tensor,
    start: int,
    heads: list[int] | None,
    value: Tensor,
    positions: list[int] | None,
) -> Tensor:
    """`x` ([batch, n, ...], absolute positions start..start+n) with x[:, :, heads] (a head
    site) or x (a layer's site) replaced by `value` ([1 or source_pos, ...]), at every
    position or at `positions` only."""
    n = x.shape[1]
    if value.shape[0] == 1:
        rows = value.expand(n, *value.shape[1:])
    else:
        if start + n > value.shape[0]:
            raise InvalidSettingError(
                f"the replacement source has {value.shape[0]} positions; position "
                f"{start + n - 1} was asked for"
            )
        rows = value[start : start + n]
    if positions is None:
        local = torch.arange(n)
    else:
        chosen = torch.tensor(positions, dtype=torch.long)
        local = chosen[(chosen >= start) & (chosen < start + n)] - start
    if local.numel() == 0:
        return x
    local = local.to(x.device)
    rows = rows.to(x.device)
    x = x.clone()
    if heads is None:
        x[:, local] = rows[local].to(x.dtype)
    else:
        picked = rows[local].to(x.dtype)  # [pos, head, d_head]
        for head in heads:
            x[:, local, head] = picked[:, head]
    return x
