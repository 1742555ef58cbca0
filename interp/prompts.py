"""Prompts from a file, for a batch: a text file (one prompt a line, blank lines skipped) or
JSON Lines (`.jsonl`: an object a line with `"prompt"` and an optional `"continuation"`; other
fields are kept). Every problem names the file and the line."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp import inputs
from interp.errors import InvalidSettingError

MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class PromptLine:
    """One prompt of a file, with the line it came from."""

    line: int
    prompt: str
    continuation: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def read_prompts(path: str | os.PathLike[str]) -> list[PromptLine]:
    """The prompts of a text or JSON Lines file (see the module's docstring)."""
    file = Path(path)
    try:
        info = os.stat(file)
    except OSError as exc:
        raise InvalidSettingError(
            f"{file}: cannot read the prompts file ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidSettingError(f"{file}: the prompts file is not a regular file")
    if info.st_size > MAX_BYTES:
        raise InvalidSettingError(f"{file}: {info.st_size:,} bytes is too large for a prompts file")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSettingError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    jsonl = file.suffix.lower() == ".jsonl"
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{file}:{number}"
        if not raw.strip():
            continue
        if not jsonl:
            out.append(PromptLine(number, inputs.text(raw, f"{where}: the prompt")))
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidSettingError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or "prompt" not in record:
            raise InvalidSettingError(f'{where}: expected an object with a "prompt" field')
        prompt = inputs.text(record["prompt"], f"{where}: the prompt")
        continuation = record.get("continuation")
        if continuation is not None:
            continuation = inputs.text(continuation, f"{where}: the continuation", blank_ok=True)
        rest = {k: v for k, v in record.items() if k not in ("prompt", "continuation")}
        out.append(PromptLine(number, prompt, continuation, rest))
    if not out:
        raise InvalidSettingError(f"{file}: the prompts file holds no prompts")
    if len({p.continuation is None for p in out}) > 1:
        raise InvalidSettingError(
            f"{file}: give every prompt a continuation, or none (a batch is sampled or forced)"
        )
    return out
