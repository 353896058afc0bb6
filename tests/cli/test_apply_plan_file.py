"""`deployer apply FILE`: a plan file that cannot be trusted is refused before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def apply(plan: Path) -> subprocess.CompletedProcess[str]:
    # No AWS endpoint answers here: a refused plan file must fail before any AWS call.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "deployer", "apply", plan.name], cwd=plan.parent, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "plan.json:1:2: not valid JSON (Expecting property name enclosed in double quotes); "
                  "make a plan with 'deployer plan --out FILE'"),
    ("[1, 2]", "plan.json: not a deployer plan (no format_version); make one with 'deployer plan --out FILE'"),
    ('{"format_version": 2, "functions": []}',
     "plan.json: plan format_version 2 is not supported (this deployer reads 1); run plan again"),
    ('{"format_version": 1, "functions": [{"action": 5}]}',
     "plan.json: damaged plan (functions[0].desired is NoneType, not dict); run plan again"),
])
def test_untrustworthy_plan_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    result = apply(plan)
    assert result.returncode == 1
    assert result.stderr == f"error: {message}\n"


def test_binary_plan_file_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(b"\xff\xfe\x00junk")
    result = apply(plan)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "cannot read plan file" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_plan_applies_nothing(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format_version": 1, "functions": []}))
    result = apply(plan)
    assert result.returncode == 0, result.stderr
    assert "No changes" in result.stdout
