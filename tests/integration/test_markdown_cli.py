"""`deployer plan --format markdown` at pull-request scale, through the real CLI against the local
cloud: 500 functions (one Go source and one deploy.yaml for all; a plan builds nothing) make a
comment under GitHub's 65,536-character limit, however counted, that starts with the intact
summary line, lists every changing function, and says where the full plan is when details had
to be left out: the `--out` file."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.integration

COUNT = 500
EXISTING = 20  # functions moto already runs (on a placeholder image): planned as builds; the others as creations
GITHUB_LIMIT = 65_536
V2 = "application/vnd.docker.distribution.manifest.v2+json"
# A single-platform manifest put straight into moto's ECR: nothing is built or pushed.
PLACEHOLDER = json.dumps({"schemaVersion": 2, "mediaType": V2,
                          "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                                     "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()},
                          "layers": []}, separators=(",", ":"))
# Long, markup-laden values deploy.yaml allows (a description is at most 256 characters): each
# function's details are long, so not all of them fit.
DESCRIPTION = ("`code` | cell </details> <!-- comment --> &#96; *em* [link](x) " * 5)[:256]


def write_spec(monorepo: Monorepo, names: list[str], repository: str, role: str) -> None:
    functions: list[dict[str, Any]] = [
        {"name": name, "repository": repository, "build": {"source": EXAMPLE_SOURCE}, "description": DESCRIPTION, "memory": 256 + index,
         "environment": {"MODE": DESCRIPTION, "INDEX": str(index)}} for index, name in enumerate(names)]
    data = {"version": 1,
            "defaults": {"region": "us-east-1", "platform": "linux/arm64", "role": role,
                         "build": {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"],
                                   "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"], "go_env": {"GOPROXY": "off"}}},
            "functions": functions}
    with (monorepo.root / "deploy.yaml").open("w") as out:
        YAML().dump(data, out)


def run_existing(local_cloud: LocalCloud, names: list[str], repository: str, role: str) -> None:
    ecr, lam = local_cloud.client("ecr"), local_cloud.client("lambda")
    ecr.create_repository(repositoryName=repository)
    digest = ecr.put_image(repositoryName=repository, imageManifest=PLACEHOLDER, imageTag="placeholder",
                           imageManifestMediaType=V2)["image"]["imageId"]["imageDigest"]
    registry = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
    for name in names:
        lam.create_function(FunctionName=name, PackageType="Image", Role=role, Architectures=["arm64"],
                            Code={"ImageUri": f"{registry}@{digest}"})


def test_500_functions_make_a_comment_under_github_s_limit_naming_the_saved_plan(
        monorepo: Monorepo, local_cloud: LocalCloud, lambda_role_arn: str) -> None:
    prefix, repository = unique_name("md"), unique_name("deployer-md")
    names = [f"{prefix}-{index:03d}" for index in range(COUNT)]
    run_existing(local_cloud, names[:EXISTING], repository, lambda_role_arn)
    write_spec(monorepo, names, repository, lambda_role_arn)

    result = monorepo.deployer("plan", "--format", "markdown", "--out", "plan.json")

    assert result.returncode == 0, result.stderr
    md = result.stdout
    assert len(md) < GITHUB_LIMIT and len(md.encode("utf-16-le")) // 2 < GITHUB_LIMIT
    assert len(md.replace("\n", "\r\n")) < GITHUB_LIMIT
    assert md.split("\n", 1)[0] == f"### Plan: {COUNT - EXISTING} to create, {EXISTING} to build, 0 unchanged"
    rows = re.findall(r"^\| `\+` \| `([^`]+)` \|", md, re.MULTILINE)
    assert rows == names  # every changing function in the table, in order
    shown = re.findall(r"^<summary><code>([^<]+)</code>: ", md, re.MULTILINE)
    assert 0 < len(shown) < COUNT and shown == names[:len(shown)]  # details left out from the end
    assert md.count("<details>") == md.count("</details>") == len(shown)
    assert (f"_The details of {COUNT - len(shown)} function(s) are left out, to stay under GitHub's comment limit; "
            "the full plan is in `plan.json`._\n") in md
    saved = json.loads((monorepo.root / "plan.json").read_text())
    assert [fp["name"] for fp in saved["functions"]] == names
