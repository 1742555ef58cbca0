"""The on-disk layout of a trace directory: which file holds what, read back safely (regular
files only, sizes checked before anything is read), written atomically, and where a new trace
may go. Each result type's `save` and `load` go through here; nothing else names the files.

A result is a key of the trace's summary.json (its headline figures and labels) and, where it
has tensors, one safetensors file. The tensors are written first, so summary.json never names
results that are not there.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from interp.errors import InvalidSettingError, OutputPathError, TraceFormatError
from interp.files import atomic
from interp.files.headers import safetensors_header

FORMAT = "interp-trace"
SET_FORMAT = "interp-trace-set"  # a TraceSet: every row in one summary.json and two files
FORMAT_VERSION = 1
SUMMARY = "summary.json"
STEPS = "steps.safetensors"
ACTIVATIONS = "activations.safetensors"
ANALYSIS_FILE = "analysis.safetensors"
SWEEP_FILE = "sweep.safetensors"
REPORT_FILE = "index.html"
FIGURES_DIR = "figures"
ABLATIONS_DIR = "ablations"
INTERVENTIONS_DIR = "interventions"  # a run's tokens recorded again under an intervention
EFFECT_FILE = "effect.json"
ROWS_DIR = "rows"  # a trace set's report: one page per row
# What interp writes in a trace directory: replacing the trace replaces these, and a trace
# directory holding anything else is not replaced (the user's files, or ablations of it).
TRACE_ENTRIES = frozenset(
    {SUMMARY, STEPS, ACTIVATIONS, ANALYSIS_FILE, SWEEP_FILE, REPORT_FILE, FIGURES_DIR, ROWS_DIR}
)

__all__ = ["check_output_dir", "is_trace_dir", "read_summary"]

MAX_JSON_BYTES = 256 << 20


@dataclass(frozen=True)
class SourceFiles:
    """Where a trace's record came from, for error messages (a row of a set: its files,
    labelled with the row)."""

    summary: Path
    steps: Path
    activations: Path

    def __init__(self, directory: Path, label: str = "") -> None:
        object.__setattr__(self, "summary", Path(str(directory / SUMMARY) + label))
        object.__setattr__(self, "steps", Path(str(directory / STEPS) + label))
        object.__setattr__(self, "activations", Path(str(directory / ACTIVATIONS) + label))


# ---------------------------------------------------------------------------------------
# Reading


def regular_file(path: Path) -> int:
    """The size of `path`, which must be a regular file (a FIFO, a device or a directory is
    refused before it is opened)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TraceFormatError(f"{path} is missing") from None
    except OSError as exc:
        raise TraceFormatError(f"{path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise TraceFormatError(f"{path} is not a regular file")
    return info.st_size


def read_json(path: Path, limit: int | None = None) -> Any:
    """A JSON file of at most `limit` bytes (default `MAX_JSON_BYTES`), or a clear error."""
    limit = MAX_JSON_BYTES if limit is None else limit
    size = regular_file(path)
    if size > limit:
        raise TraceFormatError(f"{path} is {size:,} bytes, more than a trace's {limit:,}")
    try:
        with path.open("rb") as fh:
            return json.loads(fh.read(limit + 1))
    except RecursionError:
        raise TraceFormatError(f"{path} is nested too deeply to be interp's") from None
    except (OSError, ValueError) as exc:
        raise TraceFormatError(f"{path} is not readable JSON ({exc})") from None


def load_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """Every tensor of a safetensors file, after checking the file (a clear error naming it)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    regular_file(path)
    try:
        safetensors_header(path)
        return load_file(path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TraceFormatError(f"{path}: cannot read the {what} ({exc})") from None


def read_summary(path: Path, formats: tuple[str, ...] = (FORMAT,)) -> dict[str, Any]:
    """summary.json of a trace directory (or of a trace set, where `formats` has it), after
    checking that it is one, of a known version."""
    if not path.is_dir():
        raise TraceFormatError(f"{path} is not a trace directory (it does not exist)")
    if not (path / SUMMARY).exists():
        raise TraceFormatError(f"{path} is not an interp trace (no {SUMMARY})")
    summary = read_json(path / SUMMARY)
    kind = summary.get("format") if isinstance(summary, dict) else None
    if kind == SET_FORMAT and kind not in formats:
        raise TraceFormatError(
            f"{path} holds a trace set, not one trace: load it with interp.TraceSet.load"
        )
    if kind == FORMAT and kind not in formats:
        raise TraceFormatError(f"{path} holds one trace, not a set: load it with interp.Trace.load")
    if not isinstance(summary, dict) or kind not in (FORMAT, SET_FORMAT, *formats):
        raise TraceFormatError(f"{path} is not an interp trace ({SUMMARY} has no interp format)")
    version = summary.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise TraceFormatError(
            f"{path} holds a trace of format version {json.dumps(version)} ({SUMMARY}'s "
            f"format_version); this interp reads version {FORMAT_VERSION}: record it again"
        )
    return summary


def is_trace_dir(path: Path, formats: tuple[str, ...] = ()) -> bool:
    """A directory holding a trace or a trace set (or a directory of one of `formats`)."""
    try:
        read_summary(path, (FORMAT, SET_FORMAT, *formats))
    except TraceFormatError:
        return False
    return True


def has_results(directory: str | os.PathLike[str], key: str, tensors_file: str) -> bool:
    """True when the trace directory holds the results `key` and their tensors file."""
    path = Path(directory)
    return key in read_summary(path, (FORMAT, SET_FORMAT)) and (path / tensors_file).exists()


def read_results(
    directory: str | os.PathLike[str],
    key: str,
    tensors_file: str,
    needed: Sequence[str] = (),
    *,
    missing: str | None = None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """`summary.json[key]` and the tensors file, with a clear error if either is missing
    (`missing`: what to say when the results are absent) or lacks one of the `needed`
    tensors."""
    path = Path(directory)
    summary = read_summary(path, (FORMAT, SET_FORMAT)).get(key)
    if not isinstance(summary, dict):
        raise TraceFormatError(missing or f"{path} holds no {key} results")
    tensors = load_tensors(path / tensors_file, f"{key} results")
    absent = [name for name in needed if name not in tensors]
    if absent:
        raise TraceFormatError(f"{path / tensors_file} lacks {', '.join(absent[:3])}")
    return summary, tensors


def read_window(
    directory: str | os.PathLike[str], names: Sequence[str], start: int, prefix: str = ""
) -> list[Tensor]:
    """Query-key activations ([head, query, key]) of a trace (of a set's row: its key
    `prefix`), cropped to positions start.., read without loading the rest of the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / ACTIVATIONS
    regular_file(path)
    try:
        safetensors_header(path)
        with safe_open(path, framework="pt") as fh:
            keys = set(fh.keys())
            return [
                fh.get_slice(prefix + name)[:, start:, start:]
                for name in names
                if prefix + name in keys
            ]
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TraceFormatError(f"{path}: cannot read the activations ({exc})") from None


# ---------------------------------------------------------------------------------------
# Writing


def dumps(value: Any) -> str:
    """JSON as interp writes it: strict (a NaN or infinity is an error, never a bare `NaN`
    that other parsers reject), UTF-8 text kept readable, and never larger than interp reads
    back (`MAX_JSON_BYTES`): what cannot be written right is refused before any write."""
    try:
        text = json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidSettingError(
            f"a record interp would write is not strict JSON ({exc})"
        ) from None
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_BYTES:
        raise InvalidSettingError(
            f"the record to write is {size:,} bytes of JSON, more than the {MAX_JSON_BYTES:,} "
            "interp reads back (a prompts file's extra fields are copied into each of its "
            "rows' records: keep them small)"
        )
    return text


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
    current = read_summary(path, (FORMAT, SET_FORMAT))
    current[key] = summary
    text = dumps(current)  # before any write: a value JSON cannot hold fails here
    if tensors is not None and tensors_file is not None:
        with atomic.atomic_file(path / tensors_file) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp)
    atomic.write_text(path / SUMMARY, text)


