"""The source digest: one sha256 over everything that determines the image a context builds.

Inputs: every entry of the assembled context (relative POSIX path, kind — directory, file,
executable file, symlink — and content or link target), and its `BuildInputs`: the Dockerfile's
path and content, the build args (sorted), the platform, the builder and runtime image references
and the recipe's version (RECIPE_VERSION for a Dockerfile build; the Go build has its own, and
its compile settings as args: see deployer.layout).
Nothing else: not mtimes, owners, absolute paths, the context's directory name or listing order.

Encoding: a stream of records, each field prefixed by its length (8 bytes, big endian), so no
choice of paths or contents can make two different inputs produce the same byte stream. The
entries' records are combined in sorted path order.

The same digest is computed from two sources: an assembled context directory (`source_digest`,
what apply builds) and a context's entry list before anything is written (`layout_digest`, what
plan needs; see deployer.layout). Both go through `_entry_record`, so they cannot drift.

Trees under POOL_MIN_BYTES are hashed serially: for small files the per-file Python work holds
the GIL, so a pool only adds its start-up and hand-offs (plan paid a new pool per function: 2.06 s
pooled vs 0.89 s serial for 200 functions; on 2 CPUs serial still won at 16-64 MB of mixed
files). Larger trees use a pool, as their big files are hashed with the GIL released.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol, Sequence

# Bump when the way an image is built from the same inputs changes (template, build logic),
# so that every content tag changes with it.
RECIPE_VERSION = "1"

# Entry kinds, shared with deployer.context; OTHER (socket, fifo, device) only occurs on disk.
DIR, FILE, EXEC_FILE, SYMLINK, OTHER = "dir", "file", "exec-file", "symlink", "other"
_CODES = {DIR: b"D", FILE: b"F", EXEC_FILE: b"X", SYMLINK: b"L", OTHER: b"O"}

POOL_MIN_BYTES = 32 << 20
_CHUNK = 1 << 20
_FORMAT = b"deployer-source-digest/1"


class TreeEntry(Protocol):
    """What the digest reads of one context entry. A file's content is `data` when it is not
    None, else the bytes of the file at `source`; `target` is a symlink's target; `size` is a
    file's length (only used to choose between serial and pooled hashing)."""

    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def data(self) -> bytes | None: ...
    @property
    def target(self) -> str | None: ...
    @property
    def size(self) -> int: ...


class _DiskEntry(NamedTuple):
    path: str
    kind: str
    source: str | None = None
    data: bytes | None = None
    target: str | None = None
    size: int = 0


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _record(*fields: bytes) -> bytes:
    return b"".join(_field(f) for f in fields)


def _file_sha256(path: str) -> bytes:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    # Listed as a regular file; should it have been swapped for a FIFO or a link since, opening
    # must neither block nor follow it (fstat then refuses).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EPERM, "is no longer a regular file", path)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.digest()


def _disk_entries(root: str) -> Iterable[_DiskEntry]:
    """Every entry below root (relative POSIX path, kind), symlinks not followed."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                child = f"{rel}/{entry.name}" if rel else entry.name
                full = os.path.join(root, child)
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISLNK(mode):
                    yield _DiskEntry(child, SYMLINK, target=os.readlink(full))
                elif stat.S_ISDIR(mode):
                    yield _DiskEntry(child, DIR)
                    stack.append(child)
                elif stat.S_ISREG(mode):
                    kind = EXEC_FILE if mode & 0o111 else FILE
                    yield _DiskEntry(child, kind, source=full, size=st.st_size)
                else:
                    yield _DiskEntry(child, OTHER)  # docker sends no content for these


def disk_entries(root: Path) -> list[TreeEntry]:
    """Every entry below `root` (a written context), as the digest reads them."""
    return list(_disk_entries(os.fspath(root)))


def _entry_record(e: TreeEntry) -> bytes:
    code, name = _CODES[e.kind], os.fsencode(e.path)
    if e.kind == SYMLINK:
        assert e.target is not None
        return _record(code, name, os.fsencode(e.target))
    if e.kind in (FILE, EXEC_FILE):
        if e.data is not None:
            return _record(code, name, hashlib.sha256(e.data).digest())
        assert e.source is not None
        return _record(code, name, _file_sha256(e.source))
    return _record(code, name)


def _pool_size(entries: Sequence[TreeEntry], workers: int | None) -> int:
    if workers is not None:
        return workers
    if sum(e.size for e in entries) < POOL_MIN_BYTES:
        return 1
    return min(8, (os.cpu_count() or 1) + 1)


def entries_digest(entries: Iterable[TreeEntry], workers: int | None = None) -> bytes:
    """sha256 (raw bytes) over context entries, independent of their order. `workers`: None
    chooses by the tree's size (see the module docstring); 1 is serial."""
    return _entries_digests(entries, workers, None)[0]


