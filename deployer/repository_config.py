"""repository_config: an ECR repository's settings as deploy.yaml declares them, as ECR reports
them, and the field-level changes between the two. PURE: no AWS, no environment, no disk.

As for functions (deployer.function_config), only the settings written in deploy.yaml are managed
on a repository that exists: one left out is neither compared nor changed. A repository deployer
creates gets every setting, the secure defaults (CREATION_DEFAULTS) filling what is not declared.

- `encryption` and `kms_key` are fixed when ECR creates a repository: a difference cannot be
  applied, and the plan blocks the function with what to do (ENCRYPTION_KEYS).
- `untagged_expiry_days` makes deployer own the repository's lifecycle policy: one rule that
  expires untagged images. It never expires a tagged image: the `src-` content tags are what
  functions run, and only a reference-aware prune may remove them.
- `lambda_pull_accounts` are the accounts whose Lambda may pull the repository's images: for each,
  the two statements AWS documents for cross-account images (the account's principals may fetch
  layers; the Lambda service may, for that account's functions), under Sids of deployer's own
  (PULL_SID). Statements of anyone else in the repository policy are kept as they are. Declared
  only: a function in another account than its repository's does not make deployer read, let
  alone write, the owner's policy (the owner may grant the pull in a form of their own, and the
  caller may not read it); its owner declares the account.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from deployer.function_config import FieldChange

# What deployer gives a repository it creates, for the settings deploy.yaml does not declare.
DEFAULT_SCAN_ON_PUSH = True
DEFAULT_TAG_MUTABILITY = "IMMUTABLE"  # a content tag names one source: it never needs a second push
DEFAULT_ENCRYPTION = "AES256"
DEFAULT_UNTAGGED_EXPIRY_DAYS = 14
MAX_EXPIRY_DAYS = 3650  # the schema's bound: a longer rule is not one deploy.yaml can write

TAG_MUTABILITIES = ("IMMUTABLE", "MUTABLE")
ENCRYPTIONS = ("AES256", "KMS")

# The managed settings, in the order plans list them; each is a RepositoryConfig field.
KEYS = ("scan_on_push", "tag_mutability", "encryption", "kms_key", "untagged_expiry_days", "lambda_pull_accounts", "tags")
# Fixed at creation: a change is refused by ECR, so it blocks the function instead.
ENCRYPTION_KEYS = ("encryption", "kms_key")
# A change's field: `repository.<key>` (`repository.tags.<tag key>` for a tag).
FIELD_PREFIX = "repository."

# The Sids of the statements deployer owns in a repository policy: exactly these, for an account.
PULL_SID = re.compile(r"DeployerLambdaPull(?:Service)?([0-9]{12})")
PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


@dataclass(frozen=True)
class RepositoryConfig:
    """The settings deploy.yaml declares for a repository; None: not declared, not managed.
    `kms_key` is a KMS key ARN (what ECR reports back), only with `encryption: KMS`;
    `lambda_pull_accounts` is sorted."""

    scan_on_push: bool | None = None
    tag_mutability: str | None = None
    encryption: str | None = None
    kms_key: str | None = None
    untagged_expiry_days: int | None = None
    lambda_pull_accounts: tuple[str, ...] | None = None
    tags: Mapping[str, str] | None = None

    @property
    def declared(self) -> tuple[str, ...]:
        return tuple(key for key in KEYS if getattr(self, key) is not None)

    def for_creation(self) -> RepositoryConfig:
        """What a repository created from this declaration gets: the defaults where nothing is declared."""
        return replace(
            self,
            scan_on_push=DEFAULT_SCAN_ON_PUSH if self.scan_on_push is None else self.scan_on_push,
            tag_mutability=self.tag_mutability or DEFAULT_TAG_MUTABILITY,
            encryption=self.encryption or DEFAULT_ENCRYPTION,
            untagged_expiry_days=self.untagged_expiry_days or DEFAULT_UNTAGGED_EXPIRY_DAYS,
        )


@dataclass(frozen=True)
class ObservedRepository:
    """What ECR reports of a repository's settings. `untagged_expiry_days` is None when its
    lifecycle policy is not deployer's one rule; `other_lifecycle` then says whether it has
    another one. `lambda_pull_accounts` are the accounts deployer's statements allow, exactly
    as deployer writes them. `arn` is what TagResource names (None when ECR gave none usable)."""

    arn: str | None = None
    scan_on_push: bool = False  # ECR's own default
    tag_mutability: str = "MUTABLE"
    encryption: str = DEFAULT_ENCRYPTION
    kms_key: str | None = None
    untagged_expiry_days: int | None = None
    other_lifecycle: bool = False
    lambda_pull_accounts: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


def changes(desired: RepositoryConfig, observed: ObservedRepository) -> tuple[FieldChange, ...]:
    """The declared settings ECR does not have, in KEYS order (tags sorted by key)."""
    out: list[FieldChange] = []
    for name in desired.declared:
        if name == "tags":
            out += [FieldChange(f"{FIELD_PREFIX}tags.{key}", observed.tags.get(key), value)
                    for key, value in sorted((desired.tags or {}).items()) if observed.tags.get(key) != value]
        elif name == "untagged_expiry_days":
            if desired.untagged_expiry_days != observed.untagged_expiry_days:
                before = (str(observed.untagged_expiry_days) if observed.untagged_expiry_days is not None
                          else "(another lifecycle policy)" if observed.other_lifecycle else None)
                out.append(FieldChange(f"{FIELD_PREFIX}untagged_expiry_days", before, str(desired.untagged_expiry_days)))
        else:
            want, have = getattr(desired, name), getattr(observed, name)
            if want != have:
                out.append(FieldChange(FIELD_PREFIX + name, shown(have), shown(want)))
    return tuple(out)


def creation_fields(desired: RepositoryConfig) -> tuple[FieldChange, ...]:
    """What a repository created from `desired` is given: every setting, as additions."""
    created = desired.for_creation()
    out: list[FieldChange] = []
    for name in KEYS:
        value = created.lambda_pull_accounts or None if name == "lambda_pull_accounts" else getattr(created, name)
        if name == "tags":
            out += [FieldChange(f"{FIELD_PREFIX}tags.{key}", None, tag) for key, tag in sorted((created.tags or {}).items())]
        elif value is not None:
            out.append(FieldChange(FIELD_PREFIX + name, None, shown(value)))
    return tuple(out)


def shown(value: Any) -> str | None:
    """A setting as plans show it: true/false, a list as comma-separated values, None as absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(none)"
    return str(value)


