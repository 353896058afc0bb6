"""Environments through the real CLI on the local cloud: one deploy.yaml deploys its function to
staging (us-east-1) and to production (eu-west-1, more memory, its own variables and repository);
plans say which environment they are for; a saved plan applied under another environment, or
under none, is refused before anything changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, output
from tests.integration.test_create_cli import cli, outcomes, role_arn  # noqa: F401 (fixtures)
from tests.localcloud.cloud import OTHER_REGIONS, LocalCloud

pytestmark = pytest.mark.integration

PRODUCTION_REGION = OTHER_REGIONS[0]


def write_spec(monorepo: Monorepo, name: str, role: str, copy: bool = False) -> None:
    """One function, two environments: production overrides the region, the repository (each
    region's ECR holds its own), the memory of every function, and greet's variables; with `copy`,
    it may copy images from staging."""
    data: dict[str, Any] = {
        "version": 1,
        "defaults": {"region": "us-east-1", "role": role, "memory": 256, "environment": {"LOG_LEVEL": "debug", "STAGE": "base"},
                     "build": {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"], "go_env": {"GOPROXY": "off"}}},
        "functions": [{"name": name, "repository": f"{name}-staging", "platform": "linux/arm64",
                       "build": {"source": EXAMPLE_SOURCE, "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"]}}],
        "environments": {
            "staging": {"environment": {"STAGE": "staging"}},
            "production": {"region": PRODUCTION_REGION, "memory": 1024,
                           "functions": {name: {"repository": f"{name}-production", "environment": {"STAGE": "production"}}}},
        },
    }
    if copy:
        data["environments"]["production"]["copy_images_from"] = ["staging"]
    with (monorepo.root / "deploy.yaml").open("w") as out:
        YAML().dump(data, out)


def configuration(local_cloud: LocalCloud, region: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = local_cloud.client("lambda", region).get_function_configuration(FunctionName=name)
    return found


def test_staging_and_production_from_one_deploy_yaml(cli: Cli, monorepo: Monorepo, role_arn: str, local_cloud: LocalCloud) -> None:
    name = unique_name("env-fn")
    write_spec(monorepo, name, role_arn)

    unselected = cli("plan")
    assert unselected.returncode == 1
    assert "this file declares environments ('staging', 'production'): choose one with --env NAME" in unselected.stderr

    planned = cli("plan", "--env", "production", "--format", "json")
    assert planned.returncode == 0, output(planned)
    plan = json.loads(planned.stdout)
    assert plan["environment"] == "production"
    assert plan["account"] == local_cloud.account  # where its functions are: the credentials' account
    assert plan["functions"][0]["desired"]["region"] == PRODUCTION_REGION

    staged = cli("apply", "--yes", env={"DEPLOYER_ENV": "staging"})
    assert staged.returncode == 0, output(staged)
    assert staged.stdout.startswith(f"Environment: staging (AWS account {local_cloud.account})\n")
    assert outcomes(staged) == {name: "created"}
    produced = cli("apply", "--yes", "--env", "production")
    assert produced.returncode == 0, output(produced)
    assert outcomes(produced) == {name: "created"}
    # Production lists no environment to copy from (copy_images_from): it trusts only its own repository, and builds.
    assert "build image" in produced.stdout and "copied from" not in produced.stdout

    staging = configuration(local_cloud, "us-east-1", name)
    production = configuration(local_cloud, PRODUCTION_REGION, name)
    assert (staging["MemorySize"], staging["Environment"]["Variables"]) == (256, {"LOG_LEVEL": "debug", "STAGE": "staging"})
    assert (production["MemorySize"], production["Environment"]["Variables"]) == (1024, {"LOG_LEVEL": "debug", "STAGE": "production"})
    tags = {}
    for environment in ("staging", "production"):
        settled = cli("plan", "--env", environment, "--detailed-exitcode", "--format", "json")
        assert settled.returncode == 0, output(settled)
        tags[environment] = json.loads(settled.stdout)["functions"][0]["desired"]["content_tag"]
    assert tags["staging"] == tags["production"]  # one source: one content tag, in each environment's repository
    history = cli("history", name, "--env", "production", "--format", "json")
    assert history.returncode == 0, output(history)
    assert {k: v for k, v in json.loads(history.stdout).items() if k != "versions"} == {
        "function": name, "region": PRODUCTION_REGION, "environment": "production"}
    assert cli("history", name, "--env", "staging").stdout == f"Environment: staging\n{name}: no published versions\n"
    markdown = cli("plan", "--env", "production", "--format", "markdown")
    assert markdown.returncode == 0, output(markdown)
    assert markdown.stdout.splitlines()[:3] == ["### Plan: 1 unchanged", "", f"Environment: `production` (AWS account `{local_cloud.account}`)"]


def test_a_saved_plan_is_applied_only_in_its_environment(cli: Cli, monorepo: Monorepo, role_arn: str, local_cloud: LocalCloud) -> None:
    name = unique_name("env-saved")
    write_spec(monorepo, name, role_arn)
    saved = cli("plan", "--env", "staging", "--out", "plan.json")
    assert saved.returncode == 0, output(saved)
    assert json.loads((monorepo.root / "plan.json").read_text())["environment"] == "staging"

    elsewhere = cli("apply", "plan.json", "--env", "production")
    assert (elsewhere.returncode, elsewhere.stdout) == (1, "")
    assert elsewhere.stderr == ("error: plan.json: the plan was made for environment 'staging', this apply is for environment "
                                "'production'; apply it with --env staging, or make a plan for 'production' with --env\n")
    unselected = cli("apply", "plan.json")
    assert unselected.returncode == 1
    assert unselected.stderr == ("error: plan.json: the plan was made for environment 'staging', this apply is for no "
                                 "environment; apply it with --env staging, or make a plan without --env\n")
    lam = local_cloud.client("lambda")
    assert name not in [fn["FunctionName"] for fn in lam.list_functions()["Functions"]]

    applied = cli("apply", "plan.json", env={"DEPLOYER_ENV": "staging"})
    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {name: "created"}


def test_production_copies_the_image_staging_built_instead_of_building_it(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                          local_cloud: LocalCloud) -> None:
    name = unique_name("env-copy")
    write_spec(monorepo, name, role_arn, copy=True)
    staged = cli("apply", "--yes", "--env", "staging")
    assert staged.returncode == 0, output(staged)
    assert outcomes(staged) == {name: "created"} and "build image for linux/arm64" in staged.stdout

    planned = cli("plan", "--env", "production", "--format", "json", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    [fn] = json.loads(planned.stdout)["functions"]
    staging_uri = f"{local_cloud.account}.dkr.ecr.us-east-1.amazonaws.com/{name}-staging"
    assert fn["action"] == "create"
    assert fn["copy_from"] == {"environment": "staging", "repository_uri": staging_uri, "digest": fn["desired_digest"]}
    assert [step["type"] for step in fn["steps"]] == ["CreateRepository", "CopyImage", "VerifyImage", "CreateFunction",
                                                       "WaitForActive"]
    text = cli("plan", "--env", "production")
    assert f"created from the image of this source copied from staging's repository {staging_uri}" in text.stdout, output(text)
    assert "build image" not in text.stdout

    produced = cli("apply", "plan.json", "--env", "production")
    assert produced.returncode == 0, output(produced)
    assert outcomes(produced) == {name: "created"}
    assert "build image" not in produced.stdout and "assemble build context" not in produced.stdout
    assert f"copy {staging_uri}@{fn['desired_digest']}" in produced.stdout, output(produced)
    assert "copied from staging's repository" in produced.stdout
    staging = configuration(local_cloud, "us-east-1", name)
    production = configuration(local_cloud, PRODUCTION_REGION, name)
    assert production["CodeSha256"] == staging["CodeSha256"] == fn["desired_digest"].removeprefix("sha256:")
    settled = cli("plan", "--env", "production", "--detailed-exitcode")
    assert settled.returncode == 0, output(settled)


def test_credentials_of_an_account_the_file_does_not_allow_are_refused_before_anything(
        cli: Cli, monorepo: Monorepo, role_arn: str, local_cloud: LocalCloud) -> None:
    """allowed_accounts, as Terraform's allowed_account_ids: production may be planned and applied
    only with production's credentials; staging lists the local cloud's account and deploys."""
    name = unique_name("env-allowed")
    write_spec(monorepo, name, role_arn)
    spec = monorepo.root / "deploy.yaml"
    yaml = YAML()
    data = yaml.load(spec.read_text())
    data["defaults"]["allowed_accounts"] = [local_cloud.account]
    data["environments"]["production"]["allowed_accounts"] = ["222222222222"]
    with spec.open("w") as out:
        yaml.dump(data, out)
    lines = spec.read_text().splitlines()
    line = next(number for number, text in enumerate(lines, 1) if "'222222222222'" in text)  # production's list
    column = lines[line - 1].index("-") + 1

    refused = {command: cli(*args) for command, args in {
        "plan": ("plan", "--env", "production"), "apply": ("apply", "--yes", "--env", "production"),
        "prune": ("prune", "--yes", "--env", "production"), "rollback": ("rollback", name, "--yes", "--env", "production"),
        "history": ("history", name, "--env", "production"),
    }.items()}
    for command, run in refused.items():
        assert run.returncode == 1 and run.stdout == "", (command, output(run))
        assert run.stderr == (f"error: deploy.yaml:{line}:{column}: the credentials are of AWS account {local_cloud.account}, which "
                              "allowed_accounts (production) does not list (222222222222); run with the credentials of an "
                              "allowed account\n"), (command, run.stderr)
    lam = local_cloud.client("lambda", PRODUCTION_REGION)
    assert name not in [fn["FunctionName"] for fn in lam.list_functions()["Functions"]]

    staged = cli("apply", "--yes", "--env", "staging")  # defaults' list holds the account
    assert staged.returncode == 0, output(staged)
    assert outcomes(staged) == {name: "created"}
