"""Where an intervention acts: a *site* of a layer, and the *targets* it names. One
vocabulary, the same in the API, the command line, results and reports:

- `heads`: a head's output `hook_z` ([pos, head, d_head]); targets (layer, head);
- `resid`: the residual stream entering a block (`hook_resid_pre`, [pos, d_model]); targets
  (layer, None);
- `attn-out`, `mlp-out`: a layer's attention or MLP output ([pos, d_model]).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.models import site as site_values
from interp.models.heads import head_label, parse_heads
from interp.models.model import Model
from interp.trace import components

Site = Literal["heads", "resid", "attn-out", "mlp-out"]
SITES: tuple[Site, ...] = ("heads", "resid", "attn-out", "mlp-out")
_OLD = {"resid_pre": "resid", "resid-pre": "resid", "attn_out": "attn-out", "mlp_out": "mlp-out"}
Target = tuple[int, int | None]  # (layer, head), head None for a layer's site


def check_site(site: str) -> Site:
    if site in _OLD:
        raise InvalidSettingError(f"the site {site!r} is written {_OLD[site]!r} now")
    if site not in SITES:
        raise InvalidSettingError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
    return site


_KIND: dict[str, site_values.Kind] = {
    "heads": "z",
    "resid": "resid_pre",
    "attn-out": "attn",
    "mlp-out": "mlp",
}


def at(site: Site, layer: int) -> site_values.Site:
    """The family's site in one layer: `L5.z`, `L5.resid_pre`, `L5.attn`, `L5.mlp`."""
    return site_values.of_layer(_KIND[site], layer)


def hook_name(site: Site, layer: int) -> str:
    return at(site, layer).hook


def label(site: Site, target: Target) -> str:
    """A target's spelling as a `Site`: "L5H1", "L5.resid_pre", "L5.attn", "L5.mlp"."""
    layer, head = target
    if site == "heads":
        assert head is not None
        return head_label(layer, head)
    return str(at(site, layer))


def targets_label(site: Site, targets: Sequence[Target]) -> str:
    return ",".join(label(site, t) for t in targets) or "none"


def parse_targets(spec: str, site: Site, model: Model) -> Targets:
    """Heads (`L5H1,L9H3`, `L5` for every head of layer 5) for the heads site; layers (`L5,L7`)
    for a layer's site: checked here, once."""
    heads = parse_heads(spec, model.n_layers, model.n_heads)
    if site == "heads":
        return Targets(heads, site, model.name)
    if any(item.strip().upper().count("H") for item in spec.split(",")):
        raise InvalidSettingError(f"the {site} site takes layers (L5,L7), not heads: {spec!r}")
    return Targets(sorted({(layer, None) for layer, _ in heads}), site, model.name)


class Targets(list[Target]):
    """Targets already checked (sorted, unique, in range, of `site`'s kind) for `model`:
    checked once where they are built, passed on as they are."""

    def __init__(self, items: Sequence[Target], site: Site, model_name: str) -> None:
        super().__init__(items)
        self.site, self.model_name = site, model_name


def check_targets(site: Site, targets: Sequence[Target], model: Model) -> Targets:
    """Sorted unique targets, each in range and of the site's kind (once: checked targets
    for this site and model are passed on as they are)."""
    if isinstance(targets, Targets) and (targets.site, targets.model_name) == (site, model.name):
        return targets
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
        raise InvalidSettingError(
            f"targets are a list of (layer, head) pairs, got {type(targets).__name__}"
        )
    for target in targets:
        ok = isinstance(target, (tuple, list)) and len(target) == 2
        if ok:
            layer, head = target
            ok = _index(layer) and (head is None or _index(head))
        if not ok:
            raise InvalidSettingError(
                f"a target is a (layer, head) pair of integers (head None for a layer's site), "
                f"got {target!r:.60}"
            )
    targets = [(int(layer), None if head is None else int(head)) for layer, head in targets]
    out = sorted(set(targets), key=lambda t: (t[0], -1 if t[1] is None else t[1]))
    for layer, head in out:
        if not 0 <= layer < model.n_layers:
            raise InvalidSettingError(
                f"layer {layer} is out of range; valid: L0..L{model.n_layers - 1}"
            )
        if (head is None) != (site != "heads"):
            kind = "(layer, head) pairs" if site == "heads" else "(layer, None) pairs"
            raise InvalidSettingError(f"the {site} site takes {kind}, got {(layer, head)}")
        if head is not None and not 0 <= head < model.n_heads:
            raise InvalidSettingError(
                f"head L{layer}H{head} is out of range; valid: H0..H{model.n_heads - 1}"
            )
    return Targets(out, site, model.name)


def activation(model: Model, acts: dict[str, Tensor], site: Site, layer: int) -> Tensor:
    """A run's value at the site ([pos, ...]), recorded or derived exactly from what was
    (`interp.trace.components`)."""
    name = hook_name(site, layer)
    if site == "attn-out":
        return components.attn_out(model, acts, layer)
    if site == "mlp-out":
        return components.mlp_out(model, acts, layer)
    if name not in acts:
        raise InvalidSettingError(
            f"the run lacks {name}, which this intervention reads; record it again with the "
            "default hooks"
        )
    return acts[name].float()


def _index(value: object) -> bool:
    """An integer index (numpy's integers too), never a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Described:
    """An intervention read as an ablation: whole targets at one site, all by one mode."""

    site: Site
    targets: list[Target]
    mode: str
    source: str

    @property
    def label(self) -> str:
        return targets_label(self.site, self.targets)


def describe(intervention: Intervention) -> Described | None:
    """`intervention` as an ablation (`make_intervention`'s shape: every edit at one site kind,
    of whole heads or layers, one mode, one set of positions), or None where it is another
    kind of intervention."""
    kinds = {
        hook_name(site, layer): (site, layer)
        for site in SITES
        for layer in {e.layer for e in intervention.edits if e.layer >= 0}  # not embed's
    }
    found = [kinds.get(e.hook) for e in intervention.edits]
    ops = {e.op for e in intervention.edits}
    if not found or None in found or len(ops) != 1 or len({f[0] for f in found if f}) != 1:
        return None
    op = next(iter(ops))
    if op not in ("zero", "mean", "resample") or any(e.neurons for e in intervention.edits):
        return None
    if any(e.positions != intervention.edits[0].positions for e in intervention.edits):
        return None
    site = found[0][0] if found[0] else "heads"
    targets: list[Target] = []
    for e, where in zip(intervention.edits, found, strict=True):
        assert where is not None
        if (e.heads is None) != (site != "heads"):
            return None
        targets += [(where[1], h) for h in e.heads] if e.heads else [(where[1], None)]
    first = intervention.edits[0]
    source = "zeros" if op == "zero" else str(first.params.get("origin", ""))
    return Described(site, sorted(set(targets), key=lambda t: (t[0], t[1] or -1)), str(op), source)
