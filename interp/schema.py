"""What a trace directory says, checked against itself on load: the types of the JSON fields
and the dtypes, shapes and values of the tensors. Every problem is a `TraceFormatError` that
names the file and the field, raised before any model is involved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from interp.errors import TraceFormatError

Kind = Literal["int", "float", "bool"]
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
) -> Tensor:
    """`tensors[name]` with the dtype kind and shape given (None: any size), and, for floats,
    no NaN or +inf (and no -inf unless `allow_neg_inf`)."""
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
        bad = torch.isnan(value) | torch.isposinf(value)
        if not allow_neg_inf:
            bad |= torch.isneginf(value)
        if bool(bad.any()):
            raise TraceFormatError(f"{where}: tensor {name!r} holds NaN or infinite values")
    return value
