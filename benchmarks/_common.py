"""What every benchmark script shares: its options, the settings line, and printing and saving
its result with the table the README shows (`benchmarks/tables.py` writes it there)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

# tests/naive.py holds the slow, obviously right reference implementations the benchmarks
# compare against (the tests hold interp to them too)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def arguments(doc: str, *, rounds: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark takes: --tokens, --json, and --rounds where it repeats."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100, help="new tokens in the trace")
    if rounds:
        parser.add_argument("--rounds", type=int, default=3, help="repetitions (median kept)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser


def settings_line(what: str, device: str = "cpu") -> str:
    """The machine and library versions a table was measured with, and `what` was measured."""
    import torch

    import interp

    v = interp.provenance.library_versions()
    where = f"{torch.cuda.get_device_name(device)}, " if device.startswith("cuda") else ""
    return (
        f"{where}{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, fp32, "
        f"torch {v['torch']}, transformers {v['transformers']}, transformer-lens "
        f"{v['transformer-lens']}; {what}"
    )


def emit(
    result: dict[str, Any],
    path: Path | None,
    rows: list[list[str]],
    settings: str,
    columns: list[str] | None = None,
) -> int:
    """Print the result and, with --json, save it with its README table (`rows`: measure,
    result, or one cell per `columns`; `settings`: the line above the table)."""
    table: dict[str, Any] = {"settings": settings, "rows": rows}
    if columns is not None:
        table["columns"] = columns
    result = {**result, "table": table}
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return 0


def met(value: float, target: float, *, at_most: bool = False) -> str:
    """'met' or 'not met' for a target (at least `target`, or at most with `at_most`)."""
    ok = value <= target if at_most else value >= target
    return "met" if ok else "**not met**"
