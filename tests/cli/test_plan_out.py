"""`deployer plan --out FILE` writes only a new file or a previous plan file: never a deploy.yaml,
never a file of a build context, never through a link. Refused before AWS is asked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.test_plan_errors import make_repo
from tests.cli_harness import CliResult, InProcessCli

# No AWS endpoint answers here: every refusal below happens before any AWS call.
NO_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}


def plan_out(cli: InProcessCli, repo: Path, out: str) -> CliResult:
    return cli("plan", "--out", out, cwd=repo, env=NO_AWS)


@pytest.mark.parametrize(("out", "message"), [
    ("deploy.yaml", "error: --out deploy.yaml: is deploy.yaml, a deploy.yaml this plan reads; write the plan to another file"),
    ("./sub/../deploy.yaml", "error: --out sub/../deploy.yaml: is deploy.yaml, a deploy.yaml this plan reads; write the plan to another file"),
    ("fn/plan.json", "error: --out fn/plan.json: lies inside fn, part of the build context of fn-0; the plan would change "
                     "the next plan's source digest: write it outside the function's modules"),
    ("fn/go.mod", "error: --out fn/go.mod: lies inside fn, part of the build context of fn-0; the plan would change "
                  "the next plan's source digest: write it outside the function's modules"),
    ("notes.txt", "error: --out notes.txt: exists and is not a deployer plan; plan --out overwrites only a previous plan "
                  "file: choose a new file name"),
    ("link.json", "error: --out link.json: is a symbolic link; plan --out writes only a new file or a previous plan file"),
    ("fifo.json", "error: --out fifo.json: is not a regular file; plan --out writes only a new file or a previous plan file"),
])
def test_plan_out_refuses_to_write_over_what_the_user_owns(cli: InProcessCli, tmp_path: Path, out: str, message: str) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "sub").mkdir()
    (repo / "notes.txt").write_text("my notes\n")
    (repo / "link.json").symlink_to(repo / "notes.txt")
    os.mkfifo(repo / "fifo.json")
    before = {p.name: p.read_bytes() for p in (repo / "deploy.yaml", repo / "notes.txt", repo / "fn" / "go.mod")}

    result = plan_out(cli, repo, out)

    assert result.exit_code == 1
    assert result.stderr == message + "\n"
    assert result.stdout == ""
    assert {p.name: p.read_bytes() for p in (repo / "deploy.yaml", repo / "notes.txt", repo / "fn" / "go.mod")} == before
    assert not (repo / "fn" / "plan.json").exists()


def test_plan_out_outside_the_checkout_is_refused(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("plan", str(repo / "deploy.yaml"), "--out", "plan.json", cwd=elsewhere, env=NO_AWS)
    assert result.exit_code == 1
    assert result.stderr == (f"error: {repo / 'deploy.yaml'} lies outside the checkout {elsewhere.resolve()}; a saved plan can "
                             "only name files inside it: run plan from inside the repository that holds the deploy.yaml files\n")
    assert not (elsewhere / "plan.json").exists()


def test_previous_plan_file_is_not_refused(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "plan.json").write_text(json.dumps({"format_version": 1, "functions": []}))
    result = plan_out(cli, repo, "plan.json")
    # Past the --out checks: the plan itself fails because no AWS endpoint answers.
    assert result.exit_code == 1
    assert "--out" not in result.stderr and "cannot plan" in result.stderr
