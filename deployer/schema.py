"""The deploy.yaml JSON Schema and the translation of its errors into pointed diagnostics.

The schema ships inside the package (deployer/data) and, for editors and reviewers, at
schemas/deploy.schema.json in the repository; a test keeps the two identical.

The schema is written for ECMA-262 regular expressions (what editors' YAML language servers use),
where `$` matches only at the end of the value. Python's `re`, which jsonschema uses, also lets
`$` match before a final newline, so "123456789012\n" would pass as an account: the validator here
checks `pattern` with `$` read as ECMA reads it (`_ecma_pattern`).
"""

from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

from jsonschema import Draft202012Validator, ValidationError, validators

from deployer.errors import Diagnostic
from deployer.paths import MAX_SHOWN, clip, shown
from deployer.yamldoc import YamlDocument, YamlPath

# A mapping full of unknown keys is reported with this many, then one line for the rest.
MAX_UNKNOWN_KEYS = 5
# A file's schema problems are listed up to this many: output stays bounded whatever the file holds.
MAX_PROBLEMS = 50


def schema_text() -> str:
    return resources.files("deployer").joinpath("data/deploy.schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@lru_cache(maxsize=64)
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled so that `$` (outside a character class) matches only at the very end,
    as in ECMA-262 without the multiline flag: Python's `$` also matches before a final newline."""
    out: list[str] = []
    in_class = escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            out.append(r"\Z")
            continue
        out.append(c)
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, _schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# Draft 2020-12 with `pattern` checked as ECMA-262 reads it.
Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@lru_cache(maxsize=1)
def _validator() -> Any:
    return Validator(schema())


def is_valid(data: Any) -> bool:
    """Whether `data` passes the schema as deployer checks it."""
    return bool(_validator().is_valid(data))


def check(doc: YamlDocument) -> list[Diagnostic]:
    """Every schema violation in `doc`, one diagnostic each, pointed at the offending key or value;
    past MAX_PROBLEMS, the first ones and a count of the rest."""
    found: list[Diagnostic] = []
    for error in _validator().iter_errors(doc.data):
        found.extend(_diagnostics(doc, error))
    if len(found) > MAX_PROBLEMS:
        rest = len(found) - MAX_PROBLEMS
        found = sorted(found, key=Diagnostic.sort_key)[:MAX_PROBLEMS]
        found.append(Diagnostic.at(doc.file, 0, 0, f"{MAX_PROBLEMS} problem(s) against the schema listed, {rest} more not; "
                                           "fix the listed ones first"))
    return found


def yaml_path(path: YamlPath) -> str:
    """functions[0].build.source: how a YAML path is written in messages."""
    text = ""
    for part in path:
        # Keys come from the file: escaped and cut short (a YAML key may be long, or hold controls).
        text += f"[{part}]" if isinstance(part, int) else (f".{clip(part, MAX_SHOWN)}" if text else clip(str(part), MAX_SHOWN))
    return text or "top level"


def _diagnostics(doc: YamlDocument, error: ValidationError) -> Iterator[Diagnostic]:
    path = tuple(error.absolute_path)
    where = yaml_path(path)
    found = error.instance
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(found) - set(allowed), key=str)
        for key in unknown[:MAX_UNKNOWN_KEYS]:
            guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) if len(key) <= MAX_SHOWN else []
            hint = f"; did you mean '{guess[0]}'?" if guess else f"; allowed keys: {', '.join(allowed)}"
            yield doc.diagnostic(path + (key,), f"{yaml_path(path + (key,))}: unknown key {shown(key)}{hint}", key=True)
        if len(unknown) > MAX_UNKNOWN_KEYS:
            yield doc.diagnostic(path, f"{where}: {len(unknown) - MAX_UNKNOWN_KEYS} more unknown key(s); "
                                       f"allowed keys: {', '.join(allowed)}")
        return
    if error.validator == "required":
        missing = error.message.split("'")[1]
        yield doc.diagnostic(path, f"{where}: missing required key '{missing}'", key=True)
        return
    if "propertyNames" in error.absolute_schema_path:
        # The error is about a key (error.instance); its path is the mapping's.
        bad = error.instance
        if path and path[-1] == "tags":
            problem = ("the aws: prefix is reserved for AWS's own tags; choose another key"
                       if isinstance(bad, str) and bad[:4].lower() == "aws:" and error.validator == "pattern"
                       else "expected 1 to 128 characters without control characters")
            yield doc.diagnostic(path + (bad,), f"{where}: invalid tag key {_show(bad)}: {problem}", key=True)
        elif path == ("environments",):
            yield doc.diagnostic(path + (bad,), f"{where}: invalid environment name {_show(bad)}: expected 1 to 32 lowercase "
                                 "letters, digits, '-' or '_', starting with a letter", key=True)
        elif error.validator == "not":
            yield doc.diagnostic(path + (bad,), f"{yaml_path(path + (bad,))}: {bad} is set by deployer; remove it "
                                 "(use builder_image, runtime_image, platform and go_build_flags instead)", key=True)
        elif path and path[-1] == "environment":  # Lambda's own rule for variable names
            yield doc.diagnostic(path + (bad,), f"{where}: invalid name {_show(bad)}: expected a letter, then at least one "
                                 "letter, digit or '_' (Lambda's rule for environment variable names)", key=True)
        else:
            yield doc.diagnostic(path + (bad,), f"{where}: invalid name {_show(bad)}: expected letters, digits and '_', "
                                 "not starting with a digit", key=True)
        return
    if error.validator in ("oneOf", "anyOf"):
        branch = _matching_branch(error)
        if branch:  # the value has the shape of one option: say what is wrong inside it
            for sub in branch:
                yield from _diagnostics(doc, sub)
            return
    # A build arg's value may be a credential (a GOPROXY URL with a token): say only what it is.
    shown_found = _kind_of(found) if len(path) >= 2 and path[-2] == "build_args" else _show(found)
    if error.validator == "maxItems":  # how many: what there is to remove
        shown_found = f"{len(found)} items"
    yield doc.diagnostic(path, f"{where}: {_expected(error)}; found {shown_found}")


