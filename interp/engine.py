"""What runs the recording loop's forwards: the TransformerLens bridge, or the Hugging Face
modules it wraps, run directly.

`BridgeEngine` runs every forward through the bridge with TransformerLens hooks: any hook name,
any architecture TransformerLens supports. It pays the bridge's per-module Python cost, about
45 ms of a ~140 ms decoding step on SmolLM2 with 2 CPU threads (TransformerLens 4.3 inspects
signatures, checks accelerate offloading and re-derives norms on every call).

`DirectEngine` runs the same parameter tensors (shared, not copied) through a plain Hugging Face
module tree built beside the bridge, with PyTorch hooks placed where TransformerLens defines
each hook point, so a decoding step costs what Hugging Face's own step costs. It covers the
layouts it knows (`_LAYOUTS`: Llama-style and GPT-2-style models) and the hook names listed
there; anything else, including a user hook that edits an activation it cannot edit, runs
through the bridge. Tests compare every hook it records with one full-sequence
`run_with_cache` on both tiny layouts and on the embedded model.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from interp import hooks as H
from interp.errors import InvalidSettingError
from interp.kernels import UnembeddingLinear

HookFn = Callable[..., Tensor | None]


class BridgeEngine:
    """Forwards through the TransformerLens bridge; hooks are TransformerLens hooks."""

    name = "bridge"

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge

    @contextlib.contextmanager
    def hooked(self, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        with self.bridge.hooks(fwd_hooks=list(hooks)):
            yield

    def forward(self, ids: Tensor, past: Any | None) -> tuple[Tensor, Any]:
        """Logits of the last position ([vocab]) and the updated KV cache."""
        if past is None:
            logits, past = self.bridge(ids, return_type="logits_and_cache", use_cache=True)
        else:
            logits, past = self.bridge(ids, past_key_values=past, return_type="logits_and_cache")
        return logits[0, -1], past

    def logits(self, ids: Tensor) -> Tensor:
        """Logits of every position ([pos, vocab]) of one sequence, without a KV cache."""
        return self.bridge(ids, return_type="logits")[0]


@dataclass(frozen=True)
class _Site:
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


@dataclass(frozen=True)
class _Layout:
    """Attribute paths of one family of Hugging Face causal LMs."""

    model_types: tuple[str, ...]
    layers: str  # the list of decoder blocks
    attn: str  # in a block: the attention module, returning (output, weights) when eager
    out_proj: str  # in the attention module: the output projection (input: heads merged)
    mlp: str  # in a block
    final_norm: str
    rms_norm: bool


_LAYOUTS = (
    _Layout(("llama",), "model.layers", "self_attn", "o_proj", "mlp", "model.norm", True),
    _Layout(("gpt2",), "transformer.h", "attn", "c_proj", "mlp", "transformer.ln_f", False),
)

_LAYER_HOOK = re.compile(
    r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_attn_out|hook_mlp_out|"
    r"attn\.hook_pattern|attn\.hook_z)$"
)


class _HookPointInfo:
    """What a TransformerLens hook function may read from its `hook` argument."""

    def __init__(self, name: str) -> None:
        self.name = name

    def layer(self) -> int:
        return int(self.name.split(".")[1])


class DirectEngine:
    """Forwards through the plain Hugging Face modules, sharing the bridge's parameters."""

    name = "direct"

    def __init__(self, hf: nn.Module, layout: _Layout, n_heads: int, norm_eps: float) -> None:
        self.hf = hf
        self.layout = layout
        self.n_heads = n_heads
        self.norm_eps = norm_eps
        self._layers = _get(hf, layout.layers)

    # -- construction ------------------------------------------------------------------

    @classmethod
    def for_bridge(cls, bridge: Any) -> DirectEngine | None:
        """A direct engine over the bridge's own parameter tensors, or None for a layout
        this module does not know."""
        wrapped = getattr(bridge, "original_model", None)
        if wrapped is None:
            return None
        config = wrapped.config
        layout = next((lo for lo in _LAYOUTS if config.model_type in lo.model_types), None)
        if layout is None:
            return None
        hf = _plain_copy(wrapped)
        if hf is None:
            return None
        norm = _get(hf, layout.final_norm)
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        if eps is None:
            return None
        return cls(hf, layout, int(bridge.cfg.n_heads), float(eps))

    # -- which hooks it can serve ------------------------------------------------------

    def site(self, name: str) -> _Site | None:
        """The module and tensor behind a TransformerLens hook name, or None if unknown."""
        lo = self.layout
        if name == H.FINAL_SCALE:
            return _Site(
                _get(self.hf, lo.final_norm),
                pre=True,
                to_tl=self._scale,
                from_tl=None,
            )
        match = _LAYER_HOOK.match(name)
        if match is None or int(match[1]) >= len(self._layers):
            return None
        block = self._layers[int(match[1])]
        attn = _get(block, lo.attn)
        kind = match[2]
        if kind == "hook_resid_pre":
            return _Site(block, pre=True)
        if kind == "hook_resid_post":
            return _Site(block, pre=False)
        if kind == "hook_mlp_out":
            return _Site(_get(block, lo.mlp), pre=False)
        if kind == "hook_attn_out":
            return _Site(_get(attn, lo.out_proj), pre=False)
        if kind == "attn.hook_pattern":
            return _Site(attn, pre=False, index=1, from_tl=None)
        # attn.hook_z: the output projection's input, heads split back out
        n = self.n_heads
        return _Site(
            _get(attn, lo.out_proj),
            pre=True,
            to_tl=lambda t: t.view(*t.shape[:-1], n, t.shape[-1] // n),
            from_tl=lambda new, old: new.reshape(old.shape),
        )

    def serves(self, record: Sequence[str], edit: Sequence[str]) -> bool:
        """True when every recorded name has a site and every edited one an editable site."""
        if any(self.site(n) is None for n in record):
            return False
        return all((s := self.site(n)) is not None and s.from_tl is not None for n in edit)

    def _scale(self, x: Tensor) -> Tensor:
        # TransformerLens's hook_scale: sqrt(mean(x^2) + eps) in float32, x centred for
        # LayerNorm (transformer_lens/model_bridge/generalized_components/normalization.py)
        x = x.float()
        if not self.layout.rms_norm:
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1, keepdim=True) + self.norm_eps).sqrt()

    # -- running -----------------------------------------------------------------------

    @contextlib.contextmanager
    def hooked(self, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        """TransformerLens-style `(name, fn(tensor, hook))` pairs as PyTorch hooks, in order."""
        handles = []
        try:
            for name, fn in hooks:
                site = self.site(name)
                if site is None:
                    raise KeyError(name)  # callers check `serves` first
                handles.append(_register(site, fn, _HookPointInfo(name)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward(self, ids: Tensor, past: Any | None) -> tuple[Tensor, Any]:
        """Logits of the last position ([vocab]) and the updated KV cache."""
        out = self.hf(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1], out.past_key_values

    def logits(self, ids: Tensor) -> Tensor:
        """Logits of every position ([pos, vocab]) of one sequence, without a KV cache."""
        return self.hf(input_ids=ids, use_cache=False).logits[0]


def choose(
    bridge: Any, record: Sequence[str], edit: Sequence[str], engine: str
) -> BridgeEngine | DirectEngine:
    """The engine for a run: `engine` is "auto" (direct when it serves the hooks), "direct"
    (the same, for callers that insist; falls back when it cannot) or "bridge"."""
    if engine not in ("auto", "direct", "bridge"):
        raise InvalidSettingError(f"engine must be 'auto', 'direct' or 'bridge', got {engine!r}")
    if engine != "bridge":
        direct = direct_engine(bridge)
        if direct is not None and direct.serves(record, edit):
            return direct
    return BridgeEngine(bridge)


def direct_engine(bridge: Any) -> DirectEngine | None:
    """The bridge's direct engine, built once per device and kept on the bridge (moving the
    bridge replaces its buffers, so an engine built on another device is rebuilt)."""
    device = next(bridge.parameters()).device
    cached = getattr(bridge, "_interp_direct_engine", None)
    if cached is None or cached[0] != device:
        cached = (device, DirectEngine.for_bridge(bridge))
        object.__setattr__(bridge, "_interp_direct_engine", cached)
    return cached[1]


def _register(site: _Site, fn: HookFn, info: _HookPointInfo) -> Any:
    if site.pre:

        def pre_hook(module, args, kwargs):
            if args:
                old, rest, key = args[0], args[1:], None
            else:
                key = "hidden_states"
                old, rest = kwargs[key], ()
            new = fn(site.to_tl(old), hook=info)
            if new is None or site.from_tl is None:
                return None
            new = site.from_tl(new, old)
            if key is None:
                return (new, *rest), kwargs
            return args, {**kwargs, key: new}

        return site.module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def post_hook(module, args, output):
        old = output if site.index is None else output[site.index]
        new = fn(site.to_tl(old), hook=info)
        if new is None or site.from_tl is None:
            return None
        new = site.from_tl(new, old)
        if site.index is None:
            return new
        return (*output[: site.index], new, *output[site.index + 1 :])

    return site.module.register_forward_hook(post_hook)


def _plain_copy(wrapped: nn.Module) -> nn.Module | None:
    """A Hugging Face model of the wrapped model's class whose parameters and buffers are the
    wrapped model's own tensors (the bridge inserts `_original_component` levels)."""
    config = wrapped.config.__class__.from_dict(wrapped.config.to_dict())
    config._attn_implementation = "eager"  # returns attention weights: hook_pattern
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
    # the unembedding is the one product where oneDNN beats the default kernel here
    hf.set_output_embeddings(UnembeddingLinear.wrapping(hf.get_output_embeddings()))
    hf.eval()
    return hf


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj
