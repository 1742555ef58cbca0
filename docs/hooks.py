"""MkDocs hooks: the notebook tour put in place, the command-line reference written from
interp's own parser, and a warning (a failure under `--strict`) for a public name without a
docstring or missing from the API reference."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.interp")
ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "experiments" / "tour.ipynb"
EXECUTED = ROOT / "build" / "docs" / "tour.ipynb"  # written by `make docs` (docs/tour.py)
CLI_MARK = "<!-- cli-reference -->"


def public_name_problems(reference: str) -> list[str]:
    """Each name of `interp.__all__` without a docstring of its own or without a
    `::: interp.NAME` entry in the API reference."""
    import interp

    documented = set(re.findall(r"^::: interp\.(\w+)", reference, re.M))
    problems = []
    for name in interp.__all__:
        obj = getattr(interp, name)
        doc = (getattr(obj, "__doc__", None) or "").strip()
        generated = doc.startswith(f"{name}(")  # a dataclass's signature, not a docstring
        if not isinstance(obj, str) and (not doc or generated):
            problems.append(f"interp.{name} has no docstring")
        if name not in documented:
            problems.append(f"interp.{name} is missing from docs/reference.md")
    return problems


def on_pre_build(config: Any) -> None:
    docs = Path(config["docs_dir"])
    source = (
        EXECUTED if EXECUTED.exists() and EXECUTED.stat().st_mtime >= TOUR.stat().st_mtime else TOUR
    )
    if source is TOUR:
        log.info("the tour is shown without its outputs: `make docs` runs it first")
    target = docs / "tour.ipynb"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    for problem in public_name_problems((docs / "reference.md").read_text()):
        log.warning(problem)


def cli_reference() -> str:
    """`interp --help` and every command's `--help`, as the parser prints them."""
    from interp.cli.options import build_parser

    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["```text\n" + parser.format_help() + "```"]
    for name, command in sub.choices.items():
        parts.append(f"### `interp {name}`\n\n```text\n{command.format_help()}```")
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_reference())
    return markdown
