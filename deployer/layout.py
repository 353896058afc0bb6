"""layout: the entries of a function's Docker build context, listed without writing anything.

The context holds the function's source directory at its root, each shared module it needs under
`shared/<name>/` (see deployer.module_graph), go.mod replace directives rewritten to those places, and
the Dockerfile. A `Layout` lists every entry (path, kind, mode, and where its content comes from:
a file read in place, in-memory bytes, or a link target). Plan needs only the digest:
`source_digest_of` hashes the layout in place, with no copy to make and delete; deployer.context
writes a layout into a directory for docker build.

File selection follows the function's `.dockerignore` with Docker's semantics (the docker SDK's
PatternMatcher, which is what the docker gateway's build uses), applied to context paths, so a
pattern reaches into `shared/` just as it would if the context were sent with the file. go.mod,
go.sum and the Dockerfile are always included. Neither the `.dockerignore` nor the deploy.yaml
that declares the function is part of the context: what is in it is exactly what docker build
gets and what the digest covers, and editing that deploy.yaml (a comment, another function) does
not rebuild anything. Other files named deploy.yaml (test data, embedded files) stay.

Symlinks: a link whose target resolves inside the module tree it belongs to is kept as a link
(relative, so it also resolves inside the copy); a link that resolves outside it is an error,
because following it would put files from outside the context into the image.

Never in a context, whatever .dockerignore says: `.git` (a repository's history, credentials in
its config) and dotenv files (`.env`, `.env.*`, `.envrc`), at any depth. A FIFO, socket or device
in the tree is an error naming it (docker build would send it, and reading it may never end),
unless .dockerignore excludes it. Files read to make the layout (.dockerignore, a Dockerfile kept
outside the function) are read through deployer.paths.read_inside: regular files inside the
repository root only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import posixpath
import shlex
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Literal, Mapping

from docker.utils.build import PatternMatcher

from deployer import digest as digest_mod
from deployer import gomod
from deployer.errors import BuildContextError, Diagnostic
from deployer.module_graph import SHARED_DIR, Module, ModuleGraph, discover
from deployer.paths import RefusedFile, check_inside, display, inside, kind, read_inside
from deployer.spec import SPEC_FILE_NAMES, FunctionSpec

TEMPLATE_NAME = "Dockerfile.deployer"
# Build args deployer sets itself; BUILDPLATFORM is added by the docker gateway at build time.
RESERVED_BUILD_ARGS = ("BUILDER_IMAGE", "RUNTIME_IMAGE", "TARGETPLATFORM", "TARGETARCH", "GO_BUILD_FLAGS", "BUILDPLATFORM")

# Names never copied into a context (see the module docstring); `.env.<anything>` too.
NEVER_IN_CONTEXT = frozenset({".git", ".env", ".envrc"})

EntryKind = Literal["dir", "file", "exec-file", "symlink"]
FILE_KINDS = (digest_mod.FILE, digest_mod.EXEC_FILE)


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
        with reading_errors(self.fn):
            return self._digest()

    def _digest(self) -> str:
        df = next(e for e in self.entries if e.path == self.dockerfile)
        content = df.data if df.data is not None else read_inside(Path(df.source or ""), self.fn.root)
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


def never_in_context(name: str) -> bool:
    """Whether an entry of this name is left out of every context (see the module docstring)."""
    return name in NEVER_IN_CONTEXT or name.startswith(".env.")


def _read_dockerignore(func_dir: Path, root: Path) -> list[str]:
    """Patterns as the docker SDK reads them (docker/api/build.py)."""
    path = func_dir / ".dockerignore"
    try:
        text = read_inside(path, root).decode("utf-8")
    except FileNotFoundError:
        return []
    except RefusedFile as exc:
        raise BuildContextError(f"{display(path)}: {exc.strerror}; deployer reads only regular files inside the "
                                "repository root: replace it with a regular file of patterns") from exc
    except UnicodeDecodeError as exc:
        raise BuildContextError(f"{display(func_dir / '.dockerignore')}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                "save it as UTF-8") from exc
    return [x for x in (line.strip() for line in text.splitlines()) if x and x[0] != "#"]


def _walk(pm: PatternMatcher, src: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """The docker SDK's PatternMatcher.walk over `src`, matching paths as `prefix + relative`:
    yields (relative POSIX path, lstat) of the included entries (sorted), not descending into
    symlinks."""

    def children(rel_dir: str) -> Iterator[os.DirEntry[str]]:
        with os.scandir(os.path.join(src, rel_dir) if rel_dir else src) as it:
            return iter(sorted(it, key=lambda e: e.name))

    # Depth first, each directory's entries sorted, with a stack of its own rather than
    # recursion: a tree a thousand directories deep must not exhaust Python's stack.
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", children(""))]
    while stack:
        rel_dir, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            continue
        if never_in_context(child.name):
            continue
        rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
        ctx_path = prefix + rel
        excluded = pm.matches(ctx_path)
        if not excluded:
            yield rel, child.stat(follow_symlinks=False)
        if not child.is_dir(follow_symlinks=False):
            continue
        if excluded and not any(p.exclusion and p.cleaned_pattern.startswith(ctx_path) for p in pm.patterns):
            continue
        stack.append((rel, children(rel)))


class _Layouter:
    """Collects a context's entries in creation order, and the symlink problems found."""

    def __init__(self, func_dir: Path, spec_file: str) -> None:
        self.func_dir = func_dir
        self.spec_file = spec_file  # the deploy.yaml declaring the function, resolved
        self.entries: dict[str, Entry] = {}
        self.problems: list[Diagnostic] = []

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
            if posixpath.basename(ctx_path) in SPEC_FILE_NAMES and os.path.realpath(path) == self.spec_file:
                return  # it describes the deployment, not the image: editing it must not rebuild
            entry_kind: EntryKind = "exec-file" if mode & 0o111 else "file"
            self.add(Entry(ctx_path, entry_kind, mode, source=path, size=st.st_size))
        else:  # reading a FIFO or a device may block or never end; a socket has no content
            self.problems.append(Diagnostic.at(Path(display(Path(path))), 0, 0, f"is {kind(st.st_mode)}, which a build context "
                                               "cannot hold; remove it or exclude it in .dockerignore"))

    def link_target(self, src_root: Path, path: str) -> str | None:
        resolved = Path(os.path.realpath(path))
        if not inside(resolved, src_root):
            self.problems.append(Diagnostic.at(
                Path(display(Path(path))), 0, 0, f"symlink to {os.readlink(path)} leads outside {display(src_root)} "
                f"(to {resolved}), which the build context cannot contain; replace it with a copy "
                "of the file or exclude it in .dockerignore"
            ))
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
        if entry is not None and entry.kind in FILE_KINDS:  # else excluded by .dockerignore
            self.entries[entry.path] = dataclasses.replace(entry, source=None, data=data, size=len(data))


