"""layout: the entries of a function's build context, listed without writing anything.

The context holds the function's source directory at its root, each shared module it needs under
`shared/<name>/` (see deployer.module_graph), go.mod replace directives rewritten to those places, a
generated go.work when the function lives in a Go workspace, and, for a Dockerfile build, the
Dockerfile. How the context becomes an image is its `Recipe`: the built-in Go build (`GoBuild`:
compile in a container of the builder image, then copy the binary onto the runtime image) or the
user's Dockerfile (`DockerfileBuild`). A `Layout` lists every entry (path, kind, mode, and where its content comes from:
a file read in place, in-memory bytes, or a link target). Plan needs only the digest:
`source_digest_of` hashes the layout in place, with no copy to make and delete; deployer.context
writes a layout into a directory for docker build.

File selection follows the function's `.dockerignore` with Docker's semantics (the docker SDK's
PatternMatcher, which is what the docker gateway's build uses; see deployer.dockerignore),
applied to context paths, so a
pattern reaches into `shared/` just as it would if the context were sent with the file. go.mod,
go.sum and the Dockerfile are always included. Neither the `.dockerignore` nor the deploy.yaml
that declares the function is part of the context: what is in it is exactly what docker build
gets and what the digest covers, and editing that deploy.yaml (a comment, another function) does
not rebuild anything. Other files named deploy.yaml (test data, embedded files) stay.

Symlinks: a link whose target resolves inside the module tree it belongs to is kept as a link
(relative, so it also resolves inside the copy); a link that resolves outside it is an error,
because following it would put files from outside the context into the image.

What cannot change the binary stays out of a Go build's context and digest: `_test.go` files and
`testdata` directories without Go sources (no non-test .go file, no go.mod: a package there is
compiled when imported, a module when a replace leads there), unless a `//go:embed` directive of
the same module may reach them (a non-test .go file in their directory or above it holds one).
A Dockerfile build keeps them: its Dockerfile may run `go test`.

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
from typing import Iterator, Literal, Mapping, Union

from docker.utils.build import PatternMatcher

from deployer import digest as digest_mod
from deployer import gomod
from deployer.dockerignore import IgnoreMatcher, never_in_context, read_dockerignore, walk
from deployer.errors import BuildContextError, Diagnostic
from deployer.module_graph import SHARED_DIR, Module, ModuleGraph, discover
from deployer.paths import RefusedFile, check_inside, display, inside, kind, open_inside, read_inside
from deployer.spec import SPEC_FILE_NAMES, FunctionSpec
from deployer.workspace import MAX_GO_WORK_SUM_BYTES

# Build args deployer sets itself for a Dockerfile build; BUILDPLATFORM is added by the docker
# gateway at build time.
RESERVED_BUILD_ARGS = ("BUILDER_IMAGE", "RUNTIME_IMAGE", "TARGETPLATFORM", "TARGETARCH", "GO_BUILD_FLAGS", "BUILDPLATFORM")

# A go:embed directive, as a .go file holds it (`//go:embed pattern...`).
_EMBED = b"//go:embed"

# What deployer writes into a context root itself. The workspace files are made from the go.work
# that covers the function (a go.work of the function's own directory included); a file named
# like the copied Dockerfile is refused.
GO_WORK, GO_WORK_SUM = "go.work", "go.work.sum"
COPIED_DOCKERFILE = "Dockerfile.deployer"  # a Dockerfile kept outside the function's directory

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


# The Go environment values that can change the binary. The others (GOPROXY, GOPRIVATE, GONOSUMDB...)
# choose where modules come from and how they are checked, and go.sum pins what they must be.
GO_ENV_IN_DIGEST = ("GOFLAGS", "GOTOOLCHAIN")
# What makes the Go build's image recipe differ from a Dockerfile build's, in the digest.
GO_RECIPE_VERSION = "go-build/1"


@dataclass(frozen=True)
class GoBuild:
    """The built-in Go build: `go build` of the context root in a container of `builder_image`
    (the engine's own platform, cross-compiling for `platform`), then `RUNTIME_DOCKERFILE` copies
    the binary onto `runtime_image`. `go_env` is the complete Go environment deploy.yaml asks for
    (defaults filled); the compile adds GOOS, GOARCH, CGO_ENABLED and the cache locations."""

    builder_image: str
    runtime_image: str
    platform: str
    flags: tuple[str, ...]
    go_env: Mapping[str, str]

    @property
    def goarch(self) -> str:
        return self.platform.split("/", 1)[1]

    def digest_inputs(self) -> digest_mod.BuildInputs:
        """What the source digest covers besides the tree."""
        args = {"GOARCH": self.goarch, "GO_BUILD_FLAGS": shlex.join(self.flags),
                **{k: v for k, v in self.go_env.items() if k in GO_ENV_IN_DIGEST}}
        return digest_mod.BuildInputs(dockerfile="", dockerfile_content=runtime_dockerfile().encode(), build_args=args,
                                      platform=self.platform, builder_image=self.builder_image,
                                      runtime_image=self.runtime_image, recipe_version=GO_RECIPE_VERSION)


@dataclass(frozen=True)
class DockerfileBuild:
    """docker build of the context with the user's Dockerfile (at `dockerfile`, context-relative)
    and `build_args` (deployer's and the user's)."""

    dockerfile: str
    build_args: Mapping[str, str]
    platform: str
    builder_image: str
    runtime_image: str

    def digest_inputs(self, content: bytes) -> digest_mod.BuildInputs:
        """What the source digest covers besides the tree; `content` is the Dockerfile's."""
        return digest_mod.BuildInputs(dockerfile=self.dockerfile, dockerfile_content=content, build_args=self.build_args,
                                      platform=self.platform, builder_image=self.builder_image,
                                      runtime_image=self.runtime_image)


Recipe = Union[GoBuild, DockerfileBuild]


@dataclass(frozen=True)
class Layout:
    """Everything a function's build context holds and how it is built. Invariant: `entries` are
    in creation order (each directory before what it holds) with unique paths, and for a
    DockerfileBuild the entry at its `dockerfile` is a file."""

    fn: FunctionSpec
    entries: tuple[Entry, ...]
    recipe: Recipe
    shared_modules: tuple[str, ...]
    module_dirs: tuple[Path, ...]  # the context directory must not lie inside any of them
    # Each shared module: where it lies in the context, and its directory (resolved).
    shared_dirs: tuple[tuple[str, Path], ...] = ()
    # The .dockerignore rules the entries were selected by (with go.mod, go.sum forced in).
    ignore: PatternMatcher | None = dataclasses.field(default=None, compare=False)

    def digest(self) -> str:
        """The source digest of the context this layout makes, hashing files in place."""
        return self.digests()[0]

    def digests(self) -> tuple[str, dict[str, str]]:
        """The source digest, and the digest of each of the image's inputs (deployer.image_inputs)."""
        with reading_errors(self.fn):
            return digest_mod.input_digests(self.entries, self.build_inputs(), self.part_of)

    def build_inputs(self) -> digest_mod.BuildInputs:
        recipe = self.recipe
        if isinstance(recipe, GoBuild):
            return recipe.digest_inputs()
        df = next(e for e in self.entries if e.path == recipe.dockerfile)
        content = df.data if df.data is not None else read_inside(Path(df.source or ""), self.fn.root)
        return recipe.digest_inputs(content)

    @functools.cached_property
    def input_dirs(self) -> tuple[tuple[str, str, Path], ...]:
        """(input name, context location, directory) of each module the context holds: the
        function's own ("function", "") and each shared one, named by its path in the repository."""
        root = self.fn.root.resolve()
        return (("function", "", self.fn.build.source.resolve()),
                *((module_input(root, d), loc, d) for loc, d in self.shared_dirs))

    def would_hold(self, path: str) -> bool:
        """Whether a file at context path `path` would be in the context if it existed: not left
        out by .dockerignore, by name (.git, dotenv files) or, for the Go build, as a test file.
        (A testdata directory is judged by its contents, which a deleted file no longer shows.)"""
        if any(never_in_context(part) for part in path.split("/")):
            return False
        if isinstance(self.recipe, GoBuild) and path.endswith("_test.go"):
            return False
        return self.ignore is None or not self.ignore.matches(path)

    def part_of(self, path: str) -> str:
        """The input a context entry belongs to: a shared module, the Dockerfile, or the function."""
        if isinstance(self.recipe, DockerfileBuild) and path == self.recipe.dockerfile:
            return digest_mod.DOCKERFILE_INPUT
        for name, loc, _ in self.input_dirs[1:]:
            if path.startswith(loc) and (len(path) == len(loc) or path[len(loc)] == "/"):
                return name
        return "function"


def module_input(root: Path, module_dir: Path) -> str:
    """A shared module's input name: `module/` and its directory's path in the repository."""
    return "module/" + (module_dir.relative_to(root).as_posix() if module_dir.is_relative_to(root) else module_dir.name)


@functools.lru_cache(maxsize=1)
def runtime_dockerfile() -> str:
    """The Dockerfile that puts a compiled binary onto the runtime image (the Go build's last step)."""
    return resources.files("deployer").joinpath("data/Dockerfile.runtime").read_text(encoding="utf-8")


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
        for rel, st in walk(pm, root, base):
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

    def drop_unbuilt_go_files(self, root: Path) -> None:
        """Leave out `_test.go` files, which the go command never compiles, and `testdata`
        directories (with what they hold) that hold no Go source (a non-test .go file or a
        go.mod: a package there is compiled when something imports it, a module when a replace
        or a `use` leads there; only package patterns such as `./...` pass testdata over), unless
        a `//go:embed` directive may reach them: one in a non-test .go file of their directory or
        of a directory above it (embed patterns reach down, never up)."""
        candidates = [e.path for e in self.entries.values()
                      if (e.kind != "dir" and e.path.endswith("_test.go")) or (e.kind == "dir" and posixpath.basename(e.path) == "testdata")]
        if not candidates:
            return
        go_files: dict[str, list[str]] = {}
        with_sources: set[str] = set()  # directories holding Go sources at any depth
        for e in self.entries.values():
            go_source = e.kind != "dir" and e.path.endswith(".go") and not e.path.endswith("_test.go")
            if go_source:
                go_files.setdefault(posixpath.dirname(e.path), []).append(e.path)
            if go_source or (e.kind != "dir" and posixpath.basename(e.path) == "go.mod"):
                directory = posixpath.dirname(e.path)
                while directory and directory not in with_sources:
                    with_sources.add(directory)
                    directory = posixpath.dirname(directory)
        candidates = [path for path in candidates if path not in with_sources]
        embeds: dict[str, bool] = {}

        def embeds_in(directory: str) -> bool:
            if directory not in embeds:
                embeds[directory] = any(self._holds_embed(path, root) for path in go_files.get(directory, ()))
            return embeds[directory]

        def reachable(path: str) -> bool:
            directory = posixpath.dirname(path)
            while True:
                if embeds_in(directory):
                    return True
                if not directory:
                    return False
                directory = posixpath.dirname(directory)

        dropped = [path for path in candidates if not reachable(path)]
        if dropped:
            prefixes = tuple(f"{path}/" for path in dropped)
            gone = set(dropped)
            self.entries = {p: e for p, e in self.entries.items() if p not in gone and not p.startswith(prefixes)}

    def _holds_embed(self, path: str, root: Path) -> bool:
        """Whether the file at `path` holds a go:embed directive; read in pieces, not whole (a
        .go file of a pull request may be of any size)."""
        entry = self.follow(path)
        if entry is None or entry.kind not in FILE_KINDS:
            return False
        if entry.data is not None:
            return _EMBED in entry.data
        with open_inside(Path(entry.source or ""), root) as f:
            tail = b""
            while chunk := f.read(1 << 20):
                if _EMBED in tail + chunk[:len(_EMBED)] or _EMBED in chunk:
                    return True
                tail = chunk[-(len(_EMBED) - 1):]
        return False

    def set_content(self, path: str, data: bytes) -> None:
        """Give the file at `path` new content, keeping its mode (as writing into the copy did)."""
        entry = self.follow(path)
        if entry is not None and entry.kind in FILE_KINDS:  # else excluded by .dockerignore
            self.entries[entry.path] = dataclasses.replace(entry, source=None, data=data, size=len(data))


def _dockerfile_source(fn: FunctionSpec, df: Path, func_dir: Path) -> tuple[str, Path | None]:
    """(Dockerfile path in the context, file to copy there or None when it is in the context)."""
    try:
        real = check_inside(df, fn.root)
    except RefusedFile as exc:
        raise BuildContextError(f"{fn.location}: function {fn.name}: build.dockerfile {display(df)} {exc.strerror}; "
                                "deployer reads nothing outside it: move the Dockerfile into the repository") from exc
    if not df.is_file():
        raise BuildContextError(f"{fn.location}: function {fn.name}: build.dockerfile {display(df)} is not a file; "
                                "fix the path or remove the setting to use the built-in Go build")
    if func_dir in real.parents and not df.is_symlink():
        return real.relative_to(func_dir).as_posix(), None
    return COPIED_DOCKERFILE, df


@functools.lru_cache(maxsize=1024)
def _rewrite(data: bytes, new_paths: tuple[tuple[int, str], ...]) -> bytes:
    """gomod.rewrite_replaces, shared by the functions whose contexts hold the same shared module."""
    return gomod.rewrite_replaces(data, dict(new_paths))


@dataclass(frozen=True)
class Inputs:
    """What a layout is made from, found before anything is listed: the module graph, and for a
    Dockerfile build its build args, its path in the context and the file to copy there (None
    when it lies in the function's directory)."""

    graph: ModuleGraph
    build_args: dict[str, str]
    dockerfile: str | None
    dockerfile_copy: Path | None


def inputs(fn: FunctionSpec) -> Inputs:
    graph = discover(fn)
    if fn.build.dockerfile is None:
        return Inputs(graph, {}, None, None)
    return Inputs(graph, build_args(fn), *_dockerfile_source(fn, fn.build.dockerfile, graph.function.dir))


def _recipe(fn: FunctionSpec, found: Inputs) -> Recipe:
    if found.dockerfile is None:
        return GoBuild(builder_image=fn.build.builder_image, runtime_image=fn.build.runtime_image, platform=fn.platform,
                       flags=fn.build.go_build_flags, go_env=MappingProxyType(fn.build.go_environment()))
    return DockerfileBuild(dockerfile=found.dockerfile, build_args=MappingProxyType(found.build_args), platform=fn.platform,
                           builder_image=fn.build.builder_image, runtime_image=fn.build.runtime_image)


def lay_out(fn: FunctionSpec, found: Inputs) -> Layout:
    graph, dockerfile = found.graph, found.dockerfile
    func_dir = graph.function.dir
    shared: list[tuple[str, Module]] = sorted(
        (graph.location(m.dir), m) for m in graph.modules.values() if m.shared
    )
    forced = ["go.mod", "go.sum"] + ([dockerfile] if dockerfile is not None and found.dockerfile_copy is None else [])
    forced += [f"{loc}/{name}" for loc, _ in shared for name in ("go.mod", "go.sum")]
    pm = IgnoreMatcher(read_dockerignore(func_dir, fn.root) + [f"!{p}" for p in forced])

    copied = func_dir / COPIED_DOCKERFILE
    if found.dockerfile_copy is not None and (copied.exists() or copied.is_symlink()):
        raise BuildContextError(f"{display(copied)}: deployer writes the Dockerfile under this name; "
                                "rename the file or set build.dockerfile to it")
    out = _Layouter(func_dir, os.path.realpath(fn.location.file))
    out.add_tree(pm, func_dir, "", skip=frozenset({".dockerignore", GO_WORK, GO_WORK_SUM}))
    for loc, module in shared:
        out.add_tree(pm, module.dir, loc)
    if out.problems:
        raise BuildContextError(*out.problems)
    if dockerfile is None:
        out.drop_unbuilt_go_files(fn.root)
    for module in graph.modules.values():
        new_paths = graph.new_replace_paths(module)
        if new_paths:
            loc = graph.location(module.dir)
            out.set_content(f"{loc}/go.mod" if loc else "go.mod", _rewrite(module.data, tuple(sorted(new_paths.items()))))
    if graph.workspace is not None:
        out.add(Entry(GO_WORK, "file", data=graph.workspace.go_work, size=len(graph.workspace.go_work)))
        if graph.workspace.go_work_sum is not None:
            data = read_inside(graph.workspace.go_work_sum, fn.root, limit=MAX_GO_WORK_SUM_BYTES)
            out.add(Entry(GO_WORK_SUM, "file", data=data, size=len(data)))
    if found.dockerfile_copy is not None:
        text = read_inside(found.dockerfile_copy, fn.root)
        out.add(Entry(COPIED_DOCKERFILE, "file", data=text, size=len(text)))
    if dockerfile is not None:
        df_entry = out.entries.get(dockerfile)  # a real path (see _dockerfile_source): no link to follow
        if df_entry is None or df_entry.kind not in FILE_KINDS:
            raise BuildContextError(f"{fn.location}: function {fn.name}: the Dockerfile {dockerfile} is not in the "
                                    "build context; do not exclude it in .dockerignore")
    return Layout(
        fn=fn,
        entries=tuple(out.entries.values()),
        recipe=_recipe(fn, found),
        shared_modules=graph.shared_names,
        module_dirs=tuple(graph.modules),
        shared_dirs=tuple((loc, module.dir) for loc, module in shared),
        ignore=pm,
    )


def layout(fn: FunctionSpec) -> Layout:
    """The entries of `fn`'s build context, read from its tree without writing anything."""
    with reading_errors(fn):
        return lay_out(fn, inputs(fn))


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
