"""Feature interventions as edits: ablating or clamping a feature sets its activation (the
reconstruction error kept, so nothing else moves), steering adds its decoder row. They compose
with every other edit and run wherever an `Intervention` runs (generation, paired samples)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from interp.edits.value import Intervention, Position, edit
from interp.errors import InvalidSettingError
from interp.features.dictionary import Dictionary

FeatureOp = Literal["ablate", "clamp", "steer"]


def feature_edit(
    d: Dictionary,
    features: int | Sequence[int],
    op: FeatureOp = "ablate",
    value: float | None = None,
    *,
    positions: Position | Sequence[Position] | None = None,
) -> Intervention:
    """`ablate` (activation 0), `clamp` (activation `value`) or `steer` (add `value` times the
    decoder rows, summed) the dictionary's `features`, at `positions` (None: all)."""
    if op == "steer":
        if value is None:
            raise InvalidSettingError("steering a feature needs value= (the scale of its row)")
        idx = [features] if isinstance(features, int) else list(features)
        if not idx or any(not 0 <= i < d.d_sae for i in idx):
            raise InvalidSettingError(f"features lie in 0..{d.d_sae - 1}, got {idx}")
        vector = d.W_dec[idx].float().sum(0)
        return edit(d.writes, "add", vector=vector, scale=value, positions=positions)
    if op == "clamp" and value is None:
        raise InvalidSettingError("clamping a feature needs value= (its activation)")
    if op not in ("ablate", "clamp"):
        raise InvalidSettingError(f"a feature edit is ablate, clamp or steer, not {op!r}")
    target = 0.0 if op == "ablate" else value
    return edit(d.hook, "feature", dictionary=d, features=features, value=target,
                positions=positions)  # fmt: skip
