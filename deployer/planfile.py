"""A Plan as JSON and back: what `plan --format json` prints and `plan --out` saves for `apply`.

The document carries `format_version`; a reader refuses any other version. Steps are written as
{"type": <class name>, ...fields}, so the step list round-trips exactly. A plan file is untrusted
input: it is read only if it is a regular file of bounded size, and every field is type-checked
and bounded before anything else happens (deployer.binding then checks it against its sources).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from deployer import environments, explain, image_inputs
from deployer.digest import content_tag
from deployer.errors import PlanError
from deployer.function_config import KEYS as CONFIG_KEYS
from deployer.function_config import SETTINGS as CONFIG_SETTINGS
from deployer.function_config import FieldChange
from deployer.paths import shown
from deployer.repository_config import FIELD_PREFIX as REPOSITORY_FIELD_PREFIX
from deployer.repository_config import KEYS as REPOSITORY_KEYS
from deployer.plan import (
    FORMAT_VERSION,
    STEP_TYPES,
    Action,
    FunctionPlan,
    ImageRef,
    Plan,
    Reason,
    ReasonCode,
    ReleasePlan,
    SourceFile,
    Step,
    steps_for,
)
from deployer.spec import LAMBDA_ARCHITECTURES, EcrRepository
from deployer.state import Desired, ImageElsewhere

_STEPS_BY_NAME = {cls.__name__: cls for cls in STEP_TYPES}
# A plan of a thousand functions is about 3 MB; anything far larger is not a plan deployer wrote.
MAX_PLAN_BYTES = 32 * 1024 * 1024
MAX_SOURCES = 10_000
MAX_SOURCE_PATH = 1024
# Values of a plan: identifiers, digests and paths; AWS's own words (a reason's detail).
MAX_VALUE = 1024
MAX_TEXT = 4096
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def to_dict(plan: Plan) -> dict[str, Any]:
    counts = plan.counts()
    return {
        "format_version": plan.format_version,
        "summary": {"changes": plan.has_changes, **{a.name.lower(): counts[a] for a in Action}},
        "sources": [{"path": source.path, "sha256": source.sha256} for source in plan.sources],
        "hash_key": plan.hash_key,
        "environment": plan.environment,
        "account": plan.account,
        "functions": [_function(fp) for fp in plan.functions],
    }


def _function(fp: FunctionPlan) -> dict[str, Any]:
    return {
        "name": fp.name,
        "action": fp.action.name.lower(),
        "reason": {"code": fp.reason.code.value, "detail": fp.reason.detail,
                   "update_in_progress": fp.reason.update_in_progress, "description": explain.reason(fp)},
        "desired": _desired(fp.desired),
        "current_digest": fp.current_digest,
        "desired_digest": fp.desired_digest,
        "current_architectures": list(fp.current_architectures),
        "revision_id": fp.revision_id,
        "configuration": [dataclasses.asdict(change) for change in fp.configuration],
        "create_repository": fp.create_repository,
        "repository_changes": [dataclasses.asdict(change) for change in fp.repository_changes],
        "release": dataclasses.asdict(fp.release) if fp.release is not None else None,
        "explanation": ({**image_inputs.to_dict(fp.explanation), "description": explain.why_line(fp),
                         "changed_files": explain.changed_file_lines(fp)} if fp.explanation is not None else None),
        "copy_from": ({"environment": fp.copy_from.environment, "repository_uri": fp.copy_from.repository.uri,
                       "digest": fp.copy_from.digest} if fp.copy_from is not None else None),
        "steps": [{"type": type(step).__name__, "description": step.describe(),
                   **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(step).items()}}
                  for step in fp.steps],
    }


def to_json(plan: Plan) -> str:
    # "##[" can only stand inside a JSON string: written "##\u005b" there, it means the same and
    # is no GitHub workflow command in a CI log (see deployer.render.ci_inert).
    return json.dumps(to_dict(plan), indent=2).replace("##[", "##\\u005b") + "\n"


def from_dict(data: Any, source: str = "plan") -> Plan:
    if not isinstance(data, dict) or "format_version" not in data:
        raise PlanError(f"{source}: not a deployer plan (no format_version); make one with 'deployer plan --out FILE'")
    version = data["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:  # `is not int`: true == 1 in Python
        raise PlanError(f"{source}: plan format_version {version!r} is not supported (this deployer reads {FORMAT_VERSION}); run plan again")
    try:
        functions = tuple(_function_plan(entry, index) for index, entry in enumerate(_typed(data.get("functions"), list, "functions")))
        twice = sorted(name for name, count in collections.Counter(fp.name for fp in functions).items() if count > 1)
        if twice:
            raise ValueError(f"a function is planned twice ({', '.join(twice[:5])}{', ...' if len(twice) > 5 else ''})")
        sources = _sources(data.get("sources"))
        if functions and not sources:
            raise ValueError("sources is empty: the plan does not say which deploy.yaml files it was made from")
        hash_key = _typed(data.get("hash_key"), str, "hash_key")
        if not _SHA256_HEX.fullmatch(hash_key):
            raise ValueError("hash_key is not 64 lowercase hex digits")
        return Plan(functions, FORMAT_VERSION, sources, hash_key, _environment(data), _account(data))
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{source}: damaged plan ({exc}); run plan again") from exc


def _account(data: dict[str, Any]) -> str | None:
    """The account a plan under an environment was made in: null, or twelve digits (it is shown)."""
    value = data.get("account")
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"[0-9]{12}", value)):
        raise ValueError(f"account {shown(str(value))} is not an AWS account id")
    if value is not None and data.get("environment") is None:
        raise ValueError("account is recorded only for a plan made under an environment")
    return value


def _environment(data: dict[str, Any]) -> str | None:
    """The plan's environment: required, null or a name deploy.yaml could declare (it is shown)."""
    if "environment" not in data:
        raise ValueError("environment is missing (null for a plan made without --env)")
    value = data["environment"]
    if value is not None and not (isinstance(value, str) and environments.NAME.fullmatch(value)):
        raise ValueError(f"environment {shown(str(value))} is not an environment name")
    return value if value is None else str(value)


