"""Creating what is missing, through the real CLI against the local cloud: from an account with only
an IAM role, `plan` shows the repository and the function to create, `apply` creates the
repository (immutable tags, scan on push, a lifecycle policy for untagged images), builds, pushes
and creates the function on the pushed digest with its declared configuration; then nothing is
left to do. A missing role, or a repository deploy.yaml says not to create, blocks instead."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import LAMBDA_TRUST_POLICY, unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, ecr_digest, ecr_image_count, lambda_config, output
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"  # moto's
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
SUMMARY_LINE = re.compile(r"^\s+(\S+)\s+(created|built|updated|unchanged|failed|cancelled)\s+\d+\.\d+s\b", re.MULTILINE)
UNTAGGED_EXPIRY = {"rules": [{"rulePriority": 1, "description": "expire untagged images after 14 days",
                              "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                            "countNumber": 14},
                              "action": {"type": "expire"}}]}


@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path) -> Cli:
    return Cli(monorepo, tmp_path / "tmpdir")


@pytest.fixture
def role_arn(local_cloud: LocalCloud) -> str:
    """The one thing the account holds before the first apply: an execution role (made with boto3)."""
    role = local_cloud.client("iam").create_role(RoleName=unique_name("deployer-create-role"),
                                                 AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)
    return str(role["Role"]["Arn"])


def write_spec(monorepo: Monorepo, functions: list[dict[str, Any]]) -> Path:
    """root/deploy.yaml declaring `functions` (each: name, repository, and any configuration keys),
    all built from finalize-with-error for arm64 with the stand-in images."""
    entries = [{"platform": "linux/arm64",
                "build": {"source": EXAMPLE_SOURCE, "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"]}, **fn}
               for fn in functions]
    data = {"version": 1, "defaults": {"region": "us-east-1",
                                       "build": {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"],
                                                 "go_env": {"GOPROXY": "off"}}},
            "functions": entries}
    path = monorepo.root / "deploy.yaml"
    with path.open("w") as out:
        YAML().dump(data, out)
    return path


def outcomes(result: Any) -> dict[str, str]:
    """Function name -> status from apply's summary ("created" among them)."""
    assert "Apply summary:" in result.stdout, output(result)
    return dict(SUMMARY_LINE.findall(result.stdout.split("Apply summary:", 1)[1]))


def repository_missing(ecr_client: Any, name: str) -> bool:
    try:
        ecr_client.describe_repositories(repositoryNames=[name])
    except ecr_client.exceptions.RepositoryNotFoundException:
        return True
    return False


def function_missing(lambda_client: Any, name: str) -> bool:
    try:
        lambda_client.get_function(FunctionName=name)
    except lambda_client.exceptions.ResourceNotFoundException:
        return True
    return False


def content_tag(cli: Cli) -> str:
    planned = cli("plan", "--format", "json")
    assert planned.returncode == 0, output(planned)
    tags = {fp["desired"]["content_tag"] for fp in json.loads(planned.stdout)["functions"]}
    assert len(tags) == 1
    return str(tags.pop())


def assert_created_repository(ecr_client: Any, name: str) -> None:
    """The repository as deployer creates them."""
    [repository] = ecr_client.describe_repositories(repositoryNames=[name])["repositories"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["encryptionConfiguration"]["encryptionType"] == "AES256"
    policy = ecr_client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    assert json.loads(policy) == UNTAGGED_EXPIRY


def test_from_an_empty_account_plan_shows_and_apply_creates_the_repository_and_the_function(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any, lambda_client: Any) -> None:
    repository, name = unique_name("deployer-create"), unique_name("deployer-create-fn")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn, "memory": 512,
                           "environment": {"MODE": "live"}}])

    planned = cli("plan")

    assert planned.returncode == 0, output(planned)
    assert f"+ {name}: create" in planned.stdout, output(planned)
    assert (f"create ECR repository {REGISTRY}/{repository} (scan_on_push: true, tag_mutability: IMMUTABLE, encryption: AES256, "
            "untagged_expiry_days: 14)") in planned.stdout
    assert f"create function {name} from {REGISTRY}/{repository}:src-" in planned.stdout
    assert f"+ role: {role_arn}" in planned.stdout and "+ memory: 512" in planned.stdout
    assert "Plan: 1 to create, 0 unchanged" in planned.stdout
    assert repository_missing(ecr_client, repository) and function_missing(lambda_client, name), "plan changes nothing"

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {name: "created"}
    assert_created_repository(ecr_client, repository)
    tag = content_tag(cli)
    config = lambda_config(lambda_client, name)
    assert config["CodeSha256"] == ecr_digest(ecr_client, repository, tag).removeprefix("sha256:")
    assert (config["PackageType"], config["Architectures"], config["Role"]) == ("Image", ["arm64"], role_arn)
    assert (config["MemorySize"], config["Environment"]["Variables"]) == (512, {"MODE": "live"})
    assert config["State"] == "Active"
    assert cli.leftover_contexts() == []
    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, output(again)


