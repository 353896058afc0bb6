"""A saved plan is bound to the deploy.yaml files and the AWS state it was made from: an edited
plan, an edited deploy.yaml, or a tag moved behind the plan's back is refused, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.integration.test_apply_cli import (
    EXAMPLE_SOURCE,
    Cli,
    append_line,
    ecr_digest,
    ecr_image_count,
    lambda_config,
    output,
    outcomes,
)
from tests.conftest import ImageFunction
from tests.integration.conftest import Monorepo

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path) -> Cli:
    return Cli(monorepo, tmp_path / "tmpdir")


def declare(monorepo: Monorepo, *functions: ImageFunction) -> None:
    monorepo.write_spec([{"name": fn.name, "repository": fn.repository, "source": EXAMPLE_SOURCE} for fn in functions])


def save_plan(cli: Cli) -> dict[str, Any]:
    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    return dict(json.loads((cli.monorepo.root / "plan.json").read_text()))


def rewrite_plan(cli: Cli, edit: Callable[[dict[str, Any]], None]) -> None:
    path = cli.monorepo.root / "plan.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_saved_plan_records_its_deploy_yaml_and_applies_from_a_subdirectory(
        cli: Cli, monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], lambda_client: Any, ecr_client: Any) -> None:
    fn = make_image_function("arm64")
    declare(monorepo, fn)
    saved = save_plan(cli)
    assert [s["path"] for s in saved["sources"]] == ["deploy.yaml"]

    # Paths in the plan are relative to the checkout, not to the directory plan ran in; apply is
    # given the paths plan was given (the repository root, from here "..").
    result = cli.monorepo.deployer("apply", "../plan.json", "..", cwd=monorepo.root / "functions",
                                   env={"TMPDIR": str(cli.tmpdir)})

    assert result.returncode == 0, output(result)
    assert outcomes(result) == {fn.name: "built"}
    tag = saved["functions"][0]["desired"]["content_tag"]
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")


def test_update_pointed_at_an_older_image_of_the_repository_is_refused(
        cli: Cli, monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], lambda_client: Any) -> None:
    fn = make_image_function("arm64")
    declare(monorepo, fn)
    built = cli("apply", "--yes")
    assert built.returncode == 0, output(built)
    # Lambda back on the placeholder: the plan is now an UPDATE to the image just built.
    lambda_client.update_function_code(FunctionName=fn.name, ImageUri=fn.image.lambda_uri)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    saved = save_plan(cli)
    assert saved["functions"][0]["action"] == "update"
    planned_digest = saved["functions"][0]["desired_digest"]
    older = f"sha256:{'0' * 64}" if fn.image.digest == planned_digest else fn.image.digest

    def point_at_older(data: dict[str, Any]) -> None:  # consistently, so the plan agrees with itself
        entry = data["functions"][0]
        entry["desired_digest"] = older
        entry["steps"][0]["image"]["digest"] = older
    rewrite_plan(cli, point_at_older)
    before = lambda_config(lambda_client, fn.name)

    result = cli("apply", "plan.json")

    assert result.returncode == 1, output(result)
    assert outcomes(result) == {fn.name: "failed"}
    assert f"of {fn.name} now resolves to {planned_digest[:19]}, the plan deploys {older[:19]}; run plan again" in result.stdout
    after = lambda_config(lambda_client, fn.name)
    assert (after["CodeSha256"], after["LastModified"]) == (before["CodeSha256"], before["LastModified"])


@pytest.mark.parametrize("edit", ["function renamed", "repository changed"])
def test_plan_edited_to_deploy_elsewhere_is_refused_before_anything_runs(
        cli: Cli, monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], make_repository: Callable[..., str],
        lambda_client: Any, ecr_client: Any, edit: str) -> None:
    fn, victim = make_image_function("arm64"), make_image_function("arm64")
    declare(monorepo, fn)
    save_plan(cli)
    other_repository = make_repository()

    def tamper(data: dict[str, Any]) -> None:
        text = json.dumps(data["functions"][0])
        if edit == "function renamed":  # the victim is declared nowhere
            text = text.replace(fn.name, victim.name)
        else:
            text = text.replace(f"/{fn.repository}", f"/{other_repository}")
        data["functions"][0] = json.loads(text)
    rewrite_plan(cli, tamper)

    result = cli("apply", "plan.json")

    assert result.returncode == 1, output(result)
    assert result.stderr.startswith("error: plan.json: the plan was not made from these deploy.yaml files"), output(result)
    assert result.stderr.rstrip().endswith("run plan again")
    if edit == "function renamed":
        assert f"function {victim.name} is in the plan but no deploy.yaml of the plan declares it" in result.stderr
    else:
        assert f"function {fn.name}: the plan says repository" in result.stderr
    assert "Apply summary" not in result.stdout
    for function in (fn, victim):
        assert lambda_config(lambda_client, function.name)["CodeSha256"] == function.image.code_sha256
    assert ecr_image_count(ecr_client, other_repository) == 0
    assert cli.leftover_contexts() == []


def test_deploy_yaml_edited_after_the_plan_is_refused(
        cli: Cli, monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], lambda_client: Any) -> None:
    fn = make_image_function("arm64")
    declare(monorepo, fn)
    save_plan(cli)
    append_line(monorepo.root / "deploy.yaml", "# a comment changes nothing it declares, but it is not what was reviewed")

    result = cli("apply", "plan.json")

    assert result.returncode == 1, output(result)
    first = result.stderr.splitlines()[0]
    assert first == f"error: plan.json: the plan does not match the deploy.yaml files in {monorepo.root.resolve()}:"
    assert "  'deploy.yaml' changed since the plan was made (sha256 " in result.stderr
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == fn.image.code_sha256
