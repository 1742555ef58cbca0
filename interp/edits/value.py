"""Open interventions: an `Intervention` is a list of edits, each a *site* (a `Site`, written
`L5H1`, `L5.resid_pre`, `embed` or as any hook point that TransformerLens names), *positions*
(all, indices, slices, "prompt", "last_prompt", "generated", a prompts file's position label,
`span("Eiffel Tower")`) and an *operation* (zero, scale, add,
project, set, seeded noise, mean, patch or resample from other runs, a dictionary feature, or
any callable). `edit(...)` builds one edit, checked where it is built; `+` composes them. It
runs as forward hooks that know each batch row's absolute positions (under the KV cache and
left padding), so a generation, a teacher-forced run and the exact runner apply it alike; its
JSON form (`to_json`, `from_json`) is what a trace recorded under it keeps, to replay the run.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import torch
from torch import Tensor

from interp import inputs
from interp.edits import feature_op, sources
from interp.edits.positions import Position, Positions, as_positions, positions_label
from interp.edits.positions import from_json as positions_from
from interp.edits.positions import to_json as position_json
from interp.errors import InvalidSettingError
from interp.models import hooks as H
from interp.models import site as site_values
from interp.models.heads import Head
from interp.models.site import Site

Op = Literal[
    "zero", "scale", "add", "project", "set", "noise", "mean", "resample", "patch", "feature"
]
OPS: tuple[Op, ...] = get_args(Op)
NOISE_STDS = 3.0  # ROME's default noise: three times the standard deviation of the embeddings
_PARAMS: dict[str, tuple[set[str], set[str]]] = {  # op: (required, optional) parameters
    "zero": (set(), set()),
    "scale": ({"factor"}, set()),
    "add": ({"vector"}, {"scale"}),
    "project": ({"direction"}, set()),
    "set": ({"direction", "value"}, set()),
    "noise": (set(), {"scale", "seed", "draws"}),
    "feature": ({"dictionary", "features"}, {"value"}),
    **{op: ({"values"}, {"origin"}) for op in sources.REPLACING},
}


@dataclass(frozen=True)
class Context:
    """What a callable edit is told: the batch rows it edits, each one's absolute position for
    every position of this pass (`[row, pos]`; -1 for left padding), and which pass it is."""

    rows: list[int]
    positions: Tensor
    prompt_pass: bool


EditFn = Callable[[Tensor, Context], Tensor]


@dataclass(frozen=True, eq=False)
class Edit:
    """One edit: `op` at `site` on `positions` (None: all), of `heads` or `neurons` only (a
    head's site holds its head in `heads`)."""

    site: Site
    op: Op | EditFn
    positions: tuple[Position, ...] | None = None
    heads: tuple[int, ...] | None = None
    neurons: tuple[int, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def hook(self) -> str:
        """The hook point the edit runs at."""
        return self.site.hook

    @property
    def layer(self) -> int:
        """The block the site belongs to (-1 before the first, e.g. `embed`)."""
        return self.site.block

    @property
    def label(self) -> str:
        named = self.op if isinstance(self.op, str) else getattr(self.op, "__name__", "callable")
        what = feature_op.label(self.params) if self.op == "feature" else named
        own = self.site.heads is not None
        where = str(self.site) + (f"[heads {list(self.heads)}]" if self.heads and not own else "")
        where += f"[neurons {list(self.neurons)}]" if self.neurons else ""
        at = "" if self.positions is None else f" at {positions_label(self.positions)}"
        draws = self.params.get("draws", 1) if self.op == "noise" else 1
        return f"{what} {where}{at}" + (f", {draws} draws" if draws > 1 else "")


@dataclass(frozen=True, eq=False)
class Intervention:
    """Edits applied together (in order) at every forward: `edit(...) + edit(...)`."""

    edits: tuple[Edit, ...] = ()

    def __add__(self, other: Intervention) -> Intervention:
        if not isinstance(other, Intervention):
            return NotImplemented
        return Intervention(self.edits + other.edits)

    def __len__(self) -> int:
        return len(self.edits)

    @property
    def label(self) -> str:
        return " + ".join(e.label for e in self.edits) or "nothing"

    @property
    def replayable(self) -> bool:
        """False where an edit is a callable, which has no serialised form."""
        return all(isinstance(e.op, str) for e in self.edits)

    def to_json(self) -> dict[str, Any]:
        """The serialised form (tensors as lists); a callable edit is refused."""
        if not self.replayable:
            raise InvalidSettingError(
                f"the intervention {self.label} holds a callable, which cannot be serialised"
            )
        return {"edits": [_edit_json(e) for e in self.edits]}

    @classmethod
    def from_json(cls, value: Any, where: str = "the intervention") -> Intervention:
        """An intervention from its serialised form, every field checked (one line naming it)."""
        if not isinstance(value, dict) or not isinstance(value.get("edits"), list):
            raise InvalidSettingError(f'{where}: expected an object with a list "edits"')
        out = []
        for i, item in enumerate(value["edits"]):
            at = f"{where}: edits[{i}]"
            if not isinstance(item, dict):
                raise InvalidSettingError(f"{at} is not an object")
            unknown = set(item) - {"site", "op", "positions", "heads", "neurons", "params"}
            if unknown:
                raise InvalidSettingError(f"{at} has an unknown field {sorted(unknown)[0]!r}")
            params = item.get("params", {})
            if not isinstance(params, dict):
                raise InvalidSettingError(f"{at}.params is not an object")
            site, op = item.get("site"), item.get("op")
            if not isinstance(site, str):
                raise InvalidSettingError(f"{at}.site must be a site, e.g. L5H1 or L5.resid_pre")
            if not isinstance(op, str):
                raise InvalidSettingError(f"{at}.op must be one of {', '.join(OPS)}")
            try:
                positions = positions_from(item.get("positions"), at)
                heads, neurons = item.get("heads"), item.get("neurons")
                one = edit(
                    site, cast(Op, op), positions=positions, heads=heads, neurons=neurons, **params
                )
            except InvalidSettingError as exc:
                raise InvalidSettingError(f"{at}: {exc}") from None
            out.append(one)
        return Intervention(tuple(e for one in out for e in one.edits))

    def digest(self) -> str:
        """A short hash of the serialised form (names results apart)."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def edit(
    site: str | Site | Head,
    op: Op | EditFn,
    *,
    positions: Positions = None,
    heads: int | Sequence[int] | None = None,
    neurons: int | Sequence[int] | None = None,
    **params: Any,
) -> Intervention:
    """One edit as an `Intervention` (compose with `+`), checked here: `site` a `Site` or its
    spelling (`L5H1`, `L5.resid_pre`, a hook name); `op` one of `OPS` or a
    callable `(value, Context) -> value`, with its parameters (`add`: vector=, scale=;
    `project`: direction=; `set`: direction=, value=; `scale`: factor=; `noise`: scale=, seed=,
    draws= (`interp.edits.noise`: each run it corrupts becomes `draws` rows, seeds seed,
    seed+1, ...), the scale 3 x the standard deviation of the entries of the whole token
    embedding matrix by default, or "rome" (at `embed`: 3 x the standard deviation of the
    embeddings of the tokens it corrupts over the whole set, ROME's recipe); `mean`:
    reference= runs or values=; `patch`: source= a run or values=; `resample`: values=;
    `feature`: dictionary=, features=, value= (0 ablates), the reconstruction error kept)."""
    where = site_values.parse(site)
    if where.kind in ("logits", "head_input", "kv_input"):
        raise InvalidSettingError(
            f"{where} is not a site an edit runs at: edit a head's output (L5H1), a layer's "
            "site (L5.attn, L5.resid_pre) or a hook point"
        )
    if where.heads is not None and heads is not None:
        raise InvalidSettingError(f"{where} names its head; heads= goes with L{where.layer}.z")
    heads = heads if where.heads is None else list(where.heads)
    hook = where.hook
    if isinstance(op, str):
        if op not in OPS:
            raise InvalidSettingError(
                f"unknown operation {op!r}; choose one of {', '.join(OPS)}, or a callable"
            )
        heads_t, neurons_t = _indices(heads, "heads"), _indices(neurons, "neurons")
        if op in sources.REPLACING:
            params = sources.resolve(op, hook, heads_t, neurons_t, params)
        required, optional = _PARAMS[op]
        missing = sorted(required - set(params))
        if missing:
            raise InvalidSettingError(f"the {op} operation needs {missing[0]}=")
        extra = sorted(set(params) - required - optional)
        if extra:
            raise InvalidSettingError(f"the {op} operation takes no {extra[0]}=")
        params = {k: _param(op, k, v) for k, v in params.items()}
        if op == "feature":
            feature_op.check(hook, params)
        if op == "noise" and params.get("seed", 0) + params.get("draws", 1) > inputs.MAX_SEED + 1:
            raise InvalidSettingError(
                "a noise edit's last seed, seed + draws - 1, is past 2**64 - 1"
            )
        if op == "noise" and params.get("scale") == "rome" and where.kind != "embed":
            raise InvalidSettingError(
                f'scale="rome" is ROME\'s embedding noise (3 x the standard deviation of the '
                f"corrupted tokens' embeddings): it goes with the embed site, not {where}"
            )
    elif callable(op):
        if params:
            raise InvalidSettingError("a callable edit takes no parameters")
    else:
        raise InvalidSettingError(f"an operation is a name or a callable, got {op!r:.40}")
    heads_t = _indices(heads, "heads")
    neurons_t = _indices(neurons, "neurons")
    if heads_t is not None and not H.has_head_axis(hook):
        raise InvalidSettingError(
            f"heads= goes with a site that has a head axis (L5.z, or {', '.join(H.HEAD_AXIS)}), "
            f"not {where}"
        )
    if neurons_t is not None and not H.has_neuron_axis(hook):
        raise InvalidSettingError(
            f"neurons= goes with an MLP's {' or '.join(H.NEURON_AXIS)}: {where}"
        )
    return Intervention((Edit(where, op, as_positions(positions), heads_t, neurons_t, params),))


# ---- building ------------------------------------------------------------------------------


def _param(op: str, key: str, value: Any) -> Any:
    if key in ("values", "origin"):
        return sources.values(value) if key == "values" else str(value)
    if key in ("dictionary", "features"):
        return feature_op.dictionary(value) if key == "dictionary" else _indices(value, key)
    if key in ("vector", "direction"):
        try:
            tensor = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidSettingError(f"{key}= must be a vector of numbers") from None
        if tensor.dim() < 1 or tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
            raise InvalidSettingError(f"{key}= must be a non-empty vector of finite numbers")
        if key == "direction" and not bool(tensor.any()):  # a norm could underflow to 0
            raise InvalidSettingError("direction= must not be the zero vector")
        return tensor.detach().cpu()
    if key == "seed" and value is not None:  # any seed a generation takes
        return inputs.seed(value)
    if key == "draws":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InvalidSettingError(
                f"draws= must be a whole number of at least 1, got {value!r:.40}"
            )
        return int(value)
    if op == "noise" and key == "scale" and (value is None or isinstance(value, str)):
        if value not in (None, "rome"):
            raise InvalidSettingError(f'scale= is a number or "rome", got {value!r:.40}')
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidSettingError(f"{key}= must be a finite number, got {value!r:.40}")
    return float(value)


def _indices(value: Any, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = (
        [value] if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    )
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidSettingError(f"{what}= takes integers, got {value!r:.40}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 0:
            raise InvalidSettingError(f"{what}= takes non-negative integers, got {item!r:.40}")
        out.append(int(item))
    if not out:
        raise InvalidSettingError(f"{what}= is empty")
    return tuple(sorted(set(out)))


# ---- serialising ------------------------------------------------------------------------------


def _edit_json(e: Edit) -> dict[str, Any]:
    out: dict[str, Any] = {"site": str(e.site), "op": e.op}
    if e.positions is not None:
        out["positions"] = [position_json(p) for p in e.positions]
    for key in ("heads", "neurons"):
        if getattr(e, key) is not None and not (key == "heads" and e.site.heads is not None):
            out[key] = list(getattr(e, key))
    params = {k: v.tolist() if isinstance(v, Tensor) else v for k, v in e.params.items()}
    if e.op == "feature":
        params["dictionary"] = feature_op.to_json(e.params["dictionary"])
    if params:
        out["params"] = params
    return out


def unresolved(e: Edit) -> str | None:
    """Why a noise edit cannot run as it stands (its draws and a "rome" scale are resolved
    over the set of runs it corrupts first: `interp.edits.noise`), or None."""
    if e.op != "noise" or (e.params.get("draws", 1) == 1 and e.params.get("scale") != "rome"):
        return None
    return (
        f"{e.label}: its draws and a 'rome' scale are resolved over the whole set of runs it "
        "corrupts: give it to interp.patch or interp.circuit as the corrupted side, or record "
        "the runs under it with interp.record_under"
    )
