"""Repository settings, pure: what is compared, what a creation gets, deployer's lifecycle rule and
its statements in a repository policy (exact, and never anyone else's)."""

from __future__ import annotations

import json

from deployer.function_config import FieldChange
from deployer.repository_config import (
    ObservedRepository,
    RepositoryConfig,
    changes,
    creation_fields,
    fixed_at_creation,
    lifecycle_days,
    lifecycle_policy,
    policy_with_pulls,
    pull_statements,
    pulling_accounts,
)

A, B, C = "210987654321", "333333333333", "444444444444"
THEIRS = {"Sid": "TheirRead", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{C}:root"}, "Action": "ecr:DescribeImages"}


def test_nothing_declared_is_nothing_compared() -> None:
    assert changes(RepositoryConfig(), ObservedRepository(scan_on_push=False, tag_mutability="MUTABLE")) == ()
    assert RepositoryConfig().declared == ()


def test_only_declared_settings_differ() -> None:
    seen = ObservedRepository(scan_on_push=False, tag_mutability="MUTABLE", tags={"team": "a", "owner": "x"})
    declared = RepositoryConfig(scan_on_push=True, tags={"team": "b"})
    assert changes(declared, seen) == (FieldChange("repository.scan_on_push", "false", "true"),
                                       FieldChange("repository.tags.team", "a", "b"))


def test_a_creation_lists_every_setting_defaults_filled_even_a_false_one() -> None:
    assert creation_fields(RepositoryConfig(scan_on_push=False, tags={"team": "b"})) == (
        FieldChange("repository.scan_on_push", None, "false"),
        FieldChange("repository.tag_mutability", None, "IMMUTABLE"),
        FieldChange("repository.encryption", None, "AES256"),
        FieldChange("repository.untagged_expiry_days", None, "14"),
        FieldChange("repository.tags.team", None, "b"),
    )


def test_encryption_changes_are_the_ones_ecr_cannot_make() -> None:
    found = changes(RepositoryConfig(encryption="KMS", scan_on_push=True), ObservedRepository(encryption="AES256"))
    assert fixed_at_creation(found) == (FieldChange("repository.encryption", "AES256", "KMS"),)


def test_lifecycle_is_ours_only_when_it_is_our_one_rule() -> None:
    assert lifecycle_days(json.loads(lifecycle_policy(9))) == 9
    reworded = json.loads(lifecycle_policy(9))
    reworded["rules"][0]["description"] = "whatever the console wrote"
    assert lifecycle_days(reworded) == 9
    two_rules = json.loads(lifecycle_policy(9))
    two_rules["rules"].append(two_rules["rules"][0])
    tagged = json.loads(lifecycle_policy(9))
    tagged["rules"][0]["selection"]["tagStatus"] = "any"  # would expire what functions run
    for other in (two_rules, tagged, None, "text", {"rules": [5]}):
        assert lifecycle_days(other) is None
    seen = ObservedRepository(untagged_expiry_days=None, other_lifecycle=True)
    assert changes(RepositoryConfig(untagged_expiry_days=14), seen) == (
        FieldChange("repository.untagged_expiry_days", "(another lifecycle policy)", "14"),)


def test_declared_pull_accounts_are_exact_and_others_statements_are_kept() -> None:
    policy = json.loads(policy_with_pulls({"Version": "2012-10-17", "Statement": [THEIRS]}, (A, B), "us-east-1"))
    assert policy["Statement"][0] == THEIRS and pulling_accounts(policy, "us-east-1") == (A, B)
    assert changes(RepositoryConfig(lambda_pull_accounts=(A,)), ObservedRepository(lambda_pull_accounts=(A, B))) == (
        FieldChange("repository.lambda_pull_accounts", f"{A}, {B}", A),)
    narrowed = json.loads(policy_with_pulls(policy, (A,), "us-east-1"))
    assert narrowed["Statement"][0] == THEIRS and pulling_accounts(narrowed, "us-east-1") == (A,)


def test_only_statements_under_deployers_exact_sids_are_its_own() -> None:
    theirs = {**THEIRS, "Sid": "DeployerLambdaPullers", "Effect": "Deny"}
    policy = json.loads(policy_with_pulls({"Statement": [theirs]}, (A,), "us-east-1"))
    assert theirs in policy["Statement"], "a statement of someone else's whose Sid merely starts alike is kept"
    assert pulling_accounts(policy, "us-east-1") == (A,)
    assert json.loads(policy_with_pulls(policy, (), "us-east-1"))["Statement"] == [theirs]


def test_a_statement_edited_outside_is_not_counted_as_ours() -> None:
    statements = pull_statements(A, "us-east-1")
    statements[1]["Condition"]["StringLike"]["aws:sourceARN"] = "arn:aws:lambda:us-east-1:*:function:*"  # any account's Lambda
    assert pulling_accounts({"Statement": statements}, "us-east-1") == ()
    one_missing = pull_statements(A, "us-east-1")[:1]
    assert pulling_accounts({"Statement": one_missing}, "us-east-1") == ()
    single = {"Statement": {**pull_statements(A, "us-east-1")[0], "Action": "ecr:BatchGetImage"}}
    assert pulling_accounts(single, "us-east-1") == ()


def test_the_china_and_govcloud_partitions_are_named_in_the_statements() -> None:
    for region, arn in (("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("eu-west-1", "aws")):
        principal, service = pull_statements(A, region)
        assert principal["Principal"] == {"AWS": f"arn:{arn}:iam::{A}:root"}
        assert service["Condition"]["StringLike"]["aws:sourceARN"] == f"arn:{arn}:lambda:{region}:{A}:function:*"
