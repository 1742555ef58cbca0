"""Checks of user input shared by the library and the CLI (which runs them before loading a
model): texts, token ids and seeds. Each bad value gets an `InvalidSettingError` that says
what is wrong with it."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from interp.errors import InvalidSettingError

MAX_SEED = 2**64 - 1  # what torch.Generator.manual_seed takes


def text(value: Any, what: str, *, blank_ok: bool = False) -> str:
    """A non-empty string (not only whitespace, unless `blank_ok`) that is valid Unicode (a
    command-line argument with bytes that are not UTF-8 arrives with lone surrogates, which
    no tokenizer takes)."""
    if not isinstance(value, str):
        raise InvalidSettingError(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidSettingError(
            f"{what} is not valid UTF-8 text (a byte that is not UTF-8 at character {exc.start})"
        ) from None
    if not (value if blank_ok else value.strip()):
        raise InvalidSettingError(f"{what} is empty")
    return value


def token_ids(value: Any, what: str, vocab: int) -> list[int]:
    """A sequence of integer token ids inside the vocabulary [0, vocab)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes, bytearray)):
        value = value.tolist()  # a tensor or an array
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        raise InvalidSettingError(
            f"{what} must be a string or a sequence of integer token ids, got "
            f"{type(value).__name__}"
        )
    ids = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise InvalidSettingError(
                f"{what} token ids must be integers, got {type(item).__name__} {item!r:.40}"
            )
        ids.append(int(item))
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise InvalidSettingError(
            f"{what} token id {bad[0]} is outside the vocabulary [0, {vocab})"
        )
    return ids


def seed(value: Any) -> int | None:
    """None (pick one), or an integer in [0, 2**64 - 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidSettingError(f"seed must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) <= MAX_SEED:
        raise InvalidSettingError(f"seed must be in [0, 2**64 - 1], got {value}")
    return int(value)


def seeds(values: Any, n: int, forced: bool) -> list[int] | None:
    """One seed per row (`n`), each checked as `seed` is; None: derived from the one seed."""
    if values is None:
        return None
    if forced:
        raise InvalidSettingError("seeds= goes with sampling, not with a forced continuation")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
        raise InvalidSettingError(f"seeds= takes one seed per row ({n})")
    out = [seed(v) for v in values]
    return [int(v) if v is not None else _no_seed() for v in out]


def _no_seed() -> int:
    raise InvalidSettingError("seeds= takes integers, not None")
