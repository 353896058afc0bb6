"""Assemble a function's Docker build context in a directory of its own, or digest it without.

Layout: the function's source directory at the context root, each shared module it needs under
`shared/<name>/` (see deployer.modules), go.mod replace directives rewritten to those places, and
the Dockerfile. The user's tree is only read, never written.

Two steps: `layout` lists every entry of the context (path, kind, mode, and where its content
comes from: a file read in place, in-memory bytes, or a link target) without writing anything;
`materialize` writes a layout into a directory. Plan needs only the digest: `source_digest_of`
hashes the layout in place (no copy to make and delete). `assemble` (apply) materializes and
digests what it wrote; both digests are the same function of the same entries (deployer.digest).

File selection follows the function's `.dockerignore` with Docker's semantics (the docker SDK's
PatternMatcher, which is what the docker gateway's build uses), applied to context paths, so a
pattern reaches into `shared/` just as it would if the context were sent with the file. go.mod,
go.sum and the Dockerfile are always included. The `.dockerignore` itself is not copied: the
context is already filtered, so what is in the directory is exactly what docker build gets and
what the digest covers.

Symlinks: a link whose target resolves inside the module tree it belongs to is kept as a link
(relative, so it also resolves inside the copy); a link that resolves outside it is an error,
because following it would put files from outside the context into the image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import posixpath
import shlex
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Literal, Mapping

from docker.utils.build import PatternMatcher

from deployer import digest as digest_mod
from deployer import gomod
from deployer.errors import BuildContextError
from deployer.modules import SHARED_DIR, Module, ModuleGraph, discover, display
from deployer.spec import FunctionSpec

TEMPLATE_NAME = "Dockerfile.deployer"
# Build args deployer sets itself; BUILDPLATFORM is added by the docker gateway at build time.
RESERVED_BUILD_ARGS = ("BUILDER_IMAGE", "RUNTIME_IMAGE", "TARGETPLATFORM", "TARGETARCH", "GO_BUILD_FLAGS", "BUILDPLATFORM")

EntryKind = Literal["dir", "file", "exec-file", "symlink"]
_FILE_KINDS = (digest_mod.FILE, digest_mod.EXEC_FILE)


@dataclass(frozen=True)
class BuildContext:
    """An assembled build context. `dockerfile` is relative to `path`; `digest` covers the
    context and every other input of the build ("sha256:<64 hex>")."""

    path: Path
    dockerfile: str
    build_args: Mapping[str, str]
    shared_modules: tuple[str, ...]
    digest: str

    @property
    def content_tag(self) -> str:
        """The ECR tag that names the image built from this context."""
        return digest_mod.content_tag(self.digest)


@dataclass(frozen=True)
class Entry:
    """One entry of a build context, not yet written. `path` is context-relative POSIX. A file's
    content is `data` when not None (a rewritten go.mod, the Dockerfile), else the file at
    `source`; a symlink has `target`; a directory neither. `mode` holds the permission bits to
    set, None for what is made with the default mode (a parent directory no walk listed, the
    Dockerfile written from the template). `size` is a file's length."""

    path: str
    kind: EntryKind
    mode: int | None = None
    source: str | None = None
    data: bytes | None = None
    target: str | None = None
    size: int = 0


@dataclass(frozen=True)
class Layout:
    """Everything a function's build context holds and is built with. Invariant: `entries` are
    in creation order (each directory before what it holds) with unique paths, and the entry
    at `dockerfile` is a file."""

    fn: FunctionSpec
    entries: tuple[Entry, ...]
    dockerfile: str
    build_args: Mapping[str, str]
    shared_modules: tuple[str, ...]
    module_dirs: tuple[Path, ...]  # the context directory must not lie inside any of them

    def digest(self) -> str:
        """The source digest of the context this layout makes, hashing files in place."""
        df = next(e for e in self.entries if e.path == self.dockerfile)
        content = df.data if df.data is not None else Path(df.source or "").read_bytes()
        return digest_mod.layout_digest(
            self.entries,
            dockerfile=self.dockerfile,
            dockerfile_content=content,
            build_args=self.build_args,
            platform=self.fn.platform,
            builder_image=self.fn.build.builder_image,
            runtime_image=self.fn.build.runtime_image,
        )


