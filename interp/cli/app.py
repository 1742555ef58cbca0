"""The `interp` command. Thin: it parses options, calls the library, prints, and turns typed
errors into one line and an exit status. `--help` never imports torch."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from interp.cli.options import build_parser
from interp.cli.program import configure_output
from interp.errors import (
    DictionaryFormatError,
    HookError,
    InterpError,
    InvalidSettingError,
    ModelMismatchError,
    ModelNotInstalledError,
    OutputPathError,
    TraceFormatError,
    UnknownModelError,
)

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run the CLI; returns the exit status (testable without a subprocess). `own_process`:
    the process runs the CLI alone (see `console_main`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.own_process = own_process
    args.kept = []  # what a command has written so far, for an interrupt to report
    try:
        configure_output()
        return int(args.func(args))
    except (
        InvalidSettingError,
        UnknownModelError,
        ModelNotInstalledError,
        ModelMismatchError,
        HookError,
        OutputPathError,
        TraceFormatError,
        DictionaryFormatError,
    ) as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    except InterpError as exc:
        _error(exc)
        return EXIT_ERROR
    except OSError as exc:  # a file system that failed under us, outside interp's own writes
        _error(f"{exc.strerror or exc}: {exc.filename or ''}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        kept = "; ".join(args.kept)
        _error(
            f"interrupted; written before the interrupt: {kept}; nothing after it"
            if kept
            else "interrupted; nothing was written"
        )
        return 130


def _error(message: object) -> None:
    text = " ".join(str(message).split())
    print(f"interp: error: {text}", file=sys.stderr)


def console_main() -> None:
    """The `interp` program's entry point: the process is the CLI's own."""
    try:
        code = main(own_process=True)
    except KeyboardInterrupt:  # before main's own handler is in place
        _error("interrupted; nothing was written")
        code = 130
    if "ray" in sys.modules:  # Ray's threads can crash the interpreter's teardown after an
        sys.stdout.flush()  # interrupt; everything is written (atomically) and Ray shut down
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
