"""The tokens a metric or an attribution is about: a text that is one token, an id in range,
or each row's own field (a JSON Lines prompts file's "answer"/"distractor" texts, or
"answer_id"/"distractor_id" token ids)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.models.model import Model
from interp.trace.trace import Trace

Answer = str | int | None  # a text, a token id, or None: each row's own field


def single_token(model: Model, text: str | int, what: str = "the token") -> int:
    """The id of a text that is one token of the model's tokenizer (or an id in range)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if not 0 <= text < model.d_vocab:
            raise InvalidSettingError(f"{what} id {text} is outside the vocabulary")
        return text
    if not isinstance(text, str) or not text:
        raise InvalidSettingError(f"{what} must be a non-empty text or a token id, got {text!r}")
    ids = model.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = " + ".join(repr(s) for s in model.token_strs(ids))
        raise InvalidSettingError(
            f"{what} {text!r} is not a single token of {model.name}: it tokenizes as {pieces}"
        )
    return ids[0]


def row_tokens(model: Model, traces: Sequence[Trace], given: Answer, key: str) -> Tensor:
    """One token id per row: `given`, or each row's `meta[key]`."""
    out = []
    for i, trace in enumerate(traces):
        if given is not None:
            out.append(single_token(model, given, key))
            continue
        where = trace.origin or f"row {i} ({trace.prompt[:40]!r})"
        text, token_id = trace.meta.get(key), trace.meta.get(f"{key}_id")
        if text is not None and not isinstance(text, str):
            raise InvalidSettingError(
                f"{where}: the {key!r} field must be a text, got {text!r:.40}; give a token id "
                f"as {key}_id"
            )
        if token_id is not None and (isinstance(token_id, bool) or not isinstance(token_id, int)):
            raise InvalidSettingError(f"{where}: {key}_id must be an integer, got {token_id!r:.40}")
        if text is None and token_id is None:
            raise InvalidSettingError(
                f"{where}: no {key!r} field for the metric: give the metric's {key}, or a "
                f"JSON Lines prompts file with {key!r} (or {key + '_id'!r}) on every line"
            )
        chosen: str | int = text if text is not None else int(token_id or 0)
        out.append(single_token(model, chosen, f"the {key} of {where}"))
    return torch.tensor(out)
