"""Find the Go modules a function's build context needs, and where each goes in the context.

Starting from the function's go.mod, every local replace directive is followed, transitively
through the targets' own go.mod files, plus the explicit `build.shared_modules`. When a go.work
covers the function (deployer.workspace), modules also come from the workspace: a module path
that a module of the graph requires joins the graph when a `use` directory provides it, or when
the go.work replaces it with a local directory, and so does the `use` module holding a package
that a Go file of the graph imports (Go needs no require for it: deployer.workspace scans the
files' imports); modules the function does not reach (other functions listed in `use`) stay out.
Module mode (no go.work) reads no Go file. A target inside the function directory travels with the
function's files; any other target is a *shared module*, copied to `shared/<name>/`. Every target
is checked (exists, is a directory, inside the repository root, has a go.mod declaring the
replaced module path); all problems of one function are collected into one BuildContextError
whose lines read `path/to/go.mod:LINE: <what>; <what to do>` (or `go.work:LINE`).

A shared module is copied whole (but for .dockerignore'd entries and what deployer.layout never
copies), so it may be neither the repository root nor a directory holding the function's own
source directory: either would copy the function again under shared/, and with it every other
function and file around it. go.mod files are read through deployer.paths.read_inside: regular
files inside the repository root only. Values quoted from go.mod files are cut short.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from deployer import gomod, workspace
from deployer.errors import BuildContextError, Diagnostic
from deployer.paths import FileTooLarge, RefusedFile, clip, display, inside, read_inside
from deployer.spec import FunctionSpec, Location
from deployer.workspace import WorkspaceFiles

SHARED_DIR = "shared"
# The largest go.mod read: the go command's own limit for the go.mod of a module it downloads
# (modfetch.MaxGoMod). A pull request's go.mod of gigabytes must not be read into memory.
MAX_GO_MOD_BYTES = 16 << 20

# Versions no module proxy can serve: what a require of a local module says. v0.0.0, and the zero
# pseudo-version the go command writes for a module it only knows through a replace.
PLACEHOLDER_VERSIONS = ("v0.0.0", "v0.0.0-00010101000000-000000000000")

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
    (function, inner, shared) keyed by directory. Invariant: names are unique and not reserved.
    `workspace` is the context's go.work (and go.work.sum) when a go.work covers the function,
    None in module mode; every directory in its `modules` is in `modules`."""

    function: Module
    modules: dict[Path, Module]
    names: dict[Path, str]  # shared module dir -> name under shared/
    workspace: WorkspaceFiles | None = None

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
        # In workspace mode: the go.work, its modules (use dir -> (use, module)), which directory
        # provides each module path, the go.work replaces followed (line -> target), and what was
        # reported already (use dirs unfit to share, go.work replace lines).
        self.workspace: workspace.Workspace | None = None
        self.use_modules: dict[Path, tuple[gomod.Use, Module]] = {}
        self.provided: dict[str, Path] = {}
        self.work_links: dict[int, Path] = {}
        self.work_done: set[Path | int] = set()

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
            data = read_inside(path, self.root, limit=MAX_GO_MOD_BYTES)
        except FileTooLarge as exc:
            self.problem(Path(display(path)), str(exc.strerror), "that is no go.mod: replace it with the module's go.mod")
            return None
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

    def check_target(self, where: Path, line: int, stmt: str, path: Path, noun: str = "replace",
                     shared: bool = True) -> Path | None:
        """The resolved directory of a local replace (or a go.work `use`, `noun`) at `where`:`line`
        leading to `path`, or None (with a problem) when unusable; `shared`: also check it may be
        a shared module (a `use` is checked for that only once the function reaches it)."""
        try:
            target = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            self.problem(where, f"{stmt}: cannot be used as a directory ({getattr(exc, 'strerror', None) or exc})",
                         f"point the {noun} at a module directory", line)
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
            self.problem(where, f"{stmt}: {display(target)} is not a directory", f"point the {noun} at a module directory", line)
            return None
        if not os.path.lexists(target / "go.mod"):  # anything else there is reported when read
            self.problem(where, f"{stmt}: {display(target)} has no go.mod",
                         f"point the {noun} at a Go module directory (run `go mod init` there)", line)
            return None
        if shared and not inside(target, self.func_dir):
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

    def module_at(self, target: Path) -> Module | None:
        """The module in `target` (checked), read once: a workspace module was read already."""
        known = self.modules.get(target) or (self.use_modules[target][1] if target in self.use_modules else None)
        if known is not None or target in self.unreadable:
            return known
        dep = self.read(target, shared=not inside(target, self.func_dir))
        if dep is None:
            self.unreadable.add(target)
        return dep

    def follow(self, where: Path, base: Path, rep: gomod.Replace) -> Path | None:
        """The module directory a local replace (in the go.mod or go.work at `where`, relative to
        `base`) leads to, visited; None (with a problem) when it cannot be used."""
        stmt = f"replace {clip(rep.old_path)} => {clip(rep.new_path)}"
        target = self.check_target(where, rep.line, stmt, base / rep.new_path)
        dep = None if target is None else self.module_at(target)
        if target is None or dep is None:
            return None
        if dep.parsed.module != rep.old_path:
            declared = f"declares module {clip(dep.parsed.module)}" if dep.parsed.module else "has no module line"
            self.problem(where, f"{stmt}: {display(dep.gomod_path)} {declared}",
                         f"make the replace's left side match the module path {clip(dep.parsed.module or '(none)')} "
                         f"or fix that go.mod", rep.line)
            return None
        if target not in self.modules:
            self.visit(dep)
        return target

    def visit(self, module: Module) -> None:
        self.modules[module.dir] = module
        for rep in module.parsed.replaces:
            if not rep.is_local:
                continue
            target = self.follow(Path(display(module.gomod_path)), module.dir, rep)
            # A target inside the owner's own directory travels with the owner's files unchanged.
            if target is not None and not inside(target, module.dir):
                module.links[rep.line] = target
        if self.workspace is not None:
            for req in module.parsed.requires:
                self.require(module, req, self.workspace)
            self.imported(module, self.workspace)

    def join(self, path: str, why: str, ws: workspace.Workspace) -> None:
        """Bring in the `use` module declaring module path `path` (if any), which `why` needs."""
        target = self.provided.get(path)
        if target is None or target in self.modules or target in self.work_done:
            return
        use, dep = self.use_modules[target]
        unfit = None if inside(target, self.func_dir) else self.unfit_shared(target)
        if unfit:
            self.work_done.add(target)
            self.problem(ws.shown, f"use {clip(use.path)} (module {clip(path)}, {why}): {unfit}",
                         "move the shared code into a module directory of its own", use.line)
        else:
            self.visit(dep)

    def imported(self, module: Module, ws: workspace.Workspace) -> None:
        """Bring in the `use` modules holding packages that `module`'s Go files import."""
        if all(t in self.modules or t in self.work_done for t in self.provided.values()):
            return  # every workspace module is in already: no file needs reading
        for imp in workspace.module_imports(module.dir, self.root):
            path = workspace.providing_module(imp.path, self.provided)
            if path is not None and self.provided[path] not in self.modules:  # most are: say why only if not
                self.join(path, f"imported by {display(imp.file)}:{imp.line}", ws)

    def require(self, owner: Module, req: gomod.Require, ws: workspace.Workspace) -> None:
        """Bring in what the workspace provides for a required module path: the `use` module
        declaring it, and the local target of a go.work replace of it."""
        self.join(req.path, f"required by {display(owner.gomod_path)}:{req.line}", ws)
        for rep in ws.parsed.replaces:
            if rep.old_path == req.path and rep.is_local and rep.line not in self.work_done:
                self.work_done.add(rep.line)
                followed = self.follow(ws.shown, ws.dir, rep)
                if followed is not None:
                    self.work_links[rep.line] = followed

    def load_workspace(self, func: Module | None) -> None:
        """Find the go.work covering the function and read the module of each `use` directory
        (Go loads them all: a broken one fails every build of the workspace)."""
        ws = workspace.load(self.func_dir, self.root, self.problems)
        if ws is None:
            return
        self.workspace = ws
        shown = ws.shown  # resolves the go.work's directory: once, not once for each of hundreds of `use` lines
        for entry in ws.uses:
            use = entry.use
            stmt = f"use {clip(use.path)}"
            if entry.dir == self.func_dir:
                target: Path | None = self.func_dir
                module = func
            else:
                target = self.check_target(shown, use.line, stmt, ws.dir / use.path, noun="use line", shared=False)
                module = None if target is None else self.module_at(target)
            if target is None or module is None:
                continue
            path = module.parsed.module
            if path is None:
                self.problem(shown, f"{stmt}: {display(module.gomod_path)} has no module line",
                             "add a module line to it (`module example.com/path`)", use.line)
            elif path in self.provided:
                self.problem(shown, f"{stmt}: module {clip(path)} appears multiple times in the workspace (also in "
                             f"{display(self.provided[path])})", "remove one of the use lines", use.line)
            else:
                self.provided[path] = target
                self.use_modules[target] = (use, module)
        for rep in ws.parsed.replaces:  # Go refuses these whatever the function needs
            if rep.old_version is None and rep.old_path in self.provided:
                self.problem(shown, f"replace {clip(rep.old_path)} => {clip(rep.new_path)}: {clip(rep.old_path)} is a "
                             f"workspace module (in {display(self.provided[rep.old_path])}), which go.work may not replace "
                             "at all versions", "remove the replace or give the version it replaces", rep.line)

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
            dep = self.module_at(target)
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
    disc.load_workspace(func)
    if func is not None:
        disc.visit(func)
    for extra in fn.build.shared_modules or ():
        disc.explicit(extra)
    if disc.problems or func is None:
        raise BuildContextError(*disc.problems)
    shared = sorted(d for d, m in disc.modules.items() if m.shared)
    names = choose_names(shared, disc.root, _reserved_names(disc.func_dir))
    graph = ModuleGraph(function=func, modules=disc.modules, names=names)
    if disc.workspace is None:
        return graph
    return dataclasses.replace(graph, workspace=_workspace_files(disc, disc.workspace, graph))


