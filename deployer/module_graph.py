"""Find the Go modules a function's build context needs, and where each goes in the context.

Starting from the function's go.mod, every local replace directive is followed, transitively
through the targets' own go.mod files, plus the explicit `build.shared_modules`. A target inside
the function directory travels with the function's files; any other target is a *shared module*,
copied to `shared/<name>/`. Every target is checked (exists, is a directory, inside the repository
root, has a go.mod declaring the replaced module path); all problems of one function are collected
into one BuildContextError whose lines read `path/to/go.mod:LINE: <what>; <what to do>`.

A shared module is copied whole (but for .dockerignore'd entries and what deployer.layout never
copies), so it may be neither the repository root nor a directory holding the function's own
source directory: either would copy the function again under shared/, and with it every other
function and file around it. go.mod files are read through deployer.paths.read_inside: regular
files inside the repository root only. Values quoted from go.mod files are cut short.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from deployer import gomod
from deployer.errors import BuildContextError, Diagnostic
from deployer.paths import RefusedFile, clip, display, inside, read_inside
from deployer.spec import FunctionSpec, Location

SHARED_DIR = "shared"

# Every function of a monorepo reads the same shared go.mod files; parsing (a Python lexer) was
# the largest part of planning a function. parse() is pure and its result immutable, so parses
# are shared by content.
_parse = functools.lru_cache(maxsize=1024)(gomod.parse)


@dataclass
class Module:
    """A module directory (resolved) whose go.mod goes into the context.
    `shared` is True for modules copied to shared/<name>; `inner` is the POSIX path relative to
    the function directory for the function itself ("") and modules inside it."""

    dir: Path
    gomod_path: Path
    data: bytes
    parsed: gomod.GoMod
    shared: bool
    inner: str = ""
    # replace line -> target module dir, for local replaces that are rewritten in the context
    links: dict[int, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class ModuleGraph:
    """The function module, the shared modules with their context names, and every module
    (function, inner, shared) keyed by directory. Invariant: names are unique and not reserved."""

    function: Module
    modules: dict[Path, Module]
    names: dict[Path, str]  # shared module dir -> name under shared/

    def location(self, module_dir: Path) -> str:
        """Where a module's directory is in the context, as a POSIX path ("" = context root)."""
        m = self.modules[module_dir]
        return f"{SHARED_DIR}/{self.names[module_dir]}" if m.shared else m.inner

    def new_replace_paths(self, module: Module) -> dict[int, str]:
        """For each rewritten replace in `module`'s go.mod: the path valid inside the context."""
        here = self.location(module.dir)
        out = {}
        for line, target in module.links.items():
            rel = posixpath.relpath(self.location(target) or ".", here or ".")
            out[line] = rel if rel.startswith("../") or rel == ".." else f"./{rel}"
        return out

    @property
    def shared_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.names.values()))


