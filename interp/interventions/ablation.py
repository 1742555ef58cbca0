"""Interventions: what replaces the value at a site (`interp.interventions.sites`: a head's
`hook_z`, a block's `hook_resid_pre`, a layer's `hook_attn_out` or `hook_mlp_out`), at all
positions or named ones. Ablation, the sweep, patching and regeneration all use this one
mechanism: hooks that swap the value in, tracking absolute positions under the KV cache.

Sources of the replacement (the `mode`):
- mean (the default): the site's mean over every position of the trace;
- zero: 0;
- reference: the site's mean over every position of every row of a reference `TraceSet`
  (the ABC-dataset style of the IOI work);
- resample: the site's value at the same position in another run: a text (`resample_text`) or
  a recorded trace (`source=`, of at least the trace's length: a patch).
With grouped-query attention one query head is replaced, not its whole KV group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from interp import inputs
from interp.errors import InvalidSettingError
from interp.interventions import sites
from interp.interventions.sites import Site, Target
from interp.models.model import Model
from interp.trace import Trace
from interp.traceset import TraceSet

AblationMode = Literal["mean", "zero", "resample", "reference"]
MODES: tuple[AblationMode, ...] = ("mean", "zero", "resample", "reference")
TRACE_MODES: tuple[AblationMode, ...] = ("mean", "zero", "resample")  # need only the trace
MAX_DIRNAME_HEADS = 80  # characters of head labels in a directory name

DEFAULT_RESAMPLE_TEXT = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion about roads, schools and the new library, the members agreed to postpone "
    "the final vote until the spring, when more figures would be available."
)


@dataclass
class Intervention:
    """Targets at a site and what replaces their value (`values[layer]`: [pos or 1, head,
    d_head] for heads, only the listed heads' entries used; [pos or 1, d_model] for a layer's
    site), at `positions` (absolute; None: every position)."""

    targets: list[Target]
    mode: AblationMode
    values: dict[int, Tensor]
    source: str  # a sentence saying where the replacement values come from
    site: Site = "heads"
    positions: list[int] | None = None

    @property
    def heads(self) -> list[tuple[int, int]]:
        return [(layer, head) for layer, head in self.targets if head is not None]

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.targets})

    @property
    def label(self) -> str:
        return sites.targets_label(self.site, self.targets)

    @property
    def dirname(self) -> str:
        return ablation_dirname(self.targets, self.mode, self.site)

    def only(self, targets: Sequence[Target]) -> Intervention:
        """The same intervention on fewer targets (their values unchanged)."""
        return Intervention(
            list(targets), self.mode, self.values, self.source, self.site, self.positions
        )

    def heads_at(self, layer: int) -> list[int] | None:
        """The heads replaced in `layer` (None for a layer's site: all of its value)."""
        return [h for l_, h in self.heads if l_ == layer] if self.site == "heads" else None

    def hooks(self, device: torch.device) -> list[tuple[str, Callable]]:
        """Fresh forward hooks at the site (each tracks absolute positions for the KV cache)."""
        out = []
        for layer in self.layers:
            hook = _replace_hook(
                self.heads_at(layer), self.values[layer].to(device), self.positions
            )
            out.append((sites.hook_name(self.site, layer), hook))
        return out


Ablation = Intervention  # the name the head ablations have always had
Positions = int | str | Sequence[int | str] | None


def ablation_dirname(targets: Sequence[Target], mode: str, site: Site = "heads") -> str:
    """The directory name of an ablation under TRACE_DIR/ablations/: the targets themselves,
    or for a long list their count and a hash of it (effect.json lists them all)."""
    label = sites.targets_label(site, targets).replace(" ", "-")
    kind = "heads" if site == "heads" else site.replace("_", "-")
    if len(label) > MAX_DIRNAME_HEADS:
        digest = hashlib.sha256(label.encode()).hexdigest()[:12]
        return f"{len(targets)}-{kind}-{digest}-{mode}"
    return f"{label.replace(',', '_')}-{mode}"


def _replace_hook(heads: list[int] | None, value: Tensor, positions: list[int] | None) -> Callable:
    """A hook that replaces its activation's values (`replace_values`), counting the positions
    it has seen, so that with a KV cache (one new position a call) a position-dependent value,
    and a position list, are read at absolute positions."""
    seen = [0]

    def hook(x: Tensor, hook) -> Tensor:
        start = seen[0]
        seen[0] += x.shape[1]
        return replace_values(x, start, heads, value, positions)

    return hook


def replace_values(
    x: Tensor,
    start: int,
    heads: list[int] | None,
    value: Tensor,
    positions: list[int] | None,
) -> Tensor:
    """`x` ([batch, n, ...], absolute positions start..start+n) with x[:, :, heads] (a head
    site) or x (a layer's site) replaced by `value` ([1 or source_pos, ...]), at every
    position or at `positions` only."""
    n = x.shape[1]
    if value.shape[0] == 1:
        rows = value.expand(n, *value.shape[1:])
    else:
        if start + n > value.shape[0]:
            raise InvalidSettingError(
                f"the replacement source has {value.shape[0]} positions; position "
                f"{start + n - 1} was asked for"
            )
        rows = value[start : start + n]
    if positions is None:
        local = torch.arange(n)
    else:
        chosen = torch.tensor(positions, dtype=torch.long)
        local = chosen[(chosen >= start) & (chosen < start + n)] - start
    if local.numel() == 0:
        return x
    local = local.to(x.device)
    rows = rows.to(x.device)
    x = x.clone()
    if heads is None:
        x[:, local] = rows[local].to(x.dtype)
    else:
        picked = rows[local].to(x.dtype)  # [pos, head, d_head]
        for head in heads:
            x[:, local, head] = picked[:, head]
    return x


def make_intervention(
    model: Model,
    trace: Trace,
    targets: Sequence[Target],
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    positions: Positions = None,
    reference: TraceSet | Trace | None = None,
    source: Trace | None = None,
    resample_text: str | None = None,
    min_positions: int | None = None,
) -> Intervention:
    """Build the replacement values for `targets` at `site` from `mode`'s source (see the
    module's docstring); `positions` limits where they replace (see `_positions`)."""
    trace.bind(model)
    site = sites.check_site(site)
    if mode not in MODES:
        raise InvalidSettingError(f"unknown ablation mode {mode!r}; choose one of {MODES}")
    targets = sites.check_targets(site, targets, model)
    if (mode == "reference") != (reference is not None):
        raise InvalidSettingError(
            "mode 'reference' needs a reference set, and a reference set needs mode 'reference'"
        )
    chosen = _positions(trace, positions)
    layers = sorted({layer for layer, _ in targets})
    what = "head's" if site == "heads" else f"{site}'s"
    if mode == "mean":
        values = {
            layer: sites.activation(model, trace.activations, site, layer).mean(0, keepdim=True)
            for layer in layers
        }
        described = f"the {what} mean over the {trace.n_positions} positions of the trace"
    elif mode == "zero":
        shape = (model.n_heads, int(model.cfg.d_head)) if site == "heads" else (model.d_model,)
        values = {layer: torch.zeros(1, *shape) for layer in layers}
        described = "zeros"
    elif mode == "reference":
        assert reference is not None
        rows = [reference] if isinstance(reference, Trace) else list(reference)
        for row in rows:
            row.bind(model)
        values = {
            layer: torch.cat(
                [sites.activation(model, row.activations, site, layer) for row in rows]
            ).mean(0, keepdim=True)
            for layer in layers
        }
        count = sum(row.n_positions for row in rows)
        described = f"the {what} mean over {count} positions of {len(rows)} reference rows"
    else:
        needed = max(
            min_positions or 0, trace.n_positions, trace.prompt_len + trace.settings.max_new_tokens
        )
        if source is not None:
            if resample_text is not None:
                raise InvalidSettingError("give a resample text or a source trace, not both")
            source.bind(model)
            if source.n_positions < trace.n_positions:
                raise InvalidSettingError(
                    f"the source run has {source.n_positions} positions, the trace "
                    f"{trace.n_positions}: a patch needs a run at least as long"
                )
            values = {
                layer: sites.activation(model, source.activations, site, layer) for layer in layers
            }
            described = (
                f"the {what} value at the same position in the run of {source.prompt[:60]!r}"
            )
        else:
            text = (
                DEFAULT_RESAMPLE_TEXT
                if resample_text is None
                else inputs.text(resample_text, "the resample text")
            )
            values = _resample_values(model, text, site, layers, needed)
            described = f"the {what} value at the same position on the text {text[:60]!r}"
    return Intervention(list(targets), mode, values, described, site, chosen)


def make_ablation(
    model: Model,
    trace: Trace,
    heads: Sequence[tuple[int, int]],
    mode: AblationMode = "mean",
    *,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    min_positions: int | None = None,
) -> Intervention:
    """Heads (validated (layer, head) pairs) and what replaces their output in `mode`."""
    return make_intervention(
        model,
        trace,
        list(heads),
        mode,
        reference=reference,
        resample_text=resample_text,
        min_positions=min_positions,
    )


def _positions(trace: Trace, positions: Positions) -> list[int] | None:
    """Absolute positions: indices (negative from the end), "last_prompt" (the position that
    predicts the first continuation token), or a name the row's `meta` gives an index (a
    prompts file's field, e.g. {"s2": 9}: a position label per row)."""
    if positions is None:
        return None
    out = []
    for p in [positions] if isinstance(positions, (str, int)) else positions:
        if p == "last_prompt":
            p = trace.prompt_len - 1
        elif isinstance(p, str):
            if not isinstance(trace.meta.get(p), int) or isinstance(trace.meta.get(p), bool):
                raise InvalidSettingError(
                    f"{trace.origin or repr(trace.prompt[:40])}: no position {p!r} (a position "
                    f"label is an integer field of the row, such as {{{p!r}: 9}})"
                )
            p = trace.meta[p]
        if isinstance(p, bool) or not isinstance(p, int):
            raise InvalidSettingError(f"positions are integers or labels, got {p!r}")
        at = p if p >= 0 else trace.n_positions + p
        if not 0 <= at < trace.n_positions:
            raise InvalidSettingError(f"position {p} is outside the trace's {trace.n_positions}")
        out.append(at)
    return sorted(set(out))


def _resample_values(
    model: Model, text: str, site: Site, layers: list[int], needed: int
) -> dict[int, Tensor]:
    ids = model.encode(text)
    if not ids:
        raise InvalidSettingError("the resample text tokenises to no tokens")
    body = model.encode(text, add_special_tokens=False) or ids
    while len(ids) < needed:  # repeat the text until it covers every position
        ids += body
    ids = ids[:needed]
    names = {sites.hook_name(site, layer) for layer in layers}
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(
            torch.tensor([ids], device=model.device), names_filter=lambda n: n in names
        )
    return {layer: cache[sites.hook_name(site, layer)][0].float().cpu() for layer in layers}