def _workspace_files(disc: _Discovery, ws: workspace.Workspace, graph: ModuleGraph) -> WorkspaceFiles:
    """The go.work of the context: `use` for each module of the graph the workspace lists, the
    go.work's replaces kept (remote ones as written, local ones followed, pointing into the
    context); local ones the function does not reach are left out."""
    listed = sorted((graph.location(d), d) for d in graph.modules if d in disc.use_modules)
    replaces: list[tuple[gomod.Replace, str | None]] = []
    for rep in ws.parsed.replaces:
        if not rep.is_local:
            replaces.append((rep, None))
        elif rep.line in disc.work_links:
            replaces.append((rep, workspace.use_path(graph.location(disc.work_links[rep.line]))))
    return WorkspaceFiles(
        go_work=workspace.render(ws, [workspace.use_path(loc) for loc, _ in listed], replaces),
        go_work_sum=ws.go_work_sum,
        source=ws.path,
        modules=tuple(d for _, d in listed),
        replaced=frozenset(rep.old_path for rep, _ in replaces),
    )


def unresolved_requires(graph: ModuleGraph, goproxy_off: bool = False) -> list[Diagnostic]:
    """Every require line, in any module of the graph, that the build cannot satisfy: its module
    path is neither replaced (by the function's go.mod, by the go.work or, in workspace mode, by
    a workspace module of the context: Go applies the replaces of its main modules only) nor
    provided by a workspace module, and its version is a placeholder no proxy serves, or
    `goproxy_off` (GOPROXY=off: nothing can be downloaded). Requires of every module count, not
    only the function's: minimal version selection reads their go.mod files too."""
    ws = graph.workspace
    main = [graph.function] + ([graph.modules[d] for d in ws.modules] if ws else [])
    resolved = {rep.old_path for m in main for rep in m.parsed.replaces} | (ws.replaced if ws else frozenset())
    resolved |= {m.parsed.module for m in main if m.parsed.module}
    out: list[Diagnostic] = []
    for module in sorted(graph.modules.values(), key=lambda m: (m is not graph.function, graph.location(m.dir))):
        for req in module.parsed.requires:
            if req.path in resolved:
                continue
            if req.version in PLACEHOLDER_VERSIONS:
                why = "no module proxy serves it"
            elif goproxy_off:
                why = "GOPROXY=off downloads nothing"
            else:
                continue
            out.append(Diagnostic.at(
                Path(display(module.gomod_path)), req.line, 0,
                f"require {clip(req.path)} {clip(req.version)}: not replaced, not in a go.work workspace, and {why}; "
                "add a replace directive or a `use` line in go.work"))
    return out
