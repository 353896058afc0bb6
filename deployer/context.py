"""Assemble a function's Docker build context in a directory of its own.

Layout: the function's source directory at the context root, each shared module it needs under
`shared/<name>/` (see deployer.modules), go.mod replace directives rewritten to those places, and
the Dockerfile. The user's tree is only read, never written.

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
import os
import shlex
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping

from docker.utils.build import PatternMatcher

from deployer import digest as digest_mod
from deployer import gomod
from deployer.errors import BuildContextError
from deployer.modules import SHARED_DIR, Module, ModuleGraph, discover, display
from deployer.spec import FunctionSpec

TEMPLATE_NAME = "Dockerfile.deployer"
# Build args deployer sets itself; BUILDPLATFORM is added by the docker gateway at build time.
RESERVED_BUILD_ARGS = ("BUILDER_IMAGE", "RUNTIME_IMAGE", "TARGETPLATFORM", "TARGETARCH", "GO_BUILD_FLAGS", "BUILDPLATFORM")


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


def _walk(pm: PatternMatcher, src: Path, prefix: str) -> Iterator[str]:
    """The docker SDK's PatternMatcher.walk over `src`, matching paths as `prefix + relative`:
    yields relative POSIX paths of the included entries (sorted), not descending into symlinks."""

    def rec(rel_dir: str) -> Iterator[str]:
        for name in sorted(os.listdir(src / rel_dir if rel_dir else src)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            ctx_path = prefix + rel
            excluded = pm.matches(ctx_path)
            if not excluded:
                yield rel
            full = src / rel
            if not full.is_dir() or full.is_symlink():
                continue
            if excluded and not any(p.exclusion and p.cleaned_pattern.startswith(ctx_path) for p in pm.patterns):
                continue
            yield from rec(rel)

    return rec("")


class _Copier:
    """Copies included entries into the context, collecting symlink problems."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.problems: list[str] = []
        self.dir_modes: list[tuple[Path, int]] = []

    def copy_tree(self, pm: PatternMatcher, src: Path, ctx_prefix: str, skip: frozenset[str] = frozenset()) -> None:
        target_root = self.dest / ctx_prefix if ctx_prefix else self.dest
        target_root.mkdir(parents=True, exist_ok=True)
        if ctx_prefix:
            self.dir_modes.append((target_root, stat.S_IMODE(src.stat().st_mode)))
        for rel in _walk(pm, src, f"{ctx_prefix}/" if ctx_prefix else ""):
            if rel in skip:
                continue
            self.copy_entry(src, rel, target_root / rel)

    def copy_entry(self, src_root: Path, rel: str, out: Path) -> None:
        path = src_root / rel
        st = path.lstat()
        out.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(st.st_mode):
            self.copy_link(src_root, path, out)
        elif stat.S_ISDIR(st.st_mode):
            out.mkdir(exist_ok=True)
            self.dir_modes.append((out, stat.S_IMODE(st.st_mode)))
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(path, out, follow_symlinks=False)
            os.chmod(out, stat.S_IMODE(st.st_mode))
        # Sockets, fifos and devices have no content a build could use: left out.

    def copy_link(self, src_root: Path, path: Path, out: Path) -> None:
        resolved = Path(os.path.realpath(path))
        if resolved != src_root and src_root not in resolved.parents:
            self.problems.append(
                f"{display(path)}: symlink to {os.readlink(path)} leads outside {display(src_root)} "
                f"(to {resolved}), which the build context cannot contain; replace it with a copy "
                "of the file or exclude it in .dockerignore"
            )
            return
        # The walk never descends into symlinks, so path.parent is a real directory in src_root.
        os.symlink(os.path.relpath(resolved, path.parent), out)

    def finish(self) -> None:
        """Apply directory modes last (deepest first), so read-only directories can be filled."""
        for out, mode in sorted(self.dir_modes, key=lambda e: len(e[0].parts), reverse=True):
            os.chmod(out, mode)


def _check_dest(dest: Path, graph: ModuleGraph) -> Path:
    real = dest.resolve()
    if any(real == d or d in real.parents for d in graph.modules):
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


def _rewrite_gomods(graph: ModuleGraph, dest: Path) -> None:
    for module in graph.modules.values():
        new_paths = graph.new_replace_paths(module)
        target = dest / graph.location(module.dir) / "go.mod"
        if not new_paths or not target.is_file():
            continue  # nothing to rewrite, or an inner module excluded by .dockerignore
        target.write_bytes(gomod.rewrite_replaces(module.data, new_paths))


def assemble(fn: FunctionSpec, dest: Path) -> BuildContext:
    """Build the context of `fn` in `dest` (an empty or new directory) and digest it."""
    graph = discover(fn)
    args = build_args(fn)
    func_dir = graph.function.dir
    dockerfile, df_copy = _dockerfile_source(fn, func_dir)
    dest = _check_dest(dest, graph)

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
    copier = _Copier(dest)
    copier.copy_tree(pm, func_dir, "", skip=frozenset({".dockerignore"}))
    for loc, module in shared:
        copier.copy_tree(pm, module.dir, loc)
    if copier.problems:
        raise BuildContextError("\n".join(copier.problems))
    _rewrite_gomods(graph, dest)
    if dockerfile == TEMPLATE_NAME:
        text = df_copy.read_bytes() if df_copy else template_text().encode()
        (dest / TEMPLATE_NAME).write_bytes(text)
    copier.finish()

    digest = digest_mod.source_digest(
        dest,
        dockerfile=dockerfile,
        build_args=args,
        platform=fn.platform,
        builder_image=fn.build.builder_image,
        runtime_image=fn.build.runtime_image,
    )
    return BuildContext(
        path=dest,
        dockerfile=dockerfile,
        build_args=MappingProxyType(args),
        shared_modules=graph.shared_names,
        digest=digest,
    )


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
