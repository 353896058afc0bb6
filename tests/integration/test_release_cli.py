"""Releases through the real CLI against the local cloud: each change published as a version and
the alias `live` moved to it; a plan after shows no change; an alias moved outside since a saved
plan is refused (its RevisionId), and stays where it was put."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, output
from tests.integration.test_create_cli import cli, role_arn, write_spec  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

RUNTIME_FIXTURE = Path(__file__).with_name("runtime_fixture")  # a Go function of the standard library only


def versions(lambda_client: Any, name: str) -> list[str]:
    listed = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    return sorted((v["Version"] for v in listed if v["Version"] != "$LATEST"), key=int)


def alias_version(lambda_client: Any, name: str) -> str:
    return str(lambda_client.get_alias(FunctionName=name, Name="live")["FunctionVersion"])


def apply_each(cli: Cli, monorepo: Monorepo, spec: dict[str, Any], memories: tuple[int, ...]) -> None:
    """Apply `spec` (released to live) once with each memory size: a version each."""
    for memory in memories:
        write_spec(monorepo, [{**spec, "memory": memory}])
        applied = cli("apply", "--yes")
        assert applied.returncode == 0, output(applied)


def test_three_applies_give_three_versions_with_live_on_the_last(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                  lambda_client: Any) -> None:
    name, repository = unique_name("deployer-release-fn"), unique_name("deployer-release")
    for memory in (256, 512, 1024):
        write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn, "memory": memory,
                               "release": {"alias": "live"}}])
        planned = cli("plan")
        assert planned.returncode == 0, output(planned)
        assert "move alias live:" in planned.stdout, output(planned)
        applied = cli("apply", "--yes")
        assert applied.returncode == 0, output(applied)
        assert cli("plan", "--detailed-exitcode").returncode == 0, "released: nothing left to do"
    assert versions(lambda_client, name) == ["1", "2", "3"]
    assert alias_version(lambda_client, name) == "3"
    described = lambda_client.get_function(FunctionName=name, Qualifier="3")["Configuration"]
    assert (described["MemorySize"], described["Description"]) == (1024, "deployer release; live was 2")


def test_an_alias_moved_outside_since_a_saved_plan_is_refused(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                               lambda_client: Any) -> None:
    name, repository = unique_name("deployer-release-fn"), unique_name("deployer-release")
    spec = {"name": name, "repository": repository, "role": role_arn, "release": {"alias": "live"}}
    apply_each(cli, monorepo, spec, (256, 512))
    write_spec(monorepo, [{**spec, "memory": 1024}])
    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="1")  # someone rolls back by hand

    applied = cli("apply", "plan.json")

    assert applied.returncode == 1, output(applied)
    assert f"the release of {name} changed since plan (alias live on 2 at revision" in applied.stdout + applied.stderr, output(applied)
    assert alias_version(lambda_client, name) == "1" and versions(lambda_client, name) == ["1", "2"]


def test_history_shows_the_versions_and_rollback_moves_live_back(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                  lambda_client: Any) -> None:
    name, repository = unique_name("deployer-release-fn"), unique_name("deployer-release")
    apply_each(cli, monorepo, {"name": name, "repository": repository, "role": role_arn, "release": {"alias": "live"}},
               (256, 512, 1024))
    source = json.loads(cli("plan", "--format", "json").stdout)["functions"][0]["desired"]["source_digest"]

    shown = cli("history", name, "--format", "json")

    assert shown.returncode == 0, output(shown)
    listed = json.loads(shown.stdout)["versions"]
    assert [(v["version"], v["aliases"]) for v in listed] == [("3", ["live"]), ("2", []), ("1", [])]
    assert {v["source_digest"] for v in listed} == {source}, "read from the image's labels"
    assert listed[0]["image"] == f"sha256:{lambda_client.get_function(FunctionName=name)['Configuration']['CodeSha256']}"
    table = cli("history", name)
    assert table.stdout.splitlines()[0].split() == ["VERSION", "DATE", "IMAGE", "SOURCE", "COMMIT", "ALIASES"]

    rolled = cli("rollback", name, "--yes")

    assert rolled.returncode == 0, output(rolled)
    assert f"~ {name}: move alias live: 3 -> 2" in rolled.stdout
    assert alias_version(lambda_client, name) == "2"
    assert [(v["version"], v["aliases"]) for v in json.loads(cli("history", name, "--format", "json").stdout)["versions"]] == [
        ("3", []), ("2", ["live"]), ("1", [])]
    held = cli("plan", "--detailed-exitcode")
    assert held.returncode == 0, output(held)  # the rollback holds: no release of $LATEST again until the function changes
    assert "was rolled back and stays where it is" in held.stdout
    refused = cli("rollback", name, "--to", "9", "--yes")
    assert refused.returncode == 1 and f"function {name} has no version 9" in refused.stderr
    unconfirmed = cli("rollback", name, "--to", "1")
    assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr and alias_version(lambda_client, name) == "2"


def amd64_function(monorepo: Monorepo, **fields: Any) -> dict[str, Any]:
    """A finalize-with-error entry built for the engine's own platform: the local cloud runs it on Invoke."""
    return {"platform": "linux/amd64",
            "build": {"source": EXAMPLE_SOURCE, "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_AMD64"]}, **fields}