def changed_keys(changed: tuple[FieldChange, ...]) -> tuple[str, ...]:
    """The settings (KEYS) that `changed` touches, in order."""
    return tuple(dict.fromkeys(c.field.removeprefix(FIELD_PREFIX).partition(".")[0] for c in changed))


def fixed_at_creation(changed: tuple[FieldChange, ...]) -> tuple[FieldChange, ...]:
    """The changes among `changed` that ECR cannot make on an existing repository."""
    return tuple(c for c in changed if c.field.removeprefix(FIELD_PREFIX) in ENCRYPTION_KEYS)


def lifecycle_policy(days: int) -> str:
    """deployer's lifecycle policy: expire untagged images `days` after their push; tagged ones stay."""
    return json.dumps({"rules": [{"rulePriority": 1, "description": f"expire untagged images after {days} days",
                                  "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                                "countNumber": days},
                                  "action": {"type": "expire"}}]}, sort_keys=True)


def lifecycle_days(policy: Any) -> int | None:
    """The days of deployer's own lifecycle policy, or None when `policy` (parsed JSON) is another one."""
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list) or len(policy["rules"]) != 1:
        return None
    days = (policy["rules"][0].get("selection") or {}).get("countNumber") if isinstance(policy["rules"][0], dict) else None
    if type(days) is not int or not 1 <= days <= MAX_EXPIRY_DAYS:
        return None
    return days if json.loads(lifecycle_policy(days)) == _without_description(policy) else None


def _without_description(policy: dict[str, Any]) -> dict[str, Any]:
    """ECR keeps a rule's description as given: ours is compared apart from its wording."""
    rule = dict(policy["rules"][0])
    rule["description"] = f"expire untagged images after {rule.get('selection', {}).get('countNumber')} days"
    return {**policy, "rules": [rule]}


def partition(region: str) -> str:
    """The partition of `region`, as ARNs name it: China and GovCloud have their own."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def pull_statements(account: str, region: str) -> list[dict[str, Any]]:
    """The two statements AWS documents for a Lambda function of `account` pulling an image from a
    repository of another account (Lambda developer guide, "Amazon ECR permissions", cross-account)."""
    arn = partition(region)
    return [
        {"Sid": f"DeployerLambdaPull{account}", "Effect": "Allow", "Principal": {"AWS": f"arn:{arn}:iam::{account}:root"},
         "Action": PULL_ACTIONS},
        {"Sid": f"DeployerLambdaPullService{account}", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
         "Action": PULL_ACTIONS,
         "Condition": {"StringLike": {"aws:sourceARN": f"arn:{arn}:lambda:{region}:{account}:function:*"}}},
    ]


def pulling_accounts(policy: Any, region: str) -> tuple[str, ...]:
    """The accounts for which `policy` (parsed JSON) holds both of deployer's statements exactly."""
    ours: dict[str, dict[str, Any]] = {s["Sid"]: s for s in _statements(policy) if _ours(s)}
    accounts = {match[1] for match in map(PULL_SID.fullmatch, ours) if match}
    return tuple(sorted(a for a in accounts if all(_same(ours.get(want["Sid"]), want) for want in pull_statements(a, region))))


def policy_with_pulls(policy: Any, accounts: tuple[str, ...], region: str) -> str:
    """`policy` (parsed JSON, or None: the repository has none) with deployer's statements for
    exactly `accounts`; every other statement, and the policy's other keys, kept as they are."""
    base = dict(policy) if isinstance(policy, dict) else {"Version": "2012-10-17"}
    kept = [s for s in _statements(policy) if not _ours(s)]
    base["Statement"] = kept + [statement for account in accounts for statement in pull_statements(account, region)]
    return json.dumps(base, sort_keys=True)


def _ours(statement: dict[str, Any]) -> bool:
    return isinstance(statement.get("Sid"), str) and PULL_SID.fullmatch(statement["Sid"]) is not None


def _statements(policy: Any) -> list[dict[str, Any]]:
    statements = policy.get("Statement") if isinstance(policy, dict) else None
    if isinstance(statements, dict):  # IAM allows a single statement without the list
        statements = [statements]
    return [s for s in statements or () if isinstance(s, dict)]


def _same(have: Any, want: dict[str, Any]) -> bool:
    """Equal as IAM reads them: a one-element list is the same as the element alone."""
    return isinstance(have, dict) and _normal(have) == _normal(want)


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        return items[0] if len(items) == 1 else sorted(items, key=json.dumps)
    return value
