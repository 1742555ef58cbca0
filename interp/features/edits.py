"""Feature interventions as edits: ablating or clamping a feature sets its activation (the
reconstruction error kept, so nothing else moves), steering adds its decoder row. They compose
with every other edit and run wherever an `Intervention` runs (generation, paired samples);
`feature_samples` measures one on text beside random features of similar density."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from interp.dictionaries.dictionary import Dictionary
from interp.edits.positions import Position
from interp.edits.value import Intervention, edit
from interp.errors import InvalidSettingError
from interp.features.contexts import FeatureContexts
from interp.interventions.sample_stats import PairedSamples
from interp.interventions.samples import paired_samples
from interp.models.model import Model
from interp.trace.trace import Trace

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
    return edit(
        d.hook, "feature", dictionary=d, features=features, value=target, positions=positions
    )


def density_controls(
    d: Dictionary, features: Sequence[int], count: int, *, seed: int = 0, within: float = 2.0
) -> list[list[int]]:
    """`count` control sets for `features`: each feature swapped for a random other feature
    whose activation density (stored with the dictionary) is within a factor `within` of its
    own, so a control fires about as often as what it stands in for."""
    stored = FeatureContexts.load(d.path) if d.path is not None else None
    if stored is None:
        raise InvalidSettingError(
            "density-matched controls need the dictionary's stored densities (contexts."
            "safetensors, written when interp trains a dictionary or by feature_contexts)"
        )
    density = stored.density
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        chosen: list[int] = []
        for i in features:
            near = (density > density[i] / within) & (density < density[i] * within + 1e-12)
            near[list(features)] = False
            near[chosen] = False
            pool = near.nonzero().flatten()
            if len(pool) == 0:
                raise InvalidSettingError(f"no other feature fires as often as feature {i}")
            chosen.append(int(pool[torch.randint(len(pool), (1,), generator=g)]))
        out.append(chosen)
    return out


def feature_samples(
    model: Model,
    trace: Trace,
    d: Dictionary,
    features: int | Sequence[int],
    op: FeatureOp = "ablate",
    value: float | None = None,
    *,
    samples: int = 16,
    controls: int = 4,
    max_new_tokens: int | None = None,
    seed: int = 0,
) -> PairedSamples:
    """The feature edit's effect on text over `samples` paired samples from the trace's
    prompt, beside `controls` edits of density-matched random features."""
    idx = [features] if isinstance(features, int) else list(features)
    edit_ = feature_edit(d, idx, op, value)
    others = [feature_edit(d, c, op, value) for c in density_controls(d, idx, controls, seed=seed)]
    return paired_samples(
        model, trace, edit_, samples=samples, controls=others, max_new_tokens=max_new_tokens
    )
