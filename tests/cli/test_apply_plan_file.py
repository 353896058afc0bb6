"""`deployer apply FILE`: a plan file that cannot be trusted is refused before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from tests.cli_harness import CliResult, InProcessCli


@pytest.fixture
def apply(cli: InProcessCli) -> Callable[[Path], CliResult]:
    def run(plan: Path) -> CliResult:
        # No AWS endpoint answers here: a refused plan file must fail before any AWS call.
        return cli("apply", plan.name, cwd=plan.parent,
                   env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})

    return run


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "plan.json:1:2: not valid JSON (Expecting property name enclosed in double quotes); "
                  "make a plan with 'deployer plan --out FILE'"),
    ("[1, 2]", "plan.json: not a deployer plan (no format_version); make one with 'deployer plan --out FILE'"),
    ('{"format_version": 1, "functions": []}',
     "plan.json: plan format_version 1 is not supported (this deployer reads 7); run plan again"),
    ('{"format_version": 2, "functions": [], "sources": []}',  # a plan of the deployer before configuration
     "plan.json: plan format_version 2 is not supported (this deployer reads 7); run plan again"),
    ('{"format_version": 7, "functions": [{"action": 5}]}',
     "plan.json: damaged plan (functions[0].desired is NoneType, not dict); run plan again"),
    ('{"format_version": 7, "functions": [], "sources": [{"path": "../../etc/deploy.yaml", "sha256": "%s"}], "hash_key": "%s"}'
     % ("0" * 64, "1" * 64),
     "plan.json: damaged plan (sources[0].path must be a relative path inside the checkout, without '..' or control "
     "characters); run plan again"),
    ('{"format_version": 7, "functions": [], "sources": []}',
     "plan.json: damaged plan (hash_key is NoneType, not str); run plan again"),
    ('{"format_version": 7, "functions": [], "sources": [], "hash_key": "00"}',
     "plan.json: damaged plan (hash_key is not 64 lowercase hex digits); run plan again"),
    ("[" * 100_000, "plan.json: JSON nested too deeply for a plan; make a plan with 'deployer plan --out FILE'"),
])
def test_untrustworthy_plan_file_is_refused(apply: Callable[[Path], CliResult], tmp_path: Path, content: str, message: str) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    result = apply(plan)
    assert result.exit_code == 1
    assert result.stderr == f"error: {message}\n"


def test_binary_plan_file_is_refused(apply: Callable[[Path], CliResult], tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(b"\xff\xfe\x00junk")
    result = apply(plan)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "cannot read plan file" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_file_that_is_a_fifo_is_refused_without_waiting_for_a_writer(apply: Callable[[Path], CliResult], tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    os.mkfifo(plan)
    result = apply(plan)  # the 60 s timeout of apply() fails the test if it blocks
    assert result.exit_code == 1
    assert result.stderr == "error: plan.json: not a regular file; give the plan file written by 'deployer plan --out FILE'\n"


def test_oversized_plan_file_is_refused_before_it_is_read(apply: Callable[[Path], CliResult], tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    with plan.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    result = apply(plan)
    assert result.exit_code == 1
    assert result.stderr == (f"error: plan.json: {64 * 1024 * 1024} bytes is too large for a plan file (at most {32 * 1024 * 1024}); "
                             "give the file written by 'deployer plan --out FILE'\n")


def test_a_plan_of_nothing_is_refused_where_there_is_nothing_to_deploy(apply: Callable[[Path], CliResult], tmp_path: Path) -> None:
    # deployer never writes a plan without deploy.yaml files: apply finds none where it looks.
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format_version": 7, "sources": [], "functions": [], "hash_key": "1" * 64, "environment": None}))
    result = apply(plan)
    assert result.exit_code == 1
    assert result.stderr == ("error: .: no deploy.yaml or deploy.yml found in this directory or below it; pass a file or "
                             "another directory\n")
