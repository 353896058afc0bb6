"""Assembling a function's build context from a Go monorepo."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

from deployer.context import assemble, temporary_context
from deployer.errors import BuildContextError
from deployer.layout import COPIED_DOCKERFILE, DockerfileBuild, GoBuild, build_args, runtime_dockerfile
from deployer.spec import DEFAULT_GO_BUILD_FLAGS, DEFAULT_GO_ENV
from tests.unit.context_helpers import EXAMPLES, make_fn, write_tree

FN_GOMOD = b"""module example.com/functions/fn

go 1.22

require (
\texample.com/shared/errors v0.0.0
\texample.com/shared/logger v0.0.0
\texample.com/shared/s3state v0.0.0
\texample.com/functions/fn/internal/helper v0.0.0
)

// comment kept
replace (
\texample.com/shared/errors => ../../shared/errors
\texample.com/shared/logger => ../../shared/logger // trailing
\texample.com/shared/s3state => ../../shared/s3state
\texample.com/functions/fn/internal/helper => ./internal/helper
\texample.com/unused => example.com/other v1.0.0
)
"""

MAIN_GO = b"""package main

import (
\t"fmt"

\t"example.com/functions/fn/internal/helper"
\terrs "example.com/shared/errors"
\t"example.com/shared/logger"
\t"example.com/shared/s3state"
)

func main() { fmt.Println(helper.Name(), errs.Code, logger.Prefix, s3state.Key()) }
"""

REPO = {
    "functions/fn/go.mod": FN_GOMOD,
    "functions/fn/go.sum": b"",
    "functions/fn/main.go": MAIN_GO,
    "functions/fn/internal/helper/go.mod": b"module example.com/functions/fn/internal/helper\n\ngo 1.22\n",
    "functions/fn/internal/helper/helper.go": b'package helper\n\nfunc Name() string { return "fn" }\n',
    "shared/errors/go.mod": b"module example.com/shared/errors\n\ngo 1.22\n",
    "shared/errors/errors.go": b"package errors\n\nconst Code = 7\n",
    "shared/logger/go.mod": b"module example.com/shared/logger\r\n\r\ngo 1.22\r\n",
    "shared/logger/logger.go": b'package logger\n\nconst Prefix = "log"\n',
    "shared/s3state/go.mod": (
        b"module example.com/shared/s3state\n\ngo 1.22\n\nrequire (\n\texample.com/shared/errors v0.0.0\n"
        b"\texample.com/shared/logger v0.0.0\n)\n\nreplace example.com/shared/errors => ../errors\n"
        b"replace example.com/shared/logger => ../../shared/logger\n"
    ),
    "shared/s3state/go.sum": b"",
    "shared/s3state/s3state.go": (
        b'package s3state\n\nimport (\n\t"fmt"\n\n\t"example.com/shared/errors"\n\t"example.com/shared/logger"\n)\n\n'
        b'func Key() string { return fmt.Sprint(logger.Prefix, errors.Code) }\n'
    ),
    "shared/unused/go.mod": b"module example.com/shared/unused\n\ngo 1.22\n",
    "shared/unused/unused.go": b"package unused\n",
}


def tree_state(root: Path) -> str:
    """Hash of names, kinds, modes, mtimes, contents and link targets of everything below root."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        h.update(f"{path.relative_to(root)}\0{st.st_mode}\0{st.st_mtime_ns}\0".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def go_build(ctx: Path, goarch: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": goarch}
    return subprocess.run(["go", "build", "-o", str(out), "."], cwd=ctx, env=env, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "repo", REPO)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "ctx"


def problems(exc: pytest.ExceptionInfo[BuildContextError]) -> list[str]:
    return str(exc.value).splitlines()


# --- layout and go.mod rewriting -------------------------------------------------------------


