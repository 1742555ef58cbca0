"""How an `Intervention` runs: forward hooks that resolve each edit's positions per batch row
(labels, spans, "generated") and apply its operation at absolute positions, under the KV cache
and left padding alike; seeded noise drawn per absolute position, so a replay is identical."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from interp.edits import feature_op, sources
from interp.edits.resolving import Row, resolve_positions
from interp.edits.value import NOISE_STDS, Context, Edit, Intervention, unresolved
from interp.errors import InvalidSettingError
from interp.models import hooks as H
from interp.models import site as site_values
from interp.models.surgery import kv_heads

HookPair = tuple[str, Callable[..., Tensor]]


def hooks(
    intervention: Intervention, model: Any, rows: Sequence[Row | None], *, start_layer: int = -1
) -> list[HookPair]:
    """Forward hooks applying the edits at layer `start_layer` or later (a run that starts
    there from recorded activations already holds the earlier ones, its block input included)
    to batch item i as `rows[i]` resolves them (None: item i is left alone). A hook counts the
    positions it has seen, so a KV-cached decoding step is edited at its absolute position."""
    check(intervention, model)
    out = []
    for e in intervention.edits:
        if e.layer < start_layer or (e.layer == start_layer and H.is_block_input(e.hook)):
            continue
        out.append((e.hook, _hook(e, model, rows)))
    if out:  # an overflow downstream of the edits stops the run too
        last = H.resid_post(model.n_layers - 1)
        out.append((last, _guard(intervention, last, rows)))
    return out


def positions_in(intervention: Intervention, run: Any) -> list[int]:
    """The positions the intervention's edits act on in a recorded run (a `Trace`), sorted."""
    row = Row.of(run)
    return sorted({p for e in intervention.edits for p in resolve(e, row)})


def check(intervention: Intervention, model: Any) -> None:
    """An `Intervention`, every site one of the model's hook points and every head (a KV
    head at `hook_k`/`hook_v`) and neuron in range."""
    if not isinstance(intervention, Intervention):
        raise InvalidSettingError(
            f"an intervention is an interp.Intervention (built by interp.edit), got "
            f"{intervention!r:.40}"
        )
    available = model.bridge.hook_dict
    for e in intervention.edits:
        if e.hook not in available:
            raise InvalidSettingError(
                f"{model.name} has no site {e.site}; its blocks are L0..L{model.n_layers - 1}"
            )
        kv = H.is_kv(e.hook)
        n_heads = kv_heads(model) if kv else model.n_heads
        if e.heads and max(e.heads) >= n_heads:
            raise InvalidSettingError(
                f"{'KV head' if kv else 'head'} {max(e.heads)} of {e.site} is out of range; "
                f"valid: 0..{n_heads - 1}"
            )
        if e.neurons and max(e.neurons) >= int(model.cfg.d_mlp):
            raise InvalidSettingError(
                f"neuron {max(e.neurons)} of {e.site} is out of range; valid: "
                f"0..{int(model.cfg.d_mlp) - 1}"
            )


def resolve(e: Edit, row: Row) -> list[int]:
    """The absolute positions (sorted, unique) edit `e` acts on in `row`."""
    return resolve_positions(e.positions, row, edit=True)


def _hook(e: Edit, model: Any, rows: Sequence[Row | None]) -> Callable[..., Tensor]:
    """A hook applying `e` to each batch item as its row resolves it, at absolute positions
    (a row's column c is its position c - pad)."""
    wanted = [None if r is None else torch.tensor(resolve(e, r), dtype=torch.long) for r in rows]
    pads = torch.tensor([0 if r is None else r.pad for r in rows])
    if (why := unresolved(e)) is not None:  # draws and a "rome" scale are a set's
        raise InvalidSettingError(why)
    scale = e.params.get("scale")
    if e.op == "noise" and scale is None:
        scale = NOISE_STDS * embedding_std(model)
    seen = [0]

    def hook(x: Tensor, hook: Any = None) -> Tensor:
        start, n = seen[0], x.shape[1]
        seen[0] += n
        if x.shape[0] != len(rows):
            raise InvalidSettingError(
                f"the intervention was set up for {len(rows)} rows, got a batch of {x.shape[0]}"
            )
        positions = torch.arange(start, start + n)[None, :] - pads[:, None]  # [row, pos]
        mask = torch.zeros(len(rows), n, dtype=torch.bool)
        for i, want in enumerate(wanted):
            if want is not None:
                mask[i] = torch.isin(positions[i], want)
        if not bool(mask.any()):
            return x
        live = [i for i, want in enumerate(wanted) if want is not None]
        out = _apply(e, x, mask, positions, live, start == 0, scale)
        scores = H.is_attn_scores(e.hook)  # masked scores are -inf by design
        if not scores and not finite(out[mask.to(out.device)]):
            raise InvalidSettingError(
                f"the edit {e.label} leaves a value at {e.site} that is not finite (or whose "
                "square overflows float32); refusing the run"
            )
        return out

    return hook


def _guard(intervention: Intervention, site: str, rows: Sequence[Row | None]) -> Callable:
    """A hook at `site` refusing the run where the rows the intervention edits hold a value
    there that is not finite (or whose square overflows, which the next norm divides by)."""
    live = torch.tensor([i for i, r in enumerate(rows) if r is not None])
    pads = [0 if r is None else r.pad for r in rows]
    seen = [0]

    def hook(x: Tensor, hook: Any = None) -> Tensor:
        start, n = seen[0], x.shape[1]
        seen[0] += n
        real = [x[i, max(0, pads[i] - start) :] for i in live.tolist()]  # left padding off
        if not all(finite(r) for r in real):
            raise InvalidSettingError(
                f"under {intervention.label}, the residual stream at {site_values.parse(site)} is "
                "no longer "
                "finite (it overflows float32); refusing the run"
            )
        return x

    return hook


