"""lambda_config: what GetFunction reports of a function, read into the project's own data: its
configuration (ObservedConfig, Lambda's defaults filled where it says nothing), its image URI and
its reserved concurrency. Every value is foreign: checked and bounded here; anything malformed in
an object becomes a value that equals no declared one (a plan then sets it)."""

from __future__ import annotations

import re
from typing import Any, Mapping


from deployer.function_config import (
    APPLICATION_LOG_LEVELS,
    DEFAULT_EPHEMERAL_STORAGE,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    DEFAULT_TRACING,
    LOG_FORMATS,
    NO_IMAGE_CONFIG,
    NO_VPC,
    SYSTEM_LOG_LEVELS,
    TRACING_MODES,
    ImageConfig,
    LoggingConfig,
    ObservedConfig,
    VpcConfig,
    default_log_group,
)
from deployer.aws import (
    MAX_TEXT,
    MAX_IMAGE_URI,
    T,
    _int,
    _matching,
    _tags,
    _text,
)


def _tracing(value: Any) -> str:
    """The tracing mode Lambda reports: one of TRACING_MODES, its default when it says none, and
    for anything else a marker that differs from every declared mode (a plan then sets it)."""
    return value if value in TRACING_MODES else (DEFAULT_TRACING if value is None else "(unknown)")


def _observed_config(config: Mapping[str, Any], concurrency: Any = None, tags: Any = None, name: str | None = None) -> ObservedConfig:
    """The managed keys of GetFunction's Configuration (and of its Concurrency and Tags), Lambda's defaults
    filled where it says nothing (the default log group is the function `name`'s). Environment values are
    kept as Lambda has them (compared, never shown); a name or value that is no string is dropped, values
    bounded. A reserved concurrency that is no integer of 0 to MAX_CONCURRENCY counts as none."""
    variables = (config.get("Environment") or {}).get("Variables") or {}
    environment = {k: v[:MAX_TEXT] for k, v in variables.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(variables, dict) else {}
    return ObservedConfig(
        role=_text(config.get("Role")),
        memory=_int(config.get("MemorySize"), DEFAULT_MEMORY),
        timeout=_int(config.get("Timeout"), DEFAULT_TIMEOUT),
        ephemeral_storage=_int((config.get("EphemeralStorage") or {}).get("Size"), DEFAULT_EPHEMERAL_STORAGE),
        tracing=_tracing((config.get("TracingConfig") or {}).get("Mode")),
        description=_text(config.get("Description")) or "",
        image_config=_image_config(config.get("ImageConfigResponse")),
        logging=_logging(config.get("LoggingConfig"), name),
        vpc=_vpc(config.get("VpcConfig")),
        environment=environment,
        reserved_concurrency=_count((concurrency or {}).get("ReservedConcurrentExecutions") if isinstance(concurrency, dict) else None),
        tags=_tags(tags),
    )


# AWS's bounds and forms of ImageConfig, LoggingConfig and VpcConfig values: anything else Lambda
# reports makes the whole object unreadable (None), which equals no declared value.
MAX_IMAGE_ARGUMENTS = 1500
MAX_WORKING_DIRECTORY = 1000
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5
_LOG_GROUP = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8}(?:[0-9a-f]{9})?")


def _strings(value: Any, most: int, pattern: re.Pattern[str] | None = None) -> tuple[str, ...] | None:
    """A list of at most `most` bounded strings (each matching `pattern`), () when absent, else None."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > most:
        return None
    if not all(isinstance(v, str) and len(v) <= MAX_TEXT and (pattern is None or pattern.fullmatch(v)) for v in value):
        return None
    return tuple(value)


def _or(value: Any, default: T) -> Any:
    """`value`, or `default` where Lambda says nothing (no value, or an empty string); a value of
    another type stays, for the caller to refuse."""
    return default if value is None or value == "" else value


def _image_config(response: Any) -> ImageConfig | None:
    """ImageConfigResponse.ImageConfig: the image's own (empty) for what it leaves out; None when it is
    malformed, or when Lambda reports only an Error (it could not say what the function has)."""
    if response is None:
        return NO_IMAGE_CONFIG
    if not isinstance(response, dict):
        return None
    config = response.get("ImageConfig")
    if config is None:
        return None if response.get("Error") else NO_IMAGE_CONFIG
    if not isinstance(config, dict):
        return None
    entry_point = _strings(config.get("EntryPoint"), MAX_IMAGE_ARGUMENTS)
    command = _strings(config.get("Command"), MAX_IMAGE_ARGUMENTS)
    directory = _or(config.get("WorkingDirectory"), "")
    if entry_point is None or command is None or not isinstance(directory, str) or len(directory) > MAX_WORKING_DIRECTORY:
        return None
    return ImageConfig(entry_point, command, directory)


def _logging(config: Any, name: str | None) -> LoggingConfig | None:
    """LoggingConfig with Lambda's defaults: Text, the function's default log group, and under JSON
    both levels INFO; under Text no level applies, whatever is reported (None)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return None
    log_format = _or(config.get("LogFormat"), DEFAULT_LOG_FORMAT)
    group = _or(config.get("LogGroup"), default_log_group(name) if name else None)
    if log_format not in LOG_FORMATS or not (group is None or _matching(group, _LOG_GROUP)):
        return None
    if log_format != "JSON":
        return LoggingConfig(log_format, group)
    application = _or(config.get("ApplicationLogLevel"), DEFAULT_LOG_LEVEL)
    system = _or(config.get("SystemLogLevel"), DEFAULT_LOG_LEVEL)
    if application not in APPLICATION_LOG_LEVELS or system not in SYSTEM_LOG_LEVELS:
        return None
    return LoggingConfig(log_format, group, application, system)


def _vpc(config: Any) -> VpcConfig | None:
    """VpcConfig; no VPC (NO_VPC) when Lambda reports none."""
    if config is None:
        return NO_VPC
    if not isinstance(config, dict):
        return None
    subnets = _strings(config.get("SubnetIds"), MAX_SUBNETS, _SUBNET_ID)
    groups = _strings(config.get("SecurityGroupIds"), MAX_SECURITY_GROUPS, _SECURITY_GROUP_ID)
    ipv6 = config.get("Ipv6AllowedForDualStack")
    if subnets is None or groups is None or not (ipv6 is None or type(ipv6) is bool):
        return None
    return VpcConfig(subnets, groups, bool(ipv6))


def _image_uri(code: Any) -> str | None:
    """Code.ImageUri: a printable string, at most the length of the longest ECR image reference."""
    uri = code.get("ImageUri") if isinstance(code, dict) else None
    return uri if isinstance(uri, str) and 0 < len(uri) <= MAX_IMAGE_URI and uri.isprintable() else None


# Above any account's concurrency quota: a larger number is not one Lambda reports.
MAX_CONCURRENCY = 1 << 20


def _count(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_CONCURRENCY else None
