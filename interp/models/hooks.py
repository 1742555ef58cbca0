"""Hook names in one place: nothing else in the package spells a hook-name string."""

from __future__ import annotations

import re
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


# ---- the site vocabulary's hooks (`interp.models.site`) ---------------------------------------

OF_LAYER = {
    "z": z,
    "attn": attn_out,
    "mlp": mlp_out,
    "mlp_in": mlp_in,
    "resid_pre": resid_pre,
    "resid_mid": resid_mid,
    "resid_post": resid_post,
}
OF_LAYER_KINDS = {  # a block's hook (after `blocks.L.`) -> its site's kind
    "attn.hook_z": "z",
    "hook_attn_out": "attn",
    "hook_mlp_out": "mlp",
    "mlp.hook_in": "mlp_in",
    "hook_resid_pre": "resid_pre",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "resid_post",
}
BLOCK_KINDS = {**OF_LAYER_KINDS, "attn.hook_pattern": "pattern"}  # a block's hooks, by kind
_BLOCK = re.compile(r"^blocks\.([0-9]{1,6})\.(.+)$")
_HOOK_NAME = re.compile(r"^[A-Za-z0-9_.]*hook_[A-Za-z0-9_]+$")
_BEFORE_BLOCKS = (EMBED, POS_EMBED)


def block_hook(name: str) -> tuple[int, str] | None:
    """`blocks.5.hook_attn_out` -> (5, "hook_attn_out"); None outside the blocks."""
    match = _BLOCK.match(name)
    return None if match is None else (int(match[1]), match[2])


def is_hook_name(text: str) -> bool:
    """Spelled as a TransformerLens hook point (whether a model has it is checked later)."""
    return _HOOK_NAME.match(text) is not None


def layer_of(name: str) -> int:
    """The block a hook belongs to: -1 before the first (the embeddings), 10**9 after the last."""
    block = block_hook(name)
    if block is not None:
        return block[0]
    return -1 if name in _BEFORE_BLOCKS else 10**9


def is_block_input(name: str) -> bool:
    return name.endswith("hook_resid_pre")


HEAD_AXIS = ("attn.hook_z", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_result")
NEURON_AXIS = ("mlp.hook_post", "mlp.hook_pre")
KV_AXIS = ("attn.hook_k", "attn.hook_v")


def has_head_axis(name: str) -> bool:
    return name.endswith(HEAD_AXIS)


def has_neuron_axis(name: str) -> bool:
    return name.endswith(NEURON_AXIS)


def is_kv(name: str) -> bool:
    """A key or value hook: its head axis counts KV heads."""
    return name.endswith(KV_AXIS)


def by_kv_heads(name: str) -> bool:
    """A hook whose tensor is laid out by KV heads: a key or value, its split input, the
    rotated key, the projections' outputs."""
    more = ("attn.hook_k_input", "attn.hook_v_input", "attn.hook_rot_k", "attn.k.hook_out")
    return is_kv(name) or name.endswith((*more, "attn.v.hook_out"))


def mlp_post(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def is_attn_scores(name: str) -> bool:
    return name.endswith("attn.hook_attn_scores")


def is_pattern(name: str) -> bool:
    return name.endswith("attn.hook_pattern")


_D_MODEL_WIDE = (*_RESIDUAL_SUFFIXES, "mlp.hook_in")


def dictionary_width(name: str, d_model: int, d_mlp: int) -> int | None:
    """The width of a hook a dictionary may read or write: the residual stream, a layer's
    outputs or the MLP's input (d_model), its neurons (d_mlp); None for any other."""
    if name.endswith(_D_MODEL_WIDE):
        return d_model
    return d_mlp if has_neuron_axis(name) else None


def per_position_floats(name: str, n_heads: int, d_head: int) -> int | None:
    """Floats a position of a hook holds where that is not d_model (z, the final scale)."""
    if name.endswith("attn.hook_z"):
        return n_heads * d_head
    return 1 if name.endswith("hook_scale") else None


# the residual stream, and what lies between a head's z and it (its write, the layer's sum)
_ON_PATH = re.compile(
    r"hook_resid_(pre|mid|post)$|^ln_final|\.ln[12]\.|\.hook_attn_out$|\.attn\.hook_result$|\.attn\.o\."
)


def on_residual_path(name: str) -> bool:
    """The residual stream, or a hook between a head's z and its write into it."""
    return _ON_PATH.search(name) is not None


# ---- a circuit's readers (`interp.circuits`): each reader's own copy of its input ------------

LOGITS_IN = "ln_final.hook_in"  # the final norm's input: what the unembedding reads


def mlp_reader(layer: int) -> str:
    """The MLP's input before the block's second norm: the MLP's own copy of the stream."""
    return f"blocks.{layer}.ln2.hook_in"