def check_output_dir(
    path: Path,
    *,
    own: frozenset[str] | None = TRACE_ENTRIES,
    formats: tuple[str, ...] = (),
    record: str | None = None,
    what: str = "an interp trace",
) -> None:
    """Refuse an output directory we may not (over)write, before any work is done: the one
    output guard of every result and report directory.

    Allowed: a path that does not exist yet, an empty directory, or an interp trace (or a
    directory of one of `formats`; with `record`, the JSON file whose "format" names the
    directory's kind, `what`) holding only what interp writes there (`own`; None: all it
    holds is the kind's own), which is replaced. The location is tried by creating the
    temporary directory the write will use, so a path that cannot be written fails now.
    """
    target = Path(os.path.abspath(atomic.resolve_target(path)))
    cwd = Path.cwd()
    if target == cwd or target in cwd.parents:
        raise OutputPathError(
            f"output directory {str(path) or '.'!r} is the current directory or holds it; "
            "name a directory inside it"
        )
    if target.exists():
        if not target.is_dir():
            raise OutputPathError(f"output path {path} exists and is not a directory")
        held = atomic.take_over_stale_locks(target)
        if held:
            raise OutputPathError(
                f"output directory {path} is in use: another run holds {held[0].name} in it; "
                "wait for it to finish or choose another --out"
            )
        entries = list(target.iterdir())
        ours = (
            is_trace_dir(target, formats) if record is None else _kind(target / record) in formats
        )
        if entries and not ours:
            raise OutputPathError(
                f"output directory {path} exists and is not {what}; refusing to "
                "overwrite it (choose another --out)"
            )
        others = sorted(
            e.name + ("/" if e.is_dir() else "") for e in entries if own and e.name not in own
        )
        if others:
            shown = ", ".join(others[:4]) + (
                f" and {len(others) - 4} more" if len(others) > 4 else ""
            )
            raise OutputPathError(
                f"output directory {path} holds {what} and other files that replacing it "
                f"would delete ({shown}); move them or choose another --out"
            )
    atomic.check_location(path, target)


def _kind(record: Path) -> Any:
    """The "format" a directory's record names (None where it is not interp's JSON)."""
    try:
        value = read_json(record)
    except TraceFormatError:
        return None
    return value.get("format") if isinstance(value, dict) else None
