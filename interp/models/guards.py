"""Load-time guards: a model is refused, or an engine set aside, before it can record a wrong
activation.

- KV cache: one KV-cached bridge step against the full forward (transformers 5.24.0 broke the
  bridge's cached forward; the model is then refused).
- The direct engine (`interp.models.engine`): its recorded hooks and logits against the bridge's on
  the same short input. A transformers or TransformerLens change in a known layout would
  otherwise record wrong activations silently; on a mismatch the engine is not used (a
  warning names the versions) and every run goes through the bridge.

Both read one bridge forward over two tokens: the KV check cuts that forward's own cache
back by one token to get the prefix's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from interp.errors import KVCacheMismatchError
from interp.models import hooks as H
from interp.models.engine import DirectEngine, no_layout
from interp.models.provenance import library_versions_line

if TYPE_CHECKING:
    from interp.models.model import Model

log = logging.getLogger(__name__)

PROBE_TEXT = "The quick brown fox jumps over the lazy dog"


def check_model(model: Model) -> tuple[DirectEngine | None, str]:
    """Run every load-time guard on `model` (see the module's docstring): the direct engine
    to use (None where it is set aside) and why it is set aside."""
    bridge = model.bridge
    ids = _probe_ids(model)
    direct = DirectEngine.for_bridge(bridge)
    names = _engine_hooks(model, direct)
    seen: dict[str, Tensor] = {}
    with torch.no_grad(), bridge.hooks(fwd_hooks=[(n, _keep(seen, n)) for n in names]):
        full, pkv = bridge(ids, return_type="logits_and_cache", use_cache=True)
    check_kv_cache(model, _full=(ids, full, pkv))
    problem = None if direct is None else direct_engine_mismatch(direct, ids, full, seen)
    if problem is not None:
        log.warning(
            "the direct engine disagrees with the TransformerLens bridge on %s (%s); every run "
            "of this model goes through the bridge. Library versions: %s",
            model.name,
            problem,
            library_versions_line(),
        )
    if direct is None:
        return None, no_layout(bridge)
    return (direct, "") if problem is None else (None, problem)


def check_kv_cache(
    model: Model,
    *,
    atol: float = 1e-3,
    rtol: float = 1e-4,
    _full: tuple[Tensor, Tensor, Any] | None = None,
) -> float:
    """Run one KV-cached step against the full forward; refuse the model if they disagree.

    Two tokens are enough to see transformers 5.24.0's breakage and keep the check cheap.
    The full forward's own KV cache, cut back by one token, is the prefix's cache; a cache
    that cannot be cut back (transformers refuses for some layer kinds, e.g. linear-attention
    states that keep no past) is rebuilt from a forward over the prefix. Returns the largest
    absolute difference.
    """
    bridge = model.bridge
    with torch.no_grad():
        if _full is None:
            ids = _probe_ids(model)
            full, pkv = bridge(ids, return_type="logits_and_cache", use_cache=True)
        else:
            ids, full, pkv = _full
        try:
            pkv.crop(-1)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError):
            _, pkv = bridge(ids[:, :-1], return_type="logits_and_cache", use_cache=True)
        step, _ = bridge(ids[:, -1:], past_key_values=pkv, return_type="logits_and_cache")
    last = full[0, -1]
    diff = float((last - step[0, -1]).abs().max())
    if not _close(diff, last, atol, rtol):
        raise KVCacheMismatchError(
            f"the KV-cached forward of {model.name} disagrees with the full forward "
            f"(max |logit difference| {diff:.3g}); recorded traces would be wrong. "
            f"Library versions: {library_versions_line()}. transformers 5.24.0 is known to "
            "break TransformerLens's cached forward: install transformers<5.24."
        )
    return diff


def direct_engine_mismatch(
    direct: DirectEngine,
    ids: Tensor,
    bridge_logits: Tensor,
    bridge_acts: dict[str, Tensor],
    *,
    atol: float = 1e-3,
    rtol: float = 1e-4,
) -> str | None:
    """What the direct engine gets wrong against the bridge's own forward over `ids` (the
    first disagreeing hook, or the logits), or None when it agrees everywhere."""
    seen: dict[str, Tensor] = {}
    with torch.no_grad(), direct.hooked([(n, _keep(seen, n)) for n in bridge_acts]):
        logits = direct.logits(ids)[0]
    for name, want in bridge_acts.items():
        got = seen.get(name)
        if got is None or got.shape != want.shape:
            shape = None if got is None else tuple(got.shape)
            return f"{name} is recorded with shape {shape}, the bridge's is {tuple(want.shape)}"
        diff = float((got.float() - want.float()).abs().max())
        if not _close(diff, want, atol, rtol):
            return f"{name} differs by up to {diff:.3g}"
    diff = float((logits.float() - bridge_logits[0].float()).abs().max())
    if not _close(diff, bridge_logits, atol, rtol):
        return f"logits differ by up to {diff:.3g}"
    return None


def _probe_ids(model: Model) -> Tensor:
    return torch.tensor([model.encode(PROBE_TEXT)[:2]], device=model.device)


def _engine_hooks(model: Model, direct: DirectEngine | None) -> list[str]:
    """Every hook the direct engine serves and the bridge has."""
    if direct is None:
        return []
    names = [H.FINAL_SCALE]
    for layer in range(model.n_layers):
        names += [H.resid_pre(layer), H.resid_post(layer), H.attn_out(layer)]
        names += [H.mlp_out(layer), H.pattern(layer), H.z(layer)]
    available = model.bridge.hook_dict
    return [n for n in names if n in available and direct.site(n) is not None]


def _keep(store: dict[str, Tensor], name: str) -> Any:
    """A hook that keeps its tensor under `name` (the bridge reports aliases' own names)."""

    def hook(tensor: Tensor, hook: Any) -> None:
        store[name] = (tensor[0] if isinstance(tensor, tuple) else tensor).detach().clone()

    return hook


def _close(diff: float, reference: Tensor, atol: float, rtol: float) -> bool:
    return diff <= atol + rtol * float(reference.abs().max())
