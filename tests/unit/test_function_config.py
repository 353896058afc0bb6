"""Declared function configuration against what Lambda reports: the field changes, masking of
secrets, resolving `from_env`, and the UpdateFunctionConfiguration request.

The diff cases are data (CASES): a desired configuration (resolved), what Lambda reports, and the
changes the planner must list.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from types import MappingProxyType
from typing import Any

import pytest

from deployer.errors import DeployerError
from deployer.function_config import (
    KEYS,
    EnvValue,
    FieldChange,
    FunctionConfig,
    ObservedConfig,
    changes,
    concurrency_request,
    creation_fields,
    creation_request,
    secret_hash,
    tag_request,
    update_request,
)
from deployer.spec import EcrRepository
from deployer.state import Desired

KEY = bytes(range(32))
ROLE = "arn:aws:iam::123456789012:role/fn-role"
OTHER_ROLE = "arn:aws:iam::123456789012:role/other-role"
TOKEN = re.compile(r"\(sensitive value [0-9]+\)")


def hashed(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def env(**values: str | tuple[str, str]) -> MappingProxyType[str, EnvValue]:
    """A resolved environment: a str is a literal, (variable, value) a from_env secret."""
    return MappingProxyType({name: EnvValue(value=v) if isinstance(v, str) else EnvValue(value=v[1], from_env=v[0])
                             for name, v in values.items()})


# What Lambda holds when every key was set outside deploy.yaml (the console, Terraform).
SET_OUTSIDE = ObservedConfig(role=OTHER_ROLE, memory=1024, timeout=60, ephemeral_storage=2048, description="from the console",
                             environment={"OUTSIDE": "aws-value-outside"}, reserved_concurrency=50,
                             tags={"team": "ops", "set-outside": "by terraform"})

# name: (desired, what Lambda reports, the changes)
CASES: dict[str, tuple[FunctionConfig, ObservedConfig, tuple[FieldChange, ...]]] = {
    # Lambda's defaults, declared, against a function that reports nothing of them: settled.
    "memory 128 is Lambda's default": (FunctionConfig(memory=128), ObservedConfig(), ()),
    "timeout 3 is Lambda's default": (FunctionConfig(timeout=3), ObservedConfig(), ()),
    "ephemeral storage 512 is Lambda's default": (FunctionConfig(ephemeral_storage=512), ObservedConfig(), ()),
    "tracing PassThrough is Lambda's default": (FunctionConfig(tracing="PassThrough"), ObservedConfig(), ()),
    "tracing": (FunctionConfig(tracing="Active"), ObservedConfig(), (FieldChange("tracing", "PassThrough", "Active"),)),
    "tracing set outside, not declared": (FunctionConfig(memory=128), ObservedConfig(tracing="Active"), ()),
    "an empty description is Lambda's default": (FunctionConfig(description=""), ObservedConfig(), ()),
    "an empty environment is Lambda's default": (FunctionConfig(environment=env()), ObservedConfig(), ()),
    "every default declared at once": (
        FunctionConfig(memory=128, timeout=3, ephemeral_storage=512, description="", environment=env()), ObservedConfig(), ()),
    # Reserved concurrency: Lambda's default is none reserved, which deploy.yaml cannot declare
    # (only a number is managed); 0 is a reservation (of nothing: the function is throttled).
    "reserved concurrency reserved": (FunctionConfig(reserved_concurrency=10), ObservedConfig(),
                                      (FieldChange("reserved_concurrency", None, "10"),)),
    "reserved concurrency changed": (FunctionConfig(reserved_concurrency=10), SET_OUTSIDE,
                                     (FieldChange("reserved_concurrency", "50", "10"),)),
    "reserved concurrency equal": (FunctionConfig(reserved_concurrency=50), SET_OUTSIDE, ()),
    "reserved concurrency 0 is not none reserved": (FunctionConfig(reserved_concurrency=0), ObservedConfig(),
                                                    (FieldChange("reserved_concurrency", None, "0"),)),
    "reserved concurrency 0 equal": (FunctionConfig(reserved_concurrency=0), ObservedConfig(reserved_concurrency=0), ()),
    # Tags: only the keys declared are managed; values are not secrets (both sides shown).
    "tag added": (FunctionConfig(tags={"cost-center": "42"}), SET_OUTSIDE, (FieldChange("tags.cost-center", None, "42"),)),
    "tag changed, the tag set outside left alone": (FunctionConfig(tags={"team": "payments"}), SET_OUTSIDE,
                                                    (FieldChange("tags.team", "ops", "payments"),)),
    "tag equal": (FunctionConfig(tags={"team": "ops"}), SET_OUTSIDE, ()),
    "no tags declared: none managed, none removed": (FunctionConfig(tags={}), SET_OUTSIDE, ()),
    "tag changes sorted by key": (FunctionConfig(tags={"z": "1", "a b:c": "2"}), ObservedConfig(),
                                  (FieldChange("tags.a b:c", None, "2"), FieldChange("tags.z", None, "1"))),
    "an empty tag value is a value": (FunctionConfig(tags={"team": ""}), SET_OUTSIDE, (FieldChange("tags.team", "ops", ""),)),
    # Keys left out of deploy.yaml are not managed, whatever Lambda holds.
    "nothing declared, everything set outside": (FunctionConfig(), SET_OUTSIDE, ()),
    "only memory declared, equal": (FunctionConfig(memory=1024), SET_OUTSIDE, ()),
    # Each key's change, shown as before -> after.
    "memory": (FunctionConfig(memory=512), ObservedConfig(), (FieldChange("memory", "128", "512"),)),
    "timeout": (FunctionConfig(timeout=30), SET_OUTSIDE, (FieldChange("timeout", "60", "30"),)),
    "ephemeral storage": (FunctionConfig(ephemeral_storage=10240), ObservedConfig(),
                          (FieldChange("ephemeral_storage", "512", "10240"),)),
    "description set": (FunctionConfig(description="finalizes jobs"), ObservedConfig(),
                        (FieldChange("description", "", "finalizes jobs"),)),
    "description emptied": (FunctionConfig(description=""), SET_OUTSIDE, (FieldChange("description", "from the console", ""),)),
    "role where Lambda reports none": (FunctionConfig(role=ROLE), ObservedConfig(), (FieldChange("role", None, ROLE),)),
    "role replaced": (FunctionConfig(role=ROLE), SET_OUTSIDE, (FieldChange("role", OTHER_ROLE, ROLE),)),
    "several keys, in the order of KEYS": (
        FunctionConfig(timeout=10, memory=256, role=ROLE, description="d"), ObservedConfig(role=ROLE),
        (FieldChange("memory", "128", "256"), FieldChange("timeout", "3", "10"), FieldChange("description", "", "d"))),
    # Environment: a literal is shown (deploy.yaml shows it already), Lambda's values never are.
    "literal added": (FunctionConfig(environment=env(LOG_LEVEL="debug")), ObservedConfig(),
                      (FieldChange("environment.LOG_LEVEL", None, "debug"),)),
    "literal changed: Lambda's value masked": (
        FunctionConfig(environment=env(LOG_LEVEL="debug")), ObservedConfig(environment={"LOG_LEVEL": "aws-value-info"}),
        (FieldChange("environment.LOG_LEVEL", "(sensitive value 1)", "debug"),)),
    "literal equal": (FunctionConfig(environment=env(LOG_LEVEL="debug")), ObservedConfig(environment={"LOG_LEVEL": "debug"}), ()),
    "secret added: masked, with its keyed hash": (
        FunctionConfig(environment=env(API_KEY=("CI_API_KEY", "s3cret-value"))), ObservedConfig(),
        (FieldChange("environment.API_KEY", None, "(sensitive value 1)", hashed("s3cret-value")),)),
    "secret changed": (
        FunctionConfig(environment=env(API_KEY=("CI_API_KEY", "s3cret-value"))),
        ObservedConfig(environment={"API_KEY": "aws-value-old-secret"}),
        (FieldChange("environment.API_KEY", "(sensitive value 1)", "(sensitive value 2)", hashed("s3cret-value")),)),
    "secret equal to what Lambda has": (
        FunctionConfig(environment=env(API_KEY=("CI_API_KEY", "s3cret-value"))), ObservedConfig(environment={"API_KEY": "s3cret-value"}),
        ()),
    "equal hidden values share a token": (
        FunctionConfig(environment=env(A=("CI_SHARED", "s3cret-shared"), B=("CI_SHARED", "s3cret-shared"), C="plain")),
        ObservedConfig(environment={"A": "aws-value-same", "B": "aws-value-same", "C": "aws-value-same"}),
        (FieldChange("environment.A", "(sensitive value 1)", "(sensitive value 2)", hashed("s3cret-shared")),
         FieldChange("environment.B", "(sensitive value 1)", "(sensitive value 2)", hashed("s3cret-shared")),
         FieldChange("environment.C", "(sensitive value 1)", "plain"))),
    "a variable set outside and not declared is removed": (
        FunctionConfig(environment=env(KEEP="1")), ObservedConfig(environment={"KEEP": "1", "OUTSIDE": "aws-value-outside"}),
        (FieldChange("environment.OUTSIDE", "(sensitive value 1)", None),)),
    "an empty environment declared removes every variable": (
        FunctionConfig(environment=env()), ObservedConfig(environment={"B": "aws-value-b", "A": "aws-value-a"}),
        (FieldChange("environment.A", "(sensitive value 1)", None), FieldChange("environment.B", "(sensitive value 2)", None))),
    "environment changes sorted by name, after the other keys": (
        FunctionConfig(environment=env(Z="z", A="a"), memory=256), ObservedConfig(),
        (FieldChange("memory", "128", "256"), FieldChange("environment.A", None, "a"), FieldChange("environment.Z", None, "z"))),
}


@pytest.mark.parametrize("case", CASES)
def test_changes(case: str) -> None:
    desired, observed, expected = CASES[case]
    assert changes(desired, observed, KEY) == expected


@pytest.mark.parametrize("case", CASES)
def test_no_value_lambda_holds_in_its_environment_is_ever_shown(case: str) -> None:
    desired, observed, _ = CASES[case]
    for change in changes(desired, observed, KEY):
        if change.field.startswith("environment."):
            assert change.before is None or TOKEN.fullmatch(change.before), change
        shown = f"{change.before} {change.after}"
        assert not any(value in shown for value in observed.environment.values() if value.startswith("aws-value")), change


@pytest.mark.parametrize("case", CASES)
def test_no_secret_is_shown_and_only_secrets_carry_a_hash(case: str) -> None:
    desired, observed, _ = CASES[case]
    secrets = {f"environment.{name}": v.value for name, v in (desired.environment or {}).items() if v.secret}
    for change in changes(desired, observed, KEY):
        assert all(value not in f"{change.before} {change.after}" for value in secrets.values() if value), change
        if change.field in secrets and change.after is not None:
            assert TOKEN.fullmatch(change.after) and change.after_hash == hashed(secrets[change.field] or "")
        else:
            assert change.after_hash is None, change


def test_the_hash_is_hmac_sha256_under_the_plans_key() -> None:
    assert secret_hash(KEY, "s3cret-value") == hashed("s3cret-value")
    assert secret_hash(b"another key" * 3, "s3cret-value") != hashed("s3cret-value")


def test_changes_needs_a_resolved_configuration() -> None:
    with pytest.raises(ValueError, match="resolved"):
        changes(FunctionConfig(environment=MappingProxyType({"A": EnvValue(from_env="CI_A")})), ObservedConfig(), KEY)


def test_declared_lists_the_keys_written_in_key_order() -> None:
    assert FunctionConfig().declared == ()
    assert FunctionConfig(environment=env(), timeout=3, role=ROLE).declared == ("role", "timeout", "environment")
    every = FunctionConfig(role=ROLE, memory=128, timeout=3, ephemeral_storage=512, description="", tracing="PassThrough",
                           environment=env(), reserved_concurrency=0, tags={})
    assert every.declared == KEYS


# -- resolve: from_env values read from the environment -------------------------------------------

UNRESOLVED = FunctionConfig(memory=256, environment=MappingProxyType({
    "API_KEY": EnvValue(from_env="CI_API_KEY"), "DB_PASSWORD": EnvValue(from_env="CI_DB_PASSWORD"), "MODE": EnvValue("live")}))


def test_resolve_reads_every_from_env_variable() -> None:
    resolved = UNRESOLVED.resolve({"CI_API_KEY": "key-123", "CI_DB_PASSWORD": "pw-456", "UNRELATED": "x"})
    assert resolved.resolved and not UNRESOLVED.resolved
    assert {name: (v.value, v.from_env) for name, v in (resolved.environment or {}).items()} == {
        "API_KEY": ("key-123", "CI_API_KEY"), "DB_PASSWORD": ("pw-456", "CI_DB_PASSWORD"), "MODE": ("live", None)}
    assert resolved.memory == 256


def test_a_missing_from_env_variable_is_an_error_naming_it_and_no_value() -> None:
    with pytest.raises(DeployerError) as caught:
        UNRESOLVED.resolve({"CI_API_KEY": "key-123"})
    message = str(caught.value)
    assert "CI_DB_PASSWORD, which is not set" in message  # said once for all functions it stops (observe groups them)
    assert "key-123" not in message and "CI_API_KEY" not in message


def test_an_empty_from_env_variable_is_a_value() -> None:
    resolved = UNRESOLVED.resolve({"CI_API_KEY": "", "CI_DB_PASSWORD": "pw"})
    assert resolved.environment is not None and resolved.environment["API_KEY"].value == ""


def test_a_configuration_without_environment_resolves_to_itself() -> None:
    config = FunctionConfig(memory=256)
    assert config.resolve({}) is config


def test_the_repr_of_a_resolved_secret_does_not_hold_its_value() -> None:
    resolved = UNRESOLVED.resolve({"CI_API_KEY": "key-123", "CI_DB_PASSWORD": "pw-456"})
    assert resolved.environment is not None
    secret = resolved.environment["API_KEY"]
    assert "key-123" not in repr(secret) and "key-123" not in str(secret) and "CI_API_KEY" in repr(secret)
    desired = Desired(name="fn", region="us-east-1", repository=EcrRepository("123456789012", "us-east-1", "fn-repo"),
                      content_tag="src-" + "a" * 40, source_digest="sha256:" + "a" * 64, architecture="arm64",
                      platform="linux/arm64", spec_file="deploy.yaml", config=resolved)
    for holder in (resolved, desired):  # what a traceback or a debug log would print
        assert "key-123" not in repr(holder) and "pw-456" not in repr(holder)
    assert "live" in repr(resolved.environment["MODE"]), "a literal is shown: deploy.yaml shows it"


# -- update_request: what UpdateFunctionConfiguration is sent -------------------------------------

FULL = FunctionConfig(role=ROLE, memory=512, timeout=30, ephemeral_storage=1024, description="d", tracing="Active",
                      environment=env(API_KEY=("CI_API_KEY", "key-123"), MODE="live"), reserved_concurrency=20,
                      tags=MappingProxyType({"team": "payments", "cost-center": "42"}))


@pytest.mark.parametrize(("fields", "request_"), [
    ((), {}),
    (("memory",), {"MemorySize": 512}),
    (("role",), {"Role": ROLE}),
    (("timeout",), {"Timeout": 30}),
    (("ephemeral_storage",), {"EphemeralStorage": {"Size": 1024}}),
    (("tracing",), {"TracingConfig": {"Mode": "Active"}}),
    (("description",), {"Description": "d"}),
    (("reserved_concurrency",), {}),  # PutFunctionConcurrency's (concurrency_request)
    (("tags.team",), {}),  # TagResource's (tag_request)
    # Lambda replaces its variables as a set: one changed variable sends them all.
    (("environment.MODE",), {"Environment": {"Variables": {"API_KEY": "key-123", "MODE": "live"}}}),
    (("environment.API_KEY", "environment.OUTSIDE"), {"Environment": {"Variables": {"API_KEY": "key-123", "MODE": "live"}}}),
    (("memory", "timeout", "environment.MODE"),
     {"MemorySize": 512, "Timeout": 30, "Environment": {"Variables": {"API_KEY": "key-123", "MODE": "live"}}}),
    (("role", "memory", "timeout", "ephemeral_storage", "description", "environment.MODE"),
     {"Role": ROLE, "MemorySize": 512, "Timeout": 30, "EphemeralStorage": {"Size": 1024}, "Description": "d",
      "Environment": {"Variables": {"API_KEY": "key-123", "MODE": "live"}}}),
])
def test_update_request_holds_exactly_the_changed_keys(fields: tuple[str, ...], request_: dict[str, object]) -> None:
    changed = tuple(FieldChange(name, "before", "after") for name in fields)
    assert update_request(FULL, changed) == request_


def test_update_request_of_an_emptied_environment_sends_no_variables() -> None:
    config = FunctionConfig(environment=env())
    changed = changes(config, ObservedConfig(environment={"OUTSIDE": "x"}), KEY)
    assert update_request(config, changed) == {"Environment": {"Variables": {}}}


def test_the_request_from_the_changes_makes_lambda_hold_the_declared_values() -> None:
    """Applying the request to what Lambda has leaves no change: an apply followed by a plan settles."""
    observed = ObservedConfig(role=OTHER_ROLE, environment={"OUTSIDE": "x", "MODE": "test"}, tags={"team": "ops", "kept": "k"})
    request: Any = update_request(FULL, changes(FULL, observed, KEY))
    after = ObservedConfig(role=request["Role"], memory=request["MemorySize"], timeout=request["Timeout"],
                           ephemeral_storage=request["EphemeralStorage"]["Size"], description=request["Description"],
                           tracing=request["TracingConfig"]["Mode"], environment=request["Environment"]["Variables"],
                           reserved_concurrency=concurrency_request(FULL, changes(FULL, observed, KEY)),
                           tags={**observed.tags, **(tag_request(FULL, changes(FULL, observed, KEY)) or {})})
    assert changes(FULL, after, KEY) == ()


@pytest.mark.parametrize(("fields", "expected"), [
    ((), None),
    (("memory", "reserved_concurrency"), None),
    (("tags.team",), {"team": "payments"}),  # only the changed tags: TagResource leaves the others
    (("tags.team", "tags.cost-center"), {"team": "payments", "cost-center": "42"}),
])
def test_tag_request_holds_the_changed_tags(fields: tuple[str, ...], expected: dict[str, str] | None) -> None:
    assert tag_request(FULL, tuple(FieldChange(name, None, "after") for name in fields)) == expected


def test_a_creation_request_carries_the_declared_tags() -> None:
    config = FunctionConfig(role=ROLE, memory=256, tags={"team": "payments"})
    assert creation_request(config, creation_fields(config, KEY)) == {"Role": ROLE, "MemorySize": 256,
                                                                       "Tags": {"team": "payments"}}


@pytest.mark.parametrize(("config", "fields", "expected"), [
    (FULL, ("reserved_concurrency",), 20),
    (FULL, ("memory", "environment.MODE"), None),  # not changed: no PutFunctionConcurrency
    (FunctionConfig(reserved_concurrency=0), ("reserved_concurrency",), 0),
])
def test_concurrency_request_is_the_declared_number_when_it_changed(
        config: FunctionConfig, fields: tuple[str, ...], expected: int | None) -> None:
    assert concurrency_request(config, tuple(FieldChange(name, None, "after") for name in fields)) == expected


def test_a_creation_request_has_no_concurrency_parameter() -> None:
    assert creation_request(FunctionConfig(role=ROLE, reserved_concurrency=3),
                            creation_fields(FunctionConfig(role=ROLE, reserved_concurrency=3), KEY)) == {"Role": ROLE}


def test_the_secrets_key_is_the_plans_salt_keyed_by_deployer_plan_key_when_set() -> None:
    from deployer.app import secrets_key

    salt = bytes(range(32))
    assert secrets_key(salt, {}) == salt
    keyed = secrets_key(salt, {"DEPLOYER_PLAN_KEY": "ci-secret"})
    assert keyed != salt and keyed == secrets_key(salt, {"DEPLOYER_PLAN_KEY": "ci-secret"})
    assert keyed != secrets_key(salt, {"DEPLOYER_PLAN_KEY": "another"})
