"""The commit an image is labelled with, read from .git files without running git."""

from __future__ import annotations

from pathlib import Path

from deployer.gitrev import revision

SHA = "0123456789abcdef0123456789abcdef01234567"


def checkout(tmp_path: Path, head: str) -> Path:
    (tmp_path / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text(head)
    return tmp_path


def test_a_branch_a_packed_ref_and_a_detached_head(tmp_path: Path) -> None:
    repo = checkout(tmp_path / "a", "ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(SHA + "\n")
    assert revision(repo) == SHA
    packed = checkout(tmp_path / "b", "ref: refs/heads/main\n")
    (packed / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/main\n")
    assert revision(packed) == SHA
    assert revision(checkout(tmp_path / "c", SHA + "\n")) == SHA


def test_anything_else_gives_no_revision(tmp_path: Path) -> None:
    assert revision(tmp_path) is None  # no .git
    (tmp_path / "worktree").mkdir()
    (tmp_path / "worktree" / ".git").write_text("gitdir: /elsewhere\n")
    assert revision(tmp_path / "worktree") is None
    assert revision(checkout(tmp_path / "d", "ref: refs/../../../etc/passwd\n")) is None
    assert revision(checkout(tmp_path / "e", "ref: refs/heads/unborn\n")) is None
    outside = checkout(tmp_path / "f", "ref: refs/heads/main\n")
    (tmp_path / "target").write_text(SHA)
    (outside / ".git" / "refs" / "heads" / "main").symlink_to(tmp_path / "target")
    assert revision(outside) is None, "a ref linked out of .git is not read"
