"""HTML assembly: the CircuitsVis bundle inlined once, one render call per visualisation,
every piece of user data escaped for the context it lands in."""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


@lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """CircuitsVis's browser bundle (defines the global `CircuitsVis`), safe to inline.

    The bundle itself contains the string "<script></script>", which would end an inline
    script; `</script` becomes `<\\/script`, the same string to JavaScript."""
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    return _SCRIPT_END.sub(r"<\\/\1", path.read_text(encoding="utf-8"))


def b64(data: bytes) -> str:
    """Base64 text of binary data (PNG data URIs, compressed patterns)."""
    return base64.b64encode(data).decode("ascii")


def probability_color(prob: float) -> str:
    """Low probability red, high green (HSL hue 0..120), light enough for black text."""
    hue = int(120 * max(0.0, min(1.0, prob)))
    return f"hsl({hue}, 70%, 80%)"


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def script_json(value: Any, digits: int = 4) -> str:
    """JSON for a <script> context: floats rounded, and `<`, `>`, `&`, U+2028/9 escaped so
    that no token string (`</script>`, `<!--`) can end or confuse the script."""
    text = json.dumps(_rounded(value, digits), ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_call(element_id: str, component: str, props: dict[str, Any], digits: int = 3) -> str:
    """One CircuitsVis render call into the element `element_id`."""
    return (
        f"CircuitsVis.render({script_json(element_id)}, CircuitsVis.{component}, "
        f"{script_json(props, digits)});"
    )


def pack_pattern(pattern: torch.Tensor) -> dict[str, Any]:
    """[head, q, k] -> the lower triangle of each head as uint8 (x/255), zlib, base64."""
    heads, n, _ = pattern.shape
    rows, cols = torch.tril_indices(n, n)
    tri = (pattern[:, rows, cols].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {"heads": heads, "n": n, "data": b64(zlib.compress(tri.tobytes(), 6))}
