"""The context layout: what assembly would write, listed without writing; its digest is the one
of the assembled context (plan digests the layout, apply the directory, and compares them)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from deployer.context import assemble
from deployer.errors import BuildContextError
from deployer.layout import Entry, layout, source_digest_of
from deployer.spec import FunctionSpec
from tests.unit.context_helpers import EXAMPLES, pinned_fn, write_tree

FN_GOMOD = b"""module example.com/functions/fn

go 1.22

require example.com/shared/s3state v0.0.0

replace (
\texample.com/shared/s3state => ../../shared/s3state
\texample.com/functions/fn/internal/helper => ./internal/helper
)
"""

REPO = {
    "functions/fn/go.mod": FN_GOMOD,
    "functions/fn/go.sum": b"",
    "functions/fn/main.go": b"package main\n\nfunc main() {}\n",
    "functions/fn/internal/helper/go.mod": b"module example.com/functions/fn/internal/helper\n",
    "functions/fn/internal/helper/helper.go": b"package helper\n",
    "functions/fn/docs/keep.md": b"kept\n",
    "functions/fn/docs/drop.md": b"dropped\n",
    "shared/errors/go.mod": b"module example.com/shared/errors\n",
    "shared/errors/errors.go": b"package errors\n",
    "shared/logger/go.mod": b"module example.com/shared/logger\r\n",
    "shared/logger/logger.go": b"package logger\n",
    "shared/s3state/go.mod": (b"module example.com/shared/s3state\n\nreplace example.com/shared/errors => ../errors\n"
                              b"replace example.com/shared/logger => ../../shared/logger\n"),
    "shared/s3state/s3state.go": b"package s3state\n",
}


def plain(repo: Path) -> FunctionSpec:
    return pinned_fn(repo)


def symlinks(repo: Path) -> FunctionSpec:
    fn_dir = repo / "functions/fn"
    (fn_dir / "alias.go.txt").symlink_to("main.go")
    (fn_dir / "abs-helper").symlink_to(fn_dir / "internal/helper")
    (repo / "shared/errors/link").symlink_to("errors.go")
    # A shared module's go.mod that is a link: the rewrite lands in the file it points to.
    (repo / "shared/s3state/real.mod").write_bytes(REPO["shared/s3state/go.mod"])
    (repo / "shared/s3state/go.mod").unlink()
    (repo / "shared/s3state/go.mod").symlink_to("real.mod")
    return pinned_fn(repo)


def modes(repo: Path) -> FunctionSpec:
    write_tree(repo / "functions/fn", {"tools/gen.sh": b"#!/bin/sh\n", "private.txt": b"x"})
    os.chmod(repo / "functions/fn/tools/gen.sh", 0o750)
    os.chmod(repo / "functions/fn/private.txt", 0o600)
    os.chmod(repo / "shared/logger/go.mod", 0o755)  # rewritten files keep their mode too
    (repo / "functions/fn/empty").mkdir()
    return pinned_fn(repo)


def dockerignore(repo: Path) -> FunctionSpec:
    # `docs` is excluded but docs/keep.md is not: docs/ is made on the way, with the default mode.
    (repo / "functions/fn/.dockerignore").write_text("docs\n!docs/keep.md\nshared/errors/*.go\ngo.sum\n")
    return pinned_fn(repo)


def inner_module_excluded(repo: Path) -> FunctionSpec:
    (repo / "functions/fn/.dockerignore").write_text("internal\n")
    return pinned_fn(repo)


def own_shared_dir(repo: Path) -> FunctionSpec:
    write_tree(repo / "functions/fn", {"shared/logger/notes.txt": b"the function's own\n"})
    os.chmod(repo / "functions/fn/shared", 0o750)
    return pinned_fn(repo, shared_modules=(repo / "shared/logger",))


def dockerfile_in_source(repo: Path) -> FunctionSpec:
    write_tree(repo / "functions/fn", {"build/Dockerfile": b"FROM scratch\n"})
    (repo / "functions/fn/.dockerignore").write_text("build\n")
    return pinned_fn(repo, dockerfile=repo / "functions/fn/build/Dockerfile")


def dockerfile_outside(repo: Path) -> FunctionSpec:
    write_tree(repo, {"docker/Dockerfile.go": b"FROM scratch\nCOPY . .\n", "functions/fn/run.sh": b"#!/bin/sh\n"})
    os.chmod(repo / "functions/fn/run.sh", 0o755)
    (repo / "functions/fn/alias").symlink_to("run.sh")
    (repo / "functions/fn/empty").mkdir()
    return pinned_fn(repo, dockerfile=repo / "docker/Dockerfile.go")


def go_test_files(repo: Path) -> FunctionSpec:
    write_tree(repo, {"functions/fn/main_test.go": b"package main\n", "functions/fn/testdata/in.json": b"{}\n",
                      "shared/logger/logger_test.go": b"package logger\n"})
    return pinned_fn(repo)


def embedded_test_files(repo: Path) -> FunctionSpec:
    write_tree(repo, {"functions/fn/assets/a_test.go": b"data\n", "functions/fn/assets/testdata/t.txt": b"t\n",
                      "functions/fn/embed.go": b"package main\n\nimport _ \"embed\"\n\n//go:embed assets\nvar assets string\n",
                      "functions/fn/main_test.go": b"package main\n"})
    return pinned_fn(repo)


TREES: dict[str, Callable[[Path], FunctionSpec]] = {
    f.__name__: f for f in (plain, symlinks, modes, dockerignore, inner_module_excluded, own_shared_dir,
                            dockerfile_in_source, dockerfile_outside, go_test_files, embedded_test_files)
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "repo", REPO)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_source_digest_of_equals_the_assembled_contexts_digest(repo: Path, tmp_path: Path, tree: str) -> None:
    fn = TREES[tree](repo)
    assert source_digest_of(fn) == assemble(fn, tmp_path / "ctx").digest


@pytest.mark.parametrize("name", sorted(p.name for p in (EXAMPLES / "functions").iterdir()))
def test_source_digest_of_equals_the_assembled_digest_for_the_examples(tmp_path: Path, name: str) -> None:
    fn = pinned_fn(EXAMPLES, f"functions/{name}")
    assert source_digest_of(fn) == assemble(fn, tmp_path / "ctx").digest


# Computed by the copy-then-hash assembly that preceded the layout: the digest recipe must not
# change silently (bump digest.RECIPE_VERSION when it has to change).
PINNED = {
    # The Go build's recipe (digest.BuildInputs from layout.GoBuild), pinned when it was introduced.
    "plain": "sha256:6e53c6ddc06f3af61a24aa4f4b3cbddcd1c21ed8eb9f4cec454253ef34b5dd64",
    "dockerfile_in_source": "sha256:d0a4afde5467daf802780beef72afd97e51b92755bec4bda866fe9126fd0bdb9",
    "dockerfile_outside": "sha256:cd8c539938f8c05892394326290bb3f97e3192edbadd28b452f639f9b607a757",
}


@pytest.mark.parametrize("tree", sorted(PINNED))
def test_digest_recipe_is_unchanged(repo: Path, tree: str) -> None:
    assert source_digest_of(TREES[tree](repo)) == PINNED[tree]


def test_layout_lists_what_assemble_writes_with_modes_and_writes_nothing(repo: Path, tmp_path: Path) -> None:
    fn = modes(repo)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    lay = layout(fn)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    ctx = assemble(fn, tmp_path / "ctx")
    on_disk = {p.relative_to(ctx.path).as_posix(): p.lstat().st_mode & 0o7777 for p in ctx.path.rglob("*")}
    assert {e.path for e in lay.entries} == set(on_disk)
    for e in lay.entries:
        if e.mode is not None:
            assert on_disk[e.path] == e.mode, e.path
    by_path = {e.path: e for e in lay.entries}
    assert by_path["tools/gen.sh"] == Entry("tools/gen.sh", "exec-file", 0o750, source=str(repo / "functions/fn/tools/gen.sh"), size=10)
    assert by_path["shared"].mode is None  # made on the way to shared/<name>
    assert by_path["go.mod"].data == FN_GOMOD.replace(b"../../shared/s3state", b"./shared/s3state")
    assert by_path["shared/logger/go.mod"].source is not None  # nothing to rewrite: read in place
    assert lay.shared_modules == ctx.shared_modules == ("errors", "logger", "s3state")
    assert lay.recipe == ctx.recipe


def test_go_build_leaves_test_files_and_testdata_out_of_the_context(repo: Path, tmp_path: Path) -> None:
    fn = go_test_files(repo)
    paths = {e.path for e in layout(fn).entries}
    assert not {"main_test.go", "testdata", "testdata/in.json", "shared/logger/logger_test.go"} & paths
    assert {"main.go", "shared/logger/logger.go"} <= paths
    before = source_digest_of(fn)
    (repo / "shared/logger/logger_test.go").write_text("package logger\n\n// changed\n")
    shutil.rmtree(repo / "functions/fn/testdata")
    assert source_digest_of(fn) == before == source_digest_of(plain(write_tree(tmp_path / "other", REPO)))


def test_test_files_a_go_embed_directive_may_reach_stay_in(repo: Path) -> None:
    paths = {e.path for e in layout(embedded_test_files(repo)).entries}
    # embed.go's directive reaches everything below the function's root: nothing is left out
    assert {"assets/a_test.go", "assets/testdata/t.txt", "main_test.go"} <= paths


def test_a_dockerfile_build_keeps_test_files(repo: Path) -> None:
    fn = go_test_files(repo)
    write_tree(repo, {"functions/fn/Dockerfile": b"FROM scratch\n"})
    paths = {e.path for e in layout(dataclasses.replace(fn, build=dataclasses.replace(fn.build, dockerfile=repo / "functions/fn/Dockerfile"))).entries}
    assert {"main_test.go", "testdata/in.json", "shared/logger/logger_test.go"} <= paths


def test_layout_puts_each_directory_before_its_contents(repo: Path) -> None:
    seen: set[str] = set()
    for e in layout(symlinks(repo)).entries:
        parent = os.path.dirname(e.path)
        assert not parent or parent in seen, e.path
        seen.add(e.path)


def test_source_digest_of_follows_a_source_change(repo: Path) -> None:
    fn = pinned_fn(repo)
    before = source_digest_of(fn)
    (repo / "shared/errors/errors.go").write_bytes(b"package errors\n\nconst X = 1\n")
    assert source_digest_of(fn) != before


def test_source_digest_of_reports_the_same_errors_as_assemble(repo: Path, tmp_path: Path) -> None:
    (repo / "functions/fn/escape").symlink_to("/etc/passwd")
    with pytest.raises(BuildContextError) as planned:
        source_digest_of(pinned_fn(repo))
    with pytest.raises(BuildContextError) as assembled:
        assemble(pinned_fn(repo), tmp_path / "ctx")
    assert str(planned.value) == str(assembled.value)
    assert "leads outside" in str(planned.value)


def test_function_file_where_shared_modules_go_is_an_error(repo: Path, tmp_path: Path) -> None:
    (repo / "functions/fn/shared").write_text("not a directory\n")
    with pytest.raises(BuildContextError, match=r"functions/fn/shared: is a file, .*rename it or exclude it"):
        source_digest_of(pinned_fn(repo))
    with pytest.raises(BuildContextError, match="is a file"):
        assemble(pinned_fn(repo), tmp_path / "ctx")


def test_a_testdata_directory_holding_go_sources_stays_in_the_go_build(repo: Path) -> None:
    """The go command compiles a package in a testdata directory when something imports it, and
    a module there when a replace leads to it: only package patterns (`./...`) pass testdata over."""
    write_tree(repo, {"functions/fn/pkg/testdata/x.go": b"package testdata\n",
                      "functions/fn/pkg/testdata/x_test.go": b"package testdata\n",
                      "functions/fn/testdata/fake/go.mod": b"module example.com/fake\n",
                      "functions/fn/testdata/fake/data.txt": b"data\n",
                      "functions/fn/other/testdata/in.json": b"{}\n",
                      "functions/fn/other/testdata/fixture_test.go": b"package other\n"})
    fn = pinned_fn(repo)
    paths = {e.path for e in layout(fn).entries}
    assert {"pkg/testdata/x.go", "testdata/fake/go.mod", "testdata/fake/data.txt"} <= paths
    assert not {"pkg/testdata/x_test.go", "other/testdata", "other/testdata/in.json"} & paths
    before = source_digest_of(fn)
    (repo / "functions/fn/pkg/testdata/x.go").write_text("package testdata\n\nconst X = 1\n")
    assert source_digest_of(fn) != before


def test_a_go_embed_directive_across_the_pieces_a_go_file_is_read_in_is_found(repo: Path) -> None:
    go = b"package main\n" + b"/" * ((1 << 20) - 18) + b"\n//go:embed testdata\nvar data string\n"
    assert go.index(b"//go:embed") < 1 << 20 < go.index(b"//go:embed") + len(b"//go:embed")
    write_tree(repo, {"functions/fn/embed.go": go, "functions/fn/testdata/in.json": b"{}\n"})
    assert "testdata/in.json" in {e.path for e in layout(pinned_fn(repo)).entries}
