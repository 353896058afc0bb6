"""A pull request's .dockerignore, go.mod, go.work and Go files, found by a hostile-user
review: a .dockerignore line that takes Python's regular expressions exponential time (validate
never ended), a character range that is not one (validate crashed), a .go file of gigabytes
searched for go:embed, and a go.mod, go.work, go.work.sum or .dockerignore of gigabytes (validate
ran out of memory). Each ends quickly, in a clean message or a clean result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_plan_errors import make_repo
from tests.cli_harness import InProcessCli


def test_a_pattern_that_backtracks_exponentially_does_not_stall_validate(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "fn" / ".dockerignore").write_text("*a" * 12 + "b\n**/" * 12 + "x\n")
    (repo / "fn" / ("a" * 60)).write_text("data\n")
    (repo / "fn" / "/".join(["a"] * 40)).parent.mkdir(parents=True)
    (repo / "fn" / "/".join(["a"] * 40)).write_text("data\n")

    result = subprocess.run([sys.executable, "-m", "deployer", "validate"], cwd=repo, capture_output=True, text=True,
                            timeout=60)

    assert (result.returncode, result.stderr) == (0, ""), result


def test_a_pattern_with_a_range_that_is_not_one_is_a_problem_at_its_line(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "fn" / ".dockerignore").write_text("# comment\n*.md\n[z-a]*\n")

    result = cli("validate", cwd=repo)

    assert result.exit_code == 1
    assert result.stderr == ("fn/.dockerignore:3: pattern '[z-a]*' is not a valid pattern (bad character range z-a); "
                             "fix or remove the line\n1 problem(s) found\n")


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))  # 2 GiB of address space


def test_a_huge_go_file_is_searched_for_go_embed_without_reading_it_into_memory(tmp_path: Path) -> None:
    """A test file makes layout look for //go:embed in the .go files above it: a pull request's
    .go file of gigabytes (sparse here) must not be read whole."""
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "fn" / "main_test.go").write_text("package main\n")
    with (repo / "fn" / "huge.go").open("wb") as huge:
        huge.write(b"package main\n")
        huge.truncate(3 << 30)

    result = subprocess.run([sys.executable, "-m", "deployer", "validate"], cwd=repo, capture_output=True, text=True,
                            timeout=120, preexec_fn=_limit_memory)

    assert (result.returncode, result.stderr) == (0, ""), result


@pytest.mark.parametrize("name", ["go.mod", "go.work", "go.work.sum", ".dockerignore"])
def test_a_huge_file_deployer_reads_whole_is_refused_by_its_size(tmp_path: Path, name: str) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    if name.startswith("go.work"):
        (repo / "fn" / "go.work").write_text("go 1.22\n\nuse .\n")
    with (repo / "fn" / name).open("r+b" if name == "go.mod" else "wb") as huge:
        huge.truncate(3 << 30)

    result = subprocess.run([sys.executable, "-m", "deployer", "validate"], cwd=repo, capture_output=True, text=True,
                            timeout=120, preexec_fn=_limit_memory)

    assert result.returncode == 1, result
    assert result.stderr.startswith(f"fn/{name}: is 3221225472 bytes, more than the "), result