def _kind_of(value: Any) -> str:
    """What a value is, without showing it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return _show(value) if isinstance(value, (dict, list)) or value is None else "a value"


def _matching_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the one oneOf/anyOf option whose type or constant the value has, if only one
    has it (e.g. a list given where 'auto' or a list of paths is allowed)."""
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    shape = ("type", "const", "enum")
    fitting = [errs for errs in branches.values()
               if not any(e.validator in shape and not e.relative_path for e in errs)]
    return fitting[0] if len(fitting) == 1 else []


def _expected(error: ValidationError) -> str:
    rule = error.validator_value
    description = error.schema.get("description", "")
    match error.validator:
        case "type":
            return f"expected {_type_name(rule)}"
        case "enum":
            return "expected one of " + ", ".join(str(v) for v in rule)
        case "const":
            return f"expected {_show(rule)}"
        case "pattern":
            return f"expected {description.rstrip('.')}" if description else f"expected a value matching {rule}"
        case "minLength":
            return f"expected at least {rule} character(s)"
        case "maxLength":
            return f"expected at most {rule} characters"
        case "minItems":
            return f"expected at least {rule} item(s)"
        case "maxItems":
            return f"expected at most {rule} items"
        case "maxProperties":
            return f"expected at most {rule} entries"
        case "uniqueItems":
            return "expected each item only once"
        case "oneOf" | "anyOf":
            options = [_option(sub) for sub in rule]
            return "expected " + " or ".join(options)
    return str(error.message)


def _option(sub: dict[str, Any]) -> str:
    if "const" in sub:
        return _show(sub["const"])
    if sub.get("type") == "array":
        return "a list of strings"
    return _type_name(sub.get("type", "a value"))


def _type_name(rule: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
             "boolean": "true or false", "number": "a number", "null": "nothing"}
    if isinstance(rule, list):
        return " or ".join(names.get(str(r), str(r)) for r in rule)
    return names.get(rule, str(rule))


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return shown(value)
    return clip(repr(value), MAX_SHOWN)