def _sources(value: Any) -> tuple[SourceFile, ...]:
    entries = _typed(value, list, "sources")
    if len(entries) > MAX_SOURCES:
        raise ValueError(f"sources lists {len(entries)} files; a plan lists at most {MAX_SOURCES}")
    sources = []
    for index, entry in enumerate(entries):
        at = f"sources[{index}]"
        entry = _typed(entry, dict, at)
        path = _typed(entry.get("path"), str, f"{at}.path")
        digest = _typed(entry.get("sha256"), str, f"{at}.sha256")
        if not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"{at}.sha256 is not 64 lowercase hex digits")
        if not is_relative_posix(path):
            raise ValueError(f"{at}.path must be a relative path inside the checkout, without '..' or control characters")
        sources.append(SourceFile(path, digest))
    if [s.path for s in sources] != sorted({s.path for s in sources}):
        raise ValueError("sources must be sorted by path, each path once")
    return tuple(sources)


def is_relative_posix(path: str) -> bool:
    """A path a plan may name: relative, POSIX, no `.`/`..`/empty parts, nothing unprintable
    (control characters, line breaks of any kind)."""
    parts = path.split("/")
    return (0 < len(path) <= MAX_SOURCE_PATH and path.isprintable()
            and "\\" not in path and all(part not in ("", ".", "..") for part in parts))


def _typed(value: Any, kind: type | tuple[type, ...], where: str, text: bool = False) -> Any:
    """`value`, if of `kind`. A string must be a printable one-line value of at most MAX_VALUE
    characters (every value a plan holds is an identifier, a digest or a path); with `text`, any
    string of at most MAX_TEXT (AWS's own words: shown inert, never acted on)."""
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise TypeError(f"{where} is {type(value).__name__}, not {names}")
    if isinstance(value, str) and (len(value) > MAX_TEXT if text else len(value) > MAX_VALUE or not value.isprintable()):
        raise ValueError(f"{where} is not a printable value of at most {MAX_TEXT if text else MAX_VALUE} characters")
    return value


