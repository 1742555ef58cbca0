"""The attention's inputs as separate nodes: TransformerLens's per-head copies of each block's
Q/K/V input, and grouped-query attention run as multi-head attention (each query head its
own copy of its KV group's key and value weights, so its own key and value input: EAP-IG's
"ungrouped" model). The two change how the graph is cut, never the function computed.

With `interp.models.surgery`, the only module that reaches into a bridge component.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from interp.errors import UnknownModelError

if TYPE_CHECKING:
    from interp.models.model import Model


@contextlib.contextmanager
def split_qkv_input(model: Model) -> Iterator[None]:
    """TransformerLens's per-head copies of each block's Q/K/V input
    (`blocks.L.attn.hook_q_input` etc., `[batch, pos, head, d_model]`), on for the call."""
    bridge = model.bridge
    saved_split = bool(getattr(bridge.cfg, "use_split_qkv_input", False))
    saved_attn_in = bool(getattr(bridge.cfg, "use_attn_in", False))
    try:
        if saved_attn_in:  # the two forks exclude each other
            bridge.set_use_attn_in(False)
        bridge.set_use_split_qkv_input(True)
        yield
    finally:
        bridge.set_use_split_qkv_input(saved_split)
        if saved_attn_in:
            bridge.set_use_attn_in(True)


@contextlib.contextmanager
def ungrouped_kv(model: Model) -> Iterator[None]:
    """Grouped-query attention as multi-head attention, on for the call: every query head
    gets its own copy of its group's key and value weights (`repeat_interleave` over the KV
    heads, as TransformerLens 2/3's `ungroup_grouped_query_attention` and EAP-IG), so under
    `split_qkv_input` the key and value inputs are per query head. Same logits."""
    restore: list[tuple[Any, str, Any]] = []  # (owner, attribute or parameter, old value)
    try:
        for layer, block in enumerate(model.bridge.blocks):
            _ungroup(block.attn, model.n_heads, layer, restore)
        yield
    finally:
        for owner, name, old in reversed(restore):
            if isinstance(owner, nn.Module) and name in owner._parameters:
                owner._parameters[name] = old
            else:
                setattr(owner, name, old)


def _ungroup(attn: Any, n_heads: int, layer: int, restore: list[tuple[Any, str, Any]]) -> None:
    """Repeat one attention's key and value weights per query head, noting in `restore`
    each value replaced before replacing it."""
    hf = getattr(attn, "original_component", None)
    config = getattr(attn, "config", None)
    groups = getattr(hf, "num_key_value_groups", None)
    n_kv = getattr(config, "n_key_value_heads", None) or n_heads
    if hf is None or groups is None or config is None or n_kv * groups != n_heads:
        raise UnknownModelError(
            f"block {layer}'s attention does not say how its {n_heads} query heads share key "
            "and value heads: interp cannot give each query head its own key and value input"
        )
    norm = getattr(getattr(attn, "k_norm", None), "original_component", None)
    weight = getattr(norm, "weight", None)
    if isinstance(weight, Tensor) and weight.dim() > 1:
        raise UnknownModelError(
            f"block {layer}'s key norm has a weight per KV head: interp does not copy it per "
            "query head"
        )
    if groups == 1:
        return
    for proj in (attn.k, attn.v):
        linear = proj.original_component
        for name in ("weight", "bias"):
            old = linear._parameters.get(name)
            if old is None:
                continue
            per_head = old.detach().view(n_kv, -1, *old.shape[1:])
            new = per_head.repeat_interleave(groups, dim=0).reshape(-1, *old.shape[1:])
            restore.append((linear, name, old))
            linear._parameters[name] = nn.Parameter(new, requires_grad=False)
    restore += [(hf, "num_key_value_groups", groups), (config, "n_key_value_heads", n_kv)]
    hf.num_key_value_groups = 1
    config.n_key_value_heads = n_heads