def _entries_digests(entries: Iterable[TreeEntry], workers: int | None,
                     part_of: Callable[[str], str] | None) -> tuple[bytes, dict[str, bytes]]:
    """`entries_digest`, and with `part_of` the same digest of each part's entries alone (each
    file hashed once for both)."""
    ordered = sorted(entries, key=lambda e: os.fsencode(e.path))
    workers = _pool_size(ordered, workers)
    h = hashlib.sha256(_FORMAT)
    parts: dict[str, Any] = {}

    def add(e: TreeEntry, rec: bytes) -> None:
        h.update(rec)
        if part_of is not None:
            name = part_of(e.path)
            if name not in parts:
                parts[name] = hashlib.sha256(_FORMAT)
            parts[name].update(rec)

    if workers <= 1 or len(ordered) < 2:
        for e in ordered:
            add(e, _entry_record(e))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # map() keeps the input order, so records are combined in sorted path order.
            for e, rec in zip(ordered, pool.map(_entry_record, ordered)):
                add(e, rec)
    return h.digest(), {name: part.digest() for name, part in parts.items()}


def tree_digest(root: Path, workers: int | None = None) -> bytes:
    """sha256 (raw bytes) over all entries below `root`, independent of their order on disk."""
    return entries_digest(_disk_entries(os.fspath(root)), workers)


@dataclass(frozen=True)
class BuildInputs:
    """Everything but the tree that determines the image: the Dockerfile (context path, "" for
    the Go build's own, and content), the build args, the platform, the two base images and the
    recipe's version."""

    dockerfile: str
    dockerfile_content: bytes
    build_args: Mapping[str, str]
    platform: str
    builder_image: str
    runtime_image: str
    recipe_version: str = RECIPE_VERSION


def _combine(tree: bytes, inputs: BuildInputs) -> str:
    h = hashlib.sha256(_FORMAT)
    h.update(_record(b"recipe", inputs.recipe_version.encode()))
    h.update(_record(b"platform", inputs.platform.encode()))
    h.update(_record(b"builder", inputs.builder_image.encode()))
    h.update(_record(b"runtime", inputs.runtime_image.encode()))
    h.update(_record(b"dockerfile", inputs.dockerfile.encode(), inputs.dockerfile_content))
    args = sorted(inputs.build_args.items())
    h.update(_record(b"args", len(args).to_bytes(8, "big")))
    for key, value in args:
        h.update(_record(key.encode(), value.encode()))
    h.update(_record(b"tree", tree))
    return "sha256:" + h.hexdigest()


def source_digest(context_dir: Path, inputs: BuildInputs, workers: int | None = None) -> str:
    """The digest of a build context directory and the settings it is built with, as
    "sha256:<64 hex>"."""
    return layout_digest(_disk_entries(os.fspath(context_dir)), inputs, workers)


def source_input_digests(context_dir: Path, inputs: BuildInputs, part_of: Callable[[str], str],
                         workers: int | None = None) -> tuple[str, dict[str, str]]:
    """`source_digest` of a context directory, with the digest of each input (`input_digests`)."""
    return input_digests(_disk_entries(os.fspath(context_dir)), inputs, part_of, workers)


def layout_digest(entries: Iterable[TreeEntry], inputs: BuildInputs, workers: int | None = None) -> str:
    """`source_digest` of the context these entries would make, without writing it: files are
    hashed where they are, in-memory contents as given."""
    return _combine(entries_digest(entries, workers), inputs)


# The inputs an image is made of besides its tree's parts, each digested on its own (see
# deployer.image_inputs): what reviewers are told changed.
DOCKERFILE_INPUT, BUILD_SETTINGS_INPUT, BASE_IMAGES_INPUT = "dockerfile", "build-settings", "base-images"


def input_digests(entries: Iterable[TreeEntry], inputs: BuildInputs, part_of: Callable[[str], str],
                  workers: int | None = None) -> tuple[str, dict[str, str]]:
    """`layout_digest`, and a digest of each input of the image on its own: each part of the tree
    (`part_of(path)` names the part an entry belongs to), the recipe (with its Dockerfile), the
    build settings and the base images. Each is "sha256:<hex>"; the files are hashed once."""
    tree, parts = _entries_digests(entries, workers, part_of)
    digests = {name: "sha256:" + part.hex() for name, part in parts.items()}

    def digest_of(*records: bytes) -> str:
        return "sha256:" + hashlib.sha256(_FORMAT + b"".join(records)).hexdigest()

    recipe = [_record(b"recipe", inputs.recipe_version.encode()),
              _record(b"dockerfile", inputs.dockerfile.encode(), inputs.dockerfile_content)]
    if DOCKERFILE_INPUT in parts:  # a Dockerfile in the tree: its entry belongs to the recipe
        recipe.append(_record(b"tree", parts[DOCKERFILE_INPUT]))
    digests[DOCKERFILE_INPUT] = digest_of(*recipe)
    digests[BUILD_SETTINGS_INPUT] = digest_of(_record(b"platform", inputs.platform.encode()),
                                              *(_record(k.encode(), v.encode()) for k, v in sorted(inputs.build_args.items())))
    digests[BASE_IMAGES_INPUT] = digest_of(_record(b"builder", inputs.builder_image.encode()),
                                           _record(b"runtime", inputs.runtime_image.encode()))
    return _combine(tree, inputs), digests


def content_tag(digest: str) -> str:
    """The ECR image tag for a source digest: `src-` and the first 40 hex digits."""
    algo, _, hexdigits = digest.partition(":")
    if algo != "sha256" or len(hexdigits) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return "src-" + hexdigits[:40]
