"""Run the notebook tour (experiments/tour.ipynb) in a Jupyter kernel and write the executed
copy, outputs and all, to build/docs/tour.ipynb, where the site's build picks it up."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "experiments" / "tour.ipynb"
OUT = ROOT / "build" / "docs" / "tour.ipynb"


def execute(timeout: int) -> nbformat.NotebookNode:
    """The tour run top to bottom in a fresh kernel, from its own folder; raises
    CellExecutionError (the cell and its traceback) on any error. tests/docs/test_tour.py runs
    it."""
    nb = nbformat.read(TOUR, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(TOUR.parent)}},
    ).execute()  # fmt: skip
    return nb


def main() -> int:
    nb = execute(timeout=900)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(OUT)
    print(f"the tour, executed: {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
