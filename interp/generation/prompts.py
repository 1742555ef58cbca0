"""Prompts from a file, for a batch: a text file (one prompt a line, blank lines skipped) or
JSON Lines (`.jsonl`: an object a line with `"prompt"` and an optional `"continuation"`; other
fields are kept). Lines end at `\n` (or `\r\n`) only, so a form feed or U+2028 inside a line
stays in its prompt; one leading byte-order mark is dropped. Every problem names the file and
the line.

The metrics' answers: `"answer"` and `"distractor"` are texts; a token id is given explicitly
as `"answer_id"` or `"distractor_id"` (a number in `"answer"` would be a year, not an id)."""

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
MAX_DEPTH = 32  # of nested arrays and objects in a line's fields
ANSWER_KEYS = ("answer", "distractor")  # texts; "<key>_id" gives a token id instead


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
    text = text.removeprefix("\ufeff")
    out = []
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        where = f"{file}:{number}"
        if not raw.strip():
            continue
        if not jsonl:
            out.append(PromptLine(number, inputs.text(raw, f"{where}: the prompt")))
            continue
        record = _json_line(raw, where)
        if not isinstance(record, dict) or "prompt" not in record:
            raise InvalidSettingError(f'{where}: expected an object with a "prompt" field')
        _check_answers(record, where)
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


def _json_line(raw: str, where: str) -> Any:
    """One line's JSON: strict (no NaN or infinity, which interp could not write back), no
    key twice in an object, nested at most `MAX_DEPTH` deep."""

    def constant(name: str) -> Any:
        raise InvalidSettingError(f"{where}: {name} is not a JSON number (write null or a string)")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise InvalidSettingError(f"{where}: the key {key!r} appears twice in one object")
            out[key] = value
        return out

    depth = nesting(raw)
    if depth > MAX_DEPTH:
        raise InvalidSettingError(
            f"{where}: nested {depth} levels deep; a prompts file's fields take at most {MAX_DEPTH}"
        )
    try:
        return json.loads(raw, parse_constant=constant, object_pairs_hook=pairs)
    except InvalidSettingError:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidSettingError(f"{where}: not valid JSON ({exc})") from None


def nesting(raw: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_answers(record: dict[str, Any], where: str) -> None:
    """`"answer"`/`"distractor"` are texts and `"answer_id"`/`"distractor_id"` token ids."""
    for key in ANSWER_KEYS:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidSettingError(
                f'{where}: "{key}" must be a text, got {json.dumps(value)[:40]}; give a token '
                f'id explicitly as {{"{key}_id": {json.dumps(value)[:20]}}}'
            )
        given = record.get(f"{key}_id")
        if given is not None and (isinstance(given, bool) or not isinstance(given, int)):
            raise InvalidSettingError(
                f'{where}: "{key}_id" must be an integer token id, got {json.dumps(given)[:40]}'
            )
        if value is not None and given is not None:
            raise InvalidSettingError(f'{where}: give "{key}" or "{key}_id", not both')
