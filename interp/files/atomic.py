"""Atomic writes: a directory or a file is built under a temporary name beside its target and
renamed into place, so a reader sees the old version or the new one, never half of either.

Temporary names carry the writer's process id (`.<name>.tmp-<pid>-...`), so a later write to
the same target removes the leftovers of a writer that was killed, and puts back a directory
that a killed writer had moved aside. Everything written gets the user's umask. `exclusive`
is the lock that keeps two writers off one target.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from interp.errors import OutputPathError, WriteError

LOCK_NAME = re.compile(r"\..+\.lock")  # `exclusive`'s lock files
TMP_MARK = ".tmp-"  # every temporary name is ".<target name>.tmp-<pid>[-<suffix>]"
OLD_MARK = ".old-"  # a directory moved aside during a replacement: ".<name>.old-<pid>"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling of `target` to fill. When the block ends without an
    error, it replaces `target` whole (an old `target` is deleted only after the swap); when
    the block raises, it is deleted and `target` stays as it was."""
    target = resolve_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    prefix = f".{target.name}{TMP_MARK}{os.getpid()}-"
    with _as_write_error(target):
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        with _as_write_error(target):
            yield tmp
            _apply_umask(tmp)
            replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; renamed onto `path` when the block ends
    without an error, deleted either way."""
    path = resolve_target(path)
    _remove_stale(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with _as_write_error(path):
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _as_write_error(target: Path) -> Iterator[None]:
    """An OS error (or safetensors' own error for one) while writing becomes a `WriteError`
    naming the target."""
    from safetensors import SafetensorError

    try:
        yield
    except WriteError:
        raise
    except (OSError, SafetensorError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise WriteError(f"cannot write {target}: {reason}") from exc


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """`path.write_text(text)` (UTF-8), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """`path.write_bytes(data)`, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def resolve_target(target: str | os.PathLike[str]) -> Path:
    """The path a write lands on: a symbolic link is followed (the write goes where it
    points, and the link stays as it was)."""
    path = Path(target)
    try:
        return Path(os.path.realpath(path)) if path.is_symlink() else path
    except OSError:  # a name too long to look up: whoever writes there gets the error
        return path


def check_location(path: str | os.PathLike[str], target: Path) -> None:
    """Refuse, before any work, a `target` no write can reach (`path`: as the user named it):
    the temporary directory a write to it would make is created and removed."""
    existing = target.parent
    missing = [target.name]
    while not existing.exists():
        missing.append(existing.name)
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{path} is not writable: {existing} is a file, not a directory")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    probe_name = f".{target.name}{TMP_MARK}{os.getpid()}-xxxxxxxx"
    for name in [*missing[1:], probe_name]:
        if len(os.fsencode(name)) > name_max:
            raise OutputPathError(f"cannot write {path}: the name {name[:40]!r}... is too long")
    try:
        probe = tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}{os.getpid()}-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write output directory {path}: {exc.strerror}") from None


def recover(target: Path) -> None:
    """Undo what killed writers left beside `target`: put back a directory moved aside when
    the target itself is missing, and remove their temporaries."""
    for old in _leftovers(target, OLD_MARK):
        if not target.exists():
            os.replace(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)
    _remove_stale(target)


def _remove_stale(target: Path) -> None:
    for tmp in _leftovers(target, TMP_MARK):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _leftovers(target: Path, mark: str) -> list[Path]:
    """Siblings of `target` named `.<name><mark><pid>...` whose process is gone."""
    pattern = re.compile(rf"\.{re.escape(target.name)}{re.escape(mark)}(\d+)(?:-.*)?")
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return []
    return [p for p in siblings if (m := pattern.fullmatch(p.name)) and not _alive(int(m[1]))]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers are never in use once a new write starts
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(directory: Path) -> None:
    """Give a finished temporary directory the modes a plain mkdir and open would have
    (`mkdtemp` makes it 0700, some writers make files 0600)."""
    mask = _umask()
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)


@contextlib.contextmanager
def exclusive(target: str | os.PathLike[str], what: str = "an interp run") -> Iterator[None]:
    """Hold an exclusive lock on `target` (a lock file `.<name>.lock` beside it, or beside
    its first missing parent, removed on release): a second writer is refused at once with
    one clear error."""
    target = Path(os.path.abspath(resolve_target(target)))
    anchor = target
    while not anchor.parent.is_dir() and anchor.parent != anchor:
        anchor = anchor.parent
    lock = anchor.with_name(f".{anchor.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            raise OutputPathError(f"cannot write {target}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputPathError(
                f"{target} is being written by another run ({what}); wait for it to finish "
                "or choose another output"
            ) from None
        try:  # the file may have been removed by its last holder between open and lock
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    with contextlib.suppress(OSError):  # who holds it, for a later reader of a stale lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def take_over_stale_locks(directory: Path) -> list[Path]:
    """Remove the lock files (`.<name>.lock`) in `directory` that no process holds (their
    writer was killed), saying so on interp's log; the ones still held are returned."""
    held = []
    try:
        locks = [p for p in directory.iterdir() if LOCK_NAME.fullmatch(p.name)]
    except OSError:
        return []
    for lock in locks:
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(lock)
            os.close(fd)
            continue
        try:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.unlink(lock)
            logging.getLogger("interp").warning(
                "took over %s, a lock left by process %s, which is gone", lock, pid
            )
        except OSError:
            pass
        finally:
            os.close(fd)
    return held


def replace_dir(new: Path, target: Path) -> None:
    """Move the finished directory `new` onto `target`. An existing `target` is swapped out in
    one step where the platform can (Linux `renameat2(RENAME_EXCHANGE)`), else renamed aside
    first and put back if the move fails; the old one is deleted only after the move."""
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old directory
        return
    old = target.with_name(f".{target.name}{OLD_MARK}{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the platform or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@cache
def _renameat2() -> Any:
    """libc's `renameat2` (Linux, glibc >= 2.28), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn
