"""`deployer prune` through the real CLI against the local cloud: after three releases of changed
sources (three images, versions 1-3, `live` on 3), prune without --yes deletes nothing; with --yes
it deletes version 1 and its image, and nothing that a version, an alias or $LATEST uses, of any
function (one of another deploy.yaml sharing the repository, one made by hand) included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from ruamel.yaml import YAML

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, output
from tests.integration.test_create_cli import REGISTRY, cli, role_arn, write_spec  # noqa: F401 (fixtures)
from tests.integration.test_release_cli import alias_version, versions
from tests.localcloud.images import PushedImage

pytestmark = pytest.mark.integration


def change_source(monorepo: Monorepo, source: str, release: int) -> None:
    """A new file in the function's Go module: a new source digest, so a new image."""
    (monorepo.root / source / "release.go").write_text(f'package main\n\nconst release = "{release}"\n')


def images(ecr_client: Any, repository: str) -> dict[str, list[str]]:
    """digest -> tags of every image ECR holds in `repository`."""
    details = ecr_client.describe_images(repositoryName=repository)["imageDetails"]
    return {d["imageDigest"]: sorted(d.get("imageTags") or []) for d in details}


def version_digests(lambda_client: Any, name: str) -> dict[str, str]:
    """version ($LATEST included) -> its image digest."""
    listed = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    return {v["Version"]: f"sha256:{v['CodeSha256']}" for v in listed}


def release_three_times(cli: Cli, monorepo: Monorepo, spec: list[dict[str, Any]], name: str, lambda_client: Any) -> list[str]:
    """Three applies, each of a changed source; returns the digests of versions 1, 2, 3."""
    for release in (1, 2, 3):
        change_source(monorepo, EXAMPLE_SOURCE, release)
        write_spec(monorepo, spec)
        applied = cli("apply", "--yes")
        assert applied.returncode == 0, output(applied)
    assert versions(lambda_client, name) == ["1", "2", "3"] and alias_version(lambda_client, name) == "3"
    digests = version_digests(lambda_client, name)
    assert len({digests["1"], digests["2"], digests["3"]}) == 3, "three sources, three images"
    return [digests["1"], digests["2"], digests["3"]]


def test_prune_deletes_version_1_and_its_image_and_nothing_in_use(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                  lambda_client: Any, ecr_client: Any) -> None:
    name, repository = unique_name("deployer-prune-fn"), unique_name("deployer-prune")
    spec = [{"name": name, "repository": repository, "role": role_arn, "release": {"alias": "live", "keep": 2}}]
    first, second, third = release_three_times(cli, monorepo, spec, name, lambda_client)
    before = images(ecr_client, repository)
    assert set(before) == {first, second, third}

    fresh = cli("prune")  # by default an image pushed less than an hour ago is kept: an apply may be deploying it

    assert fresh.returncode == 0, output(fresh)
    assert f"- {name} (us-east-1): 1 version(s) to delete" in fresh.stdout, output(fresh)
    assert f"  repository {REGISTRY}/{repository}: nothing to delete" in fresh.stdout, output(fresh)
    assert "    kept: 2 in use, 0 with other tags than src-, 0 indexes or other artifacts, 1 pushed since " in fresh.stdout

    shown = cli("prune", "--min-age", "0")

    assert shown.returncode == 0, output(shown)
    assert f"- {name} (us-east-1): 1 version(s) to delete" in shown.stdout, output(shown)
    assert f"    - version 1  {first[:19]}" in shown.stdout
    assert "    kept: 2 newest (keep 2): 3, 2; and $LATEST" in shown.stdout
    assert f"- repository {REGISTRY}/{repository}: 1 image(s) to delete" in shown.stdout
    assert f"    - {first[:19]} src-" in shown.stdout
    assert "    kept: 2 in use, 0 with other tags than src-, 0 indexes or other artifacts" in shown.stdout
    assert "Nothing deleted: run again with --yes to delete." in shown.stdout
    assert versions(lambda_client, name) == ["1", "2", "3"] and images(ecr_client, repository) == before, "without --yes: nothing"

    planned = cli("prune", "--format", "json", "--min-age", "0")
    assert planned.returncode == 0, output(planned)
    document = json.loads(planned.stdout)
    assert [v["version"] for f in document["functions"] for v in f["delete"]] == ["1"]
    assert [i["digest"] for r in document["repositories"] for i in r["delete"]] == [first]
    assert document["applied"] is None and versions(lambda_client, name) == ["1", "2", "3"]

    pruned = cli("prune", "--yes", "--min-age", "0")

    assert pruned.returncode == 0, output(pruned)
    assert f"deleted version 1 of {name}" in pruned.stdout, output(pruned)
    assert f"deleted image {first}" in pruned.stdout
    assert "Pruned: 1 version(s), 1 image(s) deleted" in pruned.stdout
    assert versions(lambda_client, name) == ["2", "3"] and alias_version(lambda_client, name) == "3"
    assert set(images(ecr_client, repository)) == {second, third}, "what version 2, 3, live and $LATEST use stays"
    assert version_digests(lambda_client, name)["$LATEST"] == third

    again = cli("prune", "--yes", "--min-age", "0")
    assert again.returncode == 0, output(again)
    assert "Prune: 0 version(s) and 0 image(s) to delete" in again.stdout, output(again)
    assert cli("plan", "--detailed-exitcode").returncode == 0, "pruned: the function still runs what deploy.yaml says"
    write_spec(monorepo, [{**spec[0], "memory": 512}])
    assert cli("apply", "--yes").returncode == 0
    assert versions(lambda_client, name) == ["2", "3", "4"], "a version number is never reused"


def write_other_spec(monorepo: Monorepo, directory: str, fn: dict[str, Any]) -> Path:
    """A second deploy.yaml, in root/`directory`, with one function (source relative to root)."""
    source = fn.pop("source")
    entry = {"platform": "linux/arm64", **fn,
             "build": {"source": f"../{source}", "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"]}}
    data = {"version": 1, "defaults": {"region": "us-east-1", "build": {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"],
                                                                         "go_env": {"GOPROXY": "off"}}},
            "functions": [entry]}
    path = monorepo.root / directory / "deploy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        YAML().dump(data, out)
    return path


def test_functions_sharing_a_repository_never_lose_each_others_images(cli: Cli, monorepo: Monorepo, role_arn: str,
                                                                       lambda_client: Any, ecr_client: Any) -> None:
    name, other, repository = unique_name("deployer-prune-a"), unique_name("deployer-prune-b"), unique_name("deployer-prune-shared")
    # `other` shares the repository, from a deploy.yaml that prune is not given.
    write_other_spec(monorepo, "team-b", {"name": other, "repository": repository, "role": role_arn,
                                          "source": monorepo.add_function("prune-other", ()), "release": {"alias": "live"}})
    spec = [{"name": name, "repository": repository, "role": role_arn, "release": {"alias": "live", "keep": 2}}]
    first, second, third = release_three_times(cli, monorepo, spec, name, lambda_client)
    [others] = {d for v, d in version_digests(lambda_client, other).items()}
    assert versions(lambda_client, other) == ["1"] and others not in (first, second, third)
    # A function made by hand, outside every deploy.yaml, runs the image of version 1.
    by_hand = unique_name("deployer-prune-by-hand")
    lambda_client.create_function(FunctionName=by_hand, PackageType="Image", Role=role_arn, Architectures=["arm64"],
                                  Code={"ImageUri": f"{REGISTRY}/{repository}@{first}"})
    try:
        pruned = cli("prune", "--yes", "--min-age", "0", "deploy.yaml")

        assert pruned.returncode == 0, output(pruned)
        assert f"deleted version 1 of {name}" in pruned.stdout, output(pruned)
        assert "Pruned: 1 version(s), 0 image(s) deleted" in pruned.stdout, output(pruned)
        assert "    kept: 4 in use, 0 with other tags than src-, 0 indexes or other artifacts" in pruned.stdout, output(pruned)
        assert other not in pruned.stdout, "a function of another deploy.yaml is not pruned"
        assert set(images(ecr_client, repository)) == {first, second, third, others}
        assert versions(lambda_client, other) == ["1"]
    finally:
        lambda_client.delete_function(FunctionName=by_hand)

    pruned = cli("prune", "--yes", "--min-age", "0", "deploy.yaml")

    assert pruned.returncode == 0, output(pruned)
    assert f"deleted image {first}" in pruned.stdout, output(pruned)
    assert set(images(ecr_client, repository)) == {second, third, others}, "the other function's image stays"
    assert versions(lambda_client, other) == ["1"] and version_digests(lambda_client, other)["$LATEST"] == others


def test_a_repository_other_accounts_pull_from_keeps_its_images(cli: Cli, monorepo: Monorepo, role_arn: str, ecr_client: Any,
                                                               push_image: Callable[..., PushedImage]) -> None:
    name, repository = unique_name("deployer-prune-fn"), unique_name("deployer-prune-pulled")
    write_spec(monorepo, [{"name": name, "repository": {"name": repository, "lambda_pull_accounts": ["111122223333"]},
                           "role": role_arn, "release": {"alias": "live"}}])
    assert cli("apply", "--yes").returncode == 0
    unused = push_image(repository, "src-" + "0" * 40)  # no function of this account uses it; one of 111122223333 may

    shown = cli("prune", "--yes", "--min-age", "0")

    assert shown.returncode == 0, output(shown)
    assert (f"! repository {REGISTRY}/{repository}: images not pruned: lambda_pull_accounts lets functions of account(s) "
            "111122223333 use its images, which this account cannot see (versions are still pruned)") in shown.stdout, output(shown)
    assert unused.digest in images(ecr_client, repository) and len(images(ecr_client, repository)) == 2


def test_a_bad_min_age_is_a_usage_error_before_anything_is_read(cli: Cli) -> None:
    refused = cli("prune", "--min-age", "soon")
    assert refused.returncode == 1, output(refused)
    assert "'soon' is not an age: give a whole number with s, m, h or d" in refused.stderr, output(refused)
    assert "Traceback" not in refused.stderr
