"""Declared function configuration against what Lambda reports: the field changes, masking of
secrets, resolving `from_env`, and the UpdateFunctionConfiguration request.

The diff cases are data (CASES): a desired configuration (resolved), what Lambda reports, and the
changes the planner must list.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from deployer.lambda_config import _observed_config
from deployer.errors import DeployerError
from deployer.function_config import (
    KEYS,
    SETTINGS,
    EnvValue,
    FieldChange,
    FunctionConfig,
    ImageConfig,
    LoggingConfig,
    ObservedConfig,
    VpcConfig,
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


SUBNET_A, SUBNET_B = "subnet-0aaaaaaaaaaaaaaaa", "subnet-bbbbbbbb"
SG_1, SG_2 = "sg-11111111", "sg-0222222222222222f"
DEFAULT_GROUP = "/aws/lambda/fn"
# What Lambda reports of a function created without image config, logging or VPC (the gateway fills these).
PLAIN = ObservedConfig(logging=LoggingConfig("Text", DEFAULT_GROUP))

# What Lambda holds when every key was set outside deploy.yaml (the console, Terraform).
SET_OUTSIDE = ObservedConfig(role=OTHER_ROLE, memory=1024, timeout=60, ephemeral_storage=2048, description="from the console",
                             image_config=ImageConfig(("/entry",), ("serve",), "/app"),
                             logging=LoggingConfig("JSON", "/shared/logs", "DEBUG", "WARN"),
                             vpc=VpcConfig((SUBNET_A,), (SG_1,), True),
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
    # image_config, logging, vpc: Lambda's defaults filled on both sides; each declared sub-key compared on its own.
    "image config: the image's own, declared": (FunctionConfig(image_config=ImageConfig((), (), "")), PLAIN, ()),
    "logging: Text and the function's own group, declared": (
        FunctionConfig(logging=LoggingConfig("Text", DEFAULT_GROUP)), PLAIN, ()),
    "logging: INFO levels under JSON are Lambda's default": (
        FunctionConfig(logging=LoggingConfig("JSON", None, "INFO", "INFO")),
        replace(PLAIN, logging=LoggingConfig("JSON", DEFAULT_GROUP, "INFO", "INFO")), ()),
    "vpc: two empty lists are no VPC": (FunctionConfig(vpc=VpcConfig((), ())), PLAIN, ()),
    "vpc: no dual-stack IPv6 is Lambda's default": (FunctionConfig(vpc=VpcConfig((), (), False)), PLAIN, ()),
    "image config command set": (FunctionConfig(image_config=ImageConfig(command=("serve", "--port=8080"))), PLAIN,
                                 (FieldChange("image_config.command", "[]", '["serve", "--port=8080"]'),)),
    "image config working directory set": (FunctionConfig(image_config=ImageConfig(working_directory="/app")), PLAIN,
                                           (FieldChange("image_config.working_directory", '""', "/app"),)),
    "image config back to the image's own": (
        FunctionConfig(image_config=ImageConfig(entry_point=(), working_directory="")), SET_OUTSIDE,
        (FieldChange("image_config.entry_point", '["/entry"]', "[]"), FieldChange("image_config.working_directory", "/app", '""'))),
    "image config sub-keys not declared are left alone": (FunctionConfig(image_config=ImageConfig(command=("serve",))), SET_OUTSIDE, ()),
    "logging format": (FunctionConfig(logging=LoggingConfig(format="JSON")), PLAIN, (FieldChange("logging.format", "Text", "JSON"),)),
    "logging: a level where Text had none": (
        FunctionConfig(logging=LoggingConfig(format="JSON", application_log_level="DEBUG")), PLAIN,
        (FieldChange("logging.format", "Text", "JSON"), FieldChange("logging.application_log_level", None, "DEBUG"))),
    "logging: back to Text, the levels set outside not declared": (
        FunctionConfig(logging=LoggingConfig(format="Text")), SET_OUTSIDE, (FieldChange("logging.format", "JSON", "Text"),)),
    "logging: the log group": (FunctionConfig(logging=LoggingConfig(log_group="/shared/logs")), PLAIN,
                               (FieldChange("logging.log_group", DEFAULT_GROUP, "/shared/logs"),)),
    "logging: levels changed, the group set outside left alone": (
        FunctionConfig(logging=LoggingConfig("JSON", None, "INFO", "WARN")), SET_OUTSIDE,
        (FieldChange("logging.application_log_level", "DEBUG", "INFO"),)),
    "vpc set": (FunctionConfig(vpc=VpcConfig((SUBNET_A, SUBNET_B), (SG_2, SG_1))), PLAIN,
                (FieldChange("vpc.subnet_ids", "[]", f'["{SUBNET_A}", "{SUBNET_B}"]'),
                 FieldChange("vpc.security_group_ids", "[]", f'["{SG_2}", "{SG_1}"]'))),
    "vpc equal": (FunctionConfig(vpc=VpcConfig((SUBNET_A,), (SG_1,))), SET_OUTSIDE, ()),
    "vpc: a subnet added": (FunctionConfig(vpc=VpcConfig((SUBNET_A, SUBNET_B), (SG_1,))), SET_OUTSIDE,
                            (FieldChange("vpc.subnet_ids", f'["{SUBNET_A}"]', f'["{SUBNET_A}", "{SUBNET_B}"]'),)),
    "vpc left": (FunctionConfig(vpc=VpcConfig((), ())), SET_OUTSIDE,
                 (FieldChange("vpc.subnet_ids", f'["{SUBNET_A}"]', "[]"), FieldChange("vpc.security_group_ids", f'["{SG_1}"]', "[]"))),
    "vpc dual-stack IPv6 declared": (FunctionConfig(vpc=VpcConfig((SUBNET_A,), (SG_1,), False)), SET_OUTSIDE,
                                     (FieldChange("vpc.ipv6_allowed_for_dual_stack", "true", "false"),)),
    "what Lambda reports unreadably equals no declared value": (
        FunctionConfig(image_config=ImageConfig(command=()), logging=LoggingConfig(format="Text"), vpc=VpcConfig((), ())),
        ObservedConfig(image_config=None, logging=None, vpc=None),
        (FieldChange("image_config.command", "(unknown)", "[]"), FieldChange("logging.format", "(unknown)", "Text"),
         FieldChange("vpc.subnet_ids", "(unknown)", "[]"), FieldChange("vpc.security_group_ids", "(unknown)", "[]"))),
    "settings after tracing and before the environment": (
        FunctionConfig(environment=env(A="a"), vpc=VpcConfig((SUBNET_B,), (SG_1,)), tracing="Active",
                       logging=LoggingConfig(format="JSON"), image_config=ImageConfig(command=("x",))), PLAIN,
        (FieldChange("tracing", "PassThrough", "Active"), FieldChange("image_config.command", "[]", '["x"]'),
         FieldChange("logging.format", "Text", "JSON"), FieldChange("vpc.subnet_ids", "[]", f'["{SUBNET_B}"]'),
         FieldChange("vpc.security_group_ids", "[]", f'["{SG_1}"]'), FieldChange("environment.A", None, "a"))),
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
                           image_config=ImageConfig(), logging=LoggingConfig(), vpc=VpcConfig((), ()),
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


# -- image_config, logging, vpc: Lambda replaces each object, so the sub-keys not declared go back as it holds them --

def changed(*fields: str) -> tuple[FieldChange, ...]:
    return tuple(FieldChange(name, "before", "after") for name in fields)


@pytest.mark.parametrize(("config", "observed", "request_"), [
    # the entry point and working directory set outside are sent back with the declared command
    (FunctionConfig(image_config=ImageConfig(command=("serve", "--debug"))), SET_OUTSIDE,
     {"ImageConfig": {"EntryPoint": ["/entry"], "Command": ["serve", "--debug"], "WorkingDirectory": "/app"}}),
    # an empty sub-key is the image's own: left out of the object that replaces Lambda's
    (FunctionConfig(image_config=ImageConfig(entry_point=(), command=(), working_directory="")), SET_OUTSIDE, {"ImageConfig": {}}),
    # back to Text: the levels set outside are not sent (Lambda refuses a level under Text), the group is kept
    (FunctionConfig(logging=LoggingConfig(format="Text")), SET_OUTSIDE, {"LoggingConfig": {"LogFormat": "Text", "LogGroup": "/shared/logs"}}),
    # to JSON with one level: the other is left to Lambda's default (under Text none applied)
    (FunctionConfig(logging=LoggingConfig("JSON", None, "DEBUG")), PLAIN,
     {"LoggingConfig": {"LogFormat": "JSON", "LogGroup": DEFAULT_GROUP, "ApplicationLogLevel": "DEBUG"}}),
    (FunctionConfig(logging=LoggingConfig(log_group="/new/group")), SET_OUTSIDE,
     {"LoggingConfig": {"LogFormat": "JSON", "LogGroup": "/new/group", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN"}}),
    # dual-stack IPv6 set outside is kept with the declared ids; leaving the VPC takes it away
    (FunctionConfig(vpc=VpcConfig((SUBNET_A, SUBNET_B), (SG_1,))), SET_OUTSIDE,
     {"VpcConfig": {"SubnetIds": [SUBNET_A, SUBNET_B], "SecurityGroupIds": [SG_1], "Ipv6AllowedForDualStack": True}}),
    (FunctionConfig(vpc=VpcConfig((), ())), SET_OUTSIDE, {"VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}}),
    (FunctionConfig(vpc=VpcConfig((SUBNET_A,), (SG_1,), False)), SET_OUTSIDE,
     {"VpcConfig": {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [SG_1], "Ipv6AllowedForDualStack": False}}),
])
def test_update_request_sends_the_declared_sub_keys_and_the_others_as_lambda_holds_them(
        config: FunctionConfig, observed: ObservedConfig, request_: dict[str, object]) -> None:
    assert update_request(config, changes(config, observed, KEY), observed) == request_


@pytest.mark.parametrize("config", [
    FunctionConfig(image_config=ImageConfig(command=("serve",), working_directory="/srv")),
    FunctionConfig(image_config=ImageConfig(entry_point=(), command=(), working_directory="")),
    FunctionConfig(logging=LoggingConfig(format="Text")),
    FunctionConfig(logging=LoggingConfig("JSON", "/team/logs", "ERROR")),
    FunctionConfig(logging=LoggingConfig(log_group="/team/logs")),
    FunctionConfig(vpc=VpcConfig((SUBNET_B, SUBNET_A), (SG_2,))),
    FunctionConfig(vpc=VpcConfig((), ())),
    FunctionConfig(vpc=VpcConfig((SUBNET_A,), (SG_1,), False)),
])
@pytest.mark.parametrize("before", [PLAIN, SET_OUTSIDE], ids=["plain", "set outside"])
def test_after_the_update_lambda_holds_the_declared_values_and_keeps_the_rest(config: FunctionConfig, before: ObservedConfig) -> None:
    """Lambda replaces each object with the one sent, filling its defaults (what the gateway reads):
    a plan that follows shows no change, and every sub-key not declared is what it was."""
    request: Any = update_request(config, changes(config, before, KEY), before)
    reported = {"ImageConfigResponse": {"ImageConfig": request["ImageConfig"]}} if "ImageConfig" in request else {}
    reported |= {key: request[key] for key in ("LoggingConfig", "VpcConfig") if key in request}
    now = _observed_config(reported, name="fn")
    after = replace(before, **{key: getattr(now, key) for key in ("image_config", "logging", "vpc")
                               if getattr(config, key) is not None})
    assert changes(config, after, KEY) == ()
    for key, names in SETTINGS.items():
        declared, held, was = getattr(config, key), getattr(after, key), getattr(before, key)
        for name in names:
            if declared is not None and getattr(declared, name) is not None:
                continue
            expected = getattr(was, name)
            if key == "logging" and name.endswith("_level"):  # none under Text; under JSON, Lambda's default if none was
                expected = None if held.format == "Text" else expected or "INFO"
            if name == "ipv6_allowed_for_dual_stack" and not held.subnet_ids:  # it leaves with the VPC
                expected = False
            assert getattr(held, name) == expected, (key, name)


def test_a_function_created_gets_only_the_declared_sub_keys() -> None:
    config = FunctionConfig(role=ROLE, image_config=ImageConfig(command=("serve",), working_directory=""),
                            logging=LoggingConfig(format="JSON", system_log_level="WARN"), vpc=VpcConfig((SUBNET_A,), (SG_1,)))
    fields = creation_fields(config, KEY)
    assert fields == (FieldChange("role", None, ROLE), FieldChange("image_config.command", None, '["serve"]'),
                      FieldChange("image_config.working_directory", None, '""'), FieldChange("logging.format", None, "JSON"),
                      FieldChange("logging.system_log_level", None, "WARN"), FieldChange("vpc.subnet_ids", None, f'["{SUBNET_A}"]'),
                      FieldChange("vpc.security_group_ids", None, f'["{SG_1}"]'))
    assert creation_request(config, fields) == {
        "Role": ROLE, "ImageConfig": {"Command": ["serve"]}, "LoggingConfig": {"LogFormat": "JSON", "SystemLogLevel": "WARN"},
        "VpcConfig": {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [SG_1]}}


def test_a_setting_not_changed_is_not_sent() -> None:
    config = FunctionConfig(memory=256, image_config=ImageConfig(command=("serve",)), logging=LoggingConfig(format="JSON"),
                            vpc=VpcConfig((SUBNET_A,), (SG_1,)))
    assert update_request(config, changed("memory"), SET_OUTSIDE) == {"MemorySize": 256}


def test_sub_keys_lambda_reported_unreadably_are_never_reset_silently() -> None:
    unreadable = ObservedConfig(image_config=None, logging=None, vpc=None)
    partial = FunctionConfig(logging=LoggingConfig(format="JSON"))
    with pytest.raises(DeployerError, match=r"what Lambda reports of logging could not be read, so its sub-keys not declared "
                                            r"\(log_group, application_log_level, system_log_level\) cannot be kept"):
        update_request(partial, changes(partial, unreadable, KEY), unreadable)
    whole = FunctionConfig(image_config=ImageConfig((), ("serve",), ""), vpc=VpcConfig((SUBNET_A,), (SG_1,), False))
    assert update_request(whole, changes(whole, unreadable, KEY), unreadable) == {
        "ImageConfig": {"Command": ["serve"]},
        "VpcConfig": {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [SG_1], "Ipv6AllowedForDualStack": False}}
