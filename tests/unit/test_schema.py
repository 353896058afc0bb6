"""The deploy.yaml schema: valid against its metaschema, documented, shipped identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator

from deployer.schema import Validator, schema, schema_text

REPO = Path(__file__).resolve().parents[2]


def test_schema_passes_its_metaschema() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema()["$id"]


def test_repository_copy_and_packaged_copy_are_identical() -> None:
    assert (REPO / "schemas" / "deploy.schema.json").read_text(encoding="utf-8") == schema_text()


def _properties(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}", sub
        for key, value in node.items():
            yield from _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _properties(value, f"{path}[{index}]")


def _resolve(sub: dict[str, Any], *, until_description: bool = True) -> dict[str, Any]:
    """Follow $refs: to the first schema with a description, or (until_description=False) to the end."""
    while "$ref" in sub and not (until_description and "description" in sub):
        target: Any = schema()
        for part in sub["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        sub = target
    return sub


def test_every_property_has_a_description() -> None:
    missing = [path for path, sub in _properties(schema(), "") if not _resolve(sub).get("description")]
    assert missing == []


def test_every_object_forbids_unknown_keys() -> None:
    def objects(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "properties" in node:
                yield node
            for value in node.values():
                yield from objects(value)
    assert all(obj.get("additionalProperties") is False for obj in objects(schema()))


def test_example_file_matches_the_schema() -> None:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((REPO / "deploy.example.yaml").read_text())
    assert list(Draft202012Validator(schema()).iter_errors(data)) == []


def test_patterns_follow_aws_rules() -> None:
    validator = Validator(schema())
    def ok(name: str, repository: str, region: str = "us-east-1") -> bool:
        doc = {"version": 1, "functions": [{"name": name, "repository": repository, "region": region}]}
        return bool(validator.is_valid(doc))
    assert ok("a" * 64, "team/svc-a_b.c")
    assert not ok("a" * 65, "repo")
    assert ok("fn", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/fn")
    assert ok("fn", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/fn", "cn-north-1")
    assert not ok("fn", "12345.dkr.ecr.eu-west-1.amazonaws.com/fn")
    assert not ok("fn", "Repo")
    assert not ok("fn", "repo//x")
    assert ok("fn", "repo", "us-gov-west-1")
    assert not ok("fn", "repo", "useast1")
    assert not ok("fn", "repo", "us-east-1\n")
    assert not ok("fn\n", "repo")
    assert not ok("fn", "repo\n")


def test_readme_reference_documents_every_schema_key() -> None:
    """The README's deploy.yaml reference is tested against the schema: every key has a row."""
    readme = (REPO / "README.md").read_text()

    def keys(node: dict[str, Any], prefix: str) -> Iterator[str]:
        node = _resolve(node, until_description=False)
        for name, sub in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            yield path
            yield from keys(sub, path + ".")
        if "items" in node and "properties" in _resolve(node["items"], until_description=False):
            yield from keys(node["items"], prefix.rstrip(".") + "[].")

    documented = [key for key in keys(schema(), "")]
    assert documented, "schema has properties"
    missing = [key for key in documented if f"| `{key}` |" not in readme]
    assert missing == []




def test_reserved_build_args_are_the_ones_deployer_sets() -> None:
    from deployer.layout import RESERVED_BUILD_ARGS

    names = schema()["$defs"]["sharedBuild"]["properties"]["build_args"]["propertyNames"]
    assert sorted(names["not"]["enum"]) == sorted(RESERVED_BUILD_ARGS)


@pytest.mark.parametrize("path, valid", [
    ("fn", True), ("../shared/log ger/é", True), ("x" * 1024, True),
    ("", False), ("x" * 1025, False), ("a\0b", False), ("a\tb", False), ("fn\n", False), ("a\x7f", False),
])
def test_path_values_are_bounded_and_free_of_control_characters(path: str, valid: bool) -> None:
    validator = Validator(schema())
    for build in ({"source": path}, {"dockerfile": path}):
        doc = {"version": 1, "root": ".", "functions": [{"name": "fn", "repository": "repo", "build": build}]}
        assert validator.is_valid(doc) is valid
    assert validator.is_valid({"version": 1, "root": path, "functions": [{"name": "fn"}]}) is valid
    assert validator.is_valid({"version": 1, "functions": [{"name": "fn", "shared_modules": [path]}]}) is valid


# --- patterns match the whole value (ECMA-262 `$`), not up to a final newline -------------------

