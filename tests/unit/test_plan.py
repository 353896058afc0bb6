"""The planner as data: desired + observed -> expected action, reason and steps."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deployer import planfile
from deployer.errors import PlanError
from deployer.plan import (
    Action,
    AssembleContext,
    BuildImage,
    Cleanup,
    EcrLogin,
    ImageRef,
    PushImage,
    UpdateFunctionCode,
    VerifyImage,
    WaitForUpdate,
    Plan,
    Reason,
    ReasonCode,
    SourceFile,
    make_plan,
    plan_function,
)
from deployer.render import render
from deployer.spec import EcrRepository
from deployer.state import Desired, FunctionState, ImageState, Observed

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn-repo"
SOURCE = "sha256:" + "a" * 64
TAG = "src-" + "a" * 40
OLD = "b" * 64
NEW = "c" * 64
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

REPOSITORY = EcrRepository("123456789012", "us-east-1", "fn-repo")
DESIRED = Desired(name="fn", region="us-east-1", repository=REPOSITORY, content_tag=TAG, source_digest=SOURCE,
                  architecture="arm64", platform="linux/arm64", spec_file="deploy.yaml")


def running(code: str, arch: str = "arm64", **extra: object) -> FunctionState:
    return FunctionState(exists=True, package_type="Image", code_sha256=code, architectures=(arch,), **extra)  # type: ignore[arg-type]


def image(digest: str | None, media_type: str = DOCKER_V2) -> ImageState:
    return ImageState(repository_exists=True, digest=f"sha256:{digest}" if digest else None,
                      media_type=media_type if digest else None)


UPDATE_STEPS = (UpdateFunctionCode("fn", ImageRef(REPO, digest=f"sha256:{NEW}"), "arm64"), WaitForUpdate("fn"))
BUILD_STEPS = (
    EcrLogin("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
    AssembleContext(SOURCE),
    BuildImage("linux/arm64"),
    PushImage(ImageRef(REPO, tag=TAG)),
    VerifyImage(ImageRef(REPO, tag=TAG)),
    UpdateFunctionCode("fn", ImageRef(REPO, tag=TAG), "arm64"),
    WaitForUpdate("fn"),
    Cleanup(),
)

# Planner cases as data: one file per case in plan_cases/, run by test_planner_case. Adding a
# case is adding a file: `function` and `image` are what AWS reports (FunctionState and
# ImageState fields), `action` and `reason` what the planner must decide; the steps follow from
# the action (UPDATE_STEPS, BUILD_STEPS above, none otherwise).
CASE_DIR = Path(__file__).parent / "plan_cases"
CASE_FILES = sorted(CASE_DIR.glob("*.json"))
STEPS_OF = {Action.UPDATE: UPDATE_STEPS, Action.BUILD: BUILD_STEPS, Action.NOOP: (), Action.BLOCKED: ()}


def load_case(path: Path) -> tuple[Observed, Action, Reason]:
    case = json.loads(path.read_text())
    function = FunctionState(**{**case["function"], "architectures": tuple(case["function"].get("architectures", ()))})
    reason = case["reason"]
    return (Observed(function, ImageState(**case["image"])), Action[case["action"].upper()],
            Reason(ReasonCode(reason["code"]), reason["detail"], reason["update_in_progress"]))


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_planner_case(path: Path) -> None:
    observed, action, reason = load_case(path)
    result = plan_function(DESIRED, observed)
    assert (result.action, result.reason, result.steps) == (action, reason, STEPS_OF[action])
    assert result.current_digest == observed.function.running_digest
    assert result.desired_digest == observed.image.digest
    assert result.current_architectures == observed.function.architectures


def test_planner_cases_are_there() -> None:
    assert len(CASE_FILES) >= 15


def test_plan_keeps_the_revision_id_for_apply() -> None:
    result = plan_function(DESIRED, Observed(running(OLD, revision_id="rev-7"), image(NEW)))
    assert result.revision_id == "rev-7"


def test_plan_orders_functions_by_name_and_counts_changes() -> None:
    pairs = [(replace(DESIRED, name=name), Observed(running(code), image(NEW))) for name, code in (("b", OLD), ("a", NEW))]
    plan = make_plan(pairs)
    assert [fp.name for fp in plan.functions] == ["a", "b"]
    assert plan.has_changes and not plan.blocked
    assert plan.counts()[Action.NOOP] == 1 and plan.counts()[Action.UPDATE] == 1


def test_plan_without_changes_has_no_changes() -> None:
    plan = make_plan([(DESIRED, Observed(running(NEW), image(NEW)))])
    assert not plan.has_changes


SOURCES = (SourceFile("deploy.yaml", "d" * 64), SourceFile("team/deploy.yaml", "e" * 64))


def saved(plan: Plan) -> Plan:
    """`plan` as `deployer plan --out` saves it: with the deploy.yaml files it was made from."""
    return replace(plan, sources=SOURCES)


def test_saved_plan_round_trips_exactly() -> None:
    pairs = [(replace(DESIRED, name=path.stem), load_case(path)[0]) for path in CASE_FILES]
    plan = saved(make_plan(pairs))
    assert planfile.from_dict(planfile.to_dict(plan)) == plan


def test_saved_plan_of_another_format_version_is_refused() -> None:
    data = planfile.to_dict(saved(make_plan([(DESIRED, Observed(running(NEW), image(NEW)))])))
    data["format_version"] = 99
    with pytest.raises(PlanError, match="format_version 99 is not supported"):
        planfile.from_dict(data)


def _damage(data: dict[str, Any], change: str) -> None:
    fp = data["functions"][0]
    if change == "version is true":
        data["format_version"] = True
    elif change == "action is a number":
        fp["action"] = 5
    elif change == "unknown action":
        fp["action"] = "destroy"
    elif change == "steps removed from an update":
        fp["steps"] = []
    elif change == "update pointed at another image":
        fp["steps"][0]["image"]["digest"] = "sha256:" + "f" * 64
    elif change == "unknown step":
        fp["steps"].append({"type": "DeleteFunction"})
    elif change == "desired field missing":
        del fp["desired"]["content_tag"]
    elif change == "functions not a list":
        data["functions"] = {"fn": fp}
    elif change == "architecture edited with its step":
        fp["desired"]["architecture"] = "x86_64"
        fp["steps"][0]["architecture"] = "x86_64"
    elif change == "function planned twice":
        data["functions"].append(dict(fp))
    elif change == "region edited":
        fp["desired"]["region"] = "eu-west-1"
    elif change == "content tag edited":
        fp["desired"]["content_tag"] = "latest"
    elif change == "no sources":
        data["sources"] = []
    elif change == "source outside the checkout":
        data["sources"][0]["path"] = "../elsewhere/deploy.yaml"
    elif change == "absolute source":
        data["sources"][0]["path"] = "/etc/deploy.yaml"
    elif change == "source digest not hex":
        data["sources"][0]["sha256"] = "z" * 64
    elif change == "source listed twice":
        data["sources"][1] = dict(data["sources"][0])


@pytest.mark.parametrize("change", ["version is true", "action is a number", "unknown action", "steps removed from an update",
                                    "update pointed at another image", "unknown step", "desired field missing",
                                    "functions not a list", "architecture edited with its step", "function planned twice",
                                    "region edited", "content tag edited", "no sources", "source outside the checkout",
                                    "absolute source", "source digest not hex", "source listed twice"])
def test_damaged_saved_plan_is_refused(change: str) -> None:
    data = planfile.to_dict(saved(make_plan([(DESIRED, Observed(running(OLD), image(NEW)))])))
    _damage(data, change)
    with pytest.raises(PlanError, match="(damaged plan|is not supported).*run plan again"):
        planfile.from_dict(data, "plan.json")


def test_text_render_shows_steps_and_summary() -> None:
    plan = make_plan([(DESIRED, Observed(running(OLD), image(None)))])
    out = render(plan, "text")
    assert "+ fn: build, push and update" in out
    assert "    3. build image for linux/arm64" in out
    assert out.rstrip().endswith("Plan: 1 function(s): 1 build, push and update")


def test_markdown_render_has_a_summary_table_and_collapsed_details() -> None:
    plan = make_plan([(DESIRED, Observed(running(OLD), image(NEW)))])
    out = render(plan, "markdown")
    assert "| `~` | `fn` | `sha256:bbbbbbbbbbbb` | `sha256:cccccccccccc` | update | runs sha256:bbbbbbbbbbbb" in out
    assert "<details>" in out and "</details>" in out


def test_json_render_has_format_version() -> None:
    out = json.loads(render(make_plan([(DESIRED, Observed(running(NEW), image(NEW)))]), "json"))
    assert out["format_version"] == 2
    assert out["functions"][0]["action"] == "noop"
    assert out["summary"]["changes"] is False
