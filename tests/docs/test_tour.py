"""The notebook tour (experiments/tour.ipynb), executed top to bottom in a real Jupyter kernel:
any error fails; each result shows itself; what the tour says is checked against its outputs."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_model
TOUR = Path(__file__).resolve().parents[2] / "experiments" / "tour.ipynb"


@pytest.fixture(scope="module")
def executed(smollm):  # the embedded model is converted and cached before the kernel loads it
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "docs_tour", TOUR.parent.parent / "docs" / "tour.py"
    )
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    return tour.execute(timeout=600)  # what `make docs` runs; any cell's error fails here


def test_the_tour_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(TOUR, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.cells[0].cell_type == "markdown"
    # each code cell follows a sentence on how to read what it shows
    assert all(c.cell_type == "markdown" or c.cell_type == "code" for c in nb.cells)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 8


def test_the_tour_runs_and_every_result_shows_itself(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs, cell.source[:60]
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors
    shown = [set(o.get("data", {})) for c in code for o in c.outputs]
    assert sum("text/html" in kinds for kinds in shown) >= 6  # trace, lens, roles, ...
    assert any("image/png" in kinds for kinds in shown)  # the paper figure
    html = "".join(o["data"]["text/html"] for c in code for o in c.outputs if "data" in o
                   and "text/html" in o["data"])  # fmt: skip
    assert html.count("var CircuitsVis=") == 1  # the bundle once per kernel
    assert "None" not in re.sub(r"<[^>]+>", " ", html).split()


def test_the_cache_decomposition_in_the_tour_sums_to_the_logit(executed):
    text = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    found = re.search(r"sum of parts (-?[\d.]+), the logit itself (-?[\d.]+)", text)
    assert found and abs(float(found[1]) - float(found[2])) <= 2e-3
