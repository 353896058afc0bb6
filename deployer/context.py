"""context: write a function's build context into a directory of its own, for docker build.

The entries come from deployer.layout; `assemble` writes them and digests what it wrote (the
same function of the same entries as the plan's in-place digest, deployer.digest), and
`temporary_context` does so in a temporary directory removed on every way out. The user's tree
is only read, never written. The directory holds only the context: what a build makes from it
(the Go build's binary) goes elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

from deployer import digest as digest_mod
from deployer import locks
from deployer.errors import BuildContextError
from deployer.layout import GoBuild, Layout, Recipe, inputs, lay_out, reading_errors
from deployer.paths import inside
from deployer.spec import FunctionSpec

@dataclass(frozen=True)
class BuildContext:
    """An assembled build context and how it becomes an image (a DockerfileBuild's Dockerfile
    is relative to `path`); `digest` covers the context and every other input of the build
    ("sha256:<64 hex>")."""

    path: Path
    recipe: Recipe
    shared_modules: tuple[str, ...]
    digest: str
    # The digest of each input of the image (deployer.image_inputs), and where each module is.
    inputs: Mapping[str, str] = field(default_factory=dict)
    input_dirs: tuple[tuple[str, str, Path], ...] = ()
    would_hold: Callable[[str], bool] | None = field(default=None, compare=False)  # Layout.would_hold

    @property
    def content_tag(self) -> str:
        """The ECR tag that names the image built from this context."""
        return digest_mod.content_tag(self.digest)


def _check_dest(dest: Path, module_dirs: tuple[Path, ...]) -> Path:
    real = dest.resolve()
    if any(inside(real, d) for d in module_dirs):
        raise BuildContextError(f"{dest}: the build context directory lies inside a module it would copy; choose a directory outside the repository")
    try:
        real.mkdir(parents=True, exist_ok=True)
        empty = not any(real.iterdir())
    except OSError as exc:
        raise BuildContextError(f"{dest}: cannot use as the build context directory ({exc.strerror or exc}); give an empty or new directory") from exc
    if not empty:
        raise BuildContextError(f"{dest}: the build context directory is not empty; give an empty or new directory")
    return real


def materialize(lay: Layout, dest: Path) -> Path:
    """Write the layout into `dest` (an empty or new directory); returns its resolved path."""
    existed = dest.exists()
    real = _check_dest(dest, lay.module_dirs)
    try:
        _write(lay, real)
    except OSError as exc:
        _discard(real, existed)  # a half-written context must not be mistaken for a whole one
        if exc.filename and not Path(exc.filename).is_relative_to(real):
            with reading_errors(lay.fn):  # the source side failed: same message as when listing
                raise
        raise BuildContextError(f"cannot write the build context of {lay.fn.name} to {dest}: {exc.strerror or exc}"
                                f"{f' ({exc.filename})' if exc.filename else ''}; check the disk and the directory") from exc
    return real


def _first_missing(dest: Path) -> Path | None:
    """The outermost directory of `dest` that does not exist yet (what mkdir -p would create)."""
    missing = None
    for path in (dest.absolute(), *dest.absolute().parents):
        if path.exists() or path.is_symlink():
            return missing
        missing = path
    return missing


def _discard(real: Path, keep_dir: bool) -> None:
    if not keep_dir:
        shutil.rmtree(real, ignore_errors=True)
        return
    for child in real.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _write(lay: Layout, real: Path) -> None:
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


def assemble(fn: FunctionSpec, dest: Path) -> BuildContext:
    """Build the context of `fn` in `dest` (an empty or new directory) and digest what is there.
    On failure, directories this call created are removed again."""
    created = _first_missing(dest)
    try:
        with reading_errors(fn):
            found = inputs(fn)
            _check_dest(dest, tuple(found.graph.modules))  # a bad destination is reported before the tree is read
            lay = lay_out(fn, found)
        path = materialize(lay, dest)
        # Digest the directory, not the layout: it is what the build gets, even if a source
        # file changed since it was listed; apply compares this digest with the plan's.
        recipe = lay.recipe
        with reading_errors(fn):
            build_inputs = (recipe.digest_inputs() if isinstance(recipe, GoBuild)
                            else recipe.digest_inputs((path / recipe.dockerfile).read_bytes()))
            digest, inputs_digests = digest_mod.source_input_digests(path, build_inputs, lay.part_of)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return BuildContext(path=path, recipe=recipe, shared_modules=lay.shared_modules, digest=digest,
                        inputs=MappingProxyType(inputs_digests), input_dirs=lay.input_dirs, would_hold=lay.would_hold)


def _make_writable(func: Callable[[str], object], path: str, _exc: object) -> None:
    """rmtree's error handler: a read-only directory copied from the source is made writable."""
    os.chmod(os.path.dirname(path), 0o700)
    func(path)


