"""A noise edit resolved over the set of runs it corrupts, before any of them runs: `draws=K`
makes each run K rows, draw k under seed `seed + k` (`draws`, `draw`), and `scale="rome"` is
ROME's noise level, 3 x the standard deviation of the embeddings of the tokens the edit
corrupts over the whole set (`rome_scales`). A run records the resolved edit (one seed, a
number for its scale), so it replays exactly; an unresolved one is refused where it would run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from interp.edits.applying import positions_in
from interp.edits.value import NOISE_STDS, Intervention
from interp.errors import InvalidSettingError


def draws(intervention: Intervention) -> int:
    """How many rows each corrupted run becomes: the noise edits' `draws` (1 without any); two
    noise edits asking for different numbers are refused."""
    asked = {e.params["draws"] for e in intervention.edits if e.params.get("draws", 1) > 1}
    if len(asked) > 1:
        raise InvalidSettingError(
            f"the noise edits ask for different numbers of draws ({sorted(asked)}): each run "
            "becomes one set of draws, so give them one draws="
        )
    return asked.pop() if asked else 1


def rome_scales(model: Any, intervention: Intervention, runs: Sequence[Any]) -> dict[int, float]:
    """Each `scale="rome"` noise edit's scale (by its index in the intervention): 3 x the
    standard deviation of every entry of the input embeddings at the positions it corrupts,
    over all of `runs` (ROME's `collect_embedding_std` over the subjects, times 3, with the
    subjects' tokens as they stand in the prompts)."""
    out: dict[int, float] = {}
    embed = model.bridge.original_model.get_input_embeddings()
    for i, e in enumerate(intervention.edits):
        if e.op != "noise" or e.params.get("scale") != "rome":
            continue
        ids = [
            run.token_ids[positions_in(Intervention((e,)), run)].long() for run in runs
        ]  # each run's corrupted tokens
        chosen = torch.cat(ids)
        if chosen.numel() == 0:
            raise InvalidSettingError(f"{e.label}: it corrupts no token, so no scale to compute")
        with torch.no_grad():
            values = embed(chosen.to(embed.weight.device)).float()
        out[i] = NOISE_STDS * float(values.std())
    return out


def draw(intervention: Intervention, k: int, scales: dict[int, float]) -> Intervention:
    """Draw `k` of `intervention`: each noise edit with draws= under seed `seed + k`, and each
    `scale="rome"` given its number in `scales` (`rome_scales`); the rest as they are."""
    edits = []
    for i, e in enumerate(intervention.edits):
        if e.op == "noise" and ("draws" in e.params or e.params.get("scale") == "rome"):
            params = {key: v for key, v in e.params.items() if key != "draws"}
            if "draws" in e.params:
                params["seed"] = params.get("seed", 0) + k
            if params.get("scale") == "rome":
                params["scale"] = scales[i]
            e = dataclasses.replace(e, params=params)
        edits.append(e)
    return Intervention(tuple(edits))
