"""Two applies of the same function at once, on one machine, through the real CLI.

Both plan a build of the same source. The first builds and pushes; the second, at its build
step, waits for the first's lock of the image, then finds the image in ECR and deploys that digest
instead of building and pushing the tag again. Both exit 0; ECR holds one new image, tagged; no
local tag and nothing in the temp dir is left; Lambda runs the image of the source.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from tests.conftest import ImageFunction
from tests.localcloud.cloud import LocalCloud
from tests.reliability.conftest import Cli, lambda_config, tree_hashes
from tests.reliability.proxy import FORWARD, Fault, HttpRequest, lambda_rest
from tests.reliability.test_interrupts import EVENT_SECONDS, Background, assert_no_debris, outcomes, pushing

pytestmark = pytest.mark.integration

WAITING = r"another apply on this machine \(pid \d+\) is building src-[0-9a-f]+; waiting for it"


def test_two_applies_of_one_function_at_once_build_once_and_both_end_cleanly(
        cli: Cli, one_function: ImageFunction, local_cloud: LocalCloud, lambda_client: Any, ecr_client: Any) -> None:
    fn = one_function
    tree = tree_hashes(cli.monorepo.root)
    images_before = len(ecr_client.describe_images(repositoryName=fn.repository)["imageDetails"])
    second_waits = threading.Event()

    def hold_first_push(_: HttpRequest) -> Fault:
        # The first apply's push waits until the second is waiting for the image: they overlap
        # for sure, whatever the build cache makes of the build's duration.
        assert second_waits.wait(EVENT_SECONDS), "the second apply never waited for the first"
        return FORWARD

    cli.registry.when(pushing, hold_first_push)  # not the second's plan reading the running image's labels

    first = Background.start(cli, "apply", "--yes")
    second: Background | None = None
    try:
        first.wait_for(r"\[\d+/\d+\] build image")
        second = Background.start(cli, "apply", "--yes")  # plans now: ECR has no image yet
        second.wait_for(WAITING)
        second_waits.set()
    finally:
        second_waits.set()
        first_run = first.finish()
        second_run = second.finish() if second else None
    assert second_run is not None

    assert first_run.returncode == 0, first_run.output
    assert second_run.returncode == 0, second_run.output
    assert re.search(r"\[3/8\] build image", second_run.stdout), "the second planned a build too"
    assert "ECR got src-" in second_run.stdout and "pushed by another apply" in second_run.stdout, second_run.output
    assert outcomes(first_run)[fn.name][0] in ("built", "unchanged")
    assert outcomes(second_run)[fn.name][0] in ("updated", "unchanged")
    assert "Successfully built" not in second_run.stdout
    assert cli.registry.count(lambda r: r.method == "PUT" and "/manifests/" in r.path) == 1, "one push of the tag"

    tag = re.search(r"src-[0-9a-f]+", first_run.stdout)
    assert tag is not None
    details = ecr_client.describe_images(repositoryName=fn.repository)["imageDetails"]
    assert len(details) == images_before + 1, "one new image in ECR"
    digest = next(d["imageDigest"] for d in details if tag.group(0) in d.get("imageTags", []))
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == digest.removeprefix("sha256:")
    assert tree_hashes(cli.monorepo.root) == tree
    assert_no_debris(cli, first_run, local_cloud, ecr_client, fn)


def test_the_same_image_deployed_by_another_apply_just_before_update_function_code_ends_unchanged(
        cli: Cli, one_function: ImageFunction, local_cloud: LocalCloud, lambda_client: Any, ecr_client: Any) -> None:
    """The other apply's update lands between this one's last read of the function and its
    UpdateFunctionCode, which Lambda then refuses for its RevisionId: the function runs what this
    apply would deploy, so it ends as if it had seen that first."""
    fn = one_function
    tree = tree_hashes(cli.monorepo.root)
    plan = cli("plan")
    tag = re.search(r":(src-[0-9a-f]+)", plan.stdout)
    assert plan.returncode == 0 and tag is not None, plan.output
    deployed: list[str] = []

    def other_apply_deploys_the_same_image(_: HttpRequest) -> Fault:
        [image] = ecr_client.describe_images(repositoryName=fn.repository, imageIds=[{"imageTag": tag.group(1)}])["imageDetails"]
        uri = fn.image.lambda_uri.split("@", 1)[0] + "@" + image["imageDigest"]
        lambda_client.update_function_code(FunctionName=fn.name, ImageUri=uri, Architectures=["arm64"])
        deployed.append(image["imageDigest"])
        return FORWARD

    trigger = cli.aws.when(lambda_rest("PUT", "code"), other_apply_deploys_the_same_image)

    run = cli("apply", "--yes")

    assert trigger.fired.is_set() and run.returncode == 0, run.output
    assert cli.aws.count(lambda_rest("PUT", "code")) == 1, "refused for its RevisionId, and not sent again"
    assert outcomes(run)[fn.name] == ("unchanged", f"already runs {deployed[0][:19]}: another apply deployed it since the plan")
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == deployed[0].removeprefix("sha256:")
    assert tree_hashes(cli.monorepo.root) == tree
    assert_no_debris(cli, run, local_cloud, ecr_client, fn)
