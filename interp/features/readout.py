"""`read_features`: what a report shows of a dictionary on a trace, as one result: each
generated token's top features, each step's feature attribution (with the decoder bias and
the reconstruction error), and a card per feature shown (its top contexts and density from the
dictionary's stored contexts, its logit effect: the decoder row through the final norm's gain
and the unembedding). Saved in the trace directory (`features.json`, one entry per dictionary)
so the page is written without the model."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.dictionaries.dictionary import Dictionary
from interp.errors import InvalidSettingError, TraceFormatError
from interp.features.attribution import feature_attribution
from interp.features.contexts import BEFORE, FeatureContexts
from interp.features.reading import trace_features
from interp.files import atomic
from interp.files.store import read_json
from interp.models.model import Model
from interp.models.surgery import norm_gain
from interp.trace.trace import Trace

FILE = "features.json"
FORMAT = "interp-features/1"


@dataclass
class FeatureCard:
    """One feature: how often it fires on held-out text, its top contexts there (tokens, the
    activating token's index, the activation), and the tokens its decoder row promotes and
    suppresses most (direct effect on the logits, through the final norm's gain)."""

    feature: int
    density: float | None
    contexts: list[dict[str, Any]]
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]


@dataclass
class FeatureReadout:
    """A dictionary read on a trace: `top[j]` the (feature, activation) pairs of generated
    token j, `attribution[j]` the top (feature, logit attribution) pairs toward token j with
    the bias, error and total terms, `cards` every feature shown."""

    dictionary: dict[str, Any]  # path, hook, architecture, width, k, evaluation
    tokens: list[str]
    top: list[list[tuple[int, float]]]
    attribution: list[dict[str, Any]]
    cards: dict[int, FeatureCard] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cards"] = {str(k): asdict(v) for k, v in self.cards.items()}
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FeatureReadout:
        """From its JSON form (pairs read back as tuples)."""

        def pairs(items: list[list[Any]]) -> list[tuple[Any, float]]:
            return [(a, float(b)) for a, b in items]

        cards = {
            int(k): FeatureCard(
                int(v["feature"]),
                v["density"],
                list(v["contexts"]),
                pairs(v["promoted"]),
                pairs(v["suppressed"]),
            )
            for k, v in value["cards"].items()
        }
        top = [[(int(i), float(x)) for i, x in row] for row in value["top"]]
        attribution = [{**a, "features": pairs(a["features"])} for a in value["attribution"]]
        return cls(dict(value["dictionary"]), list(value["tokens"]), top, attribution, cards)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Add (or replace: same dictionary folder) this readout in DIR/features.json."""
        path = Path(directory) / FILE
        same = self.dictionary["path"]
        kept = [r for r in load_readouts(directory) if r.dictionary["path"] != same]
        entries = [r.json() for r in kept] + [self.json()]
        atomic.write_text(path, json.dumps({"format": FORMAT, "readouts": entries}))
        return path


def load_readouts(directory: str | os.PathLike[str]) -> list[FeatureReadout]:
    """The readouts saved in a trace directory (none if it has no features.json)."""
    path = Path(directory) / FILE
    if not path.exists():
        return []
    value = read_json(path)
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise TraceFormatError(f"{path} is not an interp features file ({FORMAT})")
    try:
        return [FeatureReadout.from_json(r) for r in value["readouts"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceFormatError(f"{path} is damaged ({exc})") from None


def check_top(top: Any) -> int:
    """`top`: how many features a token shows, a positive integer (0 would show none of the
    active ones, and a negative one is no count)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidSettingError(f"top is the features shown per token, at least 1; got {top!r}")
    return top


def read_features(
    model: Model, trace: Trace, d: Dictionary, *, top: int = 5, contexts: int = 5
) -> FeatureReadout:
    """The readout of `d` on `trace`'s generated tokens: `top` features per token and per
    step's attribution, and a card for each feature shown."""
    check_top(top)
    acts = trace_features(model, trace, d)  # [pos, d_sae]
    p = trace.prompt_len
    gen = acts[p:]
    values, ids = gen.topk(min(top, d.d_sae), dim=-1)
    per_token = [
        [(int(i), round(float(v), 4)) for i, v in zip(ri, rv, strict=True) if v > 0]
        for ri, rv in zip(ids, values, strict=True)
    ]
    attribution: list[dict[str, Any]] = []
    if trace.n_generated > 0:
        fa = feature_attribution(model, trace, d)
        for j in range(len(fa.positions)):
            attribution.append(
                {
                    "features": [(i, round(v, 4)) for i, v in fa.top(j, top)],
                    "bias": round(float(fa.bias[j]), 4),
                    "error": round(float(fa.error[j]), 4),
                    "total": round(float(fa.total[j]), 4),
                }
            )
    shown = sorted(
        {i for row in per_token for i, _ in row}
        | {i for a in attribution for i, _ in a["features"]}
    )
    stored = FeatureContexts.load(d.path) if d.path is not None else None
    with torch.no_grad():  # every shown feature's logit effect in one product
        rows = d.W_dec[shown].float().cpu()
        gain = norm_gain(model, model.bridge.ln_final)
        effects = (rows if gain is None else rows * gain) @ model.bridge.W_U.detach().float().cpu()
    cards = {i: _card(model, i, effects[n], stored, contexts) for n, i in enumerate(shown)}
    info = {
        "path": str(d.path) if d.path else None,
        "hook": d.hook,
        "writes": d.writes,
        "architecture": d.architecture,
        "width": d.d_sae,
        "k": d.k,
        "evaluation": d.info.get("evaluation"),
        "contexts": stored is not None,
        "contexts_tokens": stored.tokens if stored else None,
    }
    return FeatureReadout(info, trace.token_strs[p:], per_token, attribution, cards)


def _card(
    model: Model, i: int, effect: Tensor, stored: FeatureContexts | None, n: int
) -> FeatureCard:
    """Feature `i`'s card, from its logit effect `[vocab]`."""
    up, down = effect.topk(8), (-effect).topk(8)
    promoted = [
        (model.token_strs([int(t)])[0], round(float(v), 4))
        for t, v in zip(up.indices, up.values, strict=True)
    ]
    suppressed = [
        (model.token_strs([int(t)])[0], round(-float(v), 4))
        for t, v in zip(down.indices, down.values, strict=True)
    ]
    found: list[dict[str, Any]] = []
    density = None
    if stored is not None:
        density = float(stored.density[i])
        for value, ids in zip(stored.values[i], stored.context_ids[i], strict=True):
            if float(value) <= 0 or len(found) >= n:
                continue
            start = int((ids[:BEFORE] < 0).sum())
            kept = [int(t) for t in ids if t >= 0]
            found.append(
                {
                    "tokens": model.token_strs(kept),
                    "at": BEFORE - start,
                    "value": round(float(value), 4),
                }
            )
    return FeatureCard(i, density, found, promoted, suppressed)
