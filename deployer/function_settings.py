"""function_settings: the image_config, logging and vpc keys of a deploy.yaml function, read into
deployer.function_config values and checked for what the schema cannot say: the rules between
sub-keys, which Lambda enforces only when apply sends them.

The schema has checked each value's shape already; a key written neither on the function nor in
`defaults` is None (not managed). A function's own mapping replaces the default's as a whole: a
default sub-key is not merged into it, so what a function declares is all in one place.
"""

from __future__ import annotations

from typing import Any

from deployer.errors import Diagnostic
from deployer.function_config import ImageConfig, LoggingConfig, VpcConfig
from deployer.schema import yaml_path
from deployer.yamldoc import YamlDocument, YamlPath

LEVELS = ("application_log_level", "system_log_level")


def declared_settings(doc: YamlDocument, at: YamlPath, entry: dict[str, Any], defaults: dict[str, Any],
                      problems: list[Diagnostic]) -> tuple[ImageConfig | None, LoggingConfig | None, VpcConfig | None]:
    """The function's image_config, logging and vpc (else the defaults'); problems appended, a
    default's once, where it is written, whatever the number of functions sharing it."""

    def where(key: str) -> YamlPath:
        return at + (key,) if key in entry else ("defaults", key)

    def declared(key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = entry.get(key, defaults.get(key))
        return value

    image, logs, vpc = declared("image_config"), declared("logging"), declared("vpc")
    if logs is not None:
        _add(problems, _logging_problems(doc, where("logging"), logs))
    if vpc is not None:
        _add(problems, _vpc_problems(doc, where("vpc"), vpc))
    return (_image_config(image) if image is not None else None, _logging(logs) if logs is not None else None,
            _vpc(vpc) if vpc is not None else None)


def _add(problems: list[Diagnostic], found: list[Diagnostic]) -> None:
    for problem in found:
        if problem not in problems:
            problems.append(problem)


def _image_config(value: dict[str, Any]) -> ImageConfig:
    def arguments(name: str) -> tuple[str, ...] | None:
        return tuple(str(item) for item in value[name]) if name in value else None

    return ImageConfig(arguments("entry_point"), arguments("command"), value.get("working_directory"))


def _logging(value: dict[str, Any]) -> LoggingConfig:
    return LoggingConfig(value.get("format"), value.get("log_group"), value.get("application_log_level"), value.get("system_log_level"))


def _vpc(value: dict[str, Any]) -> VpcConfig:
    return VpcConfig(tuple(value["subnet_ids"]), tuple(value["security_group_ids"]), value.get("ipv6_allowed_for_dual_stack"))


def _logging_problems(doc: YamlDocument, at: YamlPath, value: dict[str, Any]) -> list[Diagnostic]:
    """A log level needs the JSON format, written beside it: Lambda refuses a level under Text,
    which is also what it takes a missing format for (and deployer does not manage a format left
    out, so it could not promise JSON)."""
    if value.get("format") == "JSON":
        return []
    if value.get("format") == "Text":
        todo = "Lambda refuses a log level with the Text log format; set format: JSON, or remove the level"
    else:
        todo = ("a log level applies to the JSON log format only, and Lambda takes a missing format for Text; "
                "add format: JSON, or remove the level")
    return [doc.diagnostic(at + (level,), f"{yaml_path(at + (level,))}: {todo}") for level in LEVELS if level in value]


def _vpc_problems(doc: YamlDocument, at: YamlPath, value: dict[str, Any]) -> list[Diagnostic]:
    """Subnets and security groups come together (both empty: no VPC), and dual-stack IPv6 needs a VPC."""
    subnets, groups = value["subnet_ids"], value["security_group_ids"]
    if bool(subnets) != bool(groups):
        empty, other = ("subnet_ids", "security_group_ids") if not subnets else ("security_group_ids", "subnet_ids")
        return [doc.diagnostic(at + (empty,), f"{yaml_path(at + (empty,))}: empty while {other} is not; a function in a VPC "
                                              "needs at least one subnet and one security group (both empty: no VPC)")]
    if not subnets and value.get("ipv6_allowed_for_dual_stack"):
        key = at + ("ipv6_allowed_for_dual_stack",)
        return [doc.diagnostic(key, f"{yaml_path(key)}: dual-stack IPv6 needs a VPC; list subnet_ids and security_group_ids, "
                                    "or remove it")]
    return []