GOOD_EVENT = {"executionId": "exec-1", "error": {"Error": "States.TaskFailed", "Cause": "upstream timed out"}}


def test_a_failed_smoke_test_leaves_live_where_it_was_and_exits_1(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                   lambda_client: Any) -> None:
    name, repository = unique_name("deployer-smoke-fn"), unique_name("deployer-smoke")
    event = monorepo.root / "events" / "smoke.json"
    event.parent.mkdir(exist_ok=True)
    event.write_text(json.dumps(GOOD_EVENT))
    release = {"alias": "live", "smoke_test": {"event": "events/smoke.json", "expect": {"field": "executionId", "equals": "exec-1"}}}
    spec = amd64_function(monorepo, name=name, repository=repository, role=role_arn, timeout=10, release=release,
                          environment={"STATE_BUCKET": "bucket-one"})
    write_spec(monorepo, [{**spec, "memory": 256}])
    planned = cli("plan")
    assert 'smoke test with smoke.json (executionId == "exec-1")' in planned.stdout, output(planned)
    first = cli("apply", "--yes")
    assert first.returncode == 0, output(first)
    assert "version 1 released to live (was none)" in first.stdout, output(first)
    assert alias_version(lambda_client, name) == "1"

    event.write_text(json.dumps({"executionId": "exec-2"}))  # no `error`: the function refuses it
    write_spec(monorepo, [{**spec, "memory": 512}])
    failed = cli("apply", "--yes")

    assert failed.returncode == 1, output(failed)
    assert "smoke test of version 2 failed: function error ValidationError" in failed.stdout, output(failed)
    assert "alias live stays on 1" in failed.stdout
    assert alias_version(lambda_client, name) == "1", "the alias did not move"
    assert versions(lambda_client, name) == ["1", "2"]
    behind = cli("plan", "--format", "json")
    [fp] = json.loads(behind.stdout)["functions"]
    assert (fp["action"], fp["reason"]["code"]) == ("release", "alias_behind"), fp


def test_a_smoke_test_slower_than_other_calls_read_timeout_passes(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                    lambda_client: Any) -> None:
    # The Runtime API fixture sleeps 10 s before it answers: longer than the read timeout of
    # deployer's other calls (8 s), after which the SDK would send the Invoke again.
    shutil.copytree(RUNTIME_FIXTURE, monorepo.root / "functions" / "slow")
    name, repository = unique_name("deployer-slow-smoke-fn"), unique_name("deployer-slow-smoke")
    event = monorepo.root / "events" / "slow.json"
    event.parent.mkdir(exist_ok=True)
    event.write_text(json.dumps({"seconds": 10, "name": "slow"}))
    release = {"alias": "live", "smoke_test": {"event": "events/slow.json", "expect": {"field": "greeting", "equals": "hello slow"}}}
    write_spec(monorepo, [{"platform": "linux/amd64", "name": name, "repository": repository, "role": role_arn, "timeout": 30,
                           "release": release, "build": {"source": "functions/slow",
                                                         "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_AMD64"]}}])

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert "version 1 released to live (was none)" in applied.stdout, output(applied)
    assert alias_version(lambda_client, name) == "1"


def test_without_versions_rollback_redeploys_the_image_the_last_update_replaced(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                                lambda_client: Any) -> None:
    name, repository = unique_name("deployer-rollback-fn"), unique_name("deployer-rollback")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn}])
    assert cli("apply", "--yes").returncode == 0
    first = lambda_client.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
    (monorepo.root / EXAMPLE_SOURCE / "release-note.txt").write_text("a change of the source: another image\n")
    assert cli("apply", "--yes").returncode == 0
    second = lambda_client.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
    assert second != first

    rolled = cli("rollback", name, "--yes")

    assert rolled.returncode == 0, output(rolled)
    assert f"~ {name}: redeploy $LATEST from sha256:{second} to sha256:{first}" in rolled.stdout
    assert lambda_client.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == first
    held = cli("plan", "--detailed-exitcode")
    assert held.returncode == 0, output(held)  # the image rolled back from is not deployed again by the next apply
    assert "deployer rollback took it back from" in held.stdout
    (monorepo.root / EXAMPLE_SOURCE / "release-note.txt").write_text("the fix\n")
    fixed = cli("plan", "--detailed-exitcode")
    assert fixed.returncode == 2, output(fixed)  # a new source: built and deployed as any change
    refused = cli("rollback", name, "--to", "3", "--yes")
    assert refused.returncode == 1 and "--to names a version" in refused.stderr


def test_an_alias_on_latest_is_moved_to_a_version(cli: Cli, monorepo: Monorepo, role_arn: str, lambda_client: Any) -> None:
    name, repository = unique_name("deployer-release-fn"), unique_name("deployer-release")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn, "release": {"alias": "live"}}])
    assert cli("apply", "--yes").returncode == 0
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")  # the common hand-made alias

    planned = cli("plan", "--format", "json")

    assert planned.returncode == 0, output(planned)
    [fp] = json.loads(planned.stdout)["functions"]
    assert (fp["action"], fp["reason"]["code"], fp["release"]["current_version"]) == ("release", "alias_behind", "$LATEST")
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    assert alias_version(lambda_client, name) == "1" and cli("plan", "--detailed-exitcode").returncode == 0
