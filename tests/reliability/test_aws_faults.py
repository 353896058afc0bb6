"""Faults between deployer and AWS (moto behind a proxy): an endpoint that never answers, and
UpdateFunctionCode that dies on the way in or whose answer is lost on the way back."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ImageFunction
from tests.localcloud.cloud import LocalCloud
from tests.reliability.conftest import EXAMPLE_SOURCE, Cli, lambda_config, local_tags, tree_hashes
from tests.reliability.proxy import RESET, RESET_ON_ANSWER, Fault, HttpRequest, lambda_rest

pytestmark = pytest.mark.integration

# deployer bounds each AWS call to 30 s (deployer/aws.py); a plan makes a few in a row. Loose on
# purpose: the machine is shared, this only proves that nothing waits for minutes.
BLACK_HOLE_PLAN_BOUND_SECONDS = 150


def test_black_holed_aws_endpoint_fails_plan_in_bounded_time_naming_the_endpoint(
        cli: Cli, one_function: ImageFunction) -> None:
    # Two functions, so that the problem is said once for both and not waited for twice.
    cli.monorepo.write_spec([{"name": name, "repository": one_function.repository, "source": EXAMPLE_SOURCE}
                             for name in (one_function.name, f"{one_function.name}-2")])
    cli.aws.hold()  # accepts connections, reads the requests, never answers
    tree = tree_hashes(cli.monorepo.root)

    started = time.monotonic()
    run = cli("plan")
    elapsed = time.monotonic() - started

    assert run.returncode == 1, run.output
    assert elapsed < BLACK_HOLE_PLAN_BOUND_SECONDS, run.output
    assert f"{cli.aws.url} accepted the connection but did not answer" in run.stderr, run.output
    assert "check the network" in run.stderr, run.output
    assert run.stderr.count("did not answer") == 1, run.output  # said once, not per function
    assert len(cli.aws.requests) == 3, run.output  # botocore tried 3 times, once for both functions
    assert tree_hashes(cli.monorepo.root) == tree


def test_aws_down_at_update_function_code_fails_cleanly_and_a_rerun_deploys(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    fn = one_function
    tree = tree_hashes(cli.monorepo.root)

    def die(_: HttpRequest) -> Fault:
        cli.aws.drop()  # this request and everything after it: moto is gone
        return RESET

    trigger = cli.aws.when(lambda_rest("PUT", "code"), die)

    run = cli("apply", "--yes")

    assert trigger.fired.is_set(), run.output
    assert run.returncode == 1, run.output
    assert "lambda:UpdateFunctionCode" in run.stdout, run.output
    # The last of botocore's attempts decides the words: the reset itself ("closed the connection
    # before answering") or, once moto is gone, "cannot connect": both name the endpoint.
    assert re.search(rf"no answer: ({re.escape(cli.aws.url)} closed the connection before answering|cannot connect to "
                     rf"{re.escape(cli.aws.url)})", run.stdout), run.output
    assert "may or may not run the new image; run 'deployer plan' to see" in run.stdout, run.output
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == fn.image.code_sha256  # the old image
    assert tree_hashes(cli.monorepo.root) == tree
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, fn.repository) == []

    cli.aws.pass_through()  # moto is back
    again = cli("apply", "--yes")

    assert again.returncode == 0, again.output
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] != fn.image.code_sha256
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, fn.repository) == []


def test_lost_answer_of_update_function_code_is_reported_as_the_update_it_was(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud, tmp_path: Path) -> None:
    # Lambda applies the update, the answer never arrives; botocore sends it again with the same
    # RevisionId, which our own update made stale. That refusal must not read as someone else's
    # change: deployer asks Lambda, which runs our image.
    fn = one_function
    plan_file = tmp_path / "plan.json"
    assert cli("plan", "--out", str(plan_file)).returncode == 0
    trigger = cli.aws.when(lambda_rest("PUT", "code"), lambda _: RESET_ON_ANSWER)

    run = cli("apply", str(plan_file))

    assert trigger.fired.is_set(), run.output
    assert run.returncode == 0, run.output
    assert cli.aws.count(lambda_rest("PUT", "code")) == 2  # the lost one and botocore's retry
    assert "changed since" not in run.stdout, run.output
    after = lambda_config(lambda_client, fn.name)
    assert after["CodeSha256"] != fn.image.code_sha256
    assert f"now runs sha256:{after['CodeSha256'][:12]}" in run.stdout, run.output
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, fn.repository) == []


def test_a_slow_network_only_makes_apply_slower(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    cli.aws.latency = cli.registry.latency = 0.3  # per request, well under every timeout

    run = cli("apply", "--yes")

    assert run.returncode == 0, run.output
    assert lambda_config(lambda_client, one_function.name)["CodeSha256"] != one_function.image.code_sha256
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, one_function.repository) == []