def template_text() -> str:
    """The built-in Dockerfile template."""
    return resources.files("deployer").joinpath("data/Dockerfile.template").read_text(encoding="utf-8")


def build_args(fn: FunctionSpec) -> dict[str, str]:
    """What docker build must be given for this function: deployer's args and the user's."""
    clash = sorted(set(fn.build.build_args) & set(RESERVED_BUILD_ARGS))
    if clash:
        raise BuildContextError(
            f"{fn.location}: function {fn.name}: build_args {', '.join(clash)} are set by deployer; "
            "remove them (use builder_image, runtime_image, platform and go_build_flags instead)"
        )
    args = {
        "BUILDER_IMAGE": fn.build.builder_image,
        "RUNTIME_IMAGE": fn.build.runtime_image,
        "TARGETPLATFORM": fn.platform,
        "TARGETARCH": fn.platform.split("/", 1)[1],
        "GO_BUILD_FLAGS": shlex.join(fn.build.go_build_flags),
    }
    args.update(fn.build.build_args)
    return args


def _read_dockerignore(func_dir: Path) -> list[str]:
    """Patterns as the docker SDK reads them (docker/api/build.py)."""
    try:
        text = (func_dir / ".dockerignore").read_text()
    except FileNotFoundError:
        return []
    return [x for x in (line.strip() for line in text.splitlines()) if x and x[0] != "#"]


def _walk(pm: PatternMatcher, src: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """The docker SDK's PatternMatcher.walk over `src`, matching paths as `prefix + relative`:
    yields (relative POSIX path, lstat) of the included entries (sorted), not descending into
    symlinks."""

    def rec(rel_dir: str) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(os.path.join(src, rel_dir) if rel_dir else src) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            ctx_path = prefix + rel
            excluded = pm.matches(ctx_path)
            if not excluded:
                yield rel, child.stat(follow_symlinks=False)
            if not child.is_dir(follow_symlinks=False):
                continue
            if excluded and not any(p.exclusion and p.cleaned_pattern.startswith(ctx_path) for p in pm.patterns):
                continue
            yield from rec(rel)

    return rec("")


class _Layouter:
    """Collects a context's entries in creation order, and the symlink problems found."""

    def __init__(self, func_dir: Path) -> None:
        self.func_dir = func_dir
        self.entries: dict[str, Entry] = {}
        self.problems: list[str] = []

    def add(self, entry: Entry) -> None:
        parent = posixpath.dirname(entry.path)
        known = self.entries.get(parent)
        if parent and known is None:
            # Not listed by a walk (the shared/ above the modules, a directory excluded while
            # something in it is not): created on the way, with the default mode.
            self.add(Entry(parent, "dir"))
        elif known is not None and known.kind != "dir":
            # Only the function's own entries can sit where shared/<name> needs a directory.
            raise BuildContextError(
                f"{display(self.func_dir / parent)}: is a {known.kind}, but the build context needs a directory "
                f"there for the shared modules ({SHARED_DIR}/<name>); rename it or exclude it in .dockerignore"
            )
        self.entries[entry.path] = entry

    def add_tree(self, pm: PatternMatcher, src: Path, ctx_prefix: str, skip: frozenset[str] = frozenset()) -> None:
        if ctx_prefix:
            self.add(Entry(ctx_prefix, "dir", stat.S_IMODE(src.stat().st_mode)))
        base = f"{ctx_prefix}/" if ctx_prefix else ""
        root = os.fspath(src)
        for rel, st in _walk(pm, root, base):
            if rel not in skip:
                self.add_entry(src, os.path.join(root, rel), base + rel, st)

    def add_entry(self, src_root: Path, path: str, ctx_path: str, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            target = self.link_target(src_root, path)
            if target is not None:
                self.add(Entry(ctx_path, "symlink", target=target))
        elif stat.S_ISDIR(st.st_mode):
            self.add(Entry(ctx_path, "dir", mode))
        elif stat.S_ISREG(st.st_mode):
            kind: EntryKind = "exec-file" if mode & 0o111 else "file"
            self.add(Entry(ctx_path, kind, mode, source=path, size=st.st_size))
        # Sockets, fifos and devices have no content a build could use: left out.

    def link_target(self, src_root: Path, path: str) -> str | None:
        resolved = Path(os.path.realpath(path))
        if resolved != src_root and src_root not in resolved.parents:
            self.problems.append(
                f"{display(Path(path))}: symlink to {os.readlink(path)} leads outside {display(src_root)} "
                f"(to {resolved}), which the build context cannot contain; replace it with a copy "
                "of the file or exclude it in .dockerignore"
            )
            return None
        # The walk never descends into symlinks, so the link's directory is real in src_root.
        return os.path.relpath(resolved, os.path.dirname(path))

    def follow(self, path: str) -> Entry | None:
        """The entry at `path` in the context, following symlinks (as opening it would)."""
        for _ in range(40):  # the kernel's own limit on links followed
            entry = self.entries.get(path)
            if entry is None or entry.kind != "symlink" or entry.target is None:
                return entry
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), entry.target))
        return None

    def set_content(self, path: str, data: bytes) -> None:
        """Give the file at `path` new content, keeping its mode (as writing into the copy did)."""
        entry = self.follow(path)
        if entry is not None and entry.kind in _FILE_KINDS:  # else excluded by .dockerignore
            self.entries[entry.path] = dataclasses.replace(entry, source=None, data=data, size=len(data))