def _remove_tree(path: Path) -> None:
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable)
    else:
        shutil.rmtree(path, onerror=_make_writable)


# Temporary contexts live directly in the temp dir as CONTEXT_PREFIX<pid>-<start>-<random>, each
# beside a lock file of the same name plus LOCK_SUFFIX that its owner holds while it exists
# (deployer.locks). A process killed with -9 leaves both behind, unlocked: the next apply sweeps
# them. A context kept on request (--keep-context) loses its lock file, so it is never swept.
CONTEXT_PREFIX = "deployer-ctx-"
LOCK_SUFFIX = ".lock"


def context_root() -> Path:
    return Path(tempfile.gettempdir())


def _new_context_dir(root: Path) -> tuple[Path, int]:
    """A new empty directory and the held lock that marks it as in use by this process. The lock
    comes first: a sweeper never sees a directory without its owner's lock."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for _ in range(100):
        path = root / f"{CONTEXT_PREFIX}{os.getpid()}-{stamp}-{secrets.token_hex(4)}"
        lock = path.with_name(path.name + LOCK_SUFFIX)
        if lock.exists() or path.exists():
            continue
        # wait: a sweeper may hold the new lock file for a moment (it then removes it, and
        # acquire makes a new one).
        fd = locks.acquire(lock, wait=time.sleep, note=f"pid {os.getpid()} since {stamp}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            locks.release(fd, lock)
            continue
        except BaseException:
            locks.release(fd, lock)
            raise
        return path, fd
    raise BuildContextError(f"cannot create a temporary build context directory in {root}")


def sweep_abandoned_contexts(root: Path | None = None) -> list[Path]:
    """Remove the temporary contexts whose owner died (kill -9, power loss): those whose lock file
    nobody holds. Returns what was removed. Contexts of running applies are held, kept ones have
    no lock file: both are left alone, as is anything not owned by this user."""
    root = root or context_root()
    removed = []
    for lock in sorted(root.glob(f"{CONTEXT_PREFIX}*{LOCK_SUFFIX}")):
        try:
            if lock.lstat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        fd = locks.abandoned(lock)
        if fd is None:
            continue
        path = lock.with_name(lock.name.removesuffix(LOCK_SUFFIX))
        try:
            if path.is_dir() and not path.is_symlink():
                _remove_tree(path)
                removed.append(path)
            locks.release(fd, lock)
        except OSError:
            locks.release(fd, lock, remove=False)  # the lock file stays with it: the next sweep tries again
    return removed


@contextlib.contextmanager
def temporary_context(fn: FunctionSpec, keep: bool = False) -> Iterator[BuildContext]:
    """Assemble `fn`'s context in a fresh temporary directory and remove it on every way out
    (success, error, KeyboardInterrupt), unless `keep`. A crash (kill -9) leaves it to the next
    `sweep_abandoned_contexts`."""
    root = context_root()
    tmp, fd = _new_context_dir(root)
    lock = tmp.with_name(tmp.name + LOCK_SUFFIX)
    try:
        yield assemble(fn, tmp)
    finally:
        removed = keep
        try:
            if not keep:
                _remove_tree(tmp)
                removed = True
        except (OSError, RecursionError):
            # What cannot be removed now stays locked-file-less only if kept on purpose: here the
            # lock file stays (unlocked once we let go), so the next apply sweeps the context.
            # Not an error of the apply: the deploy itself went as reported.
            pass
        finally:
            locks.release(fd, lock, remove=removed)