class _Discovery:
    def __init__(self, fn: FunctionSpec) -> None:
        self.fn = fn
        self.root = fn.root.resolve()
        self.func_dir = fn.build.source.resolve()
        self.problems: list[Diagnostic] = []
        self.modules: dict[Path, Module] = {}
        self.unreadable: set[Path] = set()  # reported once, however many replaces lead there

    def problem(self, where: Path | Location, what: str, todo: str, line: int = 0) -> None:
        """A problem at a file (a go.mod line, or deploy.yaml's position of the function)."""
        if isinstance(where, Location):
            self.problems.append(Diagnostic.at(where.file, where.line, where.column, f"{what}; {todo}"))
        else:
            self.problems.append(Diagnostic.at(where, line, 0, f"{what}; {todo}"))

    def read(self, module_dir: Path, shared: bool) -> Module | None:
        """Read and parse module_dir/go.mod, recording a problem when that fails."""
        path = module_dir / "go.mod"
        try:
            data = read_inside(path, self.root)
        except RefusedFile as exc:
            self.problem(Path(display(path)), str(exc.strerror), "deployer reads only regular files inside the repository root; "
                         "replace it with the module's go.mod")
            return None
        except OSError as exc:
            self.problem(Path(display(path)), f"cannot read go.mod ({exc.strerror})", "check the file exists and is readable")
            return None
        try:
            parsed = _parse(data)
        except gomod.GoModSyntaxError as exc:
            self.problem(Path(display(path)), exc.message, "fix the go.mod syntax", exc.line)
            return None
        inner = "" if not inside(module_dir, self.func_dir) else module_dir.relative_to(self.func_dir).as_posix()
        if inner == ".":
            inner = ""
        return Module(module_dir, path, data, parsed, shared=shared, inner=inner)

    def check_target(self, owner: Module, rep: gomod.Replace) -> Path | None:
        """The resolved directory of a local replace, or None (with a problem) when unusable."""
        where, line = Path(display(owner.gomod_path)), rep.line
        stmt = f"replace {clip(rep.old_path)} => {clip(rep.new_path)}"
        try:
            target = (owner.dir / rep.new_path).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            self.problem(where, f"{stmt}: cannot be used as a directory ({getattr(exc, 'strerror', None) or exc})",
                         "point the replace at a module directory", line)
            return None
        if not inside(target, self.root):
            self.problem(where, f"{stmt}: target {target} is outside the repository root {self.root}",
                         "move the module into the repository or set the root to a directory that contains it", line)
            return None
        if not target.exists():
            self.problem(where, f"{stmt}: directory {display(target)} does not exist",
                         "fix the path or create the module there", line)
            return None
        if not target.is_dir():
            self.problem(where, f"{stmt}: {display(target)} is not a directory", "point the replace at a module directory", line)
            return None
        if not os.path.lexists(target / "go.mod"):  # anything else there is reported when read
            self.problem(where, f"{stmt}: {display(target)} has no go.mod",
                         "point the replace at a Go module directory (run `go mod init` there)", line)
            return None
        if not inside(target, self.func_dir):
            unfit = self.unfit_shared(target)
            if unfit:
                self.problem(where, f"{stmt}: {unfit}", "move the shared code into a module directory of its own", line)
                return None
        return target

    def unfit_shared(self, target: Path) -> str | None:
        """Why the resolved directory `target`, outside the function, cannot be a shared module."""
        if target == self.root:
            return (f"{display(target)} is the repository root, which a shared module may not be "
                    "(it would copy the whole repository, other functions included)")
        if inside(self.func_dir, target):
            return (f"{display(target)} holds the function's own source directory, which a shared module may not "
                    "(it would copy the function, and the functions beside it, again)")
        return None

    def visit(self, module: Module) -> None:
        self.modules[module.dir] = module
        for rep in module.parsed.replaces:
            if not rep.is_local:
                continue
            target = self.check_target(module, rep)
            if target is None:
                continue
            known = self.modules.get(target)
            if target in self.unreadable:
                continue
            dep = known or self.read(target, shared=not inside(target, self.func_dir))
            if dep is None:
                self.unreadable.add(target)
                continue
            if dep.parsed.module != rep.old_path:
                declared = f"declares module {clip(dep.parsed.module)}" if dep.parsed.module else "has no module line"
                self.problem(Path(display(module.gomod_path)),
                             f"replace {clip(rep.old_path)} => {clip(rep.new_path)}: {display(dep.gomod_path)} {declared}",
                             f"make the replace's left side match the module path {clip(dep.parsed.module or '(none)')} or fix that go.mod",
                             rep.line)
                continue
            # A target inside the owner's own directory travels with the owner's files unchanged.
            if not inside(target, module.dir):
                module.links[rep.line] = target
            if known is None:
                self.visit(dep)

    def explicit(self, path: Path) -> None:
        target = path.resolve()
        where, line = self.fn.location, 0
        what = f"function {self.fn.name}: shared module {display(path)}"
        unfit = None if inside(target, self.func_dir) else self.unfit_shared(target)
        if not inside(target, self.root):
            self.problem(where, f"{what} is outside the repository root {self.root}", "list only modules inside the repository", line)
        elif not os.path.lexists(target / "go.mod"):  # anything else there is reported when read
            self.problem(where, f"{what} has no go.mod", "list Go module directories only", line)
        elif unfit:
            self.problem(where, f"{what}: {unfit}", "list a module directory of its own", line)
        elif target not in self.modules:
            dep = self.read(target, shared=not inside(target, self.func_dir))
            if dep is not None:
                self.visit(dep)


def _reserved_names(func_dir: Path) -> set[str]:
    """Entries the function already has under shared/: a shared module must not land on them."""
    try:
        return set(os.listdir(func_dir / SHARED_DIR))
    except OSError:
        return set()


def choose_names(dirs: list[Path], root: Path, reserved: set[str]) -> dict[Path, str]:
    """Name each directory by its base name; where names collide (or hit a reserved name), the
    colliding directories take one more parent component (`parent-name`) until all are unique.
    Depends only on the set of directories relative to `root`, not on the order they were found."""
    parts = {d: d.relative_to(root).parts or (root.name or "root",) for d in dirs}
    depth = dict.fromkeys(dirs, 1)

    def name(d: Path) -> str:
        return "-".join(parts[d][-depth[d]:])

    while True:
        names = {d: name(d) for d in dirs}
        count = Counter(names.values())
        clashing = [d for d in dirs if count[names[d]] > 1 or names[d] in reserved]
        if not clashing:
            return names
        growable = [d for d in clashing if depth[d] < len(parts[d])]
        if not growable:
            break
        for d in growable:
            depth[d] += 1
    # Only paths like a/b-c and a-b/c get here: add a hash of the relative path.
    return {d: f"{name(d)}-{hashlib.sha256('/'.join(parts[d]).encode()).hexdigest()[:8]}" for d in dirs}


def discover(fn: FunctionSpec) -> ModuleGraph:
    """Find every module the function's context needs; raises BuildContextError listing all
    problems found."""
    disc = _Discovery(fn)
    func = None
    if not os.path.lexists(disc.func_dir / "go.mod"):  # anything else there is reported when read
        disc.problem(Path(display(disc.func_dir)), f"function {fn.name}: source directory has no go.mod",
                     "point build.source at the function's Go module directory")
    else:
        func = disc.read(disc.func_dir, shared=False)
        if func is not None:
            disc.visit(func)
    for extra in fn.build.shared_modules or ():
        disc.explicit(extra)
    if disc.problems or func is None:
        raise BuildContextError(*disc.problems)
    shared = sorted(d for d, m in disc.modules.items() if m.shared)
    names = choose_names(shared, disc.root, _reserved_names(disc.func_dir))
    return ModuleGraph(function=func, modules=disc.modules, names=names)
