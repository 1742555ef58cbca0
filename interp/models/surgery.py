"""Everything that knows Hugging Face module paths and the bridge's internals: the layouts the
direct engine runs, where each TransformerLens hook point sits in a Hugging Face module tree,
a plain module tree over the bridge's own tensors, and running the model from block L on.

Nothing else in interp spells a module path or reaches into a bridge component (but
`interp.models.qkv`, for the attention's per-head inputs).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.errors import UnknownModelError
from interp.models import hooks as H

if TYPE_CHECKING:
    from interp.models.model import Model


@dataclass(frozen=True)
class Layout:
    """Attribute paths of one family of Hugging Face causal LMs."""

    model_types: tuple[str, ...]
    layers: str  # the list of decoder blocks
    attn: str  # in a block: the attention module, returning (output, weights) when eager
    out_proj: str  # in the attention module: the output projection (input: heads merged)
    mlp: str  # in a block
    final_norm: str
    rms_norm: bool
    embeds_in: bool  # `inputs_embeds` reach the first block as they are (no position embedding)


LAYOUTS = (
    Layout(("llama",), "model.layers", "self_attn", "o_proj", "mlp", "model.norm", True, True),
    Layout(("gpt2",), "transformer.h", "attn", "c_proj", "mlp", "transformer.ln_f", False, False),
)


def layout_for(config: Any) -> Layout | None:
    """The known layout of a Hugging Face config's model type, or None."""
    return next((lo for lo in LAYOUTS if config.model_type in lo.model_types), None)


@dataclass(frozen=True)
class ModuleSite:
    """Where a TransformerLens hook point sits in the Hugging Face module tree.

    `pre`: the hook sees the module's first input (else its output, or `output[index]`).
    `to_tl` turns that tensor into the hook point's tensor; `from_tl` (None: read-only) turns
    an edited hook tensor back into the module's tensor.
    """

    module: nn.Module
    pre: bool
    index: int | None = None
    to_tl: Callable[[Tensor], Tensor] = lambda t: t
    from_tl: Callable[[Tensor, Tensor], Tensor] | None = lambda new, old: new


