"""Inter-process locks on files in the temp dir that leave nothing behind, even after `kill -9`.

A lock is a file held with flock(2). The kernel drops the lock when its holder dies, however it
dies, so "the lock file exists but nobody holds it" means "its owner crashed": no pid to check, no
pid reuse to fear. The holder removes the file before letting go; whoever opened the file before
it was removed notices (the path no longer names the inode it locked) and tries again. That makes
removal safe for the holder and for a sweeper alike.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator

# How often a waiter looks again; it also checks `cancelled` then (flock itself cannot be cancelled).
POLL_SECONDS = 0.1


class LockBusy(Exception):
    """Someone else holds the lock (try_lock)."""


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _still_named(fd: int, path: Path) -> bool:
    """True when `path` still names the file `fd` locked (the previous holder did not remove it)."""
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def acquire(path: Path, wait: Callable[[float], None] | None = None, note: str = "") -> int:
    """Hold the lock at `path`; returns its fd. Without `wait`, raises LockBusy at once when held
    elsewhere; with it, calls wait(POLL_SECONDS) between attempts (it may raise to give up).
    `note` is written into the file for whoever waits (who holds it, since when)."""
    while True:
        fd = _open(path)
        try:
            while not _try_flock(fd):
                if wait is None:
                    raise LockBusy(str(path))
                wait(POLL_SECONDS)
            if _still_named(fd, path):
                if note:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, note.encode(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed by its previous holder or a sweeper: lock the new file instead


def release(fd: int, path: Path, remove: bool = True) -> None:
    """Let go of a lock from `acquire`; `remove` (the default) deletes the file first, while held."""
    try:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)


def holder_note(path: Path) -> str:
    """What the holder wrote into the lock file, for a message ("" when unreadable)."""
    try:
        with open(path, "rb") as f:
            return f.read(200).decode(errors="replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def held(path: Path, wait: Callable[[float], None] | None = None, note: str = "") -> Iterator[None]:
    fd = acquire(path, wait, note)
    try:
        yield
    finally:
        release(fd, path)


def abandoned(path: Path) -> int | None:
    """If nobody holds the lock at `path` (its owner died), hold it and return the fd, so that the
    caller can remove what it guarded and then `release` it; None when it is held or gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    if _try_flock(fd) and _still_named(fd, path):
        return fd
    os.close(fd)
    return None


def sweep(root: Path, pattern: str) -> int:
    """Remove the lock files matching `pattern` in `root` that nobody holds (their owner died)
    and that belong to this user; returns how many."""
    removed = 0
    for path in root.glob(pattern):
        try:
            if path.lstat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        fd = abandoned(path)
        if fd is not None:
            release(fd, path)
            removed += 1
    return removed
