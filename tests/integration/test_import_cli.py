"""`deployer import` through the real CLI against the local cloud: a function deployer created (with
configuration, a secret, tags and repository settings) is read back into a new deploy.yaml that
validates; a plan right after finds no configuration or repository change, and, with the build
settings the function was built with, no change at all. No secret value reaches any output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, output
from tests.integration.test_create_cli import cli, outcomes, role_arn, write_spec  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

SECRET = "import-canary-7f3a9c"  # must never be printed


def test_an_import_followed_by_a_plan_shows_no_changes(cli: Cli, monorepo: Monorepo, role_arn: str, lambda_client: Any) -> None:
    repository, name = unique_name("deployer-import"), unique_name("deployer-import-fn")
    path = write_spec(monorepo, [{
        "name": name, "role": role_arn, "memory": 1024, "timeout": 20, "description": "imported: 'quotes' and # hashes",
        "tracing": "Active", "environment": {"API_KEY": {"from_env": "CI_API_KEY"}, "MODE": "live"},
        "reserved_concurrency": 3, "tags": {"team": "payments", "cost center": "42"},
        "image_config": {"command": ["serve", "--port=8080"], "working_directory": "/var/task"},
        "logging": {"format": "JSON", "application_log_level": "DEBUG"},
        "vpc": {"subnet_ids": ["subnet-aaaaaaaa"], "security_group_ids": ["sg-12345678"]},
        "repository": {"name": repository, "scan_on_push": False, "untagged_expiry_days": 30, "tags": {"team": "payments"}},
    }])
    original = YAML().load(path.read_text())
    built_with = original["defaults"]["build"], original["functions"][0]["build"]
    assert cli("apply", "--yes", env={"CI_API_KEY": SECRET}).returncode == 0
    path.unlink()

    refused = cli("import", name, "--region", "us-east-1", "--out", "deploy.yaml")  # the source is not at ./{name}
    assert refused.returncode == 1 and not path.exists(), output(refused)
    assert f"each function's source is '{{name}}'" in refused.stderr and "pass --source" in refused.stderr

    printed = cli("import", name, "--region", "us-east-1", "--source", EXAMPLE_SOURCE)
    imported = cli("import", name, "--region", "us-east-1", "--source", EXAMPLE_SOURCE, "--out", "deploy.yaml")

    assert printed.returncode == 0 and imported.returncode == 0, output(imported)
    assert path.read_text() == printed.stdout
    text = path.read_text()
    assert SECRET not in text + printed.stderr + imported.stderr and "live" not in text, "values from Lambda are never copied"
    entry = YAML().load(text)["functions"][0]
    assert dict(entry["environment"]) == {"API_KEY": {"from_env": "API_KEY"}, "MODE": {"from_env": "MODE"}}
    assert "set API_KEY in CI" in text
    assert (entry["memory"], entry["timeout"], entry["tracing"], entry["reserved_concurrency"]) == (1024, 20, "Active", 3)
    assert dict(entry["repository"]) == {"name": repository, "scan_on_push": False, "untagged_expiry_days": 30,
                                         "tags": {"team": "payments"}}
    assert entry["image_config"] == {"command": ["serve", "--port=8080"], "working_directory": "/var/task"}
    assert entry["logging"] == {"format": "JSON", "application_log_level": "DEBUG"}, "the log group and system level: defaults"
    assert entry["vpc"] == {"subnet_ids": ["subnet-aaaaaaaa"], "security_group_ids": ["sg-12345678"]}
    assert "ephemeral_storage" not in entry and "description" in entry, "Lambda's defaults are left out"
    again = cli("import", name, "--region", "us-east-1", "--source", EXAMPLE_SOURCE, "--out", "deploy.yaml")
    assert again.returncode == 1 and "exists" in again.stderr and path.read_text() == text, "nothing is replaced"

    env = {"API_KEY": SECRET, "MODE": "live"}
    planned = cli("plan", "--format", "json", env=env)
    assert planned.returncode == 0, output(planned)
    [fp] = json.loads(planned.stdout)["functions"]
    assert (fp["configuration"], fp["repository_changes"]) == ([], []), fp
    assert SECRET not in planned.stdout + planned.stderr

    # With the build settings it was built with (the stand-in images of the local cloud), the same
    # source makes the same image: nothing at all to do.
    data = YAML().load(text)
    data["defaults"]["build"], data["functions"][0]["build"] = built_with
    with path.open("w") as handle:
        YAML().dump(data, handle)
    settled = cli("plan", "--detailed-exitcode", env=env)
    assert settled.returncode == 0, output(settled)


def test_importing_what_does_not_exist_says_so(cli: Cli, monorepo: Monorepo) -> None:
    missing = unique_name("deployer-import-missing")
    result = cli("import", missing, "--region", "us-east-1")
    assert result.returncode == 1
    assert result.stderr == f"error: cannot import:\n  function {missing} does not exist in us-east-1\n"
    bad = cli("import", "not a name", "--region", "us-east-1")
    assert bad.returncode == 1 and "is not a Lambda function name" in bad.stderr