def finite(values: Tensor) -> bool:
    """Every value finite, and each vector's (last axis) sum of squares too: a norm after it
    would otherwise divide by infinity and silently give zeros."""
    return bool(torch.isfinite(values.float().square().sum(-1)).all())


def edit_hook(e: Edit, model: Any, rows: Sequence[Row | None]) -> Callable[..., Tensor]:
    """A hook applying the one edit `e` to each batch item as `rows` resolves it (the exact
    runner gives each item its own candidate's edits this way)."""
    return _hook(e, model, rows)


def _apply(
    e: Edit,
    x: Tensor,
    mask: Tensor,
    positions: Tensor,
    live: list[int],
    prompt_pass: bool,
    scale: float | None,
) -> Tensor:
    """`x` `[row, pos, ...]` with `e` applied where `mask` `[row, pos]` is set."""
    device_mask = mask.to(x.device)
    if not isinstance(e.op, str):
        context = Context(live, positions, prompt_pass)
        new = e.op(x.clone(), context)
        if not isinstance(new, Tensor) or new.shape != x.shape:
            shape = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
            raise InvalidSettingError(
                f"the callable edit at {e.site} must return a tensor of shape {tuple(x.shape)}, "
                f"got {shape}"
            )
        keep = device_mask.view(*mask.shape, *([1] * (x.dim() - 2)))
        return torch.where(keep, new.to(x.dtype), x)
    out = x.clone()
    chosen = out[device_mask]  # [k, ...]
    part = chosen if e.heads is None else chosen[:, list(e.heads)]
    if e.neurons is not None:
        part = chosen[..., list(e.neurons)]
    at = positions[mask]  # [k] absolute positions
    part = _op(e, part.float(), at, scale).to(x.dtype)
    if e.heads is not None:
        chosen[:, list(e.heads)] = part
    elif e.neurons is not None:
        chosen[..., list(e.neurons)] = part
    else:
        chosen = part
    out[device_mask] = chosen
    return out


def _op(e: Edit, v: Tensor, at: Tensor, scale: float | None) -> Tensor:
    """The operation on the chosen values `v` `[k, ...]` (at absolute positions `at`)."""
    p = e.params
    if e.op == "zero":
        return torch.zeros_like(v)
    if e.op == "scale":
        return v * p["factor"]
    if e.op == "add":
        return v + p.get("scale", 1.0) * _fit(p["vector"], v, e, "vector")
    unit = None
    if e.op in ("project", "set"):
        d = _fit(p["direction"], v, e, "direction")
        d = d / d.abs().amax(dim=-1, keepdim=True)  # so that its norm cannot overflow
        unit = d / d.norm(dim=-1, keepdim=True)
        along = (v * unit).sum(-1, keepdim=True)
        target = 0.0 if e.op == "project" else p["value"]
        return v + (target - along) * unit
    if e.op in sources.REPLACING:
        return _values_at(e, p["values"], at, v)
    if e.op == "feature":
        return feature_op.apply(p, v)
    assert e.op == "noise" and scale is not None
    return v + scale * noise(p.get("seed", 0), at, v.shape[1:]).to(v.device)


def _values_at(e: Edit, values: Tensor, at: Tensor, v: Tensor) -> Tensor:
    """A replacing edit's values at absolute positions `at` (one row of values: everywhere)."""
    if values.shape[0] == 1:
        picked = values.expand(len(at), *values.shape[1:])
    else:
        if int(at.max()) >= values.shape[0]:
            raise InvalidSettingError(
                f"the {e.op} values at {e.site} cover {values.shape[0]} positions; position "
                f"{int(at.max())} was asked for"
            )
        picked = values[at]
    if picked.shape[1:] != v.shape[1:]:
        raise InvalidSettingError(
            f"the {e.op} values at {e.site} are {list(values.shape[1:])} a position, but the "
            f"edited values there are {list(v.shape[1:])}"
        )
    return picked.to(v.device)


def _fit(vector: Tensor, v: Tensor, e: Edit, name: str) -> Tensor:
    """A parameter vector broadcast to the chosen values' trailing shape, or a clear error."""
    want = v.shape[-1]
    if (
        vector.shape[-1] != want
        or vector.dim() > v.dim() - 1
        or any(a != b for a, b in zip(vector.shape, v.shape[v.dim() - vector.dim() :], strict=True))
    ):
        raise InvalidSettingError(
            f"{name}= has shape {list(vector.shape)}, but {e.site}'s values here are "
            f"{list(v.shape[1:])}"
        )
    return vector.to(v.device)


def noise(seed: int, positions: Tensor, shape: Sequence[int]) -> Tensor:
    """Standard normal noise `[k, *shape]`, one draw per absolute position from its own
    generator (seeded by `seed` and the position), so a replay, a KV-cached step and a full
    forward draw the same noise at the same position."""
    out = torch.empty(len(positions), *shape)
    for i, p in enumerate(positions.tolist()):
        g = torch.Generator().manual_seed((seed * 1_000_003 + int(p) + 1) % 2**64)
        out[i] = torch.randn(*shape, generator=g)
    return out


def embedding_std(model: Any) -> float:
    """The standard deviation of the entries of the model's token embeddings."""
    weight = model.bridge.original_model.get_input_embeddings().weight
    return float(weight.detach().float().std())
