"""What every benchmark script shares: its options, and printing and saving its result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def emit(result: dict, path: Path | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0