def _dockerfile_source(fn: FunctionSpec, func_dir: Path) -> tuple[str, Path | None]:
    """(Dockerfile path in the context, source file to copy there or None for the template)."""
    df = fn.build.dockerfile
    if df is None:
        return TEMPLATE_NAME, None
    try:
        real = check_inside(df, fn.root)
    except RefusedFile as exc:
        raise BuildContextError(f"{fn.location}: function {fn.name}: build.dockerfile {display(df)} {exc.strerror}; "
                                "deployer reads nothing outside it: move the Dockerfile into the repository") from exc
    if not df.is_file():
        raise BuildContextError(f"{fn.location}: function {fn.name}: build.dockerfile {display(df)} is not a file; "
                                "fix the path or remove the setting to use the built-in template")
    if func_dir in real.parents and not df.is_symlink():
        return real.relative_to(func_dir).as_posix(), None
    return TEMPLATE_NAME, df


@functools.lru_cache(maxsize=1024)
def _rewrite(data: bytes, new_paths: tuple[tuple[int, str], ...]) -> bytes:
    """gomod.rewrite_replaces, shared by the functions whose contexts hold the same shared module."""
    return gomod.rewrite_replaces(data, dict(new_paths))


def inputs(fn: FunctionSpec) -> tuple[ModuleGraph, dict[str, str], str, Path | None]:
    """The module graph, build args, Dockerfile path in the context and file to copy there."""
    graph = discover(fn)
    args = build_args(fn)
    return (graph, args, *_dockerfile_source(fn, graph.function.dir))


def lay_out(fn: FunctionSpec, graph: ModuleGraph, args: dict[str, str], dockerfile: str, df_copy: Path | None) -> Layout:
    func_dir = graph.function.dir
    shared: list[tuple[str, Module]] = sorted(
        (graph.location(m.dir), m) for m in graph.modules.values() if m.shared
    )
    forced = ["go.mod", "go.sum"] + ([] if dockerfile == TEMPLATE_NAME else [dockerfile])
    forced += [f"{loc}/{name}" for loc, _ in shared for name in ("go.mod", "go.sum")]
    pm = PatternMatcher(_read_dockerignore(func_dir, fn.root) + [f"!{p}" for p in forced])

    if dockerfile == TEMPLATE_NAME and (func_dir / TEMPLATE_NAME).exists():
        raise BuildContextError(
            f"{display(func_dir / TEMPLATE_NAME)}: deployer writes the Dockerfile under this name; "
            "rename the file or set build.dockerfile to it"
        )
    out = _Layouter(func_dir, os.path.realpath(fn.location.file))
    out.add_tree(pm, func_dir, "", skip=frozenset({".dockerignore"}))
    for loc, module in shared:
        out.add_tree(pm, module.dir, loc)
    if out.problems:
        raise BuildContextError(*out.problems)
    for module in graph.modules.values():
        new_paths = graph.new_replace_paths(module)
        if new_paths:
            loc = graph.location(module.dir)
            out.set_content(f"{loc}/go.mod" if loc else "go.mod", _rewrite(module.data, tuple(sorted(new_paths.items()))))
    if dockerfile == TEMPLATE_NAME:
        text = read_inside(df_copy, fn.root) if df_copy else template_text().encode()
        out.add(Entry(TEMPLATE_NAME, "file", data=text, size=len(text)))
    df_entry = out.entries.get(dockerfile)  # a real path (see _dockerfile_source): no link to follow
    if df_entry is None or df_entry.kind not in FILE_KINDS:
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
    with reading_errors(fn):
        return lay_out(fn, *inputs(fn))


@contextlib.contextmanager
def reading_errors(fn: FunctionSpec) -> Iterator[None]:
    """An unreadable file or directory in the tree is the user's to fix, not a crash."""
    try:
        yield
    except RefusedFile as exc:  # a special file, or one outside the root: no permissions to fix
        where = display(Path(exc.filename)) if exc.filename else f"function {fn.name}"
        raise BuildContextError(f"{where}: {exc.strerror}; deployer reads only regular files inside the repository root "
                                f"(while assembling the build context of {fn.name})") from exc
    except OSError as exc:
        where = display(Path(exc.filename)) if exc.filename else f"function {fn.name}"
        raise BuildContextError(f"{where}: cannot read ({exc.strerror or exc}) while assembling the build context "
                                f"of {fn.name}; fix its permissions or exclude it in .dockerignore") from exc


def source_digest_of(fn: FunctionSpec) -> str:
    """The source digest `assemble(fn, ...)` would give now, without copying any file."""
    return layout(fn).digest()
