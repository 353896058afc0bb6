"""`deployer apply plan.json --shard K/N`: N jobs applying one saved plan leave what one apply leaves.

Two copies of one monorepo declare the same functions under two name prefixes (the local cloud is
one account and region shared by the session: a prefix stands in for a second, identical account).
In the first, plan is saved once and three shard applies run at the same time, as a CI matrix would
run them; in the second, one full apply. Then both namespaces must hold the same: each function's
image, configuration and tags; each repository's settings and images.

An image is compared by its tags (the content tag of its source), not by its digest: the two
namespaces build their images apart, and a build is not reproducible byte for byte (the image's
creation time is in its config). Within a namespace the digests are checked: each function runs
the image its repository holds under its content tag, one image per tag, shared where the source
and repository are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, output
from tests.integration.test_create_cli import outcomes

pytestmark = pytest.mark.integration

SHARDS = 3
# suffix -> (repository suffix, source, configuration). api and api-worker share an image; mailer has
# their source in another repository (another image); billing has its own source in their repository,
# which two shards then both create; cron has its own source and repository.
FUNCTIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "api": ("shared", EXAMPLE_SOURCE, {"memory": 256, "environment": {"MODE": "live"}, "tags": {"team": "payments"}}),
    "api-worker": ("shared", EXAMPLE_SOURCE, {}),
    "billing": ("shared", "functions/shard-billing", {"timeout": 30}),
    "cron": ("cron", "functions/shard-cron", {"description": "nightly"}),
    "mailer": ("mailer", EXAMPLE_SOURCE, {}),
}
# Lambda's answers that name the function or change with every call; the rest is compared.
VOLATILE = {"FunctionName", "FunctionArn", "LastModified", "RevisionId", "CodeSha256", "CodeSize", "Version", "LogGroup"}


def write_spec(monorepo: Monorepo, prefix: str, role_arn: str) -> None:
    entries = [{"name": f"{prefix}-{suffix}", "repository": f"{prefix}-{repository}", "platform": "linux/arm64", "role": role_arn,
                "build": {"source": source, "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"]}, **config}
               for suffix, (repository, source, config) in FUNCTIONS.items()]
    data = {"version": 1, "defaults": {"region": "us-east-1", "build": {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"],
                                                                           "go_env": {"GOPROXY": "off"}}},
            "functions": entries}
    with (monorepo.root / "deploy.yaml").open("w") as out:
        YAML().dump(data, out)


def run_together(monorepo: Monorepo, tmpdir: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """The commands as N CI jobs would run them: at the same time, each on its own."""
    env = {**os.environ, "NO_COLOR": "1", "TMPDIR": str(tmpdir)}
    jobs = [subprocess.Popen([sys.executable, "-m", "deployer", *args], cwd=monorepo.root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    results = []
    for args, job in zip(commands, jobs):
        stdout, stderr = job.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(args, job.returncode, stdout, stderr))
    return results


def state(prefix: str, lambda_client: Any, ecr_client: Any) -> dict[str, Any]:
    """What a namespace holds, with its prefix replaced by PREFIX, and each image named by its tags
    once it is checked that the function runs the one image its repository has under them."""
    functions = {}
    for suffix in FUNCTIONS:
        got = lambda_client.get_function(FunctionName=f"{prefix}-{suffix}")
        config = got["Configuration"]
        repository = got["Code"]["ImageUri"].rsplit("/", 1)[1].split("@")[0].split(":")[0]
        [image] = ecr_client.describe_images(repositoryName=repository, imageIds=[{"imageDigest": f"sha256:{config['CodeSha256']}"}])[
            "imageDetails"]
        tags = sorted(image.get("imageTags", []))
        assert len([tag for tag in tags if tag.startswith("src-")]) == 1, f"{suffix} runs {image}: not one content tag's image"
        functions[suffix] = {
            "image": {"repository": repository, "tags": tags},
            "configuration": {k: v for k, v in config.items() if k not in VOLATILE},
            "tags": lambda_client.list_tags(Resource=config["FunctionArn"])["Tags"],
        }
    repositories = {}
    for name in sorted({f"{prefix}-{repository}" for repository, _, _ in FUNCTIONS.values()}):
        [described] = ecr_client.describe_repositories(repositoryNames=[name])["repositories"]
        images = ecr_client.describe_images(repositoryName=name)["imageDetails"]
        repositories[name] = {
            "settings": {k: described[k] for k in ("imageTagMutability", "imageScanningConfiguration", "encryptionConfiguration")},
            "lifecycle": json.loads(ecr_client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]),
            "images": sorted(sorted(image.get("imageTags", [])) for image in images),  # one per tag: none built twice
        }
    return dict(json.loads(json.dumps({"functions": functions, "repositories": repositories}).replace(prefix, "PREFIX")))


def test_three_shard_applies_of_one_saved_plan_leave_what_one_full_apply_leaves(
        monorepo: Monorepo, tmp_path: Path, lambda_role_arn: str, lambda_client: Any, ecr_client: Any) -> None:
    monorepo.add_function("shard-billing", ("errors",))
    monorepo.add_function("shard-cron", ("logger", "errors"))
    other = Monorepo(tmp_path / "other-repo", monorepo.env)
    shutil.copytree(monorepo.root, other.root)
    sharded, whole = unique_name("deployer-shard"), unique_name("deployer-whole")
    write_spec(monorepo, sharded, lambda_role_arn)
    write_spec(other, whole, lambda_role_arn)
    cli = Cli(monorepo, tmp_path / "tmpdir")

    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    assert "Plan: 5 to create, 0 unchanged" in planned.stdout, output(planned)
    previews = [cli("plan", "--shard", f"{k}/{SHARDS}", "--format", "json") for k in range(1, SHARDS + 1)]
    members = []
    for k, preview in enumerate(previews, 1):
        assert preview.returncode == 0, output(preview)
        data = json.loads(preview.stdout)
        members.append({fp["name"] for fp in data["functions"]})
        assert data["shard"] == {"index": k, "count": SHARDS, "functions": len(members[-1]), "total_functions": 5}
        assert data["summary"]["create"] == len(members[-1])
    assert sorted(name for shard in members for name in shard) == sorted(f"{sharded}-{s}" for s in FUNCTIONS)
    shard_of = {name.removeprefix(f"{sharded}-"): k for k, shard in enumerate(members) for name in shard}
    assert shard_of["api"] == shard_of["api-worker"], "functions sharing an image share a shard"
    # Two jobs then create the repository the api and billing share: the one made by the other counts as done.
    assert shard_of["billing"] != shard_of["api"], "the case this test is for: a repository created by two shards at once"
    text = cli("plan", "--shard", f"2/{SHARDS}")
    assert f"This is shard 2 of {SHARDS}: {len(members[1])} of 5 functions (the other {5 - len(members[1])} are in the other " \
           "shards; the summary counts this shard only)." in text.stdout, output(text)

    applied = run_together(monorepo, cli.tmpdir, *(["apply", "plan.json", "--shard", f"{k}/{SHARDS}", "--yes"]
                                                   for k in range(1, SHARDS + 1)))

    for k, result in enumerate(applied, 1):
        assert result.returncode == 0, output(result)
        assert "Traceback" not in result.stdout + result.stderr, output(result)
        assert f"This is shard {k} of {SHARDS}: " in result.stdout, output(result)
        assert outcomes(result) == {name: "created" for name in members[k - 1]}, "each job applies its shard, nothing else"
    full = other.deployer("apply", "--yes", env={"TMPDIR": str(cli.tmpdir)})
    assert full.returncode == 0, output(full)
    assert outcomes(full) == {f"{whole}-{s}": "created" for s in FUNCTIONS}

    assert state(sharded, lambda_client, ecr_client) == state(whole, lambda_client, ecr_client)
    after = cli("plan", "--detailed-exitcode")
    assert after.returncode == 0, output(after)
    assert cli.leftover_contexts() == []
