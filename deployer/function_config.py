"""function_config: a function's configuration as deploy.yaml declares it, as Lambda reports it,
and the field-level changes between the two. PURE: no AWS, no environment, no disk.

Only the keys written in deploy.yaml are managed (`FunctionConfig`: None = not declared): a key
left out is neither compared nor changed, so a function can be shared with Terraform or the
console. Lambda's own defaults are filled on the observed side (`ObservedConfig`), so a declared
`memory: 128` against a function that reports nothing is no change, and an apply followed by a
plan always settles.

`image_config`, `logging` and `vpc` are mappings managed sub-key by sub-key (SETTINGS): only the
sub-keys written are compared, each its own change (`logging.format`). Lambda replaces each of
these objects whole, so an update sends the sub-keys not written as Lambda holds them now (read
again at apply, under the plan's RevisionId): a sub-key left out is kept, never reset.

Keys outside UpdateFunctionConfiguration (SEPARATE_KEYS) have requests of their own:
`reserved_concurrency` (PutFunctionConcurrency) and `tags` (TagResource; CreateFunction takes them).
`tags` manages only the tag keys declared: a tag set outside under another key is left alone.

Secrets: an environment value that is not a literal of deploy.yaml (one `from_env`, and every
value Lambda reports) is never shown: `changes` gives it a masked token, equal values sharing a
token within a function as lambroll's --mask does, and a keyed hash (HMAC-SHA256 with the plan's
key) of a desired secret, so that a saved plan can be checked at apply without holding it. A
literal written in deploy.yaml is shown: the pull request shows it already.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Mapping, TypeVar, Union

from deployer.errors import DeployerError

# Lambda's defaults for what it reports nothing of (or what a function created without the key has).
DEFAULT_MEMORY = 128
DEFAULT_TIMEOUT = 3
DEFAULT_EPHEMERAL_STORAGE = 512
DEFAULT_TRACING = "PassThrough"
TRACING_MODES = ("Active", "PassThrough")
DEFAULT_LOG_FORMAT = "Text"
LOG_FORMATS = ("Text", "JSON")
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
DEFAULT_LOG_LEVEL = "INFO"  # both levels', under the JSON format; under Text no level applies
# How a value Lambda reported and deployer could not read is shown: it equals no declared value.
UNKNOWN = "(unknown)"

# The managed keys, in the order plans list them; each is a FunctionConfig field.
KEYS = ("role", "memory", "timeout", "ephemeral_storage", "description", "tracing", "image_config", "logging", "vpc",
        "environment", "reserved_concurrency", "tags")
# The keys UpdateFunctionConfiguration does not set: each has its own call (run_function.configure).
SEPARATE_KEYS = ("reserved_concurrency", "tags")


@dataclass(frozen=True)
class EnvValue:
    """An environment variable's value as deploy.yaml gives it: a literal (`value`, `from_env`
    None), or the CI environment's variable `from_env`, whose `value` is None until resolved at
    plan time (deployer.observe) and is a secret: never shown, never saved."""

    value: str | None = None
    from_env: str | None = None

    @property
    def secret(self) -> bool:
        return self.from_env is not None

    def __repr__(self) -> str:  # a dataclass repr would print a resolved secret
        return f"EnvValue(from_env={self.from_env!r})" if self.secret else f"EnvValue({self.value!r})"


def default_log_group(function: str) -> str:
    """The log group Lambda sends a function's logs to unless told otherwise."""
    return f"/aws/lambda/{function}"


@dataclass(frozen=True)
class ImageConfig:
    """Lambda's ImageConfig: what replaces the image's ENTRYPOINT, CMD and WORKDIR; empty (`()`,
    `""`) is the image's own. Declared, None is a sub-key not written: not managed. Observed,
    every sub-key is filled (Lambda's defaults where it says nothing)."""

    entry_point: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    working_directory: str | None = None


@dataclass(frozen=True)
class LoggingConfig:
    """Lambda's LoggingConfig. Declared, None is a sub-key not written; a level is written only with
    `format: JSON` (deployer.load refuses it otherwise, as Lambda refuses a level under Text).
    Observed, the format and log group are filled (Text, default_log_group), and so are the levels
    under JSON (DEFAULT_LOG_LEVEL); under Text they are None: no level applies."""

    format: str | None = None
    log_group: str | None = None
    application_log_level: str | None = None
    system_log_level: str | None = None


