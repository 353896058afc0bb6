"""The lost-update guard end to end: someone else changes the function while a reviewed plan is
applied. Wherever the change lands, apply refuses to overwrite it ("changed since plan", exit 1),
Lambda keeps the outside change, the source tree is untouched and nothing is left behind.

The outside change is made with the test's own boto3 client (straight to moto), at a point chosen
through the proxies: between plan and apply, while the image builds, and between apply's last
look at the function and its UpdateFunctionCode, where only Lambda's RevisionId precondition can
catch it (moto enforces it: tests/localcloud/moto_main.py).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import ImageFunction
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.images import PushedImage
from tests.reliability.conftest import Cli, Run, lambda_config, local_tags, tree_hashes
from tests.reliability.proxy import FORWARD, Fault, HttpRequest, lambda_rest

pytestmark = pytest.mark.integration

CHANGED_SINCE_PLAN = re.compile(r"changed since (the )?plan")
EVENT_SECONDS = 120  # bound on waiting for a step of apply; far above what it takes

OutsideChange = Callable[[], Callable[[dict[str, Any]], None]]


@pytest.fixture(params=["code", "configuration"])
def outside_change(request: pytest.FixtureRequest, one_function: ImageFunction, push_image: Callable[..., PushedImage],
                   lambda_client: Any) -> OutsideChange:
    """outside_change() makes the change now and returns a check that Lambda kept it. "code":
    another image, as a colleague's deploy would; "configuration": only the description, so that
    only RevisionId tells."""
    fn = one_function
    # Pushed now: the change itself must be quick, it may run while apply waits for an answer.
    other = push_image(fn.repository, "outside", marker=f"outside change {fn.name}") if request.param == "code" else None

    def change() -> Callable[[dict[str, Any]], None]:
        if other is not None:
            lambda_client.update_function_code(FunctionName=fn.name, ImageUri=other.lambda_uri, Architectures=["arm64"])

            def kept(config: dict[str, Any]) -> None:
                assert config["CodeSha256"] == other.code_sha256

            return kept
        lambda_client.update_function_configuration(FunctionName=fn.name, Description="outside change")

        def kept_description(config: dict[str, Any]) -> None:
            assert (config["Description"], config["CodeSha256"]) == ("outside change", fn.image.code_sha256)

        return kept_description

    return change


def assert_refused(run: Run, cli: Cli, fn: ImageFunction, local_cloud: LocalCloud, tree: dict[str, str]) -> None:
    assert run.returncode == 1, run.output
    assert CHANGED_SINCE_PLAN.search(run.stdout + run.stderr), run.output
    assert "run plan again" in run.stdout + run.stderr, run.output
    assert tree_hashes(cli.monorepo.root) == tree
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, fn.repository) == []


def saved_plan(cli: Cli, tmp_path: Path) -> Path:
    plan_file = tmp_path / "plan.json"  # outside the repository: the tree stays as it was
    run = cli("plan", "--out", str(plan_file))
    assert run.returncode == 0, run.output
    return plan_file


def test_outside_change_between_plan_and_apply_is_refused(
        cli: Cli, one_function: ImageFunction, outside_change: OutsideChange, lambda_client: Any,
        local_cloud: LocalCloud, tmp_path: Path) -> None:
    plan_file = saved_plan(cli, tmp_path)
    planned = len(cli.registry.requests)  # the plan read the running image's labels
    tree = tree_hashes(cli.monorepo.root)
    kept = outside_change()

    run = cli("apply", str(plan_file))

    assert_refused(run, cli, one_function, local_cloud, tree)
    assert cli.registry.requests[planned:] == []  # refused before anything was built or pushed
    kept(lambda_config(lambda_client, one_function.name))


def test_outside_change_during_the_build_is_refused(
        cli: Cli, one_function: ImageFunction, outside_change: OutsideChange, lambda_client: Any,
        local_cloud: LocalCloud, tmp_path: Path) -> None:
    plan_file = saved_plan(cli, tmp_path)
    tree = tree_hashes(cli.monorepo.root)
    building, changed = threading.Event(), threading.Event()
    kept: list[Callable[[dict[str, Any]], None]] = []

    def at_build_step(line: str) -> None:
        if re.search(r"\[\d+/\d+\] build image", line) and not building.is_set():
            building.set()
            kept.append(outside_change())  # while the engine builds
            changed.set()

    def hold_push_until_changed(_: HttpRequest) -> Fault:
        # The push waits for the change, so that it has surely landed before apply goes on.
        assert changed.wait(EVENT_SECONDS), "the build step never started"
        return FORWARD

    cli.registry.when(lambda _: True, hold_push_until_changed)

    run = cli.watching("apply", str(plan_file), on_line=at_build_step)

    assert building.is_set(), run.output
    assert_refused(run, cli, one_function, local_cloud, tree)
    kept[0](lambda_config(lambda_client, one_function.name))


def test_outside_change_just_before_update_function_code_is_refused_by_lambda(
        cli: Cli, one_function: ImageFunction, outside_change: OutsideChange, lambda_client: Any,
        local_cloud: LocalCloud, tmp_path: Path) -> None:
    plan_file = saved_plan(cli, tmp_path)
    tree = tree_hashes(cli.monorepo.root)
    kept: list[Callable[[dict[str, Any]], None]] = []
    # Apply has read the function for the last time and found it as planned; the change lands
    # now, before Lambda sees the update: only the RevisionId precondition can catch it.
    trigger = cli.aws.when(lambda_rest("PUT", "code"), lambda _: kept.append(outside_change()))

    run = cli("apply", str(plan_file))

    assert trigger.fired.is_set(), run.output
    assert_refused(run, cli, one_function, local_cloud, tree)
    assert "PreconditionFailedException" in run.stdout, run.output
    assert cli.aws.count(lambda_rest("PUT", "code")) == 1  # refused, not retried
    kept[0](lambda_config(lambda_client, one_function.name))