def test_a_missing_function_without_a_role_is_blocked_with_the_add_role_message(
        cli: Cli, monorepo: Monorepo, ecr_client: Any, lambda_client: Any) -> None:
    repository, name = unique_name("deployer-create"), unique_name("deployer-create-fn")
    write_spec(monorepo, [{"name": name, "repository": repository}])

    planned = cli("plan")

    assert planned.returncode == 1, output(planned)
    assert f"! {name}: blocked" in planned.stdout
    assert (f"function {name} does not exist in us-east-1, and deploy.yaml gives no role to create it with; add `role: <ARN of "
            "its execution role>` to the function (or to defaults)") in planned.stdout, output(planned)
    assert f"1 function(s) cannot be deployed: {name}" in planned.stderr
    applied = cli("apply", "--yes")
    assert applied.returncode == 1, output(applied)
    assert repository_missing(ecr_client, repository) and function_missing(lambda_client, name), "nothing was created"


def test_a_missing_repository_deploy_yaml_says_not_to_create_blocks(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any, lambda_client: Any) -> None:
    repository, name = unique_name("deployer-create"), unique_name("deployer-create-fn")
    write_spec(monorepo, [{"name": name, "repository": {"name": repository, "create": False}, "role": role_arn}])

    planned = cli("plan")

    assert planned.returncode == 1, output(planned)
    assert f"! {name}: blocked" in planned.stdout
    assert (f"ECR repository {REGISTRY}/{repository} does not exist, and deploy.yaml says not to create it "
            "(repository.create: false)") in planned.stdout, output(planned)
    applied = cli("apply", "--yes")
    assert applied.returncode == 1, output(applied)
    assert repository_missing(ecr_client, repository) and function_missing(lambda_client, name), "nothing was created"


def test_two_functions_sharing_a_new_repository_are_both_created_with_one_repository_and_one_image(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any, lambda_client: Any) -> None:
    repository = unique_name("deployer-create")
    names = sorted(unique_name("deployer-create-fn") for _ in range(2))
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn} for name in names])
    planned = cli("plan", "--format", "json")
    assert planned.returncode == 0, output(planned)
    assert [(fp["action"], fp["create_repository"]) for fp in json.loads(planned.stdout)["functions"]] == [("create", True)] * 2

    applied = cli("apply", "--yes", "--parallelism", "2")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {name: "created" for name in names}
    assert_created_repository(ecr_client, repository)
    assert ecr_image_count(ecr_client, repository) == 1, "one build, one push for both"
    digest = ecr_digest(ecr_client, repository, content_tag(cli)).removeprefix("sha256:")
    assert [lambda_config(lambda_client, name)["CodeSha256"] for name in names] == [digest, digest]
    assert cli("plan", "--detailed-exitcode").returncode == 0


def test_a_saved_plan_of_a_creation_applies(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any, lambda_client: Any) -> None:
    repository, name = unique_name("deployer-create"), unique_name("deployer-create-fn")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn, "timeout": 30}])
    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    [saved] = json.loads((monorepo.root / "plan.json").read_text())["functions"]
    assert (saved["action"], saved["create_repository"]) == ("create", True)
    assert [s["type"] for s in saved["steps"]] == ["CreateRepository", "EcrLogin", "AssembleContext", "BuildImage", "PushImage",
                                                   "VerifyImage", "CreateFunction", "WaitForActive", "Cleanup"]

    applied = cli("apply", "plan.json")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {name: "created"}
    assert_created_repository(ecr_client, repository)
    config = lambda_config(lambda_client, name)
    assert config["CodeSha256"] == ecr_digest(ecr_client, repository, saved["desired"]["content_tag"]).removeprefix("sha256:")
    assert (config["Timeout"], config["Role"]) == (30, role_arn)
    assert cli("plan", "--detailed-exitcode").returncode == 0