@dataclass(frozen=True)
class VpcConfig:
    """Lambda's VpcConfig, the ids sorted and each once whatever order they come in: they are sets
    (Lambda keeps no order), compared and shown in one order. Declared, None is a sub-key not
    written (the ids always are: the schema requires both). Observed, filled: no VPC is two empty
    tuples, and dual-stack IPv6 is off unless Lambda says otherwise."""

    subnet_ids: tuple[str, ...] | None = None
    security_group_ids: tuple[str, ...] | None = None
    ipv6_allowed_for_dual_stack: bool | None = None

    def __post_init__(self) -> None:
        for name in ("subnet_ids", "security_group_ids"):
            ids = getattr(self, name)
            if ids is not None:
                object.__setattr__(self, name, tuple(sorted(set(ids))))


Settings = Union[ImageConfig, LoggingConfig, VpcConfig]
S = TypeVar("S", ImageConfig, LoggingConfig, VpcConfig)
# The keys managed sub-key by sub-key, and their sub-keys in the order plans list them.
SETTINGS: dict[str, tuple[str, ...]] = {key: tuple(f.name for f in fields(kind)) for key, kind in
                                        (("image_config", ImageConfig), ("logging", LoggingConfig), ("vpc", VpcConfig))}
NO_IMAGE_CONFIG = ImageConfig(entry_point=(), command=(), working_directory="")
NO_VPC = VpcConfig(subnet_ids=(), security_group_ids=(), ipv6_allowed_for_dual_stack=False)


@dataclass(frozen=True)
class FunctionConfig:
    """The configuration keys deploy.yaml declares for a function; None: not declared, not managed."""

    role: str | None = None
    memory: int | None = None
    timeout: int | None = None
    ephemeral_storage: int | None = None
    tracing: str | None = None  # X-Ray tracing mode: Active or PassThrough
    description: str | None = None
    image_config: ImageConfig | None = None
    logging: LoggingConfig | None = None
    vpc: VpcConfig | None = None
    environment: Mapping[str, EnvValue] | None = None
    reserved_concurrency: int | None = None
    tags: Mapping[str, str] | None = None  # only these tag keys are managed: others on the function are left alone

    @property
    def declared(self) -> tuple[str, ...]:
        return tuple(key for key in KEYS if getattr(self, key) is not None)

    def resolve(self, env: Mapping[str, str]) -> FunctionConfig:
        """The same configuration with every `from_env` value read from `env`; a variable that
        is not set is an error naming it (a secret must never silently become empty)."""
        if not self.environment:
            return self
        missing = [v.from_env for v in self.environment.values() if v.from_env is not None and v.from_env not in env]
        if missing:
            raise DeployerError(f"environment values come from {', '.join(sorted(set(missing)))}, which is not set; "
                                "export it (in CI, from a secret) before plan and apply")
        resolved = {key: replace(v, value=env[v.from_env]) if v.from_env is not None else v for key, v in self.environment.items()}
        return replace(self, environment=MappingProxyType(resolved))

    @property
    def resolved(self) -> bool:
        return all(v.value is not None for v in (self.environment or {}).values())


