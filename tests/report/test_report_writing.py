"""The one report writer (`interp.report.writing.write_report`) and the one output guard
(`interp.store.check_output_dir`) that every report and result directory goes through."""

import json
import os

import pytest

from interp.errors import OutputPathError
from interp.report.simple import EXPERIMENT_FORMAT, check_experiment_dir
from interp.report.steering import STEERING_FORMAT, check_steering_dir
from interp.report.writing import write_report


def tree(path) -> dict[str, bytes]:
    """Every file below `path` (relative name -> bytes), temporary leftovers included."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_a_report_beside_other_results_replaces_only_its_figures_and_page(tmp_path):
    out = tmp_path / "trace"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "stale.png").write_bytes(b"from an earlier report")
    (out / "rows").mkdir()
    (out / "rows" / "row9.html").write_text("an earlier row")
    (out / "summary.json").write_text('{"format": "interp-trace"}')
    (out / "notes.txt").write_text("the user's")
    rows = {"row0.html": "row zero", "x.js": b"js"}
    page = write_report(
        out, "<html>new</html>", {"a.png": b"A", "a.svg": b"S"}, folders={"rows": rows}
    )
    assert page == out / "index.html"
    assert tree(out) == {
        "figures/a.png": b"A",
        "figures/a.svg": b"S",
        "index.html": b"<html>new</html>",
        "notes.txt": b"the user's",
        "rows/row0.html": b"row zero",
        "rows/x.js": b"js",
        "summary.json": b'{"format": "interp-trace"}',
    }
    assert [p.name for p in tmp_path.iterdir()] == ["trace"]  # no temporary left beside it


def test_a_report_of_its_own_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "experiment"
    write_report(out, "one", {"old.png": b"1"}, records={"summary.json": "{}", "stale": b"x"})
    records = {"summary.json": '{"k": "é"}', "v.bin": lambda path: path.write_bytes(b"v")}
    page = write_report(out, "two", {"new.png": b"2"}, records=records)
    assert page == out / "index.html"
    assert tree(out) == {
        "figures/new.png": b"2",
        "index.html": b"two",
        "summary.json": '{"k": "é"}'.encode(),
        "v.bin": b"v",
    }

    def fails(path):
        raise OSError("disk full")

    before = tree(out)
    with pytest.raises(Exception, match="disk full"):
        write_report(out, "three", {"x.png": b"3"}, records={"summary.json": "{}", "f": fails})
    assert tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["experiment"]


def _steering_dir(path, *extra):
    path.mkdir()
    (path / "steering.json").write_text(json.dumps({"format": STEERING_FORMAT}))
    for name in ("vector.safetensors", "index.html", *extra):
        (path / name).write_text("x")
    (path / "figures").mkdir()


def test_one_guard_for_steering_and_experiment_directories(tmp_path, monkeypatch):
    ours = tmp_path / "steer"
    _steering_dir(ours)
    check_steering_dir(ours)  # its own earlier output is replaced
    check_steering_dir(tmp_path / "new")
    _steering_dir(tmp_path / "with_notes", "notes.txt")
    with pytest.raises(OutputPathError, match=r"other files .* \(notes\.txt\)"):
        check_steering_dir(tmp_path / "with_notes")  # never deleted with the evaluation
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "steering.json").write_text('{"format": "interp-trace"}')
    with pytest.raises(OutputPathError, match="is not a steering evaluation; refusing"):
        check_steering_dir(tmp_path / "other")
    with pytest.raises(OutputPathError, match="is not an interp experiment; refusing"):
        check_experiment_dir(tmp_path / "other")
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    (experiment / "summary.json").write_text(json.dumps({"format": EXPERIMENT_FORMAT}))
    (experiment / "facts").mkdir()  # an experiment's script writes its pages beside its report
    check_experiment_dir(experiment)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="exists and is not a directory"):
        check_experiment_dir(tmp_path / "file")
    monkeypatch.chdir(experiment)  # the shared guard's checks hold for every kind
    with pytest.raises(OutputPathError, match="is the current directory"):
        check_experiment_dir(".")
    with pytest.raises(OutputPathError, match="too long"):
        check_steering_dir(tmp_path / ("n" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 3)))