def _known_keys(entry: dict[str, Any], allowed: Iterable[str], where: str) -> dict[str, Any]:
    unknown = sorted(set(entry) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{where} has a key deployer does not know: {shown(str(unknown[0]))}")
    return entry


def _function_plan(entry: Any, index: int) -> FunctionPlan:
    at = f"functions[{index}]"
    entry = _typed(entry, dict, at)
    desired_fields = _known_keys(_typed(entry.get("desired"), dict, f"{at}.desired"),
                                 ["repository_uri", *(f.name for f in dataclasses.fields(Desired) if f.name not in _NOT_SAVED)],
                                 f"{at}.desired")
    for name, value in desired_fields.items():
        _typed(value, str, f"{at}.desired.{name}")
    uri = desired_fields.pop("repository_uri", None)
    repository = EcrRepository.parse(uri) if uri is not None else None
    if repository is None or repository.region != desired_fields.get("region"):
        raise ValueError(f"{at}.desired.repository_uri {uri!r} is not an ECR repository in {desired_fields.get('region')!r}")
    desired = Desired(repository=repository, **desired_fields)
    _check_desired(desired, f"{at}.desired")
    action_name = _typed(entry.get("action"), str, f"{at}.action")
    if action_name.upper() not in Action.__members__:
        raise ValueError(f"{at}.action {action_name!r} is not one of {', '.join(a.lower() for a in Action.__members__)}")
    action = Action[action_name.upper()]
    optional = (str, type(None))
    plan = FunctionPlan(
        desired=desired,
        action=action,
        reason=_reason(entry.get("reason"), f"{at}.reason"),
        current_digest=_typed(entry.get("current_digest"), optional, f"{at}.current_digest"),
        desired_digest=_typed(entry.get("desired_digest"), optional, f"{at}.desired_digest"),
        current_architectures=tuple(_typed(a, str, f"{at}.current_architectures")
                                    for a in _typed(entry.get("current_architectures"), list, f"{at}.current_architectures")),
        revision_id=_typed(entry.get("revision_id"), optional, f"{at}.revision_id"),
        steps=tuple(_step(step, f"{at}.steps[{n}]") for n, step in enumerate(_typed(entry.get("steps"), list, f"{at}.steps"))),
        configuration=_configuration(entry.get("configuration"), f"{at}.configuration"),
        create_repository=_typed(entry.get("create_repository"), bool, f"{at}.create_repository"),
        repository_changes=_changes(entry.get("repository_changes"), f"{at}.repository_changes", _repository_field),
        release=_release(entry.get("release"), f"{at}.release"),
        explanation=image_inputs.from_dict(_without_words(entry.get("explanation")), f"{at}.explanation"),
        copy_from=_copy_from(entry.get("copy_from"), f"{at}.copy_from"),
    )
    # Configuration changes only where the planner writes them: on a function it changes, and
    # always on a configuration update.
    if plan.configuration and action in (Action.NOOP, Action.BLOCKED) or action is Action.CONFIGURE and not (
            plan.configuration or plan.repository_changes):
        raise ValueError(f"{at}.configuration does not fit a {action.value} of {desired.name}")
    if plan.repository_changes and action in (Action.NOOP, Action.BLOCKED):
        raise ValueError(f"{at}.repository_changes do not fit a {action.value} of {desired.name}")
    if plan.release is not None and action in (Action.NOOP, Action.BLOCKED) or action is Action.RELEASE and plan.release is None:
        raise ValueError(f"{at}.release does not fit a {action.value} of {desired.name}")
    if plan.copy_from is not None and (action not in (Action.UPDATE, Action.CREATE) or plan.copy_from.digest != plan.desired_digest
                                       or plan.copy_from.repository == desired.repository):
        raise ValueError(f"{at}.copy_from does not fit a {action.value} of {desired.name} to {plan.desired_digest}")
    if plan.create_repository and action not in (Action.BUILD, Action.CREATE):
        raise ValueError(f"{at}.create_repository does not fit a {action.value} of {desired.name}")
    # The steps must be the planner's own for this action: an edited step list is never run.
    if (plan.steps != steps_for(action, desired, plan.desired_digest, plan.configuration, plan.create_repository,
                                plan.repository_changes, plan.release, plan.copy_from)
            or (action is Action.UPDATE and not plan.desired_digest)):
        raise ValueError(f"{at}.steps are not the steps of a {action.value} of {desired.name}")
    return plan


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# ECR's repository names (the schema's repositoryName less its URI prefix): a name that is shown
# and, were it ever used, put in a registry URL, so no `..`, `?`, `#` or control characters.
_REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")


def _copy_from(value: Any, at: str) -> ImageElsewhere | None:
    """The other environment's image a plan copies: its environment, repository and digest.
    What apply copies is re-derived (deployer.binding): this is checked for form and shown."""
    if value is None:
        return None
    entry = _known_keys(_typed(value, dict, at), ("environment", "repository_uri", "digest"), at)
    environment = _typed(entry.get("environment"), str, f"{at}.environment")
    if not environments.NAME.fullmatch(environment):
        raise ValueError(f"{at}.environment {shown(environment)} is not an environment name")
    uri = _typed(entry.get("repository_uri"), str, f"{at}.repository_uri")
    repository = EcrRepository.parse(uri)
    if repository is None or not _REPOSITORY_NAME.fullmatch(repository.name) or len(repository.name) > 256:
        raise ValueError(f"{at}.repository_uri {shown(uri)} is not an ECR repository")
    digest = _typed(entry.get("digest"), str, f"{at}.digest")
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"{at}.digest is not sha256: and 64 lowercase hex digits")
    return ImageElsewhere(environment, repository, digest)