def _check_dest(dest: Path, module_dirs: tuple[Path, ...]) -> Path:
    real = dest.resolve()
    if any(real == d or d in real.parents for d in module_dirs):
        raise BuildContextError(f"{dest}: the build context directory lies inside a module it would copy; choose a directory outside the repository")
    real.mkdir(parents=True, exist_ok=True)
    if any(real.iterdir()):
        raise BuildContextError(f"{dest}: the build context directory is not empty; give an empty or new directory")
    return real


def _dockerfile_source(fn: FunctionSpec, func_dir: Path) -> tuple[str, Path | None]:
    """(Dockerfile path in the context, source file to copy there or None for the template)."""
    df = fn.build.dockerfile
    if df is None:
        return TEMPLATE_NAME, None
    if not df.is_file():
        raise BuildContextError(f"{fn.location}: function {fn.name}: build.dockerfile {display(df)} is not a file; "
                                "fix the path or remove the setting to use the built-in template")
    real = df.resolve()
    if func_dir in real.parents and not df.is_symlink():
        return real.relative_to(func_dir).as_posix(), None
    return TEMPLATE_NAME, df


@functools.lru_cache(maxsize=1024)
def _rewrite(data: bytes, new_paths: tuple[tuple[int, str], ...]) -> bytes:
    """gomod.rewrite_replaces, shared by the functions whose contexts hold the same shared module."""
    return gomod.rewrite_replaces(data, dict(new_paths))


def _inputs(fn: FunctionSpec) -> tuple[ModuleGraph, dict[str, str], str, Path | None]:
    """The module graph, build args, Dockerfile path in the context and file to copy there."""
    graph = discover(fn)
    args = build_args(fn)
    return (graph, args, *_dockerfile_source(fn, graph.function.dir))


