"""adopt: deploy.yaml entries for functions and repositories that exist already (`deployer import`).
PURE: what AWS reported in, a YAML document out.

What is written is what a plan right after compares equal: every value that differs from the
default a plan fills (Lambda's for a function, deployer's creation defaults for a repository) is
written, and nothing else. Environment values are never copied: they are what AWS reports, secrets
by deployer's rules, so each variable becomes a `from_env` reference of the same name, with a
comment saying to set it in CI. A value deploy.yaml cannot express (a lifecycle policy that is not
deployer's one rule, a tag mutability ECR added since) is left out, and said in a comment: it stays
unmanaged, as every key not written.

Every value is foreign (it came from an account): the YAML writer quotes what needs quoting, and
comments hold only words of deployer's own and names that were checked. A text that is not
printable (controls, bidirectional overrides a reviewer would not see) is not written: its key is
left unmanaged, and said so in a comment. Tags under `aws:` are AWS's own (CloudFormation's):
deploy.yaml cannot set them, so they are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from deployer.function_config import (
    DEFAULT_EPHEMERAL_STORAGE,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    DEFAULT_TRACING,
    default_log_group,
)
from deployer.repository_config import (
    DEFAULT_ENCRYPTION,
    DEFAULT_SCAN_ON_PUSH,
    DEFAULT_TAG_MUTABILITY,
    DEFAULT_UNTAGGED_EXPIRY_DAYS,
    TAG_MUTABILITIES,
    ObservedRepository,
)
from deployer.spec import EcrRepository
from deployer.state import FunctionState

DEFAULT_PLATFORM = "linux/arm64"
PLATFORMS = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
# What Lambda accepts as an environment variable's name, and what a shell can export.
_VARIABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
_KMS_KEY = re.compile(r"arn:aws[a-z-]{0,16}:kms:[a-z0-9-]{1,32}:[0-9]{12}:key/[A-Za-z0-9-]{1,128}")


@dataclass(frozen=True)
class Adopted:
    """What AWS holds of one function to import: its state (GetFunction), the repository of its
    image, and that repository's settings (None: not readable, left unmanaged)."""

    name: str
    function: FunctionState
    repository: EcrRepository
    settings: ObservedRepository | None


def image_repository(image_uri: str | None) -> EcrRepository | None:
    """The ECR repository of a function's Code.ImageUri (repo@sha256:..., or repo:tag)."""
    if not image_uri:
        return None
    uri = image_uri.partition("@")[0]
    host, slash, path = uri.partition("/")
    if not slash:
        return None
    name = path.rpartition(":")[0] if ":" in path else path
    return EcrRepository.parse(f"{host}/{name}")


def document(adopted: Sequence[Adopted], region: str, caller_account: str, source: str) -> CommentedMap:
    """A deploy.yaml for `adopted` (functions of `region`), each built from `source` with {name}
    replaced by the function's name."""
    doc = CommentedMap()
    doc["version"] = 1
    doc["defaults"] = CommentedMap(region=region)
    functions = CommentedSeq()
    for one in adopted:
        functions.append(function_entry(one, region, caller_account, source.replace("{name}", one.name)))
    doc["functions"] = functions
    doc.yaml_set_start_comment(
        "Written by 'deployer import' from what AWS holds. Review it, set the variables named in the\n"
        "comments below, then run 'deployer plan': it should show no changes. Keys not written here\n"
        "are not managed: deployer neither compares nor changes them.")
    return doc


def _printable(value: object) -> bool:
    """A value a reviewer sees as it is: no control, format or separator character in any string of it."""
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, (list, tuple)):
        return all(map(_printable, value))
    if isinstance(value, dict):
        return all(_printable(k) and _printable(v) for k, v in value.items())
    return True


def _tags(tags: Any) -> CommentedMap:
    """The tags deploy.yaml can set: not AWS's own (aws:), nor apply's records (deployer:), printable."""
    return CommentedMap(sorted((k, v) for k, v in tags.items()
                               if not k.lower().startswith("aws:") and not k.startswith("deployer:") and _printable((k, v))))


def _unmanaged(entry: CommentedMap, keys: list[str], why: str) -> None:
    if keys:
        entry.yaml_add_eol_comment(f"{', '.join(keys)}: {why}: left unmanaged", "name")


def function_entry(one: Adopted, region: str, caller_account: str, source: str) -> CommentedMap:
    entry = _function_entry(one, region, caller_account, source)
    unprintable = [key for key, value in entry.items() if key != "name" and not _printable(value)]
    for key in unprintable:
        del entry[key]
    _unmanaged(entry, unprintable, "holds characters a reviewer would not see")
    return entry