def _without_words(value: Any) -> Any:
    """An explanation as written, less the words written beside its data (made again when shown)."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ("description", "changed_files")}
    return value


# A configuration change's field: a key of deploy.yaml, environment.<variable name>,
# tags.<tag key> (1 to 128 characters: a printable one, as every field is), or a sub-key of
# image_config, logging or vpc.
_CONFIG_FIELD = re.compile(r"(?:[a-z_]{1,64})(?:\.[A-Za-z][A-Za-z0-9_]{0,255})?")
_TAG_FIELD = re.compile(r"tags\.[^\x00-\x1f\x7f]{1,128}")
_KEYS_WITH_SUBKEYS = ("environment", "tags")


def _configuration(value: Any, at: str) -> tuple[FieldChange, ...]:
    return _changes(value, at, _config_field)


def _config_field(name: str) -> bool:
    key, dot, sub = name.partition(".")
    if key in CONFIG_SETTINGS:  # image_config.command, logging.format...: one of its sub-keys
        return sub in CONFIG_SETTINGS[key]
    return (key in CONFIG_KEYS and bool(dot) == (key in _KEYS_WITH_SUBKEYS)
            and bool((_TAG_FIELD if key == "tags" else _CONFIG_FIELD).fullmatch(name)))


def _repository_field(name: str) -> bool:
    """repository.<setting>, or repository.tags.<tag key>."""
    setting = name.removeprefix(REPOSITORY_FIELD_PREFIX)
    if setting == name:
        return False
    return bool(_TAG_FIELD.fullmatch(setting)) if setting.startswith("tags.") else setting in REPOSITORY_KEYS and setting != "tags"


def _changes(value: Any, at: str, valid_field: Callable[[str], bool]) -> tuple[FieldChange, ...]:
    """Field changes, every value typed and bounded (literals of deploy.yaml: shown inert)."""
    entries = _typed(value, list, at)
    changes = []
    for index, entry in enumerate(entries):
        where = f"{at}[{index}]"
        entry = _known_keys(_typed(entry, dict, where), ("field", "before", "after", "after_hash"), where)
        name = _typed(entry.get("field"), str, f"{where}.field")
        if not valid_field(name):
            raise ValueError(f"{where}.field {shown(name)} is not a setting deployer manages")
        after_hash = _typed(entry.get("after_hash"), (str, type(None)), f"{where}.after_hash")
        if after_hash is not None and not _SHA256_HEX.fullmatch(after_hash):
            raise ValueError(f"{where}.after_hash is not 64 lowercase hex digits")
        changes.append(FieldChange(name, _typed(entry.get("before"), (str, type(None)), f"{where}.before", text=True),
                                   _typed(entry.get("after"), (str, type(None)), f"{where}.after", text=True), after_hash))
    return tuple(changes)


def _release(value: Any, at: str) -> ReleasePlan | None:
    """A release: names and numbers as Lambda has them, the event's digest, the expectation (shown inert)."""
    if value is None:
        return None
    entry = _known_keys(_typed(value, dict, at), [f.name for f in dataclasses.fields(ReleasePlan)], at)
    fields = {name: _typed(entry.get(name), (str, type(None)), f"{at}.{name}", text=name == "smoke_expect")
              for name in (f.name for f in dataclasses.fields(ReleasePlan))}
    if fields["current_version"] not in (None, "$LATEST") and not _VERSION.fullmatch(fields["current_version"]):
        raise ValueError(f"{at}.current_version is not a version number")
    if fields["alias"] is not None and not _ALIAS.fullmatch(fields["alias"]):
        raise ValueError(f"{at}.alias is not an alias name")
    if fields["smoke_event_sha256"] is not None and not _SHA256_HEX.fullmatch(fields["smoke_event_sha256"]):
        raise ValueError(f"{at}.smoke_event_sha256 is not 64 lowercase hex digits")
    return ReleasePlan(**fields)


_VERSION = re.compile(r"[1-9][0-9]{0,9}")
_ALIAS = re.compile(r"(?![0-9]+$)[A-Za-z0-9_-]{1,128}")


def _reason(value: Any, at: str) -> Reason:
    entry = _typed(value, dict, at)
    code = _typed(entry.get("code"), str, f"{at}.code")
    codes = {c.value: c for c in ReasonCode}
    if code not in codes:
        raise ValueError(f"{at}.code {code!r} is not one of {', '.join(codes)}")
    return Reason(codes[code], _typed(entry.get("detail"), (str, type(None)), f"{at}.detail", text=True),
                  _typed(entry.get("update_in_progress"), bool, f"{at}.update_in_progress"))