def test_context_has_function_at_root_and_needed_shared_modules(repo: Path, dest: Path) -> None:
    ctx = assemble(make_fn(repo), dest)
    assert ctx.path == dest.resolve()
    assert ctx.shared_modules == ("errors", "logger", "s3state")
    assert (dest / "main.go").read_bytes() == MAIN_GO
    assert (dest / "internal/helper/helper.go").is_file()
    assert sorted(p.name for p in (dest / "shared").iterdir()) == ["errors", "logger", "s3state"]
    assert (dest / "shared/s3state/s3state.go").read_bytes() == REPO["shared/s3state/s3state.go"]


def test_unused_shared_modules_are_not_copied(repo: Path, dest: Path) -> None:
    assemble(make_fn(repo), dest)
    assert not (dest / "shared/unused").exists()


def test_go_sum_travels_along(repo: Path, dest: Path) -> None:
    assemble(make_fn(repo), dest)
    assert (dest / "go.sum").is_file()
    assert (dest / "shared/s3state/go.sum").is_file()


def test_function_gomod_local_replaces_point_into_context_and_nothing_else_changes(repo: Path, dest: Path) -> None:
    assemble(make_fn(repo), dest)
    assert (dest / "go.mod").read_bytes() == FN_GOMOD.replace(b"=> ../../shared/", b"=> ./shared/")


def test_shared_gomod_replaces_point_to_siblings_and_crlf_is_kept(repo: Path, dest: Path) -> None:
    assemble(make_fn(repo), dest)
    expected = REPO["shared/s3state/go.mod"].replace(b"../../shared/logger", b"../logger")
    assert (dest / "shared/s3state/go.mod").read_bytes() == expected
    assert (dest / "shared/logger/go.mod").read_bytes() == REPO["shared/logger/go.mod"]


def test_transitive_shared_modules_are_discovered(tmp_path: Path, dest: Path) -> None:
    files = dict(REPO)
    files["functions/fn/go.mod"] = (
        b"module example.com/functions/fn\n\ngo 1.22\n\nreplace example.com/shared/s3state => ../../shared/s3state\n"
    )
    repo = write_tree(tmp_path / "repo", files)
    ctx = assemble(make_fn(repo), dest)
    assert ctx.shared_modules == ("errors", "logger", "s3state")
    assert (dest / "go.mod").read_bytes().endswith(b"=> ./shared/s3state\n")


def test_explicit_shared_modules_are_copied(repo: Path, dest: Path) -> None:
    ctx = assemble(make_fn(repo, shared_modules=(repo / "shared/unused",)), dest)
    assert ctx.shared_modules == ("errors", "logger", "s3state", "unused")
    assert (dest / "shared/unused/unused.go").is_file()


def test_modules_with_the_same_base_name_get_parent_prefixed_names(tmp_path: Path, dest: Path) -> None:
    files = dict(REPO)
    files["third/logger/go.mod"] = b"module example.com/third/logger\n\ngo 1.22\n"
    files["third/logger/logger.go"] = b'package logger\n\nconst Level = "debug"\n'
    files["functions/fn/go.mod"] = FN_GOMOD.replace(
        b"replace (\n", b"require example.com/third/logger v0.0.0\n\nreplace (\n\texample.com/third/logger => ../../third/logger\n"
    )
    files["functions/fn/main.go"] = MAIN_GO.replace(
        b'\t"example.com/shared/s3state"\n', b'\t"example.com/shared/s3state"\n\tvlog "example.com/third/logger"\n'
    ).replace(b"s3state.Key())", b"s3state.Key(), vlog.Level)")
    repo = write_tree(tmp_path / "repo", files)
    ctx = assemble(make_fn(repo), dest)
    assert ctx.shared_modules == ("errors", "s3state", "shared-logger", "third-logger")
    gomod = (dest / "go.mod").read_text()
    assert "example.com/third/logger => ./shared/third-logger" in gomod
    assert "example.com/shared/logger => ./shared/shared-logger // trailing" in gomod
    assert "example.com/shared/logger => ../shared-logger" in (dest / "shared/s3state/go.mod").read_text()
    result = go_build(dest, "arm64", tmp_path / "bootstrap")
    assert result.returncode == 0, result.stderr


