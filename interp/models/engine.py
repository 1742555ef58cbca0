"""What runs the forwards: the TransformerLens bridge, or the Hugging Face modules it wraps,
run directly.

`BridgeEngine` runs every forward through the bridge with TransformerLens hooks: any hook name,
any architecture TransformerLens supports, at the bridge's per-module Python cost.

`DirectEngine` runs the same parameter tensors (shared, not copied) through a plain Hugging Face
module tree built beside the bridge, with PyTorch hooks placed where TransformerLens defines
each hook point (`interp.models.surgery`), so a step costs what Hugging Face's own step costs. It
covers the layouts `interp.models.surgery` knows and the hook names it places; anything else runs
through the bridge. The load-time guard (`interp.models.guards`) compares it with the bridge
and sets it aside on a mismatch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor, nn

from interp.errors import InvalidSettingError
from interp.models import surgery
from interp.models.kernels import UnembeddingLinear

if TYPE_CHECKING:
    from interp.models.model import Model

HookFn = Callable[..., Tensor | None]
EngineName = Literal["auto", "direct", "bridge"]
ENGINES: tuple[EngineName, ...] = ("auto", "direct", "bridge")


class BridgeEngine:
    """Forwards through the TransformerLens bridge; hooks are TransformerLens hooks."""

    name = "bridge"

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge

    @contextlib.contextmanager
    def hooked(self, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        with self.bridge.hooks(fwd_hooks=list(hooks)):
            yield

    def forward(
        self, ids: Tensor, past: Any | None, mask: Tensor | None = None, positions: Any = None
    ) -> tuple[Tensor, Any]:
        """Logits of each row's last position ([row, vocab]) and the updated KV cache;
        left-padded rows take their attention `mask` and `positions`, as for the direct
        engine (the bridge hands both to the Hugging Face model)."""
        padding = {} if mask is None else {"attention_mask": mask, "position_ids": positions}
        if past is None:
            logits, past = self.bridge(
                ids, return_type="logits_and_cache", use_cache=True, **padding
            )
        else:
            logits, past = self.bridge(
                ids, past_key_values=past, return_type="logits_and_cache", **padding
            )
        return logits[:, -1], past

    def logits(self, ids: Tensor) -> Tensor:
        """Logits of every position ([batch, pos, vocab]) of unpadded sequences, without a KV
        cache."""
        return self.bridge(ids, return_type="logits")


class _HookPointInfo:
    """What a TransformerLens hook function may read from its `hook` argument."""

    def __init__(self, name: str) -> None:
        self.name = name

    def layer(self) -> int:
        return int(self.name.split(".")[1])


class DirectEngine:
    """Forwards through the plain Hugging Face modules, sharing the bridge's parameters."""

    name = "direct"

    def __init__(
        self, hf: nn.Module, layout: surgery.Layout, n_heads: int, norm_eps: float
    ) -> None:
        self.hf = hf
        self.layout = layout
        self.n_heads = n_heads
        self.norm_eps = norm_eps

    @classmethod
    def for_bridge(cls, bridge: Any) -> DirectEngine | None:
        """A direct engine over the bridge's own parameter tensors, or None for a layout
        `interp.models.surgery` does not know."""
        wrapped = getattr(bridge, "original_model", None)
        if wrapped is None:
            return None
        layout = surgery.layout_for(wrapped.config)
        if layout is None:
            return None
        hf = surgery.plain_copy(wrapped)
        if hf is None:
            return None
        eps = surgery.final_norm_eps(hf, layout)
        if eps is None:
            return None
        # the unembedding is the one product where oneDNN beats the default kernel
        hf.set_output_embeddings(UnembeddingLinear.wrapping(hf.get_output_embeddings()))
        return cls(hf, layout, int(bridge.cfg.n_heads), eps)

    def site(self, name: str) -> surgery.ModuleSite | None:
        """Where the hook point `name` sits, or None if this engine cannot place it."""
        return surgery.site(self.hf, self.layout, self.n_heads, self.norm_eps, name)

    def serves(self, record: Sequence[str], edit: Sequence[str]) -> str | None:
        """None when every recorded name has a site and every edited one an editable site;
        else the first hook name it cannot serve."""
        for name in record:
            if self.site(name) is None:
                return name
        for name in edit:
            s = self.site(name)
            if s is None or s.from_tl is None:
                return name
        return None

    @contextlib.contextmanager
    def hooked(self, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        """TransformerLens-style `(name, fn(tensor, hook))` pairs as PyTorch hooks, in order."""
        handles = []
        try:
            for name, fn in hooks:
                s = self.site(name)
                if s is None:
                    raise KeyError(name)  # callers check `serves` first
                handles.append(_register(s, fn, _HookPointInfo(name)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward(
        self,
        ids: Tensor,
        past: Any | None,
        mask: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Any]:
        """Logits of each row's last position ([row, vocab]) and the updated KV cache;
        left-padded rows take their attention `mask` (every position so far) and their own
        `positions` (of the new tokens)."""
        out = self.hf(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1], out.past_key_values

    def logits(self, ids: Tensor) -> Tensor:
        """Logits of every position ([batch, pos, vocab]) of unpadded sequences, without a KV
        cache."""
        return self.hf(input_ids=ids, use_cache=False).logits

    def from_layer(self, resid: Tensor, layer: int, keep: int | None = None) -> Tensor | None:
        """Logits of the blocks from `layer` on, given the residual entering it (the last
        `keep` positions); None where this layout cannot start there."""
        return surgery.plain_from_layer(self.hf, self.layout, resid, layer, keep)


def choose(
    model: Model, record: Sequence[str], edit: Sequence[str], engine: EngineName | str
) -> BridgeEngine | DirectEngine:
    """The engine for a run: "auto" (direct where it serves the hooks, else the bridge),
    "direct" (an error where it cannot) or "bridge"."""
    if engine not in ENGINES:
        raise InvalidSettingError(f"engine must be 'auto', 'direct' or 'bridge', got {engine!r}")
    bridge = model.bridge
    if engine == "bridge":
        return BridgeEngine(bridge)
    direct, reason = direct_engine(model)
    missing = None if direct is None else direct.serves(record, edit)
    if direct is not None and missing is None:
        return direct
    if engine == "direct":
        why = reason if direct is None else f"it cannot place or edit the hook {missing!r}"
        raise InvalidSettingError(f"engine 'direct' is not available for this run: {why}")
    return BridgeEngine(bridge)


def direct_engine(model: Model) -> tuple[DirectEngine | None, str]:
    """The model's direct engine (None where there is none) and, if None, why: the one the
    loader handed it, or built here for a model whose guards did not run or that has moved
    to another device since (moving replaces its buffers)."""
    device = model.device
    if model.direct is None or model.direct[0] != device:
        built = DirectEngine.for_bridge(model.bridge)
        model.direct = (device, built, "" if built is not None else no_layout(model.bridge))
    return model.direct[1], model.direct[2]


def no_layout(bridge: Any) -> str:
    """Why a bridge has no direct engine when `interp.models.surgery` knows no layout for it."""
    return f"interp knows no direct layout for {type(bridge.original_model).__name__}"


def _register(site: surgery.ModuleSite, fn: HookFn, info: _HookPointInfo) -> Any:
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
