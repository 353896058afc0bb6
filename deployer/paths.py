"""Paths in messages, containment, and the one way deployer reads a file of the repository.

Everything deployer reads from a repository (deploy.yaml, go.mod, .dockerignore, a Dockerfile)
may come from a hostile pull request, so it is read through `read_inside`: only a regular file,
only inside the repository root (symlinks resolved first), never by opening a FIFO or device,
which would block or never end. Values quoted from such files in messages are cut short with
`shown` / `clip`, so a message never carries more than a few dozen characters of a file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterable

# Longer values are cut in messages: a diagnostic stays one readable line.
MAX_SHOWN = 60
# Paths and module paths quoted from go.mod files may be longer than a YAML value in practice.
MAX_CLIPPED = 200


def display(path: Path) -> str:
    """A path for messages: relative to the working directory when below it, else absolute.

    The directories leading to the path are resolved (so a symlinked working directory or a
    `..` still gives the short form), the last component is not: a symlink is shown as itself,
    not as what it points to. A name holding a control character or a line break (a file a pull
    request named `x\n::error::...`) is shown escaped, so it cannot start a line of its own."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = absolute.parent.resolve() / absolute.name if absolute.name else absolute
        text = str(shown.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # not below the working directory, or unresolvable
        text = str(absolute)
    return text if text.isprintable() else repr(text)[1:-1]


def inside(path: Path, root: Path) -> bool:
    """True when `path` is `root` or below it; both must be resolved (compared as written)."""
    return path == root or root in path.parents


def git_root(directories: Iterable[Path]) -> Path | None:
    """The first of `directories` (a directory and its parents, nearest first) that holds `.git`
    (a directory, or the file of a worktree); an unreadable one is passed over."""
    for candidate in directories:
        try:
            if (candidate / ".git").exists():
                return candidate
        except OSError:
            continue
    return None


def clip(text: str, limit: int = MAX_CLIPPED) -> str:
    """`text` for a message: control characters escaped, cut to `limit` characters with '...'."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else f"{text[:limit]}..."


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """A value quoted from a file, for a message: repr()'d (control characters escaped) and, past
    `limit` characters, cut and followed by its length."""
    if len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return repr(value)


def kind(mode: int) -> str:
    """What a file of this mode is, for a message: "a FIFO", "a directory"..."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "a special file"


class RefusedFile(OSError):
    """A file deployer will not read: it lies outside the repository root, or it is not a regular
    file. An OSError, so that code reporting unreadable files reports it too; `strerror` says why
    (e.g. "is a FIFO, not a regular file") and reads after the file's name."""

    def __init__(self, path: Path, reason: str, *, outside: bool = False, found: str = "") -> None:
        super().__init__(errno.EPERM, reason, str(path))
        self.outside = outside  # it lies outside the root
        self.found = found  # what it is when not a regular file: "a FIFO", "a directory"...


class FileTooLarge(RefusedFile):
    """A regular file larger than the caller's limit; `size` is its size in bytes."""

    def __init__(self, path: Path, size: int, limit: int) -> None:
        super().__init__(path, f"is {size} bytes, more than the {limit} allowed")
        self.size = size


def resolve(path: Path) -> Path:
    """`path` with every symlink resolved; a missing path resolves as far as it exists. Raises
    OSError (ELOOP) for a symlink loop, as Python >= 3.13 does itself."""
    try:
        return path.resolve()
    except RuntimeError:  # Python < 3.13 reports a symlink loop so
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None


def check_inside(path: Path, root: Path) -> Path:
    """The resolved `path`; RefusedFile when it lies outside `root` (through a symlink or `..`)."""
    real = resolve(path)
    real_root = resolve(root)
    if not inside(real, real_root):
        via = f"resolves to {real}, outside" if real != Path(os.path.abspath(path)) else "lies outside"
        raise RefusedFile(path, f"{via} the repository root {real_root}", outside=True)
    return real


def open_inside(path: Path, root: Path) -> BinaryIO:
    """The regular file at `path`, which must resolve inside `root`, open for reading (binary,
    unbuffered). For streaming a file (hashing, copying) with the checks of `read_inside`; raises
    as it does, but for the size limit."""
    real = check_inside(path, root)
    try:
        before = os.lstat(real)
        if not stat.S_ISREG(before.st_mode):
            found = kind(before.st_mode)
            raise RefusedFile(path, f"is {found}, not a regular file", found=found)
        # O_NONBLOCK and O_NOFOLLOW: should the file be swapped for a FIFO or a symlink after the
        # check, opening it neither blocks nor leaves the root; fstat then tells.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except RefusedFile:
        raise
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    f = os.fdopen(fd, "rb", buffering=0)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise RefusedFile(path, "changed while being opened; try again")
    except BaseException:
        f.close()
        raise
    return f


def read_inside(path: Path, root: Path, *, limit: int | None = None) -> bytes:
    """The content of the regular file at `path`, which must resolve inside `root`.

    Raises RefusedFile when the file lies outside the root or is not a regular file (nothing is
    opened then: opening a FIFO blocks, a device may never end), FileTooLarge past `limit` bytes,
    and the OSError open() would raise otherwise (FileNotFoundError...), naming `path`."""
    with open_inside(path, root) as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise FileTooLarge(path, size, limit)
        chunks: list[bytes] = []
        total = 0
        while limit is None or total <= limit:  # a raw read may return less than asked: loop
            chunk = f.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if limit is not None and total > limit:  # grew after fstat
        raise FileTooLarge(path, total, limit)
    return b"".join(chunks)