def _function_entry(one: Adopted, region: str, caller_account: str, source: str) -> CommentedMap:
    fn, config = one.function, one.function.config
    entry = CommentedMap()
    entry["name"] = one.name
    entry["repository"] = repository_entry(one.repository, one.settings, region, caller_account)
    platform = PLATFORMS.get(fn.architectures[0]) if len(fn.architectures) == 1 else None
    if platform and platform != DEFAULT_PLATFORM:
        entry["platform"] = platform
    if config.role:
        entry["role"] = config.role
    for key, value, default in (("memory", config.memory, DEFAULT_MEMORY), ("timeout", config.timeout, DEFAULT_TIMEOUT),
                                ("ephemeral_storage", config.ephemeral_storage, DEFAULT_EPHEMERAL_STORAGE),
                                ("description", config.description, ""), ("tracing", config.tracing, DEFAULT_TRACING)):
        if value != default:
            entry[key] = value
    image = config.image_config
    if image is not None:
        written = CommentedMap()
        if image.entry_point:
            written["entry_point"] = list(image.entry_point)
        if image.command:
            written["command"] = list(image.command)
        if image.working_directory:
            written["working_directory"] = image.working_directory
        if written:
            entry["image_config"] = written
    logs = config.logging
    if logs is not None:
        written = CommentedMap()
        if logs.format and logs.format != DEFAULT_LOG_FORMAT:
            written["format"] = logs.format
        if logs.log_group and logs.log_group != default_log_group(one.name):
            written["log_group"] = logs.log_group
        for level in ("application_log_level", "system_log_level"):
            value = getattr(logs, level)
            if logs.format == "JSON" and value and value != DEFAULT_LOG_LEVEL:
                written[level] = value
        if written:
            entry["logging"] = written
    vpc = config.vpc
    if vpc is not None and (vpc.subnet_ids or vpc.security_group_ids):
        written = CommentedMap(subnet_ids=list(vpc.subnet_ids or ()), security_group_ids=list(vpc.security_group_ids or ()))
        if vpc.ipv6_allowed_for_dual_stack:
            written["ipv6_allowed_for_dual_stack"] = True
        entry["vpc"] = written
    environment = _environment(config.environment)
    if environment:
        entry["environment"] = environment
    if config.reserved_concurrency is not None:
        entry["reserved_concurrency"] = config.reserved_concurrency
    if _tags(config.tags):
        entry["tags"] = _tags(config.tags)
    entry["build"] = CommentedMap(source=source)
    return entry


def _environment(variables: Any) -> CommentedMap:
    """Each variable as a `from_env` reference of its own name: Lambda's values are never copied."""
    written = CommentedMap()
    for name in sorted(variables):
        if not _VARIABLE.fullmatch(name):
            continue  # a name Lambda would not have accepted: nothing to refer to it by
        written[name] = CommentedMap(from_env=name)
        written.yaml_add_eol_comment(f"the value in Lambda is not copied: set {name} in CI (from a secret)", name)
    return written


def repository_entry(repository: EcrRepository, settings: ObservedRepository | None, region: str,
                     caller_account: str) -> str | CommentedMap:
    """The repository's name (or URI, when another account's or region's), with the settings that
    differ from what deployer gives a repository it creates."""
    named = repository.name if (repository.account, repository.region) == (caller_account, region) else repository.uri
    if settings is None:
        return named
    written = CommentedMap(name=named)
    if settings.scan_on_push != DEFAULT_SCAN_ON_PUSH:
        written["scan_on_push"] = settings.scan_on_push
    if settings.tag_mutability != DEFAULT_TAG_MUTABILITY and settings.tag_mutability in TAG_MUTABILITIES:
        written["tag_mutability"] = settings.tag_mutability
    if settings.encryption != DEFAULT_ENCRYPTION and settings.encryption == "KMS":
        written["encryption"] = "KMS"
        if settings.kms_key and _KMS_KEY.fullmatch(settings.kms_key):
            written["kms_key"] = settings.kms_key
    if settings.untagged_expiry_days is not None and settings.untagged_expiry_days != DEFAULT_UNTAGGED_EXPIRY_DAYS:
        written["untagged_expiry_days"] = settings.untagged_expiry_days
    if settings.lambda_pull_accounts:
        written["lambda_pull_accounts"] = list(settings.lambda_pull_accounts)
    if _tags(settings.tags):
        written["tags"] = _tags(settings.tags)
    notes = []
    if settings.other_lifecycle:
        notes.append("its lifecycle policy is not deployer's one rule: left unmanaged")
    if settings.tag_mutability not in TAG_MUTABILITIES:
        notes.append("its tag mutability is one deploy.yaml cannot say: left unmanaged")
    if settings.encryption not in ("AES256", "KMS"):
        notes.append("its encryption is one deploy.yaml cannot say: left unmanaged")
    if settings.kms_key and not _KMS_KEY.fullmatch(settings.kms_key):
        notes.append("its KMS key is not a key ARN deploy.yaml can hold: left unmanaged")
    if notes:
        written.yaml_add_eol_comment("; ".join(notes), "name")
    return written if len(written) > 1 or notes else named
