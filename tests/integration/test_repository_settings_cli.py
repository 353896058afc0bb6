"""Repository settings through the real CLI against the local cloud: a repository created with the
settings deploy.yaml declares (and the defaults for the rest), then nothing to do; drift made
outside in a declared setting is shown and fixed by apply; a setting deploy.yaml does not declare,
changed outside, is no change; statements others wrote in the repository policy are kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import Cli, output
from tests.integration.test_create_cli import cli, outcomes, role_arn, write_spec  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

PULLER = "210987654321"
SETTINGS = {"scan_on_push": False, "tag_mutability": "MUTABLE", "untagged_expiry_days": 7, "lambda_pull_accounts": [PULLER],
            "tags": {"team": "payments"}}
THEIRS = {"Sid": "TheirAuditRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
          "Action": "ecr:DescribeImages"}


def pull_sids(ecr_client: Any, repository: str) -> list[str]:
    policy = json.loads(ecr_client.get_repository_policy(repositoryName=repository)["policyText"])
    return sorted(statement["Sid"] for statement in policy["Statement"])


def test_declared_settings_are_created_then_drift_is_shown_and_fixed(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any) -> None:
    repository, name = unique_name("deployer-repo"), unique_name("deployer-repo-fn")
    write_spec(monorepo, [{"name": name, "repository": {"name": repository, **SETTINGS}, "role": role_arn}])

    planned = cli("plan")
    assert planned.returncode == 0, output(planned)
    for line in ("+ repository.scan_on_push: false", "+ repository.tag_mutability: MUTABLE", "+ repository.encryption: AES256",
                 "+ repository.untagged_expiry_days: 7", f"+ repository.lambda_pull_accounts: {PULLER}",
                 "+ repository.tags.team: payments"):
        assert line in planned.stdout, output(planned)

    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {name: "created"}
    [described] = ecr_client.describe_repositories(repositoryNames=[repository])["repositories"]
    assert (described["imageScanningConfiguration"], described["imageTagMutability"]) == ({"scanOnPush": False}, "MUTABLE")
    lifecycle = json.loads(ecr_client.get_lifecycle_policy(repositoryName=repository)["lifecyclePolicyText"])
    assert lifecycle["rules"][0]["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                                  "countNumber": 7}
    assert pull_sids(ecr_client, repository) == [f"DeployerLambdaPull{PULLER}", f"DeployerLambdaPullService{PULLER}"]
    tags = ecr_client.list_tags_for_resource(resourceArn=described["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "payments"}
    assert cli("plan", "--detailed-exitcode").returncode == 0, "apply then plan: no changes"

    # Drift made outside: every declared setting, and a statement of someone else's in the policy.
    ecr_client.put_image_scanning_configuration(repositoryName=repository, imageScanningConfiguration={"scanOnPush": True})
    ecr_client.put_image_tag_mutability(repositoryName=repository, imageTagMutability="IMMUTABLE")
    ecr_client.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=json.dumps({"rules": [{
        "rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]}))
    ecr_client.set_repository_policy(repositoryName=repository, policyText=json.dumps({"Version": "2012-10-17", "Statement": [THEIRS]}))
    ecr_client.tag_resource(resourceArn=described["repositoryArn"], tags=[{"Key": "team", "Value": "search"},
                                                                          {"Key": "owner", "Value": "someone"}])

    drifted = cli("plan", "--detailed-exitcode")
    assert drifted.returncode == 2, output(drifted)
    assert f"~ {name}: update configuration" in drifted.stdout
    for line in ("~ repository.scan_on_push: true -> false", "~ repository.tag_mutability: IMMUTABLE -> MUTABLE",
                 "~ repository.untagged_expiry_days: (another lifecycle policy) -> 7",
                 f"~ repository.lambda_pull_accounts: (none) -> {PULLER}", "~ repository.tags.team: search -> payments"):
        assert line in drifted.stdout, output(drifted)
    assert "owner" not in drifted.stdout, "a tag deploy.yaml does not declare is not managed"
    assert "update the settings of ECR repository" in drifted.stdout and "build image" not in drifted.stdout

    fixed = cli("apply", "--yes")
    assert fixed.returncode == 0, output(fixed)
    assert cli("plan", "--detailed-exitcode").returncode == 0, "drift fixed: no changes"
    assert pull_sids(ecr_client, repository) == sorted(["TheirAuditRead", f"DeployerLambdaPull{PULLER}",
                                                        f"DeployerLambdaPullService{PULLER}"]), "their statement kept"
    tags = ecr_client.list_tags_for_resource(resourceArn=described["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "payments", "owner": "someone"}


def test_a_setting_deploy_yaml_does_not_declare_is_not_compared(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any) -> None:
    repository, name = unique_name("deployer-repo"), unique_name("deployer-repo-fn")
    write_spec(monorepo, [{"name": name, "repository": {"name": repository, "scan_on_push": True}, "role": role_arn}])
    assert cli("apply", "--yes").returncode == 0
    ecr_client.put_image_tag_mutability(repositoryName=repository, imageTagMutability="MUTABLE")
    ecr_client.delete_lifecycle_policy(repositoryName=repository)

    planned = cli("plan", "--detailed-exitcode")

    assert planned.returncode == 0, output(planned)


def test_a_repository_encrypted_otherwise_blocks_with_what_to_do(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any) -> None:
    repository, name = unique_name("deployer-repo"), unique_name("deployer-repo-fn")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn}])
    assert cli("apply", "--yes").returncode == 0
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    write_spec(monorepo, [{"name": name, "repository": {"name": repository, "encryption": "KMS", "kms_key": key}, "role": role_arn}])

    planned = cli("plan")

    assert planned.returncode == 1, output(planned)
    assert f"! {name}: blocked" in planned.stdout
    assert f"encryption AES256 -> KMS; kms_key (none) -> {key}), and ECR cannot change a repository's encryption" in planned.stdout


def test_a_repository_of_another_account_lets_the_functions_account_pull(
        cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any, lambda_client: Any) -> None:
    """The repository belongs to another account (the registry of its URI), which lets the caller
    set its policy; the function is the caller's, whose account deploy.yaml names as a puller."""
    owner, repository, name = "210987654321", unique_name("deployer-xacct"), unique_name("deployer-xacct-fn")
    ecr_client.create_repository(registryId=owner, repositoryName=repository, imageTagMutability="IMMUTABLE")
    uri = f"{owner}.dkr.ecr.us-east-1.amazonaws.com/{repository}"
    write_spec(monorepo, [{"name": name, "role": role_arn,
                           "repository": {"name": uri, "create": False, "lambda_pull_accounts": ["123456789012"]}}])

    planned = cli("plan")
    assert planned.returncode == 0, output(planned)
    assert "~ repository.lambda_pull_accounts: (none) -> 123456789012" in planned.stdout, output(planned)
    assert f"update the settings of ECR repository {uri} (lambda_pull_accounts)" in planned.stdout

    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    policy = json.loads(ecr_client.get_repository_policy(registryId=owner, repositoryName=repository)["policyText"])
    assert sorted(s["Sid"] for s in policy["Statement"]) == ["DeployerLambdaPull123456789012", "DeployerLambdaPullService123456789012"]
    [service] = [s for s in policy["Statement"] if s["Principal"] == {"Service": "lambda.amazonaws.com"}]
    assert service["Condition"] == {"StringLike": {"aws:sourceARN": "arn:aws:lambda:us-east-1:123456789012:function:*"}}
    assert lambda_client.get_function(FunctionName=name)["Code"]["ImageUri"].startswith(f"{uri}@sha256:")
    assert cli("plan", "--detailed-exitcode").returncode == 0