@dataclass(frozen=True)
class ObservedConfig:
    """What Lambda reports of a function's configuration, its defaults filled where it reports
    nothing. Environment values are Lambda's: secrets, never shown. A SETTINGS key is None when
    what Lambda reports of it could not be read (deployer.aws): it then equals no declared value.
    The log group is filled by the gateway, which knows the function's name (None without it)."""

    role: str | None = None
    memory: int = DEFAULT_MEMORY
    timeout: int = DEFAULT_TIMEOUT
    ephemeral_storage: int = DEFAULT_EPHEMERAL_STORAGE
    tracing: str = DEFAULT_TRACING
    description: str = ""
    image_config: ImageConfig | None = NO_IMAGE_CONFIG
    logging: LoggingConfig | None = LoggingConfig(format=DEFAULT_LOG_FORMAT)
    vpc: VpcConfig | None = NO_VPC
    environment: Mapping[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None  # Lambda's default: none reserved (the account's unreserved pool)
    tags: Mapping[str, str] = field(default_factory=dict)  # every tag of the function, whoever set it


@dataclass(frozen=True)
class FieldChange:
    """One managed key whose value changes: `field` is deploy.yaml's name (`memory`,
    `environment.API_KEY`); `before` and `after` are shown forms, None when absent; a secret's
    shown form is a masked token such as `(sensitive value 1)`, and `after_hash` is then the
    keyed hash of the desired secret (hex), else None."""

    field: str
    before: str | None
    after: str | None
    after_hash: str | None = None


def secret_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


class _Tokens:
    """Masked tokens for hidden values, numbered by first appearance: equal values share one."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def __call__(self, value: str) -> str:
        number = self._numbers.setdefault(value, len(self._numbers) + 1)
        return f"(sensitive value {number})"


def changes(desired: FunctionConfig, observed: ObservedConfig, key: bytes) -> tuple[FieldChange, ...]:
    """The declared keys whose value Lambda does not have, in KEYS order (environment keys
    sorted, SETTINGS sub-keys in their order). `desired` must be resolved. Numbers are shown as
    written, role and description as text; environment values as described in the module
    docstring; sub-keys as _shown says."""
    if not desired.resolved:
        raise ValueError("changes() needs a resolved configuration")
    out: list[FieldChange] = []
    for name in desired.declared:
        if name == "environment":
            out.extend(_environment_changes(desired.environment or {}, observed.environment, key))
            continue
        if name == "tags":
            out.extend(_tag_changes(desired.tags or {}, observed.tags))
            continue
        if name in SETTINGS:
            out.extend(_settings_changes(name, getattr(desired, name), getattr(observed, name)))
            continue
        want, have = getattr(desired, name), getattr(observed, name)
        if want != have:
            out.append(FieldChange(name, None if have is None else str(have), str(want)))
    return tuple(out)


def _environment_changes(desired: Mapping[str, EnvValue], observed: Mapping[str, str], key: bytes) -> list[FieldChange]:
    tokens = _Tokens()
    out = []
    for name in sorted(set(desired) | set(observed)):
        want, have = desired.get(name), observed.get(name)
        if want is not None and want.value == have:
            continue
        before = None if have is None else tokens(have)
        if want is None:
            out.append(FieldChange(f"environment.{name}", before, None))
        elif want.secret:
            assert want.value is not None
            out.append(FieldChange(f"environment.{name}", before, tokens(want.value), secret_hash(key, want.value)))
        else:
            out.append(FieldChange(f"environment.{name}", before, want.value))
    return out


def _tag_changes(desired: Mapping[str, str], observed: Mapping[str, str]) -> list[FieldChange]:
    """The declared tags Lambda does not have, by key; a tag not declared is not managed (never
    removed). Tag values are not secrets: both sides are shown."""
    return [FieldChange(f"tags.{name}", observed.get(name), value)
            for name, value in sorted(desired.items()) if observed.get(name) != value]


def _settings_changes(key: str, desired: Settings, observed: Settings | None) -> list[FieldChange]:
    """The declared sub-keys of `key` whose value Lambda does not have; every declared one when
    what Lambda reports of the key could not be read (`observed` None, shown as UNKNOWN)."""
    out = []
    for name in SETTINGS[key]:
        want = getattr(desired, name)
        if want is None:
            continue
        have = None if observed is None else getattr(observed, name)
        if observed is None or have != want:
            out.append(FieldChange(f"{key}.{name}", UNKNOWN if observed is None else _shown(have), _shown(want)))
    return out


def _shown(value: str | bool | tuple[str, ...] | None) -> str | None:
    """A sub-key's value as plans show it: lists as JSON (`["a", "b"]`, `[]`), booleans as YAML
    writes them, an empty string as `""`; None (a level under the Text format) as absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value), ensure_ascii=False)
    return value or '""'


def creation_fields(desired: FunctionConfig, key: bytes) -> tuple[FieldChange, ...]:
    """What a function created from `desired` (resolved) is given: every declared key as an
    addition, shown as `changes` shows values."""
    nothing = ObservedConfig(role=None, memory=0, timeout=0, ephemeral_storage=0, description="", tracing="",
                             image_config=None, logging=None, vpc=None, environment={}, reserved_concurrency=None, tags={})
    added = changes(desired, nothing, key)
    return tuple(FieldChange(c.field, None, c.after, c.after_hash) for c in added)


def update_request(config: FunctionConfig, changed: tuple[FieldChange, ...],
                   observed: ObservedConfig | None = None) -> dict[str, object]:
    """The UpdateFunctionConfiguration arguments (without FunctionName and RevisionId) that make
    Lambda hold `config` (resolved) for the keys `changed` names. The environment goes whole:
    Lambda replaces its variables as a set. So do the SETTINGS objects, the sub-keys not declared
    taken from `observed` (what Lambda holds now; None for a function being created, which gets
    Lambda's defaults for them). The SEPARATE_KEYS are not in it (changed_keys and their own
    calls)."""
    keys = changed_keys(changed)
    request: dict[str, object] = {}
    if "role" in keys:
        request["Role"] = config.role
    if "memory" in keys:
        request["MemorySize"] = config.memory
    if "timeout" in keys:
        request["Timeout"] = config.timeout
    if "ephemeral_storage" in keys:
        request["EphemeralStorage"] = {"Size": config.ephemeral_storage}
    if "description" in keys:
        request["Description"] = config.description
    if "tracing" in keys:
        request["TracingConfig"] = {"Mode": config.tracing}
    if "image_config" in keys and config.image_config is not None:
        request["ImageConfig"] = _image_config_request(_kept("image_config", config.image_config, observed))
    if "logging" in keys and config.logging is not None:
        request["LoggingConfig"] = _logging_request(_kept("logging", config.logging, observed))
    if "vpc" in keys and config.vpc is not None:
        request["VpcConfig"] = _vpc_request(_kept("vpc", config.vpc, observed))
    if "environment" in keys:
        request["Environment"] = {"Variables": {k: v.value for k, v in (config.environment or {}).items()}}
    return request


