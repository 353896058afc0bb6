"""An image built for one environment, copied (not rebuilt) for another: the planner's steps, the
words, the plan file's round trip and its refusal of a damaged copy, and a saved plan against a
fresh one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deployer import binding, explain, planfile
from deployer.errors import PlanError
from deployer.plan import (
    Action,
    BuildImage,
    CopyImage,
    CreateFunction,
    CreateRepository,
    ImageRef,
    Plan,
    ReasonCode,
    SourceFile,
    UpdateFunctionCode,
    VerifyImage,
    WaitForActive,
    WaitForUpdate,
    make_plan,
)
from deployer.spec import EcrRepository
from deployer.state import Desired, FunctionState, ImageElsewhere, ImageState, Observed

SOURCE = "sha256:" + "a" * 64
TAG = "src-" + "a" * 40
RUNNING, STAGED = "b" * 64, "sha256:" + "c" * 64
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
HERE = EcrRepository("222222222222", "eu-west-1", "fn-production")
STAGING = EcrRepository("111111111111", "us-east-1", "fn-staging")
DESIRED = Desired(name="fn", region="eu-west-1", repository=HERE, content_tag=TAG, source_digest=SOURCE,
                  architecture="arm64", platform="linux/arm64", spec_file="deploy.yaml")
ELSEWHERE = ImageElsewhere("staging", STAGING, STAGED)
KEY = bytes(range(32))
TAGGED = ImageRef(HERE.uri, tag=TAG)
COPY = CopyImage(ImageRef(STAGING.uri, digest=STAGED), TAGGED)


def function(exists: bool = True) -> FunctionState:
    return FunctionState(exists=True, package_type="Image", code_sha256=RUNNING, architectures=("arm64",), revision_id="r1") \
        if exists else FunctionState(exists=False)


def observed(exists: bool = True, here: str | None = None, elsewhere: ImageElsewhere | None = ELSEWHERE,
             repository: bool = True) -> Observed:
    image = ImageState(repository, here, DOCKER_V2 if here else None)
    return Observed(function(exists), image, elsewhere=elsewhere)


def planned(seen: Observed, desired: Desired = DESIRED) -> Plan:
    if not seen.function.exists:  # a role to create it with
        desired = replace(desired, config=replace(desired.config, role="arn:aws:iam::222222222222:role/r"))
    plan = make_plan([(desired, seen)], KEY)
    return replace(plan, sources=(SourceFile("deploy.yaml", "0" * 64),))


def test_an_image_of_another_environment_is_copied_by_digest_not_built() -> None:
    [fp] = planned(observed()).functions
    assert (fp.action, fp.reason.code, fp.desired_digest, fp.copy_from) == (Action.UPDATE, ReasonCode.IMAGE_ELSEWHERE, STAGED, ELSEWHERE)
    assert fp.steps == (COPY, VerifyImage(TAGGED), UpdateFunctionCode("fn", ImageRef(HERE.uri, digest=STAGED), "arm64"),
                        WaitForUpdate("fn"))
    assert not any(isinstance(step, BuildImage) for step in fp.steps)
    assert explain.reason(fp) == (
        f"no image in ECR for source sha256:aaaaaaaaaaaa here (tag {TAG}): the image of this source copied from staging's "
        f"repository {STAGING.uri} (sha256:cccccccccccc, same digest, not built again)")
    assert COPY.describe() == f"copy {STAGING.uri}@{STAGED} to {HERE.uri}:{TAG} (same digest, no build)"


def test_a_missing_function_is_created_from_the_copy_in_a_repository_created_first() -> None:
    [fp] = planned(observed(exists=False, repository=False)).functions
    assert (fp.action, fp.desired_digest, fp.create_repository) == (Action.CREATE, STAGED, True)
    assert isinstance(fp.steps[0], CreateRepository)
    assert fp.steps[1:] == (COPY, VerifyImage(TAGGED), CreateFunction("fn", ImageRef(HERE.uri, digest=STAGED), "arm64"),
                            WaitForActive("fn"))
    assert "created from the image of this source copied from staging's repository" in explain.reason(fp)


def test_an_image_under_the_content_tag_here_is_used_as_it_is() -> None:
    [fp] = planned(observed(here="sha256:" + "d" * 64)).functions
    assert (fp.action, fp.copy_from, fp.desired_digest) == (Action.UPDATE, None, "sha256:" + "d" * 64)
    assert not any(isinstance(step, CopyImage) for step in fp.steps)


def test_without_an_image_anywhere_it_is_built() -> None:
    [fp] = planned(observed(elsewhere=None)).functions
    assert (fp.action, fp.copy_from) == (Action.BUILD, None)


def test_a_copy_round_trips_through_the_plan_file() -> None:
    for seen in (observed(), observed(exists=False, repository=False)):
        plan = planned(seen)
        data = planfile.to_dict(plan)
        assert data["functions"][0]["copy_from"] == {"environment": "staging", "repository_uri": STAGING.uri, "digest": STAGED}
        assert [step["type"] for step in data["functions"][0]["steps"]].count("CopyImage") == 1
        assert planfile.from_dict(data) == plan


def _edit(path: tuple[Any, ...], value: Any) -> Any:
    data = planfile.to_dict(planned(observed()))
    target = data["functions"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


OTHER = "sha256:" + "e" * 64


@pytest.mark.parametrize("path, value, problem", [
    (("steps", 0, "source", "digest"), OTHER, "steps are not the steps of a update"),
    (("steps", 0, "source", "repository_uri"), "333333333333.dkr.ecr.us-east-1.amazonaws.com/x", "steps are not the steps"),
    (("steps", 0, "source"), {"repository_uri": STAGING.uri, "tag": TAG}, "steps are not the steps"),
    (("steps", 0, "source"), {"repository_uri": STAGING.uri}, "an image reference has either a digest or a tag"),
    (("copy_from", "digest"), OTHER, "copy_from does not fit a update of fn"),
    (("copy_from", "digest"), "sha256:short", "copy_from.digest is not sha256"),
    (("copy_from", "repository_uri"), "evil.example/fn", "copy_from.repository_uri 'evil.example/fn' is not an ECR repository"),
    (("copy_from", "repository_uri"), HERE.uri, "copy_from does not fit"),
    (("copy_from", "repository_uri"), STAGING.uri + "/../../v2/other?x=#",
     "/fn-staging/../.'... (74 characters) is not an ECR repository"),
    (("copy_from", "environment"), "Prod\n", "copy_from.environment"),
    (("copy_from", "extra"), 1, "has a key deployer does not know"),
    (("copy_from",), None, "steps are not the steps"),
    (("action",), "build", "copy_from does not fit a build, push and update of fn"),
])
def test_a_damaged_copy_is_refused(path: tuple[Any, ...], value: Any, problem: str) -> None:
    with pytest.raises(PlanError, match="damaged plan") as refused:
        planfile.from_dict(_edit(path, value), "plan.json")
    assert problem in str(refused.value)


def _compare(saved: Plan, fresh: Plan) -> tuple[Plan, list[binding.Refusal]]:
    return binding.compare(saved, fresh, "plan.json")


def test_a_saved_copy_runs_when_the_image_is_still_there() -> None:
    saved = planned(observed())
    to_run, refusals = _compare(saved, planned(observed()))
    assert refusals == [] and to_run.functions == saved.functions


def test_a_saved_copy_whose_source_image_is_gone_is_refused_not_built() -> None:
    to_run, refusals = _compare(planned(observed()), planned(observed(elsewhere=None)))
    assert to_run.functions == ()
    assert [r.message for r in refusals] == [
        f"the image fn's plan copies, sha256:cccccccccccc from staging's repository {STAGING.uri}, is no longer there "
        "(now: nowhere: it would be built); run plan again"]


def test_a_saved_copy_whose_source_holds_another_image_now_is_refused() -> None:
    moved = replace(ELSEWHERE, digest=OTHER)
    _, refusals = _compare(planned(observed()), planned(observed(elsewhere=moved)))
    assert [r.message for r in refusals] == [
        f"the image fn's plan copies, sha256:cccccccccccc from staging's repository {STAGING.uri}, is no longer there "
        "(now: sha256:eeeeeeeeeeee in staging's repository); run plan again"]


def test_a_saved_build_is_refused_when_another_environment_got_the_image_since() -> None:
    _, refusals = _compare(planned(observed(elsewhere=None)), planned(observed()))
    assert [r.message for r in refusals] == [
        "staging's repository got the image of fn's source since the plan, which builds it (sha256:cccccccccccc would be "
        "copied instead); run plan again"]


def test_a_saved_copy_already_made_by_another_apply_deploys_the_same_digest() -> None:
    to_run, refusals = _compare(planned(observed()), planned(observed(here=STAGED, elsewhere=None)))
    assert refusals == []
    [fp] = to_run.functions
    assert (fp.action, fp.desired_digest, fp.copy_from) == (Action.UPDATE, STAGED, None)
