"""Head ablations: what replaces a head's output `hook_z` ([batch, pos, head, d_head]).

With grouped-query attention one query head is ablated, not its whole KV group. Modes:
- mean (the default): the head's mean z over every position of the trace;
- zero: z = 0;
- resample: the head's z at the same position on another text (`resample_text`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from interp import hooks as H
from interp import inputs
from interp.errors import InvalidSettingError
from interp.heads import head_label
from interp.models.model import Model
from interp.trace import Trace

AblationMode = Literal["mean", "zero", "resample"]
MODES: tuple[AblationMode, ...] = ("mean", "zero", "resample")
MAX_DIRNAME_HEADS = 80  # characters of head labels in a directory name

DEFAULT_RESAMPLE_TEXT = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion about roads, schools and the new library, the members agreed to postpone "
    "the final vote until the spring, when more figures would be available."
)


@dataclass
class Ablation:
    """A set of heads and what replaces their output (`values[layer]`: [pos or 1, head, d_head],
    only the listed heads' entries are used)."""

    heads: list[tuple[int, int]]
    mode: AblationMode
    values: dict[int, Tensor]
    source: str  # a sentence saying where the replacement values come from

    @property
    def label(self) -> str:
        return heads_label(self.heads)

    @property
    def dirname(self) -> str:
        return ablation_dirname(self.heads, self.mode)

    def hooks(self, device: torch.device) -> list[tuple[str, Callable]]:
        """Fresh forward hooks on `hook_z` (each tracks absolute positions for the KV cache)."""
        by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            by_layer.setdefault(layer, []).append(head)
        return [
            (H.z(layer), _replace_z_hook(heads, self.values[layer].to(device)))
            for layer, heads in sorted(by_layer.items())
        ]


def heads_label(heads: Sequence[tuple[int, int]]) -> str:
    return ",".join(head_label(layer, head) for layer, head in heads) or "none"


def ablation_dirname(heads: Sequence[tuple[int, int]], mode: str) -> str:
    """The directory name of an ablation under TRACE_DIR/ablations/: the heads themselves, or
    for a long list their count and a hash of it (effect.json lists them all)."""
    label = heads_label(heads)
    if len(label) > MAX_DIRNAME_HEADS:
        digest = hashlib.sha256(label.encode()).hexdigest()[:12]
        return f"{len(heads)}-heads-{digest}-{mode}"
    return f"{label.replace(',', '_')}-{mode}"


def _replace_z_hook(heads: list[int], value: Tensor) -> Callable:
    """Replace z[:, :, heads] by `value` ([1 or source_pos, head, d_head]) at each position.

    The hook counts the positions it has seen, so that with a KV cache (one new position a
    call) a position-dependent value is read at the right absolute position.
    """
    seen = [0]
    index = torch.tensor(heads, device=value.device)

    def hook(z: Tensor, hook) -> Tensor:
        start, n = seen[0], z.shape[1]
        seen[0] += n
        if value.shape[0] == 1:
            rows = value
        else:
            if start + n > value.shape[0]:
                raise InvalidSettingError(
                    f"the resample source has {value.shape[0]} positions; position "
                    f"{start + n - 1} was asked for"
                )
            rows = value[start : start + n]
        z = z.clone()
        z[:, :, index] = rows[:, index].to(z.dtype).expand(z.shape[0], n, len(heads), -1)
        return z

    return hook


def make_ablation(
    model: Model,
    trace: Trace,
    heads: Sequence[tuple[int, int]],
    mode: AblationMode = "mean",
    *,
    resample_text: str | None = None,
    min_positions: int | None = None,
) -> Ablation:
    """Build the replacement values for `heads` (validated (layer, head) pairs) in `mode`."""
    trace.bind(model)
    if mode not in MODES:
        raise InvalidSettingError(f"unknown ablation mode {mode!r}; choose one of {MODES}")
    heads = sorted(set(heads))
    for layer, head in heads:
        if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
            raise InvalidSettingError(
                f"head L{layer}H{head} is out of range; valid: L0..L{model.n_layers - 1} "
                f"and H0..H{model.n_heads - 1}"
            )
    layers = sorted({layer for layer, _ in heads})
    if mode == "mean":
        trace.require_hooks([H.z(layer) for layer in layers], "mean ablation")
        values = {
            layer: trace.activations[H.z(layer)].float().mean(0, keepdim=True) for layer in layers
        }
        source = f"the head's mean output over the {trace.n_positions} positions of the trace"
    elif mode == "zero":
        d_head = int(model.cfg.d_head)
        values = {layer: torch.zeros(1, model.n_heads, d_head) for layer in layers}
        source = "zeros"
    else:
        text = (
            DEFAULT_RESAMPLE_TEXT
            if resample_text is None
            else inputs.text(resample_text, "the resample text")
        )
        needed = max(
            min_positions or 0, trace.n_positions, trace.prompt_len + trace.settings.max_new_tokens
        )
        values = _resample_values(model, text, layers, needed)
        source = f"the head's output at the same position on the text {text[:60]!r}"
    return Ablation(heads=heads, mode=mode, values=values, source=source)


def _resample_values(model: Model, text: str, layers: list[int], needed: int) -> dict[int, Tensor]:
    ids = model.encode(text)
    if not ids:
        raise InvalidSettingError("the resample text tokenises to no tokens")
    body = model.encode(text, add_special_tokens=False) or ids
    while len(ids) < needed:  # repeat the text until it covers every position
        ids += body
    ids = ids[:needed]
    names = [H.z(layer) for layer in layers]
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(
            torch.tensor([ids], device=model.device), names_filter=lambda n: n in set(names)
        )
    return {layer: cache[H.z(layer)][0].float().cpu() for layer in layers}