# What a saved plan does not hold of Desired: apply re-derives them from deploy.yaml (the
# configuration, secrets included; whether a missing repository may be created; its settings),
# and binding compares what they led to (configuration and repository changes, create_repository).
_NOT_SAVED = ("config", "create_repository", "repository_config", "release", "inputs", "layout")


def _desired(desired: Desired) -> dict[str, str]:
    """Desired as JSON: its repository as the URI people know."""
    fields = {f.name: getattr(desired, f.name) for f in dataclasses.fields(desired) if f.name not in ("repository", *_NOT_SAVED)}
    return {"name": fields.pop("name"), "region": fields.pop("region"), "repository_uri": desired.repository_uri, **fields}


def _check_desired(desired: Desired, where: str) -> None:
    """Values that derive from one another must agree: an edited plan could otherwise deploy an
    arm64 image as x86_64, or to another region than its repository's."""
    if LAMBDA_ARCHITECTURES.get(desired.platform) != desired.architecture:
        raise ValueError(f"{where}.architecture {desired.architecture!r} does not match platform {desired.platform!r}")
    if content_tag(desired.source_digest) != desired.content_tag:
        raise ValueError(f"{where}.content_tag {desired.content_tag!r} is not the tag of source {desired.source_digest}")


def _step(entry: Any, where: str) -> Step:
    entry = _typed(entry, dict, where)
    kind = _typed(entry.get("type"), str, f"{where}.type")
    if kind not in _STEPS_BY_NAME:
        raise ValueError(f"{where}.type {kind!r} is not a step deployer knows")
    fields = {k: v for k, v in entry.items() if k not in ("type", "description")}
    _known_keys(fields, (f.name for f in dataclasses.fields(_STEPS_BY_NAME[kind])), where)
    for name in ("keys", "settings"):  # what a step sets: a list in JSON
        if name in fields:
            fields[name] = tuple(_typed(key, str, f"{where}.{name}", text=True) for key in _typed(fields[name], list, f"{where}.{name}"))
    for name in ("image", "source"):  # the nested values of a step: images
        if name in fields:
            image = _known_keys(_typed(fields[name], dict, f"{where}.{name}"), ("repository_uri", "digest", "tag"), f"{where}.{name}")
            fields[name] = ImageRef(**{k: _typed(v, (str, type(None)), f"{where}.{name}.{k}") for k, v in image.items()})
    step: Step = _STEPS_BY_NAME[kind](**fields)
    return step


def write(plan: Plan, path: Path) -> None:
    """Write atomically: a half-written plan must never be applied. The temporary file has a
    name of its own (mkstemp), so no existing file is ever written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(to_json(plan))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PlanError(f"{path}: cannot write plan file: {exc.strerror}") from exc


def read_bounded(path: Path) -> bytes:
    """The bytes of a plan file: a regular file of at most MAX_PLAN_BYTES. Opened without
    blocking, so a FIFO given as a plan is refused instead of waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PlanError(f"{path}: cannot read plan file: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PlanError(f"{path}: not a regular file; give the plan file written by 'deployer plan --out FILE'")
        if info.st_size > MAX_PLAN_BYTES:
            raise PlanError(f"{path}: {info.st_size} bytes is too large for a plan file (at most {MAX_PLAN_BYTES}); "
                            "give the file written by 'deployer plan --out FILE'")
        data = handle.read(MAX_PLAN_BYTES + 1)
    if len(data) > MAX_PLAN_BYTES:  # it grew while being read
        raise PlanError(f"{path}: too large for a plan file (more than {MAX_PLAN_BYTES} bytes)")
    return data


def read(path: Path) -> Plan:
    try:
        text = read_bounded(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{path}: cannot read plan file: not UTF-8 text (byte {exc.start}); "
                        "give the file written by 'deployer plan --out FILE'") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); make a plan with 'deployer plan --out FILE'") from exc
    except ValueError as exc:  # a number of more than 4300 digits, say: not a plan deployer wrote
        raise PlanError(f"{path}: not a plan deployer wrote ({exc}); make a plan with 'deployer plan --out FILE'") from None
    except RecursionError:  # `[[[[...` nested past the parser's stack: not a plan deployer wrote
        raise PlanError(f"{path}: JSON nested too deeply for a plan; make a plan with 'deployer plan --out FILE'") from None
    return from_dict(data, str(path))
