"""What each layer writes into the residual stream, derived exactly from recorded hooks when
they were not recorded themselves: each head's write `z_h @ W_O[h]` (through a frozen
post-attention norm where the model has one), the attention output (their sum plus the
attention bias) and the MLP output (`resid_pre[L+1] - resid_pre[L] -
attn_out[L]`, the last layer's against `resid_post`). The direct logit attribution, the
interventions' means and interp's TransformerLens cache all read them from here."""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import HookError
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.site import spelled
from interp.models.surgery import attn_post_norm

Activations = dict[str, Tensor]  # hook name -> [pos, ...] (or [batch, pos, ...])


def w_o(model: Model, layer: int) -> Float[Tensor, "head d_head d_model"]:
    return model.bridge.blocks[layer].attn.W_O.detach().float().cpu()


def b_o(model: Model, layer: int) -> Float[Tensor, " d_model"]:
    value = getattr(model.bridge.blocks[layer].attn, "b_O", None)
    return torch.zeros(model.d_model) if value is None else value.detach().float().cpu()


def head_outputs(model: Model, z: Tensor, layer: int) -> Tensor:
    """Each head's output `z_h @ W_O[h]`: `[..., head, d_head] -> [..., head, d]`."""
    return einops.einsum(z.float(), w_o(model, layer), "... head dh, head dh d -> ... head d")


def head_writes(
    model: Model, z: Float[Tensor, "... head d_head"], layer: int
) -> tuple[Float[Tensor, "... head d_model"], Float[Tensor, "... d_model"]]:
    """What each head and the attention bias write into the residual stream; they sum to the
    attention output. Where a norm follows the summed heads (Gemma's post-attention RMSNorm),
    each part is multiplied by that norm's factor on the sum: its scale frozen, as the final
    norm's is in direct logit attribution."""
    heads = head_outputs(model, z, layer)
    bias = b_o(model, layer).expand(*heads.shape[:-2], heads.shape[-1])
    post = attn_post_norm(model, layer)
    if post is None:
        return heads, bias
    factor = post.factor(heads.sum(-2) + bias)
    return heads * factor.unsqueeze(-2), bias * factor


def attn_out(model: Model, acts: Activations, layer: int) -> Tensor:
    """The attention output of `layer` (`hook_attn_out`, its write into the residual
    stream): recorded, or from `hook_z`."""
    name = H.attn_out(layer)
    if name in acts:
        return acts[name].float()
    _need(acts, [H.z(layer)], name)
    heads, bias = head_writes(model, acts[H.z(layer)], layer)
    return heads.sum(-2) + bias


def resid_after(model: Model, acts: Activations, layer: int) -> Tensor:
    """The residual stream leaving block `layer`."""
    name = H.resid_pre(layer + 1) if layer + 1 < model.n_layers else H.resid_post(layer)
    _need(acts, [name], f"the output of block {layer}")
    return acts[name].float()


def mlp_out(model: Model, acts: Activations, layer: int) -> Tensor:
    """The MLP output of `layer` (`hook_mlp_out`): recorded, or from the residual stream
    around the block minus its attention output."""
    name = H.mlp_out(layer)
    if name in acts:
        return acts[name].float()
    _need(acts, [H.resid_pre(layer)], name)
    return (
        resid_after(model, acts, layer)
        - acts[H.resid_pre(layer)].float()
        - attn_out(model, acts, layer)
    )


def _need(acts: Activations, names: list[str], what: str) -> None:
    absent = [spelled(n) for n in names if n not in acts]
    if absent:
        raise HookError(
            f"{spelled(what)} is derived from {', '.join(absent)}, which this trace did not "
            "record; "
            "record it again with the default hooks"
        )
