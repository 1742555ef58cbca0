"""Shared option parsing for the experiment scripts (thin: no analysis logic here)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def quiet() -> None:
    """The CLI's output settings: progress bars only in a terminal, no library chatter."""
    import interp

    interp.program.configure_output()


def load_model(name: str, device: str) -> Any:
    """`interp.load_model`, with the imported model stack frozen out of garbage collection
    first, as the CLI does (`interp.program.freeze_imports`): a script owns its process.
    Called only once the options are checked, so a bad option fails without importing it."""
    import interp

    interp.program.freeze_imports()
    return interp.load_model(name, device=device)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=None, help="model name (default: see the script)")
    p.add_argument("--seed", type=int, default=0, help="sampler / probe seed (default: 0)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    p.add_argument(
        "--format",
        dest="formats",
        type=figure_formats,
        default=("png",),
        help="figure formats, e.g. png,svg,pdf (PNG always: the page shows it)",
    )
    return p


def figure_formats(text: str) -> tuple[str, ...]:
    from interp.errors import InvalidSettingError
    from interp.report import parse_formats

    try:
        return parse_formats(text)
    except InvalidSettingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fail(message: object) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2
