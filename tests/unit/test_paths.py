"""deployer.paths: the one way a repository file is read (regular files inside the root only, never
blocking), and how values from files are cut short in messages."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from deployer.paths import FileTooLarge, RefusedFile, check_inside, clip, read_inside, shown

pytestmark = pytest.mark.timeout(30)  # a FIFO opened for reading would block: fail instead


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    (tmp_path / "repo" / "file").write_bytes(b"inside\n")
    (tmp_path / "outside").write_bytes(b"secret\n")
    return tmp_path / "repo"


def test_a_regular_file_inside_the_root_is_read(root: Path) -> None:
    assert read_inside(root / "file", root) == b"inside\n"
    assert read_inside(root / "sub" / ".." / "file", root) == b"inside\n"


def test_a_symlink_inside_the_root_is_followed(root: Path) -> None:
    (root / "sub" / "link").symlink_to("../file")
    assert read_inside(root / "sub" / "link", root) == b"inside\n"


@pytest.mark.parametrize("make", [
    lambda root: (root / "link").symlink_to("../outside"),
    lambda root: (root / "link").symlink_to(root.parent / "outside"),
    lambda root: (root / "sub" / "dir").symlink_to(root.parent),
])
def test_nothing_outside_the_root_is_read(root: Path, make) -> None:  # type: ignore[no-untyped-def]
    make(root)
    target = root / "link" if (root / "link").is_symlink() else root / "sub" / "dir" / "outside"
    with pytest.raises(RefusedFile) as caught:
        read_inside(target, root)
    assert caught.value.outside
    assert caught.value.strerror == f"resolves to {root.parent / 'outside'}, outside the repository root {root}"
    assert caught.value.filename == str(target)


def test_a_path_outside_the_root_is_refused_without_a_symlink(root: Path) -> None:
    with pytest.raises(RefusedFile, match=r"^\[Errno 1\] lies outside the repository root"):
        read_inside(root.parent / "outside", root)
    with pytest.raises(RefusedFile, match="lies outside the repository root"):
        read_inside(root / ".." / "outside", root)


def test_a_fifo_is_refused_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe")
    with pytest.raises(RefusedFile) as caught:
        read_inside(root / "pipe", root)
    assert caught.value.strerror == "is a FIFO, not a regular file"
    assert caught.value.found == "a FIFO" and not caught.value.outside


def test_a_symlink_to_a_fifo_is_refused(root: Path) -> None:
    os.mkfifo(root / "pipe")
    (root / "link").symlink_to("pipe")
    with pytest.raises(RefusedFile, match="is a FIFO, not a regular file"):
        read_inside(root / "link", root)


def test_a_socket_a_device_and_a_directory_are_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        with pytest.raises(RefusedFile, match="is a socket, not a regular file"):
            read_inside(root / "sock", root)
    with pytest.raises(RefusedFile, match="is a character device, not a regular file"):
        read_inside(Path("/dev/null"), Path("/"))
    with pytest.raises(RefusedFile, match="is a directory, not a regular file"):
        read_inside(root / "sub", root)


def test_a_missing_file_raises_what_open_would(root: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        read_inside(root / "missing", root)
    assert caught.value.filename == str(root / "missing")


def test_a_symlink_loop_is_an_os_error(root: Path) -> None:
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        read_inside(root / "loop", root)


def test_the_limit_is_checked_before_reading(root: Path) -> None:
    (root / "big").write_bytes(b"x" * 101)
    assert read_inside(root / "big", root, limit=101) == b"x" * 101
    with pytest.raises(FileTooLarge) as caught:
        read_inside(root / "big", root, limit=100)
    assert caught.value.size == 101


def test_check_inside_returns_the_resolved_path(root: Path) -> None:
    (root / "link").symlink_to("sub")
    assert check_inside(root / "link", root) == root / "sub"
    assert check_inside(root / "not-yet", root) == root / "not-yet"


def test_values_from_files_are_cut_short_and_escaped() -> None:
    assert shown("fn") == "'fn'"
    assert shown("x" * 61) == f"'{'x' * 60}'... (61 characters)"
    assert shown("a\x1b[31m") == "'a\\x1b[31m'"
    assert clip("a" * 300) == "a" * 200 + "..."
    assert clip("a\nb\x07") == "a\\nb\\x07"
    assert clip("example.com/x") == "example.com/x"