def site(
    hf: nn.Module, layout: Layout, n_heads: int, norm_eps: float, name: str
) -> ModuleSite | None:
    """The module and tensor behind a TransformerLens hook name, or None if unknown.

    resid_pre is a block's input, resid_post its output, hook_pattern eager attention's
    weights, hook_z the output projection's input with heads split, hook_attn_out and
    hook_mlp_out module outputs, mlp.hook_in the MLP's input, ln_final.hook_scale recomputed
    with TransformerLens's formula.
    """
    if name == H.FINAL_SCALE:
        scale = _hook_scale(norm_eps, layout.rms_norm)
        return ModuleSite(get(hf, layout.final_norm), pre=True, to_tl=scale, from_tl=None)
    at = H.block_hook(name)
    layers = get(hf, layout.layers)
    kind = None if at is None else H.BLOCK_KINDS.get(at[1])
    if at is None or kind is None or at[0] >= len(layers):
        return None
    block = layers[at[0]]
    attn = get(block, layout.attn)
    if kind == "resid_pre":
        return ModuleSite(block, pre=True)
    if kind == "resid_post":
        return ModuleSite(block, pre=False)
    if kind == "mlp":
        return ModuleSite(get(block, layout.mlp), pre=False)
    if kind == "mlp_in":
        return ModuleSite(get(block, layout.mlp), pre=True)
    if kind == "attn":
        return ModuleSite(get(attn, layout.out_proj), pre=False)
    if kind == "pattern":
        return ModuleSite(attn, pre=False, index=1, from_tl=None)
    if kind != "z":
        return None
    return ModuleSite(  # attn.hook_z
        get(attn, layout.out_proj),
        pre=True,
        to_tl=lambda t: t.view(*t.shape[:-1], n_heads, t.shape[-1] // n_heads),
        from_tl=lambda new, old: new.reshape(old.shape),
    )


def _hook_scale(eps: float, rms: bool) -> Callable[[Tensor], Tensor]:
    """TransformerLens's hook_scale: sqrt(mean(x^2) + eps) in float32, x centred for LayerNorm
    (transformer_lens/model_bridge/generalized_components/normalization.py)."""

    def scale(x: Tensor) -> Tensor:
        x = x.float()
        if not rms:
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()

    return scale


def final_norm_eps(hf: nn.Module, layout: Layout) -> float | None:
    norm = get(hf, layout.final_norm)
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    return None if eps is None else float(eps)


def plain_copy(wrapped: Any) -> Any | None:
    """A Hugging Face model of the wrapped model's class whose parameters and buffers are the
    wrapped model's own tensors (the bridge inserts `_original_component` levels), in eager
    attention (which returns the weights: hook_pattern); None if a tensor has no counterpart."""
    config = wrapped.config.__class__.from_dict(wrapped.config.to_dict())
    config._attn_implementation = "eager"
    with torch.device("meta"):
        hf = type(wrapped)(config)
    tensors = {}
    for kind in ("named_parameters", "named_buffers"):
        for name, tensor in getattr(wrapped, kind)(remove_duplicate=False):
            tensors[name.replace("._original_component", "")] = tensor
    for kind in ("named_parameters", "named_buffers"):
        for name, _ in list(getattr(hf, kind)(remove_duplicate=False)):
            if name not in tensors:
                return None
            owner, _, leaf = name.rpartition(".")
            module = hf.get_submodule(owner) if owner else hf
            value = tensors[name]
            if kind == "named_parameters":
                module._parameters[leaf] = value
            else:
                module._buffers[leaf] = value
    hf.eval()
    return hf


def norm_parameter(ln: nn.Module, name: str) -> Tensor | None:
    """A bridge norm component's weight or bias (from the Hugging Face module it wraps)."""
    original = getattr(ln, "original_component", None)
    value = getattr(original if original is not None else ln, name, None)
    return None if value is None else value.detach().float().cpu()


def norm_gain(model: Model, ln: nn.Module) -> Tensor | None:
    """The factor a norm multiplies its normalised input by: its weight, or `1 + weight` for
    Gemma's RMSNorm (TransformerLens's `cfg.rmsnorm_uses_offset`)."""
    weight = norm_parameter(ln, "weight")
    if weight is not None and getattr(model.cfg, "rmsnorm_uses_offset", False):
        weight = weight + 1
    return weight


@dataclass(frozen=True)
class PostNorm:
    """An RMSNorm between a block's summed heads and the residual stream (Gemma 2/3's
    `post_attention_layernorm`): the write is `x * gain / sqrt(mean(x^2) + eps)`."""

    gain: Float[Tensor, " d_model"]
    eps: float

    def factor(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """What multiplies `x` (and, the scale frozen at `x`, each part of `x`)."""
        scale = (x.float().pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        return self.gain / scale


def attn_post_norm(model: Model, layer: int) -> PostNorm | None:
    """The norm block `layer` applies to its attention output before adding it to the
    residual stream, or None (the usual pre-norm block)."""
    ln = model.bridge.blocks[layer]._modules.get("ln1_post")
    if ln is None:
        return None
    if model.cfg.normalization_type not in ("RMS", "RMSPre"):
        raise UnknownModelError(
            f"a {model.cfg.normalization_type} norm after the attention of block {layer}: "
            "interp splits head writes only through an RMSNorm"
        )
    original = getattr(ln, "original_component", ln)
    eps = getattr(original, "eps", getattr(original, "variance_epsilon", None))
    gain = norm_gain(model, ln)
    if eps is None or gain is None:
        raise UnknownModelError(f"block {layer}'s post-attention norm has no eps or weight")
    return PostNorm(gain, float(eps))


def get(obj: Any, path: str) -> Any:
    """`obj.a.b.c` for the path "a.b.c"."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------
# Running from block L on


def run_from_layer(
    model: Model,
    resid: Float[Tensor, "batch pos d_model"],
    layer: int,
    keep: int | None = None,
    until: int | None = None,
) -> Tensor:
    """Logits of the model run from block `layer` on, given the residual entering it.

    TransformerLens's `start_at_layer` swaps `resid` in at block `layer` but still runs the
    blocks before it; here those blocks are also taken out of the Hugging Face layer list for
    the call, so only blocks `layer`.. run (`layer`..`until - 1` with `until`: then the logits
    read the residual leaving block `until - 1`, and the caller wants only its hooks). `keep`:
    unembed only the last `keep` positions (Hugging Face's `logits_to_keep`), where the model
    accepts it.
    """
    kwargs = {}
    if keep is not None and _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    with _blocks_from(model, layer, until):
        # no KV cache: a cache sized from the cut config would be indexed by the blocks' own
        # layer numbers
        return model.bridge(
            resid, start_at_layer=layer, return_type="logits", use_cache=False, **kwargs
        )


def plain_from_layer(
    hf: nn.Module, layout: Layout, resid: Tensor, layer: int, keep: int | None = None
) -> Tensor | None:
    """`run_from_layer` on a plain Hugging Face module tree (the direct engine's): its blocks
    from `layer` on, given the residual entering `layer` as the input embeddings; None for a
    layout whose input embeddings do not reach the first block as they are (GPT-2 adds its
    position embeddings to them)."""
    if not layout.embeds_in:
        return None
    owner_path, _, name = layout.layers.rpartition(".")
    owner = get(hf, owner_path)
    blocks = getattr(owner, name)
    setattr(owner, name, nn.ModuleList(list(blocks)[layer:]))
    try:
        out = hf(inputs_embeds=resid, use_cache=False, logits_to_keep=keep or 0)
    finally:
        setattr(owner, name, blocks)
    return out.logits


def logits_from(model: Model, ids: Tensor, start: int) -> Tensor:
    """The bridge's logits of `ids` at positions `start..` only, `[row, pos - start, vocab]`:
    where the model accepts `logits_to_keep` the unembedding skips the positions before."""
    keep = ids.shape[1] - start
    extra = {"logits_to_keep": keep} if _accepts_logits_to_keep(model) else {}
    return model.bridge(ids, return_type="logits", **extra)[:, -keep:]


def readout(model: Model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab"]:
    """Logits of a final residual stream: the model's own final norm and unembedding."""
    return model.bridge.unembed(model.bridge.ln_final(resid))


def head_write_obstruction(model: Model, layers: Collection[int]) -> str | None:
    """Why a head's write into the residual stream is not `z @ W_O` in one of `layers` (a norm,
    scale or parallel mixer after the head sum, as in Gemma 3), or None where it is."""
    from transformer_lens.tools.analysis.attribution_patching import (
        _attention_write_obstruction,
    )

    return _attention_write_obstruction(model.bridge, set(layers))


def kv_heads(model: Model) -> int:
    """Key/value heads per layer (fewer than the query heads with grouped-query attention)."""
    cfg = model.bridge.cfg
    return int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)


def _accepts_logits_to_keep(model: Model) -> bool:
    found = model.extra.get("_accepts_logits_to_keep")
    if found is None:
        forward = model.bridge.original_model.forward
        found = model.extra["_accepts_logits_to_keep"] = (
            "logits_to_keep" in inspect.signature(forward).parameters
        )
    return bool(found)


@contextlib.contextmanager
def _blocks_from(model: Model, layer: int, until: int | None = None) -> Iterator[None]:
    blocks = model.bridge.blocks
    parent, name = _layer_list_owner(model)
    if parent is None or (layer == 0 and until is None):
        yield  # nothing to skip (or the layer list was not found: run everything, exactly)
        return
    # Gemma 3 (and other models mixing sliding and full attention) pick each block's mask and
    # rotary table by its index in `config.layer_types`: cut that list as the blocks are cut
    config: Any = getattr(parent, "config", None)
    types: Any = getattr(config, "layer_types", None)
    cut_types = isinstance(types, list) and len(types) == len(blocks)
    setattr(parent, name, torch.nn.ModuleList(list(blocks)[layer:until]))
    if cut_types:
        config.layer_types = types[layer:until]
    try:
        yield
    finally:
        setattr(parent, name, blocks)
        if cut_types:
            config.layer_types = types


def _layer_list_owner(model: Model) -> tuple[nn.Module | None, str]:
    """The module holding the Hugging Face layer list that the bridge's blocks are."""
    cached = model.extra.get("_layer_list_owner")
    if cached is not None:
        return cached
    blocks = model.bridge.blocks
    found: tuple[nn.Module | None, str] = (None, "")
    for module in model.bridge.original_model.modules():
        for child_name, child in module.named_children():
            if child is blocks:
                found = (module, child_name)
                break
        if found[0] is not None:
            break
    model.extra["_layer_list_owner"] = found
    return found
