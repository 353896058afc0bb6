"""Faults between the Docker engine and the registry (behind a proxy) while apply pushes: the
registry down from the start, or dying in the middle of a layer upload. Apply fails that function
with a message naming the push, Lambda keeps running the old image, and once the registry is back
the same command deploys."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ImageFunction
from tests.localcloud.cloud import LocalCloud
from tests.reliability.conftest import Cli, Run, lambda_config, local_tags, tree_hashes
from deployer.docker_gateway import ENGINE_READ_TIMEOUT_SECONDS
from tests.reliability.proxy import Fault, HttpRequest, blob_upload, reset_after

pytestmark = pytest.mark.integration

CUT_AFTER_BYTES = 4096  # every layer of the image is larger: the cut lands inside an upload


def assert_failed_push_left_things_as_they_were(run: Run, cli: Cli, fn: ImageFunction, lambda_client: Any,
                                                local_cloud: LocalCloud, tree: dict[str, str]) -> None:
    assert run.returncode == 1, run.output
    assert f"push of {cli.registry.endpoint}/{fn.repository}:src-" in run.stdout, run.output
    assert "failed" in run.stdout.split("Apply summary:")[1], run.output
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == fn.image.code_sha256  # the old image
    assert tree_hashes(cli.monorepo.root) == tree
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, fn.repository) == []


def assert_rerun_deploys(cli: Cli, fn: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    cli.registry.pass_through()  # the registry is back
    again = cli("apply", "--yes")
    assert again.returncode == 0, again.output
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] != fn.image.code_sha256
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, fn.repository) == []


def test_registry_down_fails_the_push_and_a_rerun_deploys_once_it_is_back(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    cli.registry.drop()
    tree = tree_hashes(cli.monorepo.root)

    run = cli("apply", "--yes")

    assert_failed_push_left_things_as_they_were(run, cli, one_function, lambda_client, local_cloud, tree)
    assert_rerun_deploys(cli, one_function, lambda_client, local_cloud)


def test_registry_dying_mid_upload_fails_the_push_and_a_rerun_deploys_once_it_is_back(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    def die_mid_upload(_: HttpRequest) -> Fault:
        cli.registry.drop()  # every other connection and every later one
        return reset_after(CUT_AFTER_BYTES)  # this one once some bytes of the layer went through

    trigger = cli.registry.when(blob_upload, die_mid_upload)
    tree = tree_hashes(cli.monorepo.root)

    run = cli("apply", "--yes")

    assert trigger.fired.is_set(), run.output
    assert_failed_push_left_things_as_they_were(run, cli, one_function, lambda_client, local_cloud, tree)
    assert_rerun_deploys(cli, one_function, lambda_client, local_cloud)


def test_registry_dropping_one_upload_is_absorbed_by_the_retries(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    trigger = cli.registry.when(blob_upload, lambda _: reset_after(CUT_AFTER_BYTES))

    run = cli("apply", "--yes")

    assert trigger.fired.is_set(), run.output
    assert run.returncode == 0, run.output
    assert lambda_config(lambda_client, one_function.name)["CodeSha256"] != one_function.image.code_sha256
    assert cli.leftover_contexts() == []
    assert local_tags(local_cloud, cli, one_function.repository) == []


def test_registry_that_stops_answering_mid_upload_fails_the_push_without_retrying_it(
        cli: Cli, one_function: ImageFunction, lambda_client: Any, local_cloud: LocalCloud) -> None:
    def stop_answering(_: HttpRequest) -> None:
        cli.registry.hold()  # this upload after its head, every other connection and every later one

    trigger = cli.registry.when(blob_upload, stop_answering)
    tree = tree_hashes(cli.monorepo.root)

    run = cli("apply", "--yes")

    assert trigger.fired.is_set(), run.output
    assert_failed_push_left_things_as_they_were(run, cli, one_function, lambda_client, local_cloud, tree)
    assert (f"made no progress for {ENGINE_READ_TIMEOUT_SECONDS}s: the registry {cli.registry.endpoint} stopped answering; "
            "check that it is reachable, then run apply again") in run.stdout, run.output
    assert "push attempt" not in run.stdout  # a registry that holds every request is not asked again
    assert_rerun_deploys(cli, one_function, lambda_client, local_cloud)
