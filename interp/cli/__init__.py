"""The `interp` command line: `options` (the parser), `commands` (one function a
subcommand), `inputs` (what they read and check first), `app` (`main`: errors to one line
and an exit status)."""

from interp.cli.app import EXIT_BAD_INPUT, EXIT_ERROR, console_main, main
from interp.cli.inputs import DEFAULT_MODEL, slug
from interp.cli.options import build_parser

__all__ = [
    "DEFAULT_MODEL",
    "EXIT_BAD_INPUT",
    "EXIT_ERROR",
    "build_parser",
    "console_main",
    "main",
    "slug",
]
