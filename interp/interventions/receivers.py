"""Where path patching's paths end: the receivers, `Site`s written `L23H3.q` (a head's query,
key or value input), `L23.kv1.k` (a KV group's key or value input, with grouped-query attention),
`L5.mlp` (an MLP's input) or `logits`; parsed and checked once, and labelled one way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from interp.errors import InvalidSettingError
from interp.models import site as site_values
from interp.models.heads import Head, head_label
from interp.models.model import Model
from interp.models.site import Site
from interp.models.surgery import kv_heads

Input = Literal["q", "k", "v", "mlp"]
Receiver = tuple[int, int, Input]  # (layer, head, which input); a KV group's for k, v; 0, mlp
_KINDS = ("q", "k", "v", "mlp")


def parse_receivers(
    spec: str | Sequence[Site | str | Receiver], model: Model | None
) -> list[Receiver] | None:
    """`"logits"` -> None; `"L23H3.q,L23.kv1.k,L5.mlp"` (or those `Site`s, or (layer, head,
    "q") tuples, (layer, 0, "mlp")) -> sorted unique receivers, checked against the model
    (without one: their spelling alone)."""
    items: list[Site | str | Receiver] = (
        [item.strip() for item in spec.split(",")] if isinstance(spec, str) else list(spec)
    )
    if [str(i).strip().lower() for i in items] == ["logits"]:
        return None
    parsed: list[Receiver] = []
    grouped: set[Receiver] = set()  # written as a KV group
    for item in items:
        if isinstance(item, tuple) and not isinstance(item, Head):
            parsed.append(item)
            continue
        try:
            where: Site | None = site_values.parse(item)
        except InvalidSettingError:
            where = None
        if where is not None and where.kind == "logits":
            raise InvalidSettingError(
                f"receivers {spec!r}: 'logits' cannot be combined with head receivers; path "
                "patch into the logits and into the heads' inputs in two runs"
            )
        if where is not None and where.kind == "mlp":
            parsed.append((where.layer, 0, "mlp"))
        elif where is not None and where.kind in ("head_input", "kv_input"):
            parsed.append((where.layer, where.index, where.input))  # type: ignore[arg-type]
            if where.kind == "kv_input":
                grouped.add(parsed[-1])
        else:
            raise InvalidSettingError(
                f"unknown receiver {str(item)!r}: write 'logits', or heads' inputs as "
                "L23H3.q,L23H3.k,L23H3.v (a KV group's as L23.kv1.k), or an MLP's as L5.mlp"
            )
    if not parsed:
        raise InvalidSettingError(
            "no receivers: write 'logits', heads' inputs (L23H3.q) or MLPs' (L5.mlp)"
        )
    if all(layer == 0 and kind != "mlp" for layer, _, kind in parsed):
        raise InvalidSettingError(
            "layer 0's heads have no senders: no head writes before them; choose receivers in "
            "a later layer (or L0.mlp, which layer 0's heads reach)"
        )
    if model is None:
        return sorted(set(parsed))
    n_kv = kv_heads(model)
    for receiver in parsed:
        layer, head, kind = receiver
        width = n_kv if receiver in grouped else (1 if kind == "mlp" else model.n_heads)
        if not (0 <= layer < model.n_layers and 0 <= head < width) or kind not in _KINDS:
            raise InvalidSettingError(
                f"receiver {_spelled(receiver, receiver in grouped)} is out of range; valid: "
                f"L0..L{model.n_layers - 1}, H0..H{model.n_heads - 1} (.q .k .v), "
                f"kv0..kv{n_kv - 1} (.k .v)"
            )
        if kind in ("k", "v") and n_kv != model.n_heads and receiver not in grouped:
            group = head // (model.n_heads // n_kv)
            raise InvalidSettingError(
                f"receiver {head_label(layer, head)}.{kind}: with grouped-query attention "
                f"({n_kv} key/value heads for {model.n_heads} query heads) a query head has no "
                f"{'key' if kind == 'k' else 'value'} input of its own; its KV group's is "
                f"L{layer}.kv{group}.{kind}"
            )
    return sorted(set(parsed))


def receivers_label(receivers: list[Receiver] | None, model: Model | None = None) -> str:
    """The receivers as written: `L23H3.q`; a key or value `L23H3.k`, or with grouped-query
    attention its KV group's `L23.kv1.k`."""
    if receivers is None:
        return "logits"
    grouped = model is not None and kv_heads(model) != model.n_heads
    return ",".join(_spelled(r, grouped and r[2] != "q") for r in receivers)


def _spelled(receiver: Receiver, group: bool) -> str:
    try:
        return str(as_site(receiver, group))
    except InvalidSettingError:  # a tuple that names no site (a negative head, say)
        return repr(tuple(receiver))


def as_site(receiver: Receiver, group: bool = False) -> Site:
    """A receiver as the `Site` it names (`group`: a key or value input as its KV group's)."""
    layer, index, kind = receiver
    if kind == "mlp":
        return site_values.of_layer("mlp", layer)
    return Site("kv_input" if group else "head_input", layer, index, kind)


def receiving_heads(model: Model, receiver: Receiver) -> list[int]:
    """The query heads whose output a receiver recomputes: its own head, or (a key or value
    under grouped-query attention) every head of its KV group."""
    _, index, kind = receiver
    if kind == "mlp":
        return []
    if kind == "q":
        return [index]
    per_group = model.n_heads // kv_heads(model)
    return list(range(index * per_group, (index + 1) * per_group))
