"""Results on disk beside a trace: which file holds what, written atomically, read back
checked. Each result type's `save` and `load` go through here; nothing else names the files.

A result is a key of the trace's summary.json (its headline figures and labels) and, where it
has tensors, one safetensors file. The tensors are written first, so summary.json never names
results that are not there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from interp import atomic
from interp.errors import TraceFormatError
from interp.trace import ACTIVATIONS, SUMMARY, read_summary

ANALYSIS_FILE = "analysis.safetensors"
SWEEP_FILE = "sweep.safetensors"
ABLATIONS_DIR = "ablations"
EFFECT_FILE = "effect.json"


def write_results(
    directory: str | os.PathLike[str],
    key: str,
    summary: dict[str, Any],
    tensors: dict[str, Tensor] | None = None,
    tensors_file: str | None = None,
) -> None:
    """Add results to a trace directory: `summary.json[key]` and, optionally, a tensors file."""
    from safetensors.torch import save_file

    path = Path(directory)
    current = read_summary(path)
    if tensors is not None and tensors_file is not None:
        with atomic.atomic_file(path / tensors_file) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp)
    current[key] = summary
    atomic.write_text(path / SUMMARY, json.dumps(current, indent=1, ensure_ascii=False))


def has_results(directory: str | os.PathLike[str], key: str, tensors_file: str) -> bool:
    """True when the trace directory holds the results `key` and their tensors file."""
    path = Path(directory)
    return key in read_summary(path) and (path / tensors_file).is_file()


def read_results(
    directory: str | os.PathLike[str], key: str, tensors_file: str, needed: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """`summary.json[key]` and the tensors file, with a clear error if either is missing or
    lacks one of the `needed` tensors."""
    from safetensors.torch import load_file

    path = Path(directory)
    summary = read_summary(path).get(key)
    if not isinstance(summary, dict):
        raise TraceFormatError(f"{path} holds no {key} results")
    try:
        tensors = load_file(path / tensors_file)
    except (OSError, ValueError, RuntimeError) as exc:
        message = f"{path / tensors_file}: cannot read the {key} results ({exc})"
        raise TraceFormatError(message) from None
    absent = [name for name in needed if name not in tensors]
    if absent:
        raise TraceFormatError(f"{path / tensors_file} lacks {', '.join(absent[:3])}")
    return summary, tensors


def read_window(
    directory: str | os.PathLike[str], names: Sequence[str], start: int
) -> list[Tensor]:
    """Query-key activations ([head, query, key]) of a trace, cropped to positions start..,
    read without loading the rest of the file."""
    from safetensors import safe_open

    path = Path(directory) / ACTIVATIONS
    try:
        with safe_open(path, framework="pt") as fh:
            keys = set(fh.keys())
            return [fh.get_slice(name)[:, start:, start:] for name in names if name in keys]
    except (OSError, ValueError, RuntimeError) as exc:
        raise TraceFormatError(f"{path}: cannot read the activations ({exc})") from None


def read_json_files(directory: str | os.PathLike[str], pattern: str) -> list[dict[str, Any]]:
    """Every JSON object in files matching `pattern` below `directory`, in name order; a
    stray unreadable file is skipped (not worth refusing a report for)."""
    out = []
    for file in sorted(Path(directory).glob(pattern)):
        try:
            value = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