def _lay_out(fn: FunctionSpec, graph: ModuleGraph, args: dict[str, str], dockerfile: str, df_copy: Path | None) -> Layout:
    func_dir = graph.function.dir
    shared: list[tuple[str, Module]] = sorted(
        (graph.location(m.dir), m) for m in graph.modules.values() if m.shared
    )
    forced = ["go.mod", "go.sum"] + ([] if dockerfile == TEMPLATE_NAME else [dockerfile])
    forced += [f"{loc}/{name}" for loc, _ in shared for name in ("go.mod", "go.sum")]
    pm = PatternMatcher(_read_dockerignore(func_dir) + [f"!{p}" for p in forced])

    if dockerfile == TEMPLATE_NAME and (func_dir / TEMPLATE_NAME).exists():
        raise BuildContextError(
            f"{display(func_dir / TEMPLATE_NAME)}: deployer writes the Dockerfile under this name; "
            "rename the file or set build.dockerfile to it"
        )
    out = _Layouter(func_dir)
    out.add_tree(pm, func_dir, "", skip=frozenset({".dockerignore"}))
    for loc, module in shared:
        out.add_tree(pm, module.dir, loc)
    if out.problems:
        raise BuildContextError("\n".join(out.problems))
    for module in graph.modules.values():
        new_paths = graph.new_replace_paths(module)
        if new_paths:
            loc = graph.location(module.dir)
            out.set_content(f"{loc}/go.mod" if loc else "go.mod", _rewrite(module.data, tuple(sorted(new_paths.items()))))
    if dockerfile == TEMPLATE_NAME:
        text = df_copy.read_bytes() if df_copy else template_text().encode()
        out.add(Entry(TEMPLATE_NAME, "file", data=text, size=len(text)))
    df_entry = out.entries.get(dockerfile)  # a real path (see _dockerfile_source): no link to follow
    if df_entry is None or df_entry.kind not in _FILE_KINDS:
        raise BuildContextError(f"{fn.location}: function {fn.name}: the Dockerfile {dockerfile} is not in the "
                                "build context; do not exclude it in .dockerignore")
    return Layout(
        fn=fn,
        entries=tuple(out.entries.values()),
        dockerfile=dockerfile,
        build_args=MappingProxyType(args),
        shared_modules=graph.shared_names,
        module_dirs=tuple(graph.modules),
    )


def layout(fn: FunctionSpec) -> Layout:
    """The entries of `fn`'s build context, read from its tree without writing anything."""
    return _lay_out(fn, *_inputs(fn))


def source_digest_of(fn: FunctionSpec) -> str:
    """The source digest `assemble(fn, ...)` would give now, without copying any file."""
    return layout(fn).digest()


def materialize(lay: Layout, dest: Path) -> Path:
    """Write the layout into `dest` (an empty or new directory); returns its resolved path."""
    real = _check_dest(dest, lay.module_dirs)
    dir_modes: list[tuple[str, int]] = []
    for e in lay.entries:
        out = os.path.join(real, e.path)
        if e.kind == "dir":
            os.mkdir(out)
            if e.mode is not None:
                dir_modes.append((out, e.mode))
        elif e.kind == "symlink":
            os.symlink(e.target or "", out)
        else:
            if e.data is not None:
                Path(out).write_bytes(e.data)
            else:
                shutil.copyfile(e.source or "", out, follow_symlinks=False)
            if e.mode is not None:
                os.chmod(out, e.mode)
    # Directory modes last, deepest first, so read-only directories can be filled.
    for out, mode in sorted(dir_modes, key=lambda d: d[0].count("/"), reverse=True):
        os.chmod(out, mode)
    return real


def assemble(fn: FunctionSpec, dest: Path) -> BuildContext:
    """Build the context of `fn` in `dest` (an empty or new directory) and digest what is there."""
    inputs = _inputs(fn)
    _check_dest(dest, tuple(inputs[0].modules))  # a bad destination is reported before the tree is read
    lay = _lay_out(fn, *inputs)
    path = materialize(lay, dest)
    # Digest the directory, not the layout: it is what docker build gets, even if a source file
    # changed since it was listed; apply compares this digest with the plan's.
    digest = digest_mod.source_digest(path, dockerfile=lay.dockerfile, build_args=lay.build_args, platform=fn.platform,
                                      builder_image=fn.build.builder_image, runtime_image=fn.build.runtime_image)
    return BuildContext(path=path, dockerfile=lay.dockerfile, build_args=lay.build_args,
                        shared_modules=lay.shared_modules, digest=digest)


def _make_writable(func, path, _exc) -> None:  # type: ignore[no-untyped-def]
    os.chmod(os.path.dirname(path), 0o700)
    func(path)


@contextlib.contextmanager
def temporary_context(fn: FunctionSpec, keep: bool = False) -> Iterator[BuildContext]:
    """Assemble `fn`'s context in a fresh temporary directory and remove it on every way out
    (success, error, KeyboardInterrupt), unless `keep`."""
    tmp = Path(tempfile.mkdtemp(prefix="deployer-ctx-"))
    try:
        yield assemble(fn, tmp)
    finally:
        if not keep:
            if sys.version_info >= (3, 12):
                shutil.rmtree(tmp, onexc=_make_writable)
            else:
                shutil.rmtree(tmp, onerror=_make_writable)
