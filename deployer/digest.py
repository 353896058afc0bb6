"""The source digest: one sha256 over everything that determines the image a context builds.

Inputs: every entry of the assembled context (relative POSIX path, kind — directory, file,
executable file, symlink — and content or link target), the Dockerfile's path and content, the
build args (sorted), the platform, the builder and runtime image references and RECIPE_VERSION.
Nothing else: not mtimes, owners, absolute paths, the context's directory name or listing order.

Encoding: a stream of records, each field prefixed by its length (8 bytes, big endian), so no
choice of paths or contents can make two different inputs produce the same byte stream. Files
are hashed one by one on a thread pool (hashlib releases the GIL on large buffers), and their
records are combined in sorted path order.
"""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping

# Bump when the way an image is built from the same inputs changes (template, build logic),
# so that every content tag changes with it.
RECIPE_VERSION = "1"

_CHUNK = 1 << 20
_FORMAT = b"deployer-source-digest/1"


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _record(*fields: bytes) -> bytes:
    return b"".join(_field(f) for f in fields)


def _file_sha256(path: str) -> bytes:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.digest()


def _walk(root: str) -> Iterable[tuple[str, os.stat_result]]:
    """Every entry below root as (relative POSIX path, lstat), symlinks not followed."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                child = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)


def _entry_record(root: str, rel: str, st: os.stat_result) -> bytes:
    path = os.path.join(root, rel)
    name = os.fsencode(rel)
    if stat.S_ISLNK(st.st_mode):
        return _record(b"L", name, os.fsencode(os.readlink(path)))
    if stat.S_ISDIR(st.st_mode):
        return _record(b"D", name)
    if stat.S_ISREG(st.st_mode):
        kind = b"X" if st.st_mode & 0o111 else b"F"
        return _record(kind, name, _file_sha256(path))
    return _record(b"O", name)  # sockets, fifos: docker sends no content for them


def tree_digest(root: Path, workers: int | None = None) -> bytes:
    """sha256 (raw bytes) over all entries below `root`, independent of their order on disk."""
    base = os.fspath(root)
    entries = sorted(_walk(base), key=lambda e: os.fsencode(e[0]))
    workers = workers or min(8, (os.cpu_count() or 1) + 1)
    h = hashlib.sha256(_FORMAT)
    if workers <= 1 or len(entries) < 2:
        records: Iterable[bytes] = (_entry_record(base, rel, st) for rel, st in entries)
        for rec in records:
            h.update(rec)
        return h.digest()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # map() keeps the input order, so records are combined in sorted path order.
        for rec in pool.map(lambda e: _entry_record(base, e[0], e[1]), entries, chunksize=16):
            h.update(rec)
    return h.digest()


def source_digest(
    context_dir: Path,
    *,
    dockerfile: str,
    build_args: Mapping[str, str],
    platform: str,
    builder_image: str,
    runtime_image: str,
    recipe_version: str = RECIPE_VERSION,
    workers: int | None = None,
) -> str:
    """The digest of a build context and the settings it is built with, as "sha256:<64 hex>".
    `dockerfile` is the Dockerfile's path relative to `context_dir`."""
    h = hashlib.sha256(_FORMAT)
    h.update(_record(b"recipe", recipe_version.encode()))
    h.update(_record(b"platform", platform.encode()))
    h.update(_record(b"builder", builder_image.encode()))
    h.update(_record(b"runtime", runtime_image.encode()))
    df_path = context_dir / dockerfile
    h.update(_record(b"dockerfile", dockerfile.encode(), df_path.read_bytes()))
    args = sorted(build_args.items())
    h.update(_record(b"args", len(args).to_bytes(8, "big")))
    for key, value in args:
        h.update(_record(key.encode(), value.encode()))
    h.update(_record(b"tree", tree_digest(context_dir, workers)))
    return "sha256:" + h.hexdigest()


def content_tag(digest: str) -> str:
    """The ECR image tag for a source digest: `src-` and the first 40 hex digits."""
    algo, _, hexdigits = digest.partition(":")
    if algo != "sha256" or len(hexdigits) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return "src-" + hexdigits[:40]
