"""`--env` and DEPLOYER_ENV beyond validate (whose cases are data, in validate_cases/): a saved
plan is applied only in the environment it was made for, which is checked before anything else is
read; a plan file's environment is parsed strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_harness import InProcessCli

# No AWS endpoint answers here: what is refused must be refused before any AWS call.
NO_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}


def write_plan(directory: Path, environment: Any) -> Path:
    plan = directory / "plan.json"
    plan.write_text(json.dumps({"format_version": 7, "functions": [], "sources": [], "hash_key": "1" * 64,
                                "environment": environment}))
    return plan


@pytest.mark.parametrize("made_for, args, env, message", [
    ("staging", ["--env", "production"], {},
     "plan.json: the plan was made for environment 'staging', this apply is for environment 'production'; apply it with "
     "--env staging, or make a plan for 'production' with --env"),
    ("staging", [], {"DEPLOYER_ENV": "production"},
     "plan.json: the plan was made for environment 'staging', this apply is for environment 'production'; apply it with "
     "--env staging, or make a plan for 'production' with --env"),
    ("staging", [], {},
     "plan.json: the plan was made for environment 'staging', this apply is for no environment; apply it with --env "
     "staging, or make a plan without --env"),
    (None, ["--env", "prod"], {},
     "plan.json: the plan was made for no environment, this apply is for environment 'prod'; apply it without "
     "--env and DEPLOYER_ENV, or make a plan for 'prod' with --env"),
])
def test_a_saved_plan_is_refused_under_another_environment(cli: InProcessCli, tmp_path: Path, made_for: str | None,
                                                            args: list[str], env: dict[str, str], message: str) -> None:
    plan = write_plan(tmp_path, made_for)
    result = cli("apply", plan.name, *args, cwd=tmp_path, env={**NO_AWS, **env})
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"error: {message}\n")


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["apply", "plan.json"], ["build"], ["invoke", "fn", "--local"],
                                     ["history", "fn"], ["rollback", "fn"], ["prune"], ["context", "--function", "fn", "--out", "x"]])
@pytest.mark.parametrize("given, shown", [
    ("prod\x1b[31m", "'prod\\x1b[31m'"),  # a control sequence is shown, not acted on
    ("Production", "'Production'"),
    ("p" * 5000, "'" + "p" * 40 + "'"),  # cut short
])
def test_an_environment_no_file_could_declare_is_a_usage_error(cli: InProcessCli, tmp_path: Path, command: list[str],
                                                               given: str, shown: str) -> None:
    """Said before anything is read, by every command that reads deploy.yaml: the files' own
    messages would ask to declare it (with --env or from DEPLOYER_ENV, a CI variable gone wrong)."""
    write_plan(tmp_path, None)
    for args, env in ((["--env", given], {}), ([], {"DEPLOYER_ENV": given})):
        result = cli(*command, *args, cwd=tmp_path, env={**NO_AWS, **env})
        assert (result.exit_code, result.stdout) == (1, "")
        assert (f"{shown} is not an environment name: 1 to 32 lowercase letters, digits, '-' or '_', starting with a "
                "letter, as deploy.yaml's `environments` declare them") in " ".join(result.stderr.split())


@pytest.mark.parametrize("environment, problem", [
    ("Production", "environment 'Production' is not an environment name"),
    (7, "environment '7' is not an environment name"),
    ("x" * 40, "environment 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is not an environment name"),
])
def test_a_plan_file_environment_is_parsed_strictly(cli: InProcessCli, tmp_path: Path, environment: Any, problem: str) -> None:
    plan = write_plan(tmp_path, environment)
    result = cli("apply", plan.name, "--env", "production", cwd=tmp_path, env=NO_AWS)
    assert (result.exit_code, result.stderr) == (1, f"error: plan.json: damaged plan ({problem}); run plan again\n")


def test_a_plan_file_without_its_environment_is_damaged(cli: InProcessCli, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format_version": 7, "functions": [], "sources": [], "hash_key": "1" * 64}))
    result = cli("apply", plan.name, cwd=tmp_path, env=NO_AWS)
    assert result.stderr == "error: plan.json: damaged plan (environment is missing (null for a plan made without --env)); run plan again\n"


def test_context_reads_the_selected_environment(cli: InProcessCli, tmp_path: Path) -> None:
    # A build setting of production only (its Go flags) changes the source digest context prints.
    (tmp_path / ".git").mkdir()
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (tmp_path / "deploy.yaml").write_text(
        "version: 1\ndefaults: {region: us-east-1, repository: fn-repo}\nfunctions:\n  - {name: fn, build: {source: fn}}\n"
        "environments:\n  staging: {}\n  production: {build: {go_build_flags: [-trimpath]}}\n")
    digests = {}
    for environment in ("staging", "production"):
        result = cli("context", "--function", "fn", "--out", str(tmp_path / environment), "--env", environment, cwd=tmp_path)
        assert result.exit_code == 0, result.stderr
        digests[environment] = result.stdout.strip()
    assert digests["staging"] != digests["production"]
    refused = cli("context", "--function", "fn", "--out", str(tmp_path / "none"), cwd=tmp_path)
    assert refused.exit_code == 1
    assert "this file declares environments ('staging', 'production'): choose one with --env NAME" in refused.stderr
