"""The `feature` operation: a dictionary feature's activation set to `value` (0 ablates it,
anything else clamps it) with the reconstruction error kept, `x + (value - f_i(x)) W_dec[i]`,
so an edit that changes nothing leaves the activations as they were. Serialised as the
dictionary's folder, which a replay loads again."""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import load_dictionary
from interp.errors import InvalidSettingError
from interp.models.site import spelled


def dictionary(value: Any) -> Dictionary:
    """A `Dictionary`, or the folder of one."""
    if isinstance(value, Dictionary):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_dictionary(value)
    raise InvalidSettingError(f"dictionary= is a Dictionary or its folder, got {value!r:.40}")


def check(site: str, params: dict[str, Any]) -> None:
    d: Dictionary = params["dictionary"]
    if d.is_transcoder:
        raise InvalidSettingError(
            "a transcoder's features are edited by steering (an add of the decoder row at "
            f"{spelled(d.writes)}); ablating or clamping them is not supported"
        )
    if site != d.hook:
        raise InvalidSettingError(
            f"the dictionary reads {spelled(d.hook)}; the edit's site is {spelled(site)}"
        )
    bad = [i for i in params["features"] if i >= d.d_sae]
    if bad:
        raise InvalidSettingError(f"feature {bad[0]} is out of range; valid: 0..{d.d_sae - 1}")


def apply(params: dict[str, Any], v: Tensor) -> Tensor:
    """`v` `[k, d]` with the chosen features' activations set to the value, error kept."""
    d: Dictionary = params["dictionary"]
    idx = list(params["features"])
    f = d.encode(v)[:, idx]  # [k, n]
    target = params.get("value", 0.0)
    return v + (target - f).to(v.dtype) @ d.W_dec[idx].to(v)


def label(params: dict[str, Any]) -> str:
    value = params.get("value", 0.0)
    what = "ablate" if value == 0.0 else f"clamp to {value:g}"
    return f"{what} features {list(params['features'])} of"


def to_json(d: Dictionary) -> str:
    if d.path is None:
        raise InvalidSettingError(
            "a feature edit is serialised by its dictionary's folder; save the dictionary first"
        )
    return str(d.path)
