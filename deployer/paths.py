"""How paths are shown in messages and tested for containment; shared by load and modules."""

from __future__ import annotations

import os
from pathlib import Path


def display(path: Path) -> str:
    """A path for messages: relative to the working directory when below it, else absolute.

    The directories leading to the path are resolved (so a symlinked working directory or a
    `..` still gives the short form), the last component is not: a symlink is shown as itself,
    not as what it points to."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = absolute.parent.resolve() / absolute.name if absolute.name else absolute
        return str(shown.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # not below the working directory, or unresolvable
        return str(absolute)


def inside(path: Path, root: Path) -> bool:
    """True when `path` is `root` or below it; both must be resolved (compared as written)."""
    return path == root or root in path.parents