def _kept(key: str, declared: S, observed: ObservedConfig | None) -> S:
    """`declared` with the sub-keys it leaves out as Lambda holds them. One Lambda reported in a
    form deployer could not read cannot be kept: rather than reset it, the update is refused."""
    if observed is None:
        return declared
    held: S | None = getattr(observed, key)
    left_out = [name for name in SETTINGS[key] if getattr(declared, name) is None]
    if held is None and left_out:
        raise DeployerError(f"what Lambda reports of {key} could not be read, so its sub-keys not declared "
                            f"({', '.join(left_out)}) cannot be kept as they are; declare them in deploy.yaml, "
                            "or check the endpoint (AWS_ENDPOINT_URL_LAMBDA)")
    return replace(declared, **{name: getattr(held, name) for name in left_out})


def _image_config_request(config: ImageConfig) -> dict[str, object]:
    """ImageConfig, an empty sub-key left out: Lambda then uses the image's own."""
    request: dict[str, object] = {}
    if config.entry_point:
        request["EntryPoint"] = list(config.entry_point)
    if config.command:
        request["Command"] = list(config.command)
    if config.working_directory:
        request["WorkingDirectory"] = config.working_directory
    return request


def _logging_request(config: LoggingConfig) -> dict[str, object]:
    """LoggingConfig; the levels only under JSON (Lambda refuses one under Text, which a missing
    format means)."""
    request: dict[str, object] = {}
    if config.format:
        request["LogFormat"] = config.format
    if config.log_group:
        request["LogGroup"] = config.log_group
    if config.format == "JSON":
        if config.application_log_level:
            request["ApplicationLogLevel"] = config.application_log_level
        if config.system_log_level:
            request["SystemLogLevel"] = config.system_log_level
    return request


def _vpc_request(config: VpcConfig) -> dict[str, object]:
    """VpcConfig; two empty lists take the function out of any VPC, where dual-stack IPv6 has no
    meaning (and is not sent)."""
    request: dict[str, object] = {"SubnetIds": list(config.subnet_ids or ()),
                                  "SecurityGroupIds": list(config.security_group_ids or ())}
    if config.subnet_ids and config.ipv6_allowed_for_dual_stack is not None:
        request["Ipv6AllowedForDualStack"] = config.ipv6_allowed_for_dual_stack
    return request


def changed_keys(changed: tuple[FieldChange, ...]) -> tuple[str, ...]:
    """The keys of deploy.yaml that `changed` touches (`environment` for environment.X), in order."""
    return tuple(dict.fromkeys(change.field.partition(".")[0] for change in changed))


def creation_request(config: FunctionConfig, changed: tuple[FieldChange, ...]) -> dict[str, object]:
    """The CreateFunction arguments (without the name, code and architecture) for the keys
    `changed` names: what update_request sends, and the declared tags. Reserved concurrency is
    not one of them: CreateFunction has no such parameter (PutFunctionConcurrency follows it)."""
    request = update_request(config, changed)
    tags = tag_request(config, changed)
    if tags:
        request["Tags"] = tags
    return request


def concurrency_request(config: FunctionConfig, changed: tuple[FieldChange, ...]) -> int | None:
    """The ReservedConcurrentExecutions to put (PutFunctionConcurrency), or None: not changed."""
    return config.reserved_concurrency if "reserved_concurrency" in changed_keys(changed) else None


def tag_request(config: FunctionConfig, changed: tuple[FieldChange, ...]) -> dict[str, str] | None:
    """The tags to set (TagResource) for the `tags.X` fields `changed` names, or None: no tag
    changed. Only those: TagResource adds and replaces, and leaves the function's other tags."""
    names = [change.field.partition(".")[2] for change in changed if change.field.startswith("tags.")]
    declared = config.tags or {}
    return {name: declared[name] for name in names if name in declared} or None