# A value each pattern of the schema accepts, by the pattern's place in the schema. A new pattern
# needs a sample here, so that the trailing-newline test below covers it.
PATTERN_SAMPLES = {
    "/$defs/region": "us-east-1",
    "/$defs/environmentName": "production-eu_2",
    "/$defs/account": "123456789012",
    "/properties/defaults/properties/allowed_accounts/items": "210987654321",
    "/$defs/repositoryName": "team/fn",
    "/$defs/path": "functions/fn",
    "/$defs/imageReference": "golang:1.24-alpine",
    "/$defs/goEnvValue": "https://proxy.example/,direct",
    "/$defs/netrcVariable": "GO_NETRC",
    "/$defs/sharedBuild/properties/go_build_flags/items": "-ldflags=-s -w",
    "/$defs/sharedBuild/properties/build_args/propertyNames": "GOPROXY",
    "/$defs/function/properties/name": "finalize-with-error",
    "/$defs/role": "arn:aws:iam::123456789012:role/service-role/fn-role",
    "/$defs/description": "Finalizes jobs that ended in an error (v2)",
    "/$defs/environment/propertyNames": "LOG_LEVEL",
    "/$defs/tags/propertyNames": "cost center",
    "/$defs/tags/additionalProperties": "4:2 / +=@_.",
    "/$defs/environmentValue/oneOf/1/properties/from_env": "CI_API_KEY",
    "/$defs/imageArguments/items": "--port=8080",
    "/$defs/imageConfig/properties/working_directory": "/var/task",
    "/$defs/logging/properties/log_group": "/aws/lambda/finalize-with-error",
    "/$defs/vpc/properties/subnet_ids/items": "subnet-0123456789abcdef0",
    "/$defs/vpc/properties/security_group_ids/items": "sg-0123abcd",
    "/$defs/repository/oneOf/1/properties/kms_key": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "/$defs/repository/oneOf/1/properties/lambda_pull_accounts/items": "210987654321",
    "/$defs/repositoryTags/propertyNames": "cost center",
    "/$defs/repositoryTags/additionalProperties": "4:2 / +=@_.",
    "/$defs/release/properties/alias": "live",
    "/$defs/release/properties/smoke_test/properties/expect/properties/field": "body.status",
}


def _patterns(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield pointer, node["pattern"]
        for key, value in node.items():
            yield from _patterns(value, f"{pointer}/{key}")
    elif isinstance(node, list):  # oneOf, anyOf...: their patterns too
        for index, value in enumerate(node):
            yield from _patterns(value, f"{pointer}/{index}")


def test_every_pattern_rejects_a_trailing_newline() -> None:
    from deployer.schema import _ecma_pattern

    patterns = dict(_patterns(schema()))
    assert sorted(patterns) == sorted(PATTERN_SAMPLES)
    for pointer, pattern in patterns.items():
        sample = PATTERN_SAMPLES[pointer]
        assert _ecma_pattern(pattern).search(sample), pointer
        assert not _ecma_pattern(pattern).search(sample + "\n"), pointer
        assert not _ecma_pattern(pattern).search(sample + "\r\n"), pointer


@pytest.mark.parametrize("pattern, value, matches", [
    ("^a$", "a", True), ("^a$", "a\n", False),
    (r"^a\$$", "a$", True), (r"^a\$$", "a$\n", False),  # an escaped $ is a dollar sign
    ("^[$]$", "$", True), ("^[$]+$", "$$\n", False),  # so is one in a class
    (r"^[\]$]$", "$", True), (r"^a\\$", "a\\", True), (r"^a\\$", "a\\\n", False),
    ("^(?:a|b$)", "b\n", False), ("^(?:a|b$)", "a\n", True),  # unanchored alternatives keep their meaning
])
def test_ecma_pattern_reads_dollar_as_the_end_of_the_value(pattern: str, value: str, matches: bool) -> None:
    from deployer.schema import _ecma_pattern

    assert bool(_ecma_pattern(pattern).search(value)) is matches


def test_the_validator_rejects_a_trailing_newline_that_plain_jsonschema_accepts() -> None:
    from deployer.schema import is_valid

    doc = {"version": 1, "defaults": {"account": "123456789012\n", "region": "us-east-1\n"}, "functions": [{"name": "fn\n"}]}
    assert Draft202012Validator(schema()).is_valid(doc)  # why the schema's own `$` is not enough
    assert not is_valid(doc)
    assert is_valid({**doc, "defaults": {"account": "123456789012", "region": "us-east-1"}, "functions": [{"name": "fn"}]})
