"""The one atomic-write helper: a directory or file appears whole or not at all, and an
existing one survives a failed replacement."""

import os

import pytest

from interp.files import atomic


def _fill(directory, text):
    (directory / "a.txt").write_text(text)
    (directory / "sub").mkdir()
    (directory / "sub" / "b.txt").write_text(text)


def test_a_new_directory_appears_whole(tmp_path):
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "new")
        assert not (tmp_path / "out").exists()  # nothing at the target until the end
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_an_existing_directory_is_replaced_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    elif atomic._renameat2() is None:
        pytest.skip("this platform has no renameat2")
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "old")
    (tmp_path / "out" / "only-in-old.txt").write_text("x")
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "new")
    assert (tmp_path / "out" / "a.txt").read_text() == "new"
    assert not (tmp_path / "out" / "only-in-old.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind


def test_the_exchange_swaps_two_directories(tmp_path):
    if atomic._renameat2() is None:
        pytest.skip("this platform has no renameat2")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("b")
    assert atomic._exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "x").read_text() == "b"
    assert (tmp_path / "b" / "x").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        atomic._exchange(tmp_path / "a", tmp_path / "missing")


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_a_failure_while_writing_leaves_the_old_directory(tmp_path, fault):
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "old")
    with pytest.raises(fault), atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "new")
        raise fault("interrupted")
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_a_failure_while_moving_into_place_keeps_the_old_directory(tmp_path, monkeypatch, exchange):
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "old")
    real_replace = os.replace

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    def replace_failing_for_the_new_directory(src, dst):
        if atomic.TMP_MARK in str(src):
            disk_full()
        return real_replace(src, dst)

    if exchange:
        monkeypatch.setattr(atomic, "_exchange", disk_full)
    else:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
        monkeypatch.setattr(atomic.os, "replace", replace_failing_for_the_new_directory)
    with pytest.raises(OSError, match="No space"), atomic.atomic_dir(tmp_path / "out") as tmp:
        _fill(tmp, "new")
    monkeypatch.undo()
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_file_is_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "f.json"
    atomic.write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
