"""`deployer import`'s document, pure: Lambda's and deployer's defaults left out, environment values
never copied, hostile values written so that they read back as themselves."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML

from deployer.adopt import Adopted, document, image_repository
from deployer.app import _yaml_text
from deployer.function_config import ImageConfig, LoggingConfig, ObservedConfig, VpcConfig
from deployer.repository_config import ObservedRepository
from deployer.spec import EcrRepository
from deployer.state import FunctionState

ACCOUNT = "123456789012"
REPO = EcrRepository(ACCOUNT, "us-east-1", "team/fn")


def adopted(config: ObservedConfig, settings: ObservedRepository | None = None, arch: str = "arm64",
            repository: EcrRepository = REPO) -> Adopted:
    state = FunctionState(exists=True, package_type="Image", architectures=(arch,), config=config)
    return Adopted("fn", state, repository, settings)


def written(*functions: Adopted) -> tuple[str, dict[str, Any]]:
    text = _yaml_text(document(functions, "us-east-1", ACCOUNT, "functions/{name}"))
    return text, YAML(typ="safe").load(io.StringIO(text))


def test_defaults_are_left_out() -> None:
    text, data = written(adopted(ObservedConfig(role="arn:aws:iam::123456789012:role/r", logging=LoggingConfig("Text", "/aws/lambda/fn"))))
    assert data == {"version": 1, "defaults": {"region": "us-east-1"},
                    "functions": [{"name": "fn", "repository": "team/fn", "role": "arn:aws:iam::123456789012:role/r",
                                   "build": {"source": "functions/fn"}}]}
    assert text.startswith("# Written by 'deployer import'")


def test_every_key_that_differs_is_written() -> None:
    config = ObservedConfig(
        role="arn:aws:iam::123456789012:role/r", memory=512, timeout=30, ephemeral_storage=1024, tracing="Active",
        description="- line: {one} & 'two' # not a comment",
        image_config=ImageConfig(("/bin/app",), ("--flag",), ""),
        logging=LoggingConfig("JSON", "/custom/group", "DEBUG", "INFO"),
        vpc=VpcConfig(("subnet-b", "subnet-a"), ("sg-1",), False),
        environment={"API_KEY": "s3cret-value", "bad name": "x"}, reserved_concurrency=0, tags={"team": "a: b"})
    text, data = written(adopted(config, arch="x86_64"))
    [entry] = data["functions"]
    assert entry["platform"] == "linux/amd64"
    assert (entry["memory"], entry["timeout"], entry["ephemeral_storage"], entry["tracing"]) == (512, 30, 1024, "Active")
    assert entry["description"] == "- line: {one} & 'two' # not a comment", "read back as itself"
    assert entry["image_config"] == {"entry_point": ["/bin/app"], "command": ["--flag"]}
    assert entry["logging"] == {"format": "JSON", "log_group": "/custom/group", "application_log_level": "DEBUG"}
    assert entry["vpc"] == {"subnet_ids": ["subnet-a", "subnet-b"], "security_group_ids": ["sg-1"]}
    assert entry["environment"] == {"API_KEY": {"from_env": "API_KEY"}}, "values never copied; an unusable name skipped"
    assert "s3cret-value" not in text
    assert "# the value in Lambda is not copied: set API_KEY in CI (from a secret)" in text
    assert (entry["reserved_concurrency"], entry["tags"]) == (0, {"team": "a: b"})


def test_repository_settings_that_differ_from_deployers_creation_defaults() -> None:
    settings = ObservedRepository(scan_on_push=True, tag_mutability="IMMUTABLE", encryption="AES256", untagged_expiry_days=14)
    assert written(adopted(ObservedConfig(), settings))[1]["functions"][0]["repository"] == "team/fn"
    key = "arn:aws:kms:us-east-1:123456789012:key/abc-1"
    settings = ObservedRepository(scan_on_push=False, tag_mutability="MUTABLE", encryption="KMS", kms_key=key, untagged_expiry_days=3,
                                  lambda_pull_accounts=("210987654321",), tags={"team": "a"})
    assert written(adopted(ObservedConfig(), settings))[1]["functions"][0]["repository"] == {
        "name": "team/fn", "scan_on_push": False, "tag_mutability": "MUTABLE", "encryption": "KMS", "kms_key": key,
        "untagged_expiry_days": 3, "lambda_pull_accounts": ["210987654321"], "tags": {"team": "a"}}


def test_what_deploy_yaml_cannot_say_is_left_unmanaged_with_a_comment() -> None:
    settings = ObservedRepository(scan_on_push=True, tag_mutability="IMMUTABLE_WITH_EXCLUSION", other_lifecycle=True)
    text, data = written(adopted(ObservedConfig(), settings))
    assert data["functions"][0]["repository"] == {"name": "team/fn"}
    assert "its lifecycle policy is not deployer's one rule: left unmanaged" in text
    assert "its tag mutability is one deploy.yaml cannot say: left unmanaged" in text


def test_another_accounts_repository_is_written_as_its_uri() -> None:
    other = EcrRepository("210987654321", "us-east-1", "shared")
    assert written(adopted(ObservedConfig(), repository=other))[1]["functions"][0]["repository"] == other.uri


def test_the_repository_of_an_image_uri() -> None:
    digest = "sha256:" + "a" * 64
    assert image_repository(f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/team/fn@{digest}") == REPO
    assert image_repository(f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/team/fn:src-1") == REPO
    for foreign in (None, "", "docker.io/library/alpine:3", "fn", f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.cn/fn:1"):
        assert image_repository(foreign) is None


def test_aws_tags_and_what_a_reviewer_would_not_see_are_left_out() -> None:
    config = ObservedConfig(role="arn:aws:iam::123456789012:role/r", description="pay \u202eusd", memory=256,
                            tags={"aws:cloudformation:stack-name": "s", "team": "a", "x\u0085y": "z"})
    settings = ObservedRepository(scan_on_push=True, tag_mutability="IMMUTABLE", tags={"aws:cloudformation:logical-id": "Repo"},
                                  encryption="KMS_DSSE")
    text, data = written(adopted(config, settings))
    [entry] = data["functions"]
    assert "description" not in entry and entry["memory"] == 256
    assert "description: holds characters a reviewer would not see: left unmanaged" in text
    assert entry["tags"] == {"team": "a"}
    assert entry["repository"] == {"name": "team/fn"}
    assert "its encryption is one deploy.yaml cannot say: left unmanaged" in text
