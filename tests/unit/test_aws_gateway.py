"""The Lambda and ECR gateways against botocore's own Stubber (no network, no patching): the exact
requests they send, and how they read the answers."""

from __future__ import annotations

from typing import Any, Iterator

import json

import boto3
import pytest
from botocore.stub import Stubber

from deployer.aws import Clients
from deployer.ecr_gateway import EcrGateway
from deployer.lambda_config import _observed_config
from deployer.lambda_gateway import LambdaGateway
from deployer.errors import AwsError
from deployer.function_config import ImageConfig, LoggingConfig, ObservedConfig, VpcConfig
from deployer.repository_config import RepositoryConfig, lifecycle_policy, policy_with_pulls, pulling_accounts
from deployer.spec import EcrRepository


@pytest.fixture
def stubbed() -> Iterator[tuple[LambdaGateway, Stubber]]:
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    gateway = LambdaGateway(Clients(session), "us-east-1")
    with Stubber(gateway._client) as stubber:
        yield gateway, stubber


def config(status: str, reason: str | None = None) -> dict[str, Any]:
    configuration: dict[str, Any] = {"FunctionName": "fn", "LastUpdateStatus": status}
    if reason:
        configuration["LastUpdateStatusReason"] = reason
    return {"Configuration": configuration}


def test_wait_polls_until_the_update_succeeds(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    for status in ("InProgress", "InProgress", "Successful"):
        stubber.add_response("get_function", config(status), {"FunctionName": "fn"})
    sleeps: list[float] = []
    gateway.wait_updated("fn", sleeps.append)
    assert sleeps == [2.0, 2.0]
    stubber.assert_no_pending_responses()


def test_wait_fails_fast_with_lambdas_reason(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", config("InProgress"), {"FunctionName": "fn"})
    stubber.add_response("get_function", config("Failed", "The image manifest is not supported"), {"FunctionName": "fn"})
    with pytest.raises(AwsError) as failure:
        gateway.wait_updated("fn", lambda seconds: None)
    assert str(failure.value) == ("function fn: update did not succeed (LastUpdateStatus Failed): "
                                  "The image manifest is not supported")


def test_wait_gives_up_at_its_deadline(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", config("InProgress"), {"FunctionName": "fn"})
    with pytest.raises(AwsError, match=r"update did not succeed \(LastUpdateStatus InProgress\)"):
        gateway.wait_updated("fn", lambda seconds: None, timeout_seconds=0)


def test_access_denied_while_waiting_is_an_aws_error(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("get_function", "AccessDeniedException", "not allowed", 403, expected_params={"FunctionName": "fn"})
    with pytest.raises(AwsError, match="AccessDeniedException: not allowed; the caller lacks this IAM permission"):
        gateway.wait_updated("fn", lambda seconds: None)


def test_values_aws_returns_are_checked_at_the_edge(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    # A hostile or broken endpoint: identifiers that are not one printable line, a digest that
    # is not one, are never shown or acted on. AWS's own words (the reason) are kept for renderers.
    gateway, stubber = stubbed
    stubber.add_response("get_function", {"Configuration": {
        "FunctionName": "fn", "PackageType": "Image", "CodeSha256": "ab\n::error::forged",
        "Architectures": ["arm64", "x86_64\u2028::add-mask::x"], "RevisionId": "r1\n::error::forged",
        "State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReason": "broke\n::error::shown inert",
    }}, {"FunctionName": "fn"})
    state = gateway.get_function("fn")
    assert (state.code_sha256, state.architectures, state.revision_id) == (None, ("arm64",), None)
    assert (state.state, state.last_update_status) == ("Active", "Failed")
    assert state.last_update_reason == "broke\n::error::shown inert"


def test_configuration_is_read_with_lambdas_defaults_where_it_says_nothing(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", {"Configuration": {"FunctionName": "fn", "PackageType": "Image"}}, {"FunctionName": "fn"})
    stubber.add_response("get_function", {"Configuration": {
        "FunctionName": "fn", "Role": "arn:aws:iam::123456789012:role/r", "MemorySize": 1024, "Timeout": 30,
        "EphemeralStorage": {"Size": 2048}, "Description": "finalizes", "Environment": {"Variables": {"MODE": "live"}},
    }, "Concurrency": {"ReservedConcurrentExecutions": 25}, "Tags": {"team": "payments"}}, {"FunctionName": "fn"})
    default_logging = LoggingConfig(format="Text", log_group="/aws/lambda/fn")  # the function's own group
    assert gateway.get_function("fn").config == ObservedConfig(logging=default_logging)
    assert gateway.get_function("fn").config == ObservedConfig(role="arn:aws:iam::123456789012:role/r", memory=1024, timeout=30,
                                                               ephemeral_storage=2048, description="finalizes",
                                                               logging=default_logging,
                                                               environment={"MODE": "live"}, reserved_concurrency=25,
                                                               tags={"team": "payments"})


@pytest.mark.parametrize(("concurrency", "reserved"), [
    ({"ReservedConcurrentExecutions": 0}, 0),  # 0 is a reservation, not none
    ({}, None),
])
def test_reserved_concurrency_is_read_from_getfunctions_concurrency(
        stubbed: tuple[LambdaGateway, Stubber], concurrency: dict[str, Any], reserved: int | None) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", {"Configuration": {"FunctionName": "fn"}, "Concurrency": concurrency},
                         {"FunctionName": "fn"})
    assert gateway.get_function("fn").config.reserved_concurrency == reserved


@pytest.mark.parametrize("hostile", [-1, True, "5", 1 << 40, {"n": 1}])
def test_a_reserved_concurrency_that_is_no_count_lambda_reports_is_read_as_none(hostile: Any) -> None:
    # What botocore's own validation lets through is not checked here: a broken endpoint's answer.
    assert _observed_config({}, {"ReservedConcurrentExecutions": hostile}).reserved_concurrency is None
    assert _observed_config({}, ["not", "a", "mapping"]).reserved_concurrency is None


ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


@pytest.mark.parametrize(("arn", "read"), [
    (ARN, ARN),
    ("arn:aws-cn:lambda:cn-north-1:123456789012:function:fn_2", "arn:aws-cn:lambda:cn-north-1:123456789012:function:fn_2"),
    (ARN + ":$LATEST", None),  # qualified: not what TagResource takes
    ("arn:aws:lambda:us-east-1:123456789012:function:fn\n::error::x", None),
    ("not an arn", None),
])
def test_the_function_arn_is_read_only_when_it_is_one(stubbed: tuple[LambdaGateway, Stubber], arn: str, read: str | None) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", {"Configuration": {"FunctionName": "fn", "FunctionArn": arn}}, {"FunctionName": "fn"})
    assert gateway.get_function("fn").arn == read


def test_tags_lambda_reports_are_kept_bounded_and_only_as_strings() -> None:
    hostile: dict[Any, Any] = {"team": "ops", "k" * 200: "v" * 300, 7: "x", "n": 7}
    assert _observed_config({}, None, hostile).tags == {"team": "ops", "k" * 128: "v" * 256}
    assert _observed_config({}, None, ["team"]).tags == {}


def test_tag_resource_sends_the_arn_and_the_tags(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("tag_resource", {}, {"Resource": ARN, "Tags": {"team": "payments"}})
    stubber.add_client_error("tag_resource", "InvalidParameterValueException", "Tag keys with the aws: prefix are reserved", 400)
    gateway.tag_resource(ARN, {"team": "payments"})
    with pytest.raises(AwsError, match="lambda:TagResource") as refused:
        gateway.tag_resource(ARN, {"aws:x": "y"})
    assert refused.value.code == "InvalidParameterValueException"
    stubber.assert_no_pending_responses()


def test_put_function_concurrency_sends_the_number(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("put_function_concurrency", {"ReservedConcurrentExecutions": 5},
                         {"FunctionName": "fn", "ReservedConcurrentExecutions": 5})
    stubber.add_client_error("put_function_concurrency", "InvalidParameterValueException",
                             "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
                             "below its minimum value of [100].", 400)
    gateway.put_function_concurrency("fn", 5)
    with pytest.raises(AwsError, match="lambda:PutFunctionConcurrency") as refused:
        gateway.put_function_concurrency("fn", 900)
    assert refused.value.code == "InvalidParameterValueException"
    stubber.assert_no_pending_responses()


def test_update_function_configuration_sends_the_request_and_the_revision(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    request = {"MemorySize": 512, "Environment": {"Variables": {"API_KEY": "s3cret"}}}
    stubber.add_response("update_function_configuration", {"FunctionName": "fn", "RevisionId": "rev-2"},
                         {"FunctionName": "fn", "RevisionId": "rev-1", **request})
    stubber.add_response("update_function_configuration", {"FunctionName": "fn"}, {"FunctionName": "fn", "Timeout": 30})
    assert gateway.update_function_configuration("fn", request, "rev-1") == "rev-2"
    assert gateway.update_function_configuration("fn", {"Timeout": 30}, None) is None  # no RevisionId: none sent
    stubber.assert_no_pending_responses()


def test_a_refused_configuration_update_names_the_operation_and_not_the_values(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("update_function_configuration", "PreconditionFailedException", "The Revision Id provided does not match",
                             412)
    with pytest.raises(AwsError) as failure:
        gateway.update_function_configuration("fn", {"Environment": {"Variables": {"API_KEY": "s3cret"}}}, "rev-1")
    assert failure.value.code == "PreconditionFailedException"
    assert "lambda:UpdateFunctionConfiguration" in str(failure.value) and "s3cret" not in str(failure.value)


# -- creating functions -----------------------------------------------------------------------------

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn-repo@sha256:" + "c" * 64
ROLE = "arn:aws:iam::123456789012:role/fn-role"


def test_create_function_sends_an_image_package_with_its_architecture_and_configuration(
        stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    request = {"Role": ROLE, "MemorySize": 512, "Environment": {"Variables": {"API_KEY": "s3cret"}}}
    stubber.add_response("create_function", {"FunctionName": "fn", "RevisionId": "rev-1", "State": "Pending"}, {
        "FunctionName": "fn", "PackageType": "Image", "Code": {"ImageUri": IMAGE}, "Architectures": ["arm64"],
        "Publish": False, **request})
    assert gateway.create_function("fn", IMAGE, "arm64", request) == "rev-1"
    stubber.assert_no_pending_responses()


def test_a_refused_creation_names_the_operation_and_not_the_values(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("create_function", "InvalidParameterValueException",
                             "The role defined for the function cannot be assumed by Lambda.", 400)
    with pytest.raises(AwsError) as failure:
        gateway.create_function("fn", IMAGE, "arm64", {"Role": ROLE, "Environment": {"Variables": {"API_KEY": "s3cret"}}})
    assert failure.value.code == "InvalidParameterValueException"
    assert "lambda:CreateFunction" in str(failure.value) and "function fn" in str(failure.value)
    assert "cannot be assumed by Lambda" in str(failure.value) and "s3cret" not in str(failure.value)


def state(value: str, reason: str | None = None) -> dict[str, Any]:
    configuration: dict[str, Any] = {"FunctionName": "fn", "State": value}
    if reason:
        configuration["StateReason"] = reason
    return {"Configuration": configuration}


def test_wait_active_polls_while_the_function_is_pending(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    for value in ("Pending", "Pending", "Active"):
        stubber.add_response("get_function", state(value), {"FunctionName": "fn"})
    sleeps: list[float] = []
    gateway.wait_active("fn", sleeps.append)
    assert sleeps == [2.0, 2.0]
    stubber.assert_no_pending_responses()


def test_wait_active_fails_fast_on_a_failed_creation_with_its_state_reason(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", state("Pending"), {"FunctionName": "fn"})
    stubber.add_response("get_function", state("Failed", "The image manifest or layer media type is not supported."),
                         {"FunctionName": "fn"})
    with pytest.raises(AwsError) as failure:
        gateway.wait_active("fn", lambda seconds: None)
    assert str(failure.value) == ("function fn: creation did not succeed (State Failed): "
                                  "The image manifest or layer media type is not supported.")
    stubber.assert_no_pending_responses()


def test_wait_active_gives_up_at_its_deadline(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", state("Pending"), {"FunctionName": "fn"})
    with pytest.raises(AwsError, match=r"creation did not succeed \(State Pending\)"):
        gateway.wait_active("fn", lambda seconds: None, timeout_seconds=0)


def test_access_denied_while_waiting_for_active_says_what_it_waited_for(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("get_function", "AccessDeniedException", "not allowed", 403, expected_params={"FunctionName": "fn"})
    with pytest.raises(AwsError) as failure:
        gateway.wait_active("fn", lambda seconds: None)
    assert "lambda:GetFunction (waiting for the function to be Active)" in str(failure.value)
    assert failure.value.code == "AccessDeniedException"


# -- creating repositories --------------------------------------------------------------------------

@pytest.fixture
def ecr_stubbed() -> Iterator[tuple[EcrGateway, Stubber]]:
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    gateway = EcrGateway(Clients(session), "us-east-1")
    with Stubber(gateway._client) as stubber:
        yield gateway, stubber


ACCOUNT = "123456789012"
REPO = EcrRepository(ACCOUNT, "us-east-1", "fn-repo")
REPO_ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/fn-repo"
NAMED = {"registryId": ACCOUNT, "repositoryName": "fn-repo"}
CREATE_REPOSITORY = {**NAMED, "imageTagMutability": "IMMUTABLE",
                     "imageScanningConfiguration": {"scanOnPush": True}, "encryptionConfiguration": {"encryptionType": "AES256"}}
# Only untagged images expire: tagged ones (`src-` content tags) are what functions run, and
# deleting one a function uses puts it in Failed.
LIFECYCLE_POLICY = {"rules": [{"rulePriority": 1, "description": "expire untagged images after 14 days",
                               "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                             "countNumber": 14},
                               "action": {"type": "expire"}}]}


def expect_policy(stubber: Stubber, days: int = 14, account: str = ACCOUNT) -> None:
    stubber.add_response("put_lifecycle_policy", {"repositoryName": "fn-repo"},
                         {"registryId": account, "repositoryName": "fn-repo", "lifecyclePolicyText": lifecycle_policy(days)})


def test_the_lifecycle_policy_expires_only_untagged_images() -> None:
    assert json.loads(lifecycle_policy(14)) == LIFECYCLE_POLICY


def test_create_repository_makes_it_immutable_scanned_encrypted_and_expiring_untagged_images(
        ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    stubber.add_response("create_repository", {"repository": {"repositoryName": "fn-repo"}}, CREATE_REPOSITORY)
    expect_policy(stubber)
    gateway.create_repository(REPO, RepositoryConfig())
    stubber.assert_no_pending_responses()


def test_create_repository_with_declared_settings(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    declared = RepositoryConfig(scan_on_push=False, tag_mutability="MUTABLE", encryption="KMS", kms_key=key, untagged_expiry_days=3,
                                lambda_pull_accounts=("210987654321",), tags={"team": "payments"})
    stubber.add_response("create_repository", {"repository": {"repositoryName": "fn-repo"}}, {
        **NAMED, "imageTagMutability": "MUTABLE", "imageScanningConfiguration": {"scanOnPush": False},
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": key}, "tags": [{"Key": "team", "Value": "payments"}]})
    expect_policy(stubber, 3)
    stubber.add_client_error("get_repository_policy", "RepositoryPolicyNotFoundException", "none", 400, expected_params=NAMED)
    stubber.add_response("set_repository_policy", {}, {**NAMED, "policyText": policy_with_pulls(None, ("210987654321",), "us-east-1")})
    gateway.create_repository(REPO, declared)
    stubber.assert_no_pending_responses()


def test_a_repository_that_exists_already_with_a_lifecycle_policy_is_left_as_it_is(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    stubber.add_client_error("create_repository", "RepositoryAlreadyExistsException",
                             "The repository with name 'fn-repo' already exists", 400, expected_params=CREATE_REPOSITORY)
    stubber.add_response("get_lifecycle_policy", {"lifecyclePolicyText": lifecycle_policy(30)}, NAMED)
    gateway.create_repository(REPO, RepositoryConfig())
    stubber.assert_no_pending_responses()  # no policy put: another function of this apply, or someone else, made it


def test_a_repository_that_exists_without_a_lifecycle_policy_gets_its_settings(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    """Our own creation whose answer was lost: botocore's retry hears AlreadyExists."""
    gateway, stubber = ecr_stubbed
    stubber.add_client_error("create_repository", "RepositoryAlreadyExistsException",
                             "The repository with name 'fn-repo' already exists", 400, expected_params=CREATE_REPOSITORY)
    stubber.add_client_error("get_lifecycle_policy", "LifecyclePolicyNotFoundException", "none", 400, expected_params=NAMED)
    expect_policy(stubber)
    gateway.create_repository(REPO, RepositoryConfig())
    stubber.assert_no_pending_responses()


def test_a_policy_deployer_cannot_read_is_never_rewritten(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    stubber.add_response("get_repository_policy", {"policyText": "[" * 100000}, NAMED)
    with pytest.raises(AwsError, match="deployer will not rewrite it"):
        gateway.configure_repository(REPO, RepositoryConfig(lambda_pull_accounts=("210987654321",)), ("lambda_pull_accounts",))
    stubber.assert_no_pending_responses()  # no set_repository_policy


def test_every_call_names_the_registry_of_the_repositorys_account(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    other = EcrRepository("210987654321", "us-east-1", "fn-repo")
    stubber.add_response("create_repository", {"repository": {"repositoryName": "fn-repo"}}, {**CREATE_REPOSITORY, "registryId": "210987654321"})
    expect_policy(stubber, account="210987654321")
    stubber.add_response("describe_images", {"imageDetails": []},
                         {"registryId": "210987654321", "repositoryName": "fn-repo", "imageIds": [{"imageTag": "src-x"}]})
    gateway.create_repository(other, RepositoryConfig())
    gateway.describe_image(other, "src-x")
    stubber.assert_no_pending_responses()


def test_a_refused_repository_creation_is_an_aws_error_naming_it(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    stubber.add_client_error("create_repository", "AccessDeniedException", "not allowed", 400, expected_params=CREATE_REPOSITORY)
    with pytest.raises(AwsError) as failure:
        gateway.create_repository(REPO, RepositoryConfig())
    assert failure.value.code == "AccessDeniedException"
    assert "ecr:CreateRepository" in str(failure.value) and "repository fn-repo (123456789012, us-east-1)" in str(failure.value)
    stubber.assert_no_pending_responses()  # no policy for a repository that was not made


def test_a_refused_lifecycle_policy_is_an_aws_error(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    stubber.add_response("create_repository", {"repository": {"repositoryName": "fn-repo"}}, CREATE_REPOSITORY)
    stubber.add_client_error("put_lifecycle_policy", "AccessDeniedException", "not allowed", 400)
    with pytest.raises(AwsError, match="ecr:PutLifecyclePolicy"):
        gateway.create_repository(REPO, RepositoryConfig())


def described(**repository: Any) -> dict[str, Any]:
    return {"repositories": [{"repositoryName": "fn-repo", "repositoryArn": REPO_ARN, **repository}]}


def test_observing_reads_only_what_is_managed(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    stubber.add_response("describe_repositories", described(imageTagMutability="MUTABLE", imageScanningConfiguration={"scanOnPush": True},
                                                            encryptionConfiguration={"encryptionType": "AES256"}),
                         {"registryId": ACCOUNT, "repositoryNames": ["fn-repo"]})
    seen = gateway.observe_repository(REPO, RepositoryConfig(scan_on_push=True, tag_mutability="IMMUTABLE"))
    stubber.assert_no_pending_responses()  # no lifecycle, policy or tag read: none of them is declared
    assert (seen.scan_on_push, seen.tag_mutability, seen.encryption, seen.arn) == (True, "MUTABLE", "AES256", REPO_ARN)


def test_observing_lifecycle_policy_and_tags(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    others = {"Sid": "TheirPull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"}, "Action": "ecr:BatchGetImage"}
    policy = json.loads(policy_with_pulls({"Version": "2012-10-17", "Statement": [others]}, ("210987654321",), "us-east-1"))
    stubber.add_response("describe_repositories", described(), {"registryId": ACCOUNT, "repositoryNames": ["fn-repo"]})
    stubber.add_response("get_lifecycle_policy", {"lifecyclePolicyText": lifecycle_policy(30)}, NAMED)
    stubber.add_response("get_repository_policy", {"policyText": json.dumps(policy)}, NAMED)
    stubber.add_response("list_tags_for_resource", {"tags": [{"Key": "team", "Value": "a"}]}, {"resourceArn": REPO_ARN})
    seen = gateway.observe_repository(REPO, RepositoryConfig(untagged_expiry_days=14, lambda_pull_accounts=(), tags={"team": "b"}))
    stubber.assert_no_pending_responses()
    assert (seen.untagged_expiry_days, seen.other_lifecycle, seen.lambda_pull_accounts, dict(seen.tags)) == (
        30, False, ("210987654321",), {"team": "a"})
    assert not seen.scan_on_push and seen.tag_mutability == "(unknown)"  # ECR said nothing of them


def test_another_lifecycle_policy_is_seen_as_such(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    theirs = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2},
                         "action": {"type": "expire"}}]}
    stubber.add_response("describe_repositories", described(), {"registryId": ACCOUNT, "repositoryNames": ["fn-repo"]})
    stubber.add_response("get_lifecycle_policy", {"lifecyclePolicyText": json.dumps(theirs)}, NAMED)
    seen = gateway.observe_repository(REPO, RepositoryConfig(untagged_expiry_days=14))
    assert (seen.untagged_expiry_days, seen.other_lifecycle) == (None, True)


def test_configuring_keeps_the_policy_statements_of_others(ecr_stubbed: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr_stubbed
    others = {"Sid": "TheirPull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"}, "Action": "ecr:BatchGetImage"}
    current = {"Version": "2012-10-17", "Statement": [others]}
    stubber.add_response("put_image_scanning_configuration", {}, {**NAMED, "imageScanningConfiguration": {"scanOnPush": True}})
    stubber.add_response("put_image_tag_mutability", {}, {**NAMED, "imageTagMutability": "IMMUTABLE"})
    expect_policy(stubber, 7)
    stubber.add_response("get_repository_policy", {"policyText": json.dumps(current)}, NAMED)
    stubber.add_response("set_repository_policy", {}, {**NAMED, "policyText": policy_with_pulls(current, ("210987654321",), "us-east-1")})
    stubber.add_response("describe_repositories", described(), {"registryId": ACCOUNT, "repositoryNames": ["fn-repo"]})
    stubber.add_response("tag_resource", {}, {"resourceArn": REPO_ARN, "tags": [{"Key": "team", "Value": "b"}]})
    config = RepositoryConfig(scan_on_push=True, tag_mutability="IMMUTABLE", untagged_expiry_days=7,
                              lambda_pull_accounts=("210987654321",), tags={"team": "b"})
    gateway.configure_repository(REPO, config, ("scan_on_push", "tag_mutability", "untagged_expiry_days", "lambda_pull_accounts", "tags"))
    stubber.assert_no_pending_responses()
    written = json.loads(policy_with_pulls(current, ("210987654321",), "us-east-1"))
    assert written["Statement"][0] == others and pulling_accounts(written, "us-east-1") == ("210987654321",)


# -- image_config, logging and vpc as Lambda reports them ------------------------------------------

def test_image_config_logging_and_vpc_are_read_with_lambdas_defaults_filled(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", {"Configuration": {
        "FunctionName": "fn",
        "ImageConfigResponse": {"ImageConfig": {"Command": ["serve", "--port=80"], "WorkingDirectory": "/app"}},
        "LoggingConfig": {"LogFormat": "JSON", "LogGroup": "/custom/fn"},
        "VpcConfig": {"SubnetIds": ["subnet-0bbbbbbbbbbbbbbbb", "subnet-aaaaaaaa"], "SecurityGroupIds": ["sg-12345678"],
                      "VpcId": "vpc-12345678"},
    }}, {"FunctionName": "fn"})
    config = gateway.get_function("fn").config
    assert config.image_config == ImageConfig(entry_point=(), command=("serve", "--port=80"), working_directory="/app")
    assert config.logging == LoggingConfig("JSON", "/custom/fn", "INFO", "INFO")  # Lambda's levels under JSON
    assert config.vpc == VpcConfig(("subnet-0bbbbbbbbbbbbbbbb", "subnet-aaaaaaaa"), ("sg-12345678",), False)


@pytest.mark.parametrize(("reported", "read"), [
    ({}, LoggingConfig("Text", "/aws/lambda/fn")),
    ({"LogFormat": "", "LogGroup": ""}, LoggingConfig("Text", "/aws/lambda/fn")),  # empty: says nothing
    ({"LogFormat": "Text", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN"}, LoggingConfig("Text", "/aws/lambda/fn")),
    ({"LogFormat": "JSON", "ApplicationLogLevel": "ERROR"}, LoggingConfig("JSON", "/aws/lambda/fn", "ERROR", "INFO")),
])
def test_logging_levels_are_read_under_json_only(reported: dict[str, Any], read: LoggingConfig) -> None:
    assert _observed_config({"LoggingConfig": reported}, name="fn").logging == read


def test_a_vpc_lambda_reports_empty_is_no_vpc() -> None:
    assert _observed_config({"VpcConfig": {"SubnetIds": [], "SecurityGroupIds": [], "VpcId": ""}}).vpc == VpcConfig((), (), False)
    assert _observed_config({}).vpc == VpcConfig((), (), False)
    assert _observed_config({}).image_config == ImageConfig((), (), "")


@pytest.mark.parametrize(("key", "reported"), [
    ("ImageConfigResponse", {"Error": {"ErrorCode": "ImageConfigError", "Message": "could not read the image"}}),
    ("ImageConfigResponse", {"ImageConfig": {"Command": "serve"}}),
    ("ImageConfigResponse", {"ImageConfig": {"EntryPoint": ["/bootstrap", 7]}}),
    ("ImageConfigResponse", {"ImageConfig": {"Command": ["x"] * 1501}}),
    ("ImageConfigResponse", {"ImageConfig": {"WorkingDirectory": "d" * 1001}}),
    ("ImageConfigResponse", ["not", "a", "mapping"]),
    ("LoggingConfig", {"LogFormat": "XML"}),
    ("LoggingConfig", {"LogGroup": "/aws/lambda/fn\n::error::forged"}),
    ("LoggingConfig", {"LogFormat": "JSON", "ApplicationLogLevel": "LOUD"}),
    ("LoggingConfig", {"LogFormat": ["JSON"]}),
    ("LoggingConfig", "Text"),
    ("VpcConfig", {"SubnetIds": ["subnet-zz"], "SecurityGroupIds": ["sg-12345678"]}),
    ("VpcConfig", {"SubnetIds": [f"subnet-{i:08x}" for i in range(17)], "SecurityGroupIds": ["sg-12345678"]}),
    ("VpcConfig", {"SubnetIds": ["subnet-aaaaaaaa"], "SecurityGroupIds": [f"sg-{i:08x}" for i in range(6)]}),
    ("VpcConfig", {"SubnetIds": [], "SecurityGroupIds": [], "Ipv6AllowedForDualStack": "yes"}),
])
def test_a_setting_lambda_reports_malformed_is_unreadable_and_the_others_are_still_read(key: str, reported: Any) -> None:
    # None: equal to no declared value (a plan sets what is declared), never sent back by an update.
    attribute = {"ImageConfigResponse": "image_config", "LoggingConfig": "logging", "VpcConfig": "vpc"}[key]
    observed = _observed_config({key: reported, "MemorySize": 256}, name="fn")
    assert getattr(observed, attribute) is None
    assert observed.memory == 256
    assert all(getattr(observed, other) is not None for other in ("image_config", "logging", "vpc") if other != attribute)
