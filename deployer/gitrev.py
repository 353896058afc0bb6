"""gitrev: the git commit a checkout is at, read from its `.git` files, for the image label
`org.opencontainers.image.revision`. No git process runs: a checkout's files may come from a pull
request, and git runs hooks and reads configuration. Only `.git/HEAD`, the loose ref it names and
`packed-refs` are read, each a bounded regular file inside the `.git` directory; anything else (a
worktree's `.git` file, a ref that does not resolve) gives no revision, and the label is left out.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from deployer.paths import read_inside

_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 repositories
_REF = re.compile(r"refs/[A-Za-z0-9._/-]{1,240}")
MAX_REF_FILE = 4096
MAX_PACKED_REFS = 8 * 1024 * 1024


def revision(checkout: Path) -> str | None:
    """The commit HEAD names in `checkout` (the directory holding `.git`), or None."""
    git = checkout / ".git"
    try:
        if not stat.S_ISDIR(os.lstat(git).st_mode):  # a link (or a worktree's file) is not followed
            return None
        head = read_inside(git / "HEAD", git, limit=MAX_REF_FILE).decode("ascii").strip()
        if _SHA.fullmatch(head):
            return head  # a detached HEAD
        ref = head.removeprefix("ref: ").strip()
        if not _REF.fullmatch(ref) or ".." in ref:
            return None
        try:
            loose = read_inside(git / ref, git, limit=MAX_REF_FILE).decode("ascii").strip()
            return loose if _SHA.fullmatch(loose) else None
        except FileNotFoundError:
            packed = read_inside(git / "packed-refs", git, limit=MAX_PACKED_REFS).decode("ascii", "replace")
    except (OSError, UnicodeDecodeError):
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA.fullmatch(sha):
            return sha
    return None
