"""`deployer validate`: exact diagnostics, locations and exit codes for bad input.

The cases are data: each file in `validate_cases/` is one run of the CLI over the repository of
the `repo` fixture (see `tests/cli_harness.py` for the format); adding a case is adding a file. They run
in process. The few cases below need code (generated input, the real entry point) or are smoke
tests of the installed command in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer import __version__
from tests.cli_harness import CliCase, InProcessCli, load_cases, run_case

REPO = Path(__file__).resolve().parents[2]
CASES = load_cases(Path(__file__).parent / "validate_cases")

GOOD = """\
version: 1
defaults:
  region: us-east-1
functions:
  - name: fn
    repository: fn-repo
    build:
      source: fn
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny monorepo: a git root with one function module; the cases add deploy.yaml."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (tmp_path / "shared" / "logger").mkdir(parents=True)
    (tmp_path / "shared" / "logger" / "go.mod").write_text("module example.com/shared/logger\n")
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_validate_case(case: CliCase, repo: Path, cli: InProcessCli) -> None:
    run_case(case, repo, cli)


# --- generated input ----------------------------------------------------------------------------

def test_thousand_nested_brackets(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text("version: 1\nfunctions: " + "[" * 1000 + "]" * 1000 + "\n")
    result = cli("validate", cwd=repo)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "deploy.yaml: lists or mappings are nested too deeply to read; a deploy.yaml needs at most 32 levels",
        "1 problem(s) found"]


def test_dockerfile_path_of_five_thousand_characters(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD + f"      dockerfile: {'d' * 5000}\n")
    result = cli("validate", cwd=repo)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"deploy.yaml:9:19: functions[0].build.dockerfile: expected at most 1024 characters; found '{'d' * 60}'... "
        "(5000 characters)",
        "1 problem(s) found"]


def test_schema_command_prints_the_shipped_schema(cli: InProcessCli) -> None:
    result = cli("schema", cwd=REPO)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads((REPO / "schemas" / "deploy.schema.json").read_text())


def test_help_lists_plan_and_apply(cli: InProcessCli) -> None:
    result = cli("--help", cwd=REPO)
    assert result.exit_code == 0
    for command in ("validate", "plan", "apply", "schema"):
        assert command in result.stdout


# --- smoke tests: `python -m deployer` in a process of its own -----------------------------------

def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": os.devnull, "NO_COLOR": "1"})
    return subprocess.run([sys.executable, "-m", "deployer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_example_validates() -> None:
    result = run("validate", "deploy.example.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "finalize-with-error" in result.stdout


def test_invalid_file_exits_one_with_its_problems(repo: Path) -> None:
    (repo / "deploy.yaml").write_text(GOOD.replace("version: 1", "version: 2"))
    result = run("validate", cwd=repo)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "deploy.yaml:1:10: version: expected 1; found 2\n1 problem(s) found\n"


def test_version_flag() -> None:
    result = run("--version", cwd=REPO)
    assert result.returncode == 0
    assert result.stdout == f"deployer {__version__}\n"


def test_a_crash_is_reported_in_two_lines_without_a_traceback(repo: Path) -> None:
    # A bug (any exception that is not a DeployerError) is named, and the traceback shown only
    # with --debug: through the real entry point, its streams and its exit code.
    crash = ("import sys, deployer.app\n"
             "def boom(paths, environment=None): raise RuntimeError('boom')\n"
             "deployer.app.validate = boom\n"
             "from deployer.cli import main\n"
             "main(sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, "-c", crash, "validate"], cwd=repo, env={**env, "NO_COLOR": "1"},
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == ["internal error: RuntimeError: boom",
                                          "this is a bug in deployer; rerun with --debug and report the output"]
