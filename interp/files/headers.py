"""A safetensors file's header checked against the file before any tensor is read: a sane
size, known dtypes, and every tensor's bytes inside the file and matching its shape."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 << 20  # safetensors' own bound on a header
_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The header of a safetensors file, checked against the file: a sane size, known dtypes,
    and every tensor's bytes inside the file and matching its shape (ValueError otherwise)."""
    size = os.stat(path).st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ValueError("too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"its header claims {n:,} bytes of a {size:,}-byte file")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            itemsize = _ITEMSIZE[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r} has a malformed entry") from None
        if min(shape, default=0) < 0 or not 0 <= start <= end <= data:
            raise ValueError(f"tensor {name!r} lies outside the file")
        if end - start != math.prod(shape) * itemsize:
            raise ValueError(f"tensor {name!r} does not match its shape {shape}")
    return header
