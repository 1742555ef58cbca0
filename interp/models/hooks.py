"""Hook names in one place: nothing else in the package spells a hook-name string."""

from __future__ import annotations

from collections.abc import Iterable

EMBED = "hook_embed"
POS_EMBED = "hook_pos_embed"
FINAL_SCALE = "ln_final.hook_scale"

# Hooks whose tensor is [batch, head, query_pos, key_pos]; every other recorded hook has
# its position axis at dim 1 ([batch, pos, ...]).
_QUERY_KEY_SUFFIXES = ("attn.hook_pattern", "attn.hook_attn_scores")


def resid_pre(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def resid_mid(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_mid"


def resid_post(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def attn_out(layer: int) -> str:
    return f"blocks.{layer}.hook_attn_out"


def mlp_out(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def mlp_in(layer: int) -> str:
    """The MLP's input (after the block's second norm): what a transcoder reads."""
    return f"blocks.{layer}.mlp.hook_in"


def pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def result(layer: int) -> str:
    """Each head's write into the residual stream, `[batch, pos, head, d_model]`."""
    return f"blocks.{layer}.attn.hook_result"


def qkv_input(layer: int, kind: str) -> str:
    """A block's per-head copy of its query, key or value input (`kind`: q, k or v), present
    while TransformerLens's split Q/K/V input is on."""
    return f"blocks.{layer}.attn.hook_{kind}_input"


def is_query_key(name: str) -> bool:
    """True for hooks shaped [batch, head, query, key] (attention patterns and scores)."""
    return name.endswith(_QUERY_KEY_SUFFIXES)


_RESIDUAL_SUFFIXES = (
    "hook_embed",
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
)


def widths(name: str, n_heads: int, d_head: int, d_model: int) -> list[int] | None:
    """The sizes after the position axis (query-key hooks: the head axis) that a model's hook
    has, where this module knows them (None for any other hook)."""
    if is_query_key(name):
        return [n_heads]
    if name.endswith(("attn.hook_z", "attn.hook_q")):
        return [n_heads, d_head]
    if name.endswith(_RESIDUAL_SUFFIXES):
        return [d_model]
    if name.endswith("hook_scale"):
        return [1]
    return None


def default_hooks(n_layers: int) -> list[str]:
    """What the analyses read: residual stream before each block and after the last,
    every layer's attention pattern and per-head output (z), and the final norm's scale."""
    names: list[str] = []
    for layer in range(n_layers):
        names += [resid_pre(layer), pattern(layer), z(layer)]
    names += [resid_post(n_layers - 1), FINAL_SCALE]
    return names


def missing(required: Iterable[str], available: Iterable[str]) -> list[str]:
    """The required hook names that are not among the available ones, in order."""
    have = set(available)
    return [name for name in required if name not in have]
