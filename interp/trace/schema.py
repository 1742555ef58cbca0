"""What a trace directory says, checked against itself on load: the types of the JSON fields
and the dtypes, shapes and values of the tensors. Every problem is a `TraceFormatError` that
names the file and the field, raised before any model is involved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from interp.edits.value import Intervention
from interp.errors import InterpError, TraceFormatError
from interp.models import hooks as H

Kind = Literal["int", "float", "bool"]
INTERVENTION_SPEC_KEY = "intervention_spec"  # provenance: a run's intervention, serialised
_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def field(record: dict[str, Any], name: str, kind: type, where: Path, *, none: bool = False) -> Any:
    """`record[name]`, which must be of `kind` (an int is a float; a bool is neither), or None
    where `none`."""
    if name not in record:
        raise TraceFormatError(f"{where}: field {name!r} is missing")
    value = record[name]
    if value is None and none:
        return None
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise TraceFormatError(
            f"{where}: field {name!r} must be {_NAMES.get(kind, kind.__name__)}, got "
            f"{type(value).__name__} {str(value)[:40]!r}"
        )
    return float(value) if kind is float else value


def items(record: dict[str, Any], name: str, kind: type, where: Path) -> list[Any]:
    """`record[name]` as a list whose every item is of `kind`."""
    values = field(record, name, list, where)
    for i, value in enumerate(values):
        field({f"{name}[{i}]": value}, f"{name}[{i}]", kind, where)
    return list(values)


def mapping(record: dict[str, Any], name: str, kind: type, where: Path) -> dict[str, Any]:
    """`record[name]` as an object whose every value is of `kind`."""
    values = field(record, name, dict, where)
    for key, value in values.items():
        field({f"{name}.{key}": value}, f"{name}.{key}", kind, where)
    return dict(values)


def tensor(
    tensors: dict[str, Tensor],
    name: str,
    where: Path,
    kind: Kind,
    shape: Sequence[int | None],
    *,
    allow_neg_inf: bool = False,
    allow_nan: bool = False,
) -> Tensor:
    """`tensors[name]` with the dtype kind and shape given (None: any size), and, for floats,
    no NaN (unless `allow_nan`: a value not computed) or +inf (and no -inf unless
    `allow_neg_inf`)."""
    if name not in tensors:
        raise TraceFormatError(f"{where}: tensor {name!r} is missing")
    value = tensors[name]
    dtype_ok = {
        "int": not value.dtype.is_floating_point and value.dtype != torch.bool,
        "float": value.dtype.is_floating_point,
        "bool": value.dtype == torch.bool,
    }[kind]
    if not dtype_ok:
        raise TraceFormatError(f"{where}: tensor {name!r} has dtype {value.dtype}, not {kind}")
    if len(value.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
    ):
        want_text = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise TraceFormatError(
            f"{where}: tensor {name!r} has shape {list(value.shape)}, expected {want_text}"
        )
    if kind == "float":
        bad = torch.isposinf(value) if allow_nan else torch.isnan(value) | torch.isposinf(value)
        if not allow_neg_inf:
            bad |= torch.isneginf(value)
        if bool(bad.any()):
            raise TraceFormatError(f"{where}: tensor {name!r} holds NaN or infinite values")
    return value


def settings(summary: dict[str, Any], where: Path) -> dict[str, Any]:
    """A trace's generation settings (`GenerationSettings`' fields), each of its type."""
    record = field(summary, "settings", dict, where)
    return {
        "max_new_tokens": field(record, "max_new_tokens", int, where),
        "temperature": field(record, "temperature", float, where),
        "top_k": field(record, "top_k", int, where, none=True),
        "top_p": field(record, "top_p", float, where, none=True),
        "seed": field(record, "seed", int, where, none=True),
        "stop_at_eos": field(record, "stop_at_eos", bool, where),
        "continuation": field(record, "continuation", str, where, none=True),
    }


def activation(acts: dict[str, Tensor], name: str, n: int, where: Path) -> Tensor:
    """One recorded hook, [pos, ...] (query-key hooks [head, query, key]) over `n` positions."""
    if name not in acts:
        raise TraceFormatError(f"{where}: the hook {name!r} listed in summary.json is missing")
    value = acts[name]
    if H.is_query_key(name):
        shape: list[int | None] = [None, n, n]
    else:
        shape = [n, *([None] * (value.dim() - 1))] if value.dim() >= 1 else [n]
    scores = H.is_attn_scores(name)
    return tensor(acts, name, where, "float", shape, allow_neg_inf=scores)


def widths(acts: dict[str, Tensor], dims: tuple[int, int, int], what: str) -> None:
    """Every recorded hook whose widths a model fixes (`dims`: heads, d_head, d_model) has
    them: a tampered or foreign file is refused before its numbers are used."""
    for name, value in acts.items():
        want = H.widths(name, *dims)
        got = list(value.shape[:1] if H.is_query_key(name) else value.shape[1:])
        if want is not None and got != want and not (want == [1] and got == []):
            raise TraceFormatError(f"{what}: its recorded {name} has widths {got}, not {want}")


def same_ids(summary: dict[str, Any], ids: Tensor, where: Path, steps: Path) -> None:
    """summary.json's copy of the token ids (where it has one) says what the tensor says."""
    if "token_ids" in summary:
        listed = items(summary, "token_ids", int, where)
        if listed != ids.tolist():
            raise TraceFormatError(
                f"{where}: field 'token_ids' ({len(listed)} ids) disagrees with {steps.name}'s "
                f"token_ids ({ids.numel()} ids)"
            )


def intervention(summary: dict[str, Any], where: Path) -> Intervention | None:
    """The intervention a run was recorded under, read once from its provenance's JSON (None
    for a plain run, and for raw hooks or a callable, which were not saved)."""
    provenance = summary.get("provenance")
    spec = provenance.get(INTERVENTION_SPEC_KEY) if isinstance(provenance, dict) else None
    if spec is None:
        return None
    at = f"{where}: provenance.{INTERVENTION_SPEC_KEY}"
    try:
        value = json.loads(spec)
    except (TypeError, ValueError):
        raise TraceFormatError(f"{at} is not JSON") from None
    try:
        return Intervention.from_json(value, at)
    except InterpError as exc:  # a field of it, or a dictionary it names, is unreadable
        raise TraceFormatError(str(exc)) from None
