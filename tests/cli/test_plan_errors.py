"""`deployer plan` when AWS cannot be asked: one clear line per problem, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def plan(repo: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                 "AWS_EC2_METADATA_DISABLED": "true", "NO_COLOR": "1", **env})
    return subprocess.run([sys.executable, "-m", "deployer", "plan"], cwd=repo, env=base, capture_output=True, text=True,
                          timeout=120)


def make_repo(root: Path, count: int) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / "fn").mkdir()
    (root / "fn" / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    entries = "".join(f"  - name: fn-{i}\n    repository: repo-{i}\n    build: {{source: fn}}\n" for i in range(count))
    (root / "deploy.yaml").write_text(f"version: 1\ndefaults:\n  region: us-east-1\n  account: '123456789012'\nfunctions:\n{entries}")
    return root


def test_missing_credentials_are_reported_once_for_all_functions(tmp_path: Path) -> None:
    result = plan(make_repo(tmp_path, 3))
    assert result.returncode == 1
    # One problem, grouped by the failed call (operation and code), not once per function.
    assert result.stderr == ("error: cannot plan:\n  fn-0, fn-1, fn-2: lambda:GetFunction: "
                             "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY\n")


def test_unknown_profile_is_a_clean_error(tmp_path: Path) -> None:
    result = plan(make_repo(tmp_path, 1), AWS_PROFILE="nope")
    assert result.returncode == 1
    assert result.stderr == ("error: cannot plan:\n  fn-0: reading the AWS configuration on AWS_PROFILE / ~/.aws/config: "
                             "The config profile (nope) could not be found\n")


def test_an_unset_from_env_variable_stops_plan_naming_it_and_no_value(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, 2)
    spec = (repo / "deploy.yaml").read_text()
    (repo / "deploy.yaml").write_text(spec.replace("  account: '123456789012'\n", "  account: '123456789012'\n  environment:\n"
                                                   "    API_KEY: {from_env: DEPLOYER_TEST_API_KEY}\n"
                                                   "    DB_PASSWORD: {from_env: DEPLOYER_TEST_DB_PASSWORD}\n"))
    result = plan(repo, DEPLOYER_TEST_DB_PASSWORD="hunter2-secret", AWS_ENDPOINT_URL="http://127.0.0.1:1")
    assert result.returncode == 1
    # Said before AWS is asked (the account is given), once, naming every function it stops.
    assert result.stderr == ("error: cannot plan:\n  fn-0, fn-1: environment values come from DEPLOYER_TEST_API_KEY, which is "
                             "not set; export it (in CI, from a secret) before plan and apply\n")
    assert "hunter2" not in result.stdout + result.stderr
