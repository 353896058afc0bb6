"""A Plan as JSON and back: what `plan --format json` prints and `plan --out` saves for `apply`.

The document carries `format_version`; a reader refuses any other version. Steps are written as
{"type": <class name>, ...fields}, so the step list round-trips exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from deployer.errors import PlanError
from deployer.observed import Desired
from deployer.plan import FORMAT_VERSION, STEP_TYPES, Action, FunctionPlan, Plan, Step

_STEPS_BY_NAME = {cls.__name__: cls for cls in STEP_TYPES}


def to_dict(plan: Plan) -> dict[str, Any]:
    counts = plan.counts()
    return {
        "format_version": plan.format_version,
        "summary": {"changes": plan.has_changes, **{a.name.lower(): counts[a] for a in Action}},
        "functions": [_function(fp) for fp in plan.functions],
    }


def _function(fp: FunctionPlan) -> dict[str, Any]:
    return {
        "name": fp.name,
        "action": fp.action.name.lower(),
        "reason": fp.reason,
        "desired": dataclasses.asdict(fp.desired),
        "current_digest": fp.current_digest,
        "desired_digest": fp.desired_digest,
        "current_architectures": list(fp.current_architectures),
        "revision_id": fp.revision_id,
        "steps": [{"type": type(step).__name__, "description": step.describe(), **dataclasses.asdict(step)} for step in fp.steps],
    }


def to_json(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2) + "\n"


def from_dict(data: Any, source: str = "plan") -> Plan:
    if not isinstance(data, dict) or "format_version" not in data:
        raise PlanError(f"{source}: not a deployer plan (no format_version); make one with 'deployer plan --out FILE'")
    if data["format_version"] != FORMAT_VERSION:
        raise PlanError(f"{source}: plan format_version {data['format_version']!r} is not supported (this deployer reads {FORMAT_VERSION}); run plan again")
    try:
        return Plan(tuple(_function_plan(entry) for entry in data["functions"]), FORMAT_VERSION)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{source}: damaged plan ({type(exc).__name__}: {exc}); run plan again") from exc


def _function_plan(entry: dict[str, Any]) -> FunctionPlan:
    return FunctionPlan(
        desired=Desired(**entry["desired"]),
        action=Action[entry["action"].upper()],
        reason=entry["reason"],
        current_digest=entry["current_digest"],
        desired_digest=entry["desired_digest"],
        current_architectures=tuple(entry["current_architectures"]),
        revision_id=entry["revision_id"],
        steps=tuple(_step(step) for step in entry["steps"]),
    )


def _step(entry: dict[str, Any]) -> Step:
    fields = {k: v for k, v in entry.items() if k not in ("type", "description")}
    step: Step = _STEPS_BY_NAME[entry["type"]](**fields)
    return step


def write(plan: Plan, path: Path) -> None:
    """Write atomically: a half-written plan must never be applied."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(to_json(plan), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PlanError(f"{path}: cannot write plan file: {exc.strerror}") from exc


def read(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot read plan file: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); make a plan with 'deployer plan --out FILE'") from exc
    return from_dict(data, str(path))
