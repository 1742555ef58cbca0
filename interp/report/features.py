"""The report's features section, from the readouts saved in a trace directory
(`features.json`, written by `interp features`): per dictionary, each generated token's top
features, each step's feature attribution, and a card per feature (density, top contexts,
logit effect). Without readouts it says how to get them. Never runs the model."""

from __future__ import annotations

import os
from typing import Any

from interp.features.readout import FeatureReadout, load_readouts
from interp.report.tokens import visible

HOW_TO = (
    "`make features` trains SmolLM2's default dictionaries (about 40 minutes on two cores; "
    "`interp dictionaries` lists them), then `interp features TRACE_DIR --dictionary DIR` "
    "adds their features to this page. Any SAELens or Gemma Scope 2 folder works too."
)


def feature_sections(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One template context per saved readout (an empty list when there are none)."""
    return [_section(r, i) for i, r in enumerate(load_readouts(directory))]


def _section(r: FeatureReadout, index: int) -> dict[str, Any]:
    info = r.dictionary
    evaluation = info.get("evaluation") or {}
    figures = ", ".join(
        f"{label} {evaluation[key]:.3f}"
        for key, label in (
            ("fvu", "FVU"),
            ("l0", "L0"),
            ("loss_recovered", "loss recovered"),
            ("kl", "KL"),
        )
        if isinstance(evaluation.get(key), (int, float))
    )
    anchor = f"f{index}-"
    tokens = []
    for j, (token, row) in enumerate(zip(r.tokens, r.top, strict=True)):
        att = r.attribution[j] if j < len(r.attribution) else None
        tokens.append(
            {
                "text": visible(token),
                "features": [(i, v, anchor + str(i)) for i, v in row],
                "attribution": None
                if att is None
                else {**att, "features": [(i, v, anchor + str(i)) for i, v in att["features"]]},
            }
        )
    cards = []
    for i, card in sorted(r.cards.items()):
        contexts = [
            {
                "before": [visible(t) for t in c["tokens"][: c["at"]]],
                "token": visible(c["tokens"][c["at"]]),
                "after": [visible(t) for t in c["tokens"][c["at"] + 1 :]],
                "value": c["value"],
            }
            for c in card.contexts
        ]
        cards.append(
            {
                "id": anchor + str(i),
                "feature": i,
                "density": card.density,
                "contexts": contexts,
                "promoted": [(visible(t), v) for t, v in card.promoted],
                "suppressed": [(visible(t), v) for t, v in card.suppressed],
            }
        )
    return {"info": info, "figures": figures, "tokens": tokens, "cards": cards}