def test_name_of_a_dir_the_function_already_has_under_shared_is_avoided(tmp_path: Path, dest: Path) -> None:
    files = dict(REPO)
    files["functions/fn/shared/logger/notes.txt"] = b"the function's own shared/logger\n"
    repo = write_tree(tmp_path / "repo", files)
    ctx = assemble(make_fn(repo), dest)
    assert "shared-logger" in ctx.shared_modules
    assert (dest / "shared/logger/notes.txt").is_file()
    assert (dest / "shared/shared-logger/logger.go").is_file()


# --- go build works on the context alone -----------------------------------------------------


@pytest.mark.parametrize("goarch", ["arm64", "amd64"])
def test_assembled_context_builds_offline(repo: Path, dest: Path, tmp_path: Path, goarch: str) -> None:
    assemble(make_fn(repo), dest)
    result = go_build(dest, goarch, tmp_path / "bootstrap")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bootstrap").stat().st_size > 0


@pytest.mark.parametrize("goarch", ["arm64", "amd64"])
def test_examples_context_builds_offline(dest: Path, tmp_path: Path, goarch: str) -> None:
    fn = make_fn(EXAMPLES, "functions/finalize-with-error", platform=f"linux/{goarch}")
    before = tree_state(EXAMPLES)
    ctx = assemble(fn, dest)
    assert ctx.shared_modules == ("errors", "logger", "s3state", "schema")
    result = go_build(dest, goarch, tmp_path / "bootstrap")
    assert result.returncode == 0, result.stderr
    assert tree_state(EXAMPLES) == before


