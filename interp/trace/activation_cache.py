"""TransformerLens's `ActivationCache` over interp's recorded activations, made right.

TransformerLens's cache methods assume a model loaded with its norms folded into the next
weights (`fold_ln`). interp's bridge is not folded, so left alone `logit_attrs` and
`apply_ln_to_stack` leave out the final norm's weight (a logit difference of 6.12 comes out as
4.88), and `decompose_resid` asks for hooks interp does not record. Here:
- `apply_ln_to_stack` for the unembedding multiplies by the final norm's weight, as a folded
  W_U would (its bias, and b_U, stay out of a stack's attributions, as when folded); every
  method built on it (`logit_attrs`, `decompose_resid(apply_ln=True)`, ...) follows;
- before a block's norm (layer < n_layers) it refuses: the block norms' scales are not
  recorded and their weights are not folded;
- the components TransformerLens reads are given, derived exactly (`interp.trace.components`):
  `hook_attn_out`, `hook_mlp_out`, `hook_resid_mid`, `hook_resid_post` of every layer, and
  `hook_embed` (with `hook_pos_embed` for learned positions);
- `get_full_resid_decomposition(expand_neurons=True)` needs each MLP's neurons: it refuses,
  naming the hook to record, unless they were.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformer_lens import ActivationCache

from interp.errors import HookError, InvalidSettingError
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.surgery import attn_post_norm, norm_gain
from interp.trace import components


class InterpCache(ActivationCache):
    """An `ActivationCache` whose norm-dependent methods are right on an unfolded bridge (see
    the module's docstring). `token_ids` ([batch, pos]) give the embeddings' split."""

    def __init__(self, cache_dict: dict[str, Tensor], model: Model, token_ids: Tensor) -> None:
        self.interp_model = model
        super().__init__(_completed(cache_dict, model, token_ids), model.bridge, True)

    def apply_ln_to_stack(
        self,
        residual_stack: Tensor,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: Any = None,
        batch_slice: Any = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> Tensor:
        n_layers = self.interp_model.n_layers
        final = layer is None or layer in (-1, n_layers)
        if not final:
            raise InvalidSettingError(
                f"apply_ln before block {layer}'s norm is not available on interp's cache: the "
                "block norms' scales are not recorded and their weights are not folded; the "
                "final norm (layer=None) is"
            )
        out = super().apply_ln_to_stack(
            residual_stack, layer, mlp_input, pos_slice, batch_slice, has_batch_dim, recompute_ln
        )
        if recompute_ln:
            return out  # the real final norm module ran, weight included
        weight = norm_gain(self.interp_model, self.interp_model.bridge.ln_final)
        return out if weight is None else out * weight.to(out.device, out.dtype)

    def _ensure_head_results(self) -> bool:
        """Per-head results as each head's write into the residual stream: with a
        post-attention norm (Gemma 3) through that norm, its scale frozen
        (`components.head_writes`); TransformerLens's `z @ W_O` would leave the norm out."""
        model = self.interp_model
        if attn_post_norm(model, 0) is None:
            return bool(super()._ensure_head_results())
        all_cached = True
        for layer in range(model.n_layers):
            if H.result(layer) not in self.cache_dict:
                all_cached = False
                z = self.cache_dict[H.z(layer)]
                self.cache_dict[H.result(layer)] = components.head_writes(model, z, layer)[0]
        return all_cached

    def get_full_resid_decomposition(self, *args: Any, **kwargs: Any) -> Any:
        expand = kwargs.get("expand_neurons", args[2] if len(args) > 2 else True)
        neurons = H.mlp_post(0)
        if expand and neurons not in self.cache_dict:
            raise InvalidSettingError(
                "get_full_resid_decomposition(expand_neurons=True) needs each MLP's neurons: "
                f"record each layer's neurons (e.g. {neurons}) with hooks=..., or pass "
                "expand_neurons=False"
            )
        return super().get_full_resid_decomposition(*args, **kwargs)


def _completed(cache: dict[str, Tensor], model: Model, token_ids: Tensor) -> dict[str, Tensor]:
    """The recorded hooks plus the components TransformerLens reads, derived exactly."""
    out = dict(cache)
    n = model.n_layers
    if H.resid_pre(0) not in cache:
        return out  # not the default hooks: TransformerLens's own KeyErrors name what is missing
    for layer in range(n):
        try:
            attn = components.attn_out(model, cache, layer)
            after = components.resid_after(model, cache, layer)
        except HookError:  # a hook it needs was not recorded: leave the rest to TransformerLens
            break
        out.setdefault(H.attn_out(layer), attn)
        mid = cache[H.resid_pre(layer)].float() + attn
        out.setdefault(H.resid_mid(layer), mid)
        out.setdefault(H.mlp_out(layer), after - mid)
        out.setdefault(H.resid_post(layer), after)
    first = cache[H.resid_pre(0)].float()
    pos_embed = getattr(model.bridge, "pos_embed", None)
    if pos_embed is not None and hasattr(pos_embed, "W_pos"):
        embed = model.bridge.W_E.detach().float().cpu()[token_ids.cpu()].to(first.device)
        out.setdefault(H.EMBED, embed)
        out.setdefault(H.POS_EMBED, first - embed)
    else:
        out.setdefault(H.EMBED, first)  # rotary positions: the first residual is the embedding
    return out


def pad_scale(stacked: Tensor, mask: Tensor) -> Tensor:
    """A padded batch's norm scale with 1 after each row's end (not 0: no division by zero)."""
    return torch.where(mask[..., None].to(stacked.device), stacked, torch.ones_like(stacked))