def test_go_build_of_the_context_with_the_recipes_flags_and_environment(repo: Path, dest: Path, tmp_path: Path) -> None:
    """What the compile container runs (deployer.go_build), run on this machine."""
    ctx = assemble(make_fn(repo, platform="linux/amd64"), dest)
    assert isinstance(ctx.recipe, GoBuild)
    out = tmp_path / "out" / "bootstrap"
    env = {**os.environ, **ctx.recipe.go_env, "GOPROXY": "off", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": ctx.recipe.goarch}
    result = subprocess.run(["go", "build", *ctx.recipe.flags, "-o", str(out), "."], cwd=dest, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


# --- the recipe: the built-in Go build, or a Dockerfile ----------------------------------------


def test_a_function_without_dockerfile_is_built_by_the_go_build_and_its_context_holds_no_dockerfile(repo: Path, dest: Path) -> None:
    ctx = assemble(make_fn(repo, platform="linux/amd64", runtime_image="rt:1", builder_image="go:1"), dest)
    assert ctx.recipe == GoBuild(builder_image="go:1", runtime_image="rt:1", platform="linux/amd64",
                                 flags=DEFAULT_GO_BUILD_FLAGS, go_env=DEFAULT_GO_ENV)
    assert not [p for p in dest.rglob("*") if p.name.startswith("Dockerfile")]


def test_go_env_of_deploy_yaml_overrides_the_defaults(repo: Path, dest: Path) -> None:
    ctx = assemble(make_fn(repo, go_env={"GOPROXY": "https://proxy.example/", "GOFLAGS": "-mod=vendor"}), dest)
    assert isinstance(ctx.recipe, GoBuild)
    assert dict(ctx.recipe.go_env) == {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=vendor", "GOPROXY": "https://proxy.example/"}


def test_runtime_dockerfile_declares_its_from_args_first_and_has_no_run_step() -> None:
    lines = [ln for ln in runtime_dockerfile().splitlines() if ln and not ln.startswith("#")]
    froms = [i for i, ln in enumerate(lines) if ln.startswith("FROM ")]
    assert len(froms) == 1
    declared = {ln.split()[1].split("=")[0] for ln in lines[: froms[0]] if ln.startswith("ARG ")}
    assert {"BUILDPLATFORM", "TARGETPLATFORM", "RUNTIME_IMAGE"} <= declared
    assert lines[froms[0]] == "FROM --platform=$TARGETPLATFORM $RUNTIME_IMAGE"
    assert not any(ln.startswith("RUN") for ln in lines)
    assert "COPY bootstrap /var/runtime/bootstrap" in lines


def test_functions_own_dockerfile_in_source_dir_is_used_as_is(repo: Path, dest: Path) -> None:
    (repo / "functions/fn/build").mkdir()
    (repo / "functions/fn/build/Dockerfile").write_text("FROM scratch\n")
    (repo / "functions/fn/.dockerignore").write_text("build\n")
    ctx = assemble(make_fn(repo, dockerfile=repo / "functions/fn/build/Dockerfile"), dest)
    assert isinstance(ctx.recipe, DockerfileBuild) and ctx.recipe.dockerfile == "build/Dockerfile"
    assert (dest / "build/Dockerfile").read_text() == "FROM scratch\n"
    assert not (dest / COPIED_DOCKERFILE).exists()


def test_dockerfile_outside_source_dir_is_copied_into_context(repo: Path, dest: Path) -> None:
    (repo / "docker").mkdir()
    (repo / "docker/Dockerfile.go").write_text("FROM scratch\n")
    ctx = assemble(make_fn(repo, dockerfile=repo / "docker/Dockerfile.go"), dest)
    assert isinstance(ctx.recipe, DockerfileBuild) and ctx.recipe.dockerfile == COPIED_DOCKERFILE
    assert (dest / COPIED_DOCKERFILE).read_text() == "FROM scratch\n"


def test_missing_dockerfile_is_an_error(repo: Path, dest: Path) -> None:
    with pytest.raises(BuildContextError, match=r"deploy\.yaml:1:1: .*build\.dockerfile .* is not a file"):
        assemble(make_fn(repo, dockerfile=repo / "functions/fn/Dockerfile"), dest)


def test_build_args_hold_images_platform_flags_and_user_args_but_not_buildplatform(repo: Path, dest: Path) -> None:
    (repo / "functions/fn/Dockerfile").write_text("FROM scratch\n")
    fn = make_fn(repo, platform="linux/amd64", runtime_image="rt:1", builder_image="go:1",
                 build_args={"GOPROXY": "off"}, dockerfile=repo / "functions/fn/Dockerfile")
    ctx = assemble(fn, dest)
    assert isinstance(ctx.recipe, DockerfileBuild)
    assert dict(ctx.recipe.build_args) == {
        "BUILDER_IMAGE": "go:1",
        "RUNTIME_IMAGE": "rt:1",
        "TARGETPLATFORM": "linux/amd64",
        "TARGETARCH": "amd64",
        "GO_BUILD_FLAGS": shlex.join(DEFAULT_GO_BUILD_FLAGS),
        "GOPROXY": "off",
    }


def test_user_build_args_may_not_override_deployers(repo: Path) -> None:
    with pytest.raises(BuildContextError, match="TARGETARCH"):
        build_args(make_fn(repo, build_args={"TARGETARCH": "amd64"}))


# --- digest ----------------------------------------------------------------------------------


def test_context_digest_does_not_depend_on_destination(repo: Path, tmp_path: Path) -> None:
    a = assemble(make_fn(repo), tmp_path / "one")
    b = assemble(make_fn(repo), tmp_path / "x" / "two")
    assert a.digest == b.digest
    assert re.fullmatch(r"src-[0-9a-f]{40}", a.content_tag)


def test_context_digest_does_not_depend_on_repository_location(tmp_path: Path) -> None:
    a = assemble(make_fn(write_tree(tmp_path / "r1", REPO)), tmp_path / "c1")
    b = assemble(make_fn(write_tree(tmp_path / "elsewhere/r2", REPO)), tmp_path / "c2")
    assert a.digest == b.digest


def test_context_digest_changes_with_a_shared_module_file(repo: Path, tmp_path: Path) -> None:
    before = assemble(make_fn(repo), tmp_path / "one").digest
    (repo / "shared/errors/errors.go").write_bytes(b"package errors\n\nconst Code = 8\n")
    assert assemble(make_fn(repo), tmp_path / "two").digest != before


def test_context_digest_ignores_unused_modules(repo: Path, tmp_path: Path) -> None:
    before = assemble(make_fn(repo), tmp_path / "one").digest
    (repo / "shared/unused/unused.go").write_bytes(b"package unused\n\nconst X = 1\n")
    assert assemble(make_fn(repo), tmp_path / "two").digest == before


# --- files: .dockerignore, symlinks, modes ---------------------------------------------------


def test_dockerignore_is_honoured_with_docker_semantics(repo: Path, dest: Path) -> None:
    fn_dir = repo / "functions/fn"
    write_tree(fn_dir, {"README.md": b"x", "keep.md": b"x", "testdata/big.bin": b"x", "docs/a.md": b"x",
                        "main_test.go": b"package main\n"})
    (repo / "shared/errors/errors_test.go").write_bytes(b"package errors\n")
    (fn_dir / ".dockerignore").write_text("# comment\n*.md\n!keep.md\ntestdata\n**/*_test.go\ngo.mod\ngo.sum\n")
    assemble(make_fn(repo), dest)
    assert not (dest / "README.md").exists()
    assert (dest / "keep.md").exists()
    assert (dest / "docs/a.md").exists()  # `*.md` matches at the root only, as in Docker
    assert not (dest / "testdata").exists()
    assert not (dest / "main_test.go").exists()
    assert not (dest / "shared/errors/errors_test.go").exists()  # patterns apply to context paths
    assert (dest / "go.mod").exists() and (dest / "go.sum").exists()  # always included
    assert not (dest / ".dockerignore").exists()  # the context is already filtered


def test_exec_bit_and_modes_are_kept(repo: Path, dest: Path) -> None:
    script = repo / "functions/fn/tools/gen.sh"
    write_tree(repo / "functions/fn", {"tools/gen.sh": b"#!/bin/sh\n", "private.txt": b"x"})
    os.chmod(script, 0o750)
    os.chmod(repo / "functions/fn/private.txt", 0o600)
    assemble(make_fn(repo), dest)
    assert (dest / "tools/gen.sh").stat().st_mode & 0o777 == 0o750
    assert (dest / "private.txt").stat().st_mode & 0o777 == 0o600


def test_symlink_inside_the_tree_is_kept_as_relative_link(repo: Path, dest: Path) -> None:
    fn_dir = repo / "functions/fn"
    (fn_dir / "alias.go.txt").symlink_to("main.go")
    (fn_dir / "abs-alias").symlink_to(fn_dir / "internal/helper")
    assemble(make_fn(repo), dest)
    assert os.readlink(dest / "alias.go.txt") == "main.go"
    assert os.readlink(dest / "abs-alias") == "internal/helper"
    assert (dest / "abs-alias/helper.go").is_file()


def test_symlink_leading_out_of_the_tree_is_an_error(repo: Path, dest: Path) -> None:
    (repo / "functions/fn/escape").symlink_to("../../shared/unused/unused.go")
    (repo / "functions/fn/passwd").symlink_to("/etc/passwd")
    with pytest.raises(BuildContextError) as info:
        assemble(make_fn(repo), dest)
    lines = problems(info)
    assert len(lines) == 2
    assert all("leads outside" in ln and "dockerignore" in ln for ln in lines)


def test_symlink_leading_out_but_dockerignored_is_fine(repo: Path, dest: Path) -> None:
    (repo / "functions/fn/escape").symlink_to("/etc/passwd")
    (repo / "functions/fn/.dockerignore").write_text("escape\n")
    assemble(make_fn(repo), dest)
    assert not os.path.lexists(dest / "escape")


# --- errors ----------------------------------------------------------------------------------


def replace_line(files: dict[str, bytes], old: bytes, new: bytes) -> dict[str, bytes]:
    out = dict(files)
    out["functions/fn/go.mod"] = FN_GOMOD.replace(old, new)
    return out


@pytest.mark.parametrize(
    "old,new,what",
    [
        (b"../../shared/errors", b"../../shared/missing", "does not exist"),
        (b"../../shared/errors", b"../../shared/errors/errors.go", "is not a directory"),
        (b"../../shared/errors", b"../../shared", "has no go.mod"),
        (b"../../shared/errors", b"../../shared/logger", "declares module example.com/shared/logger"),
        (b"../../shared/errors", b"../../../outside", "outside the repository root"),
    ],
)
def test_bad_replace_target_names_gomod_line(tmp_path: Path, dest: Path, old: bytes, new: bytes, what: str) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/go.mod").write_text("module example.com/shared/errors\n")
    repo = write_tree(tmp_path / "repo", replace_line(REPO, old, new))
    with pytest.raises(BuildContextError) as info:
        assemble(make_fn(repo), dest)
    (line,) = problems(info)
    assert re.search(r"functions/fn/go\.mod:14: replace example\.com/shared/errors => ", line)
    assert what in line and "; " in line


def test_all_problems_of_a_function_are_reported_together(tmp_path: Path, dest: Path) -> None:
    files = replace_line(REPO, b"../../shared/errors", b"../../shared/missing")
    files["shared/s3state/go.mod"] = REPO["shared/s3state/go.mod"].replace(b"../errors", b"../nowhere")
    files["shared/logger/go.mod"] = b"module example.com/shared/logger\nreplace (\n"
    repo = write_tree(tmp_path / "repo", files)
    with pytest.raises(BuildContextError) as info:
        assemble(make_fn(repo), dest)
    lines = problems(info)
    assert any(re.search(r"functions/fn/go\.mod:14: .*does not exist", ln) for ln in lines)
    assert any(re.search(r"shared/s3state/go\.mod:10: .*nowhere.*does not exist", ln) for ln in lines)
    assert any(re.search(r"shared/logger/go\.mod:\d+: .*not closed.*; fix the go.mod syntax", ln) for ln in lines)
    assert len(lines) == 3


def test_function_without_gomod_is_an_error(repo: Path, dest: Path) -> None:
    (repo / "functions/fn/go.mod").unlink()
    with pytest.raises(BuildContextError, match="has no go.mod"):
        assemble(make_fn(repo), dest)


def test_syntax_error_in_function_gomod_names_the_line(tmp_path: Path, dest: Path) -> None:
    repo = write_tree(tmp_path / "repo", replace_line(REPO, b"=> ../../shared/errors", b"../../shared/errors"))
    with pytest.raises(BuildContextError, match=r"functions/fn/go\.mod:14: usage: replace"):
        assemble(make_fn(repo), dest)


def test_explicit_shared_module_without_gomod_is_an_error(repo: Path, dest: Path) -> None:
    (repo / "notamodule").mkdir()
    with pytest.raises(BuildContextError, match=r"deploy\.yaml:1:1: .*has no go.mod"):
        assemble(make_fn(repo, shared_modules=(repo / "notamodule",)), dest)


def test_destination_must_be_empty(repo: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "stale").write_text("x")
    with pytest.raises(BuildContextError, match="not empty"):
        assemble(make_fn(repo), dest)


def test_destination_inside_a_copied_module_is_refused_without_touching_it(repo: Path) -> None:
    before = tree_state(repo)
    with pytest.raises(BuildContextError, match="inside a module"):
        assemble(make_fn(repo), repo / "functions/fn/ctx")
    assert tree_state(repo) == before


# --- the source tree is never modified -------------------------------------------------------


def test_source_tree_is_unchanged_after_success(repo: Path, dest: Path) -> None:
    os.chmod(repo / "shared/errors/errors.go", 0o444)
    (repo / "functions/fn/alias").symlink_to("main.go")
    before = tree_state(repo)
    assemble(make_fn(repo), dest)
    assert tree_state(repo) == before


def test_source_tree_is_unchanged_after_a_failing_run(repo: Path, dest: Path) -> None:
    (repo / "functions/fn/escape").symlink_to("/etc/passwd")
    before = tree_state(repo)
    with pytest.raises(BuildContextError):
        assemble(make_fn(repo), dest)
    assert tree_state(repo) == before


# --- temporary_context -----------------------------------------------------------------------


def test_temporary_context_is_removed_after_use(repo: Path) -> None:
    with temporary_context(make_fn(repo)) as ctx:
        assert ctx.path.name.startswith("deployer-ctx-")
        assert (ctx.path / "go.mod").is_file()
    assert not ctx.path.exists()


def test_temporary_context_is_removed_on_error_and_interrupt(repo: Path) -> None:
    seen = []
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with temporary_context(make_fn(repo)) as ctx:
                seen.append(ctx.path)
                raise exc
    assert len(seen) == 2 and not any(p.exists() for p in seen)


def test_temporary_context_is_removed_when_assembly_fails(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "functions/fn/escape").symlink_to("/etc/passwd")
    own_tmp = tmp_path / "tmp"  # a temp dir of its own: other test processes make contexts too
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    with pytest.raises(BuildContextError):
        with temporary_context(make_fn(repo)):
            pass
    assert list(own_tmp.iterdir()) == []


def test_temporary_context_with_read_only_dirs_is_removed(repo: Path) -> None:
    os.chmod(repo / "shared/errors", 0o555)
    try:
        with temporary_context(make_fn(repo)) as ctx:
            assert (ctx.path / "shared/errors").stat().st_mode & 0o777 == 0o555
        assert not ctx.path.exists()
    finally:
        os.chmod(repo / "shared/errors", 0o755)


def test_temporary_context_kept_on_request(repo: Path) -> None:
    import shutil

    with temporary_context(make_fn(repo), keep=True) as ctx:
        pass
    try:
        assert (ctx.path / "go.mod").is_file()
    finally:
        shutil.rmtree(ctx.path)


# --- what a context never holds, and what a shared module may not be ------------------------------

def test_git_and_dotenv_files_are_never_copied_whatever_dockerignore_says(repo: Path, dest: Path) -> None:
    fn_dir = repo / "functions/fn"
    (fn_dir / ".git").mkdir()
    (fn_dir / ".git" / "config").write_text("[remote]\n")
    for name in (".env", ".env.production", ".envrc"):
        (fn_dir / name).write_text("TOKEN=x\n")
        (repo / "shared/logger" / name).write_text("TOKEN=x\n")
    (repo / "shared/logger/.git").write_text("gitdir: ../../.git/modules/logger\n")  # a git submodule
    (fn_dir / ".dockerignore").write_text("!.env\n!.git\n!**/.env*\n")
    ctx = assemble(make_fn(repo), dest)
    names = {p.name for p in ctx.path.rglob("*")}
    assert not names & {".git", ".env", ".env.production", ".envrc"}
    assert (dest / "shared/logger/go.mod").is_file()


def test_a_fifo_in_the_tree_is_an_error_unless_excluded(repo: Path, dest: Path) -> None:
    os.mkfifo(repo / "functions/fn/pipe")
    with pytest.raises(BuildContextError) as caught:
        assemble(make_fn(repo), dest)
    assert problems(caught) == [f"{repo}/functions/fn/pipe: is a FIFO, which a build context cannot hold; "
                                "remove it or exclude it in .dockerignore"]
    (repo / "functions/fn/.dockerignore").write_text("pipe\n")
    assert (assemble(make_fn(repo), dest).path / "main.go").is_file()


@pytest.mark.parametrize("replace, what", [
    ("../..", "is the repository root, which a shared module may not be"),
    ("..", "holds the function's own source directory, which a shared module may not"),
])
def test_a_shared_module_may_be_neither_the_root_nor_hold_the_function(repo: Path, dest: Path, replace: str, what: str) -> None:
    (repo / "go.mod").write_text("module example.com/all\n")
    (repo / "functions/go.mod").write_text("module example.com/functions\n")
    module = {"../..": "example.com/all", "..": "example.com/functions"}[replace]
    (repo / "functions/fn/go.mod").write_text(f"module example.com/functions/fn\n\nreplace {module} => {replace}\n")
    with pytest.raises(BuildContextError) as caught:
        assemble(make_fn(repo), dest)
    [problem] = problems(caught)
    assert problem.startswith(f"{repo}/functions/fn/go.mod:3: replace {module} => {replace}: ")
    assert what in problem
    assert not dest.exists()
