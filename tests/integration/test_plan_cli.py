"""`deployer plan` through the real CLI against the local cloud (moto + registry): the action, the
reason and the exit code for each situation the planner distinguishes, the three output formats,
saved plans, several files, no Docker daemon needed, and a source tree left untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
import requests

from deployer.plan import FORMAT_VERSION
from tests.conftest import ImageFunction, unique_name
from tests.integration.conftest import Monorepo
from tests.localcloud.cloud import MANIFEST_MEDIA_TYPES, LocalCloud
from tests.localcloud.images import PushedImage

pytestmark = pytest.mark.integration

BUILD = "build, push and update"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}"


def spec_for(monorepo: Monorepo, *functions: ImageFunction | dict[str, Any]) -> Path:
    entries = [{"name": f.name, "repository": f.repository,
                "platform": {"arm64": "linux/arm64", "x86_64": "linux/amd64"}[f.architecture]}
               if isinstance(f, ImageFunction) else f for f in functions]
    return monorepo.write_spec(entries)


def plan_json(monorepo: Monorepo, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = monorepo.deployer("plan", "--format", "json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(result.stdout)


def only_function(monorepo: Monorepo) -> dict[str, Any]:
    result, data = plan_json(monorepo)
    assert len(data["functions"]) == 1, result.stdout
    entry: dict[str, Any] = data["functions"][0]
    return entry


def ecr_digest(repository: str, tag: str) -> str:
    details = boto3.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    return str(details[0]["imageDigest"])


def running_code_sha256(name: str) -> str:
    return str(boto3.client("lambda").get_function(FunctionName=name)["Configuration"]["CodeSha256"])


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "internal error" not in result.stderr, result.stderr


def apply_yes(monorepo: Monorepo) -> None:
    result = monorepo.deployer("apply", "--yes")
    assert result.returncode == 0, f"apply failed:\n{result.stdout}\n{result.stderr}"


def tree_fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry below root: file content hash or link target, and mode."""
    seen: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                seen[rel] = ("link:" + os.readlink(path), st.st_mode)
            elif path.is_dir():
                seen[rel] = ("dir", st.st_mode)
            else:
                seen[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode)
    return seen


# -- actions, reasons and exit codes ----------------------------------------------------------

def reason_of(entry: dict[str, Any]) -> tuple[str, str | None]:
    """A planned function's reason as (code, detail): tests speak in codes; the wording is
    pinned once per format by tests/unit/test_golden_render.py."""
    return entry["reason"]["code"], entry["reason"]["detail"]


def only_desired_uri(monorepo: Monorepo) -> str:
    result, data = plan_json(monorepo)
    return str(data["functions"][0]["desired"]["repository_uri"])


def test_plan_reports_no_change_after_apply_and_detailed_exitcode_is_0(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    apply_yes(monorepo)

    result = monorepo.deployer("plan", "--detailed-exitcode")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result)
    assert f"  {function.name}: no change\n" in result.stdout
    assert result.stdout.rstrip().endswith("Plan: 1 unchanged")

    entry = only_function(monorepo)
    digest = ecr_digest(function.repository, entry["desired"]["content_tag"])
    assert (entry["action"], entry["current_digest"], entry["desired_digest"], entry["steps"]) == ("noop", digest, digest, [])
    assert reason_of(entry) == ("up_to_date", None)
    assert running_code_sha256(function.name) == digest.removeprefix("sha256:")


def test_plan_updates_only_when_content_tag_exists_but_function_runs_another_digest(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], lambda_client: Any) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    apply_yes(monorepo)
    # Someone pointed the function back at its placeholder: the built image is still in ECR.
    lambda_client.update_function_code(FunctionName=function.name, ImageUri=function.image.lambda_uri, Architectures=["arm64"])
    assert running_code_sha256(function.name) == function.image.code_sha256

    result = monorepo.deployer("plan", "--detailed-exitcode")
    assert result.returncode == 2, result.stdout + result.stderr
    assert_clean(result)
    assert f"~ {function.name}: update\n" in result.stdout

    entry = only_function(monorepo)
    built = ecr_digest(function.repository, entry["desired"]["content_tag"])
    repository_uri = entry["desired"]["repository_uri"]
    assert entry["action"] == "update"
    assert reason_of(entry) == ("runs_other_image", None)
    assert (entry["current_digest"], entry["desired_digest"]) == (function.image.digest, built)
    assert [(s["type"], s.get("image")) for s in entry["steps"]] == [
        ("UpdateFunctionCode", {"repository_uri": repository_uri, "digest": built, "tag": None}), ("WaitForUpdate", None)]


def test_plan_builds_when_no_image_has_the_content_tag_and_detailed_exitcode_is_2(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)

    result = monorepo.deployer("plan", "--detailed-exitcode")
    assert result.returncode == 2, result.stdout + result.stderr
    assert_clean(result)
    assert f"+ {function.name}: {BUILD}\n" in result.stdout
    assert f"    digest:  {short(function.image.digest)} -> (digest known after build)\n" in result.stdout
    assert "    arch:    arm64 (unchanged)\n" in result.stdout
    assert result.stdout.rstrip().endswith("Plan: 1 to build, 0 unchanged")

    entry = only_function(monorepo)
    desired = entry["desired"]
    tagged = f"{desired['repository_uri']}:{desired['content_tag']}"
    assert entry["action"] == "build"
    assert reason_of(entry) == ("no_image_for_source", None)
    assert (entry["current_digest"], entry["desired_digest"], entry["current_architectures"]) == (function.image.digest, None, ["arm64"])
    assert [s["type"] for s in entry["steps"]] == ["EcrLogin", "AssembleContext", "BuildImage", "PushImage",
                                                   "VerifyImage", "UpdateFunctionCode", "WaitForUpdate", "Cleanup"]
    image = {"repository_uri": desired["repository_uri"], "digest": None, "tag": desired["content_tag"]}
    assert entry["steps"][5] == {"type": "UpdateFunctionCode", "function": function.name, "image": image, "architecture": "arm64",
                                 "description": f"update function {function.name} to {tagged} (arm64)"}
    # Without --detailed-exitcode a plan with changes is a success.
    assert monorepo.deployer("plan").returncode == 0


def test_plan_reports_architecture_change_on_build(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("x86_64")
    spec_for(monorepo, {"name": function.name, "repository": function.repository, "platform": "linux/arm64"})

    result = monorepo.deployer("plan", "--detailed-exitcode")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "    arch:    x86_64 -> arm64\n" in result.stdout
    entry = only_function(monorepo)
    desired = entry["desired"]
    assert entry["action"] == "build"
    assert reason_of(entry) == ("no_image_for_source", None)
    assert (desired["architecture"], entry["current_architectures"]) == ("arm64", ["x86_64"])
    assert entry["current_architectures"] == ["x86_64"]
    assert entry["steps"][5]["architecture"] == "arm64"


def test_plan_reports_architecture_change_on_update(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], push_image: Callable[..., PushedImage]) -> None:
    function = make_image_function("x86_64")
    spec_for(monorepo, {"name": function.name, "repository": function.repository, "platform": "linux/arm64"})
    tag = only_function(monorepo)["desired"]["content_tag"]
    pushed = push_image(function.repository, tag, marker=f"content {function.name}", platform="linux/arm64")

    entry = only_function(monorepo)
    assert entry["action"] == "update"
    assert reason_of(entry) == ("runs_other_image", None)
    assert (entry["current_digest"], entry["desired_digest"], entry["current_architectures"]) == (
        function.image.digest, pushed.digest, ["x86_64"])
    assert entry["steps"][0]["architecture"] == "arm64"


def test_plan_reports_architecture_change_only_when_function_runs_the_content_image_on_x86_64(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], push_image: Callable[..., PushedImage],
        lambda_client: Any) -> None:
    function = make_image_function("x86_64")
    spec_for(monorepo, {"name": function.name, "repository": function.repository, "platform": "linux/arm64"})
    tag = only_function(monorepo)["desired"]["content_tag"]
    pushed = push_image(function.repository, tag, marker=f"content {function.name}", platform="linux/arm64")
    lambda_client.update_function_code(FunctionName=function.name, ImageUri=pushed.lambda_uri, Architectures=["x86_64"])

    result = monorepo.deployer("plan", "--detailed-exitcode")
    assert result.returncode == 2, result.stdout + result.stderr
    entry = only_function(monorepo)
    assert (entry["action"], reason_of(entry)) == ("update", ("architecture_only", None))
    assert entry["steps"][0]["image"] == {"repository_uri": entry["desired"]["repository_uri"], "digest": pushed.digest, "tag": None}


# -- blocked: exit 1, never 2 -----------------------------------------------------------------

def assert_blocked(monorepo: Monorepo, name: str, code: str, detail: str | None = None) -> None:
    result = monorepo.deployer("plan", "--detailed-exitcode")
    assert result.returncode == 1, result.stdout + result.stderr
    assert_clean(result)
    assert f"! {name}: blocked\n    reason:  " in result.stdout
    assert result.stderr == f"error: 1 function(s) cannot be deployed: {name}; see the reasons above\n"
    result, data = plan_json(monorepo)
    assert result.returncode == 1
    assert [(f["name"], f["action"], reason_of(f), f["steps"]) for f in data["functions"]] == [(name, "blocked", (code, detail), [])]
    assert data["summary"]["changes"] is False and data["summary"]["blocked"] == 1


def test_plan_blocks_missing_function_with_exit_1(
        monorepo: Monorepo, make_repository: Callable[..., str]) -> None:
    name, repository = unique_name("deployer-test-missing"), make_repository()
    spec_for(monorepo, {"name": name, "repository": repository})
    assert_blocked(monorepo, name, "function_missing")


def test_plan_blocks_missing_repository_with_exit_1(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], local_cloud: LocalCloud) -> None:
    function = make_image_function("arm64")
    repository = unique_name("deployer-test-norepo")
    spec_for(monorepo, {"name": function.name, "repository": {"name": repository, "create": False}})  # else created
    assert_blocked(monorepo, function.name, "repository_missing")
    assert only_desired_uri(monorepo) == f"{local_cloud.account}.dkr.ecr.us-east-1.amazonaws.com/{repository}"


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
def test_plan_blocks_content_tag_that_is_an_image_index_with_exit_1(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], local_cloud: LocalCloud, index_type: str) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    tag = only_function(monorepo)["desired"]["content_tag"]

    # What BuildKit pushes with attestations on: an index over the single-platform image.
    base = f"http://{local_cloud.registry_endpoint}/v2/{function.repository}/manifests"
    auth = (local_cloud.credentials.username, local_cloud.credentials.password)
    child = requests.get(f"{base}/{function.image.digest}", headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}, auth=auth, timeout=10)
    child.raise_for_status()
    index = {"schemaVersion": 2, "mediaType": index_type, "manifests": [
        {"mediaType": child.headers["Content-Type"], "digest": function.image.digest, "size": len(child.content),
         "platform": {"architecture": "arm64", "os": "linux"}}]}
    put = requests.put(f"{base}/{tag}", data=json.dumps(index).encode(), headers={"Content-Type": index_type}, auth=auth, timeout=10)
    assert put.status_code == 201, put.text
    details = boto3.client("ecr").describe_images(repositoryName=function.repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    assert details[0]["imageManifestMediaType"] == index_type

    assert_blocked(monorepo, function.name, "not_single_platform", index_type)


# -- formats, saved plans, several files -------------------------------------------------------

def test_plan_text_markdown_and_json_describe_the_same_plan(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    entry = only_function(monorepo)
    desired = entry["desired"]
    reason = f"no image in ECR for source {short(desired['source_digest'])} (tag {desired['content_tag']})"

    text = monorepo.deployer("plan")
    assert text.returncode == 0, text.stderr
    # The running image was pushed by the test, not built by deployer: its inputs are not known.
    assert text.stdout.startswith(f"+ {function.name}: {BUILD}\n    reason:  {reason}\n"
                                  "    why:     the running image records no inputs (built by another tool, or by a deployer "
                                  "from before they were recorded): only its source digest is known to differ\n"
                                  f"    image:   {desired['repository_uri']}:{desired['content_tag']}\n")
    assert "\x1b[" not in text.stdout  # NO_COLOR and not a terminal

    markdown = monorepo.deployer("plan", "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    lines = markdown.stdout.splitlines()
    assert lines[:4] == ["### Plan: 1 to build, 0 unchanged", "",
                         "| | Function | Current digest | Desired digest | Action | Reason |", "|---|---|---|---|---|---|"]
    assert lines[4] == f"| `+` | `{function.name}` | `{short(function.image.digest)}` | _after build_ | {BUILD} | {reason} |"
    assert f"<summary><code>{function.name}</code>: {BUILD}</summary>" in lines

    result, data = plan_json(monorepo)
    assert result.returncode == 0 and result.stderr == ""
    assert data["format_version"] == FORMAT_VERSION
    assert data["summary"] == {"changes": True, "noop": 0, "configure": 0, "update": 0, "build": 1, "create": 0, "release": 0,
                               "blocked": 0}
    assert [f["name"] for f in data["functions"]] == [function.name]
    assert data["functions"][0]["reason"]["description"] == reason


def test_plan_out_writes_a_plan_file_that_parses(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    result = monorepo.deployer("plan", "--out", "plan.json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "plan saved to plan.json; apply it with: deployer apply plan.json\n"
    saved = json.loads((monorepo.root / "plan.json").read_text())
    assert saved["format_version"] == FORMAT_VERSION
    assert [(f["name"], f["action"]) for f in saved["functions"]] == [(function.name, "build")]
    assert not list(monorepo.root.glob(".plan.json*"))  # the temporary file was renamed


def test_plan_of_several_files_and_directories_lists_all_functions_by_name(
        monorepo: Monorepo, make_repository: Callable[..., str], make_image_function: Callable[..., ImageFunction]) -> None:
    suffix = uuid.uuid4().hex[:8]
    repository = make_repository()
    zeta, alpha, mid = (make_image_function("arm64", name=f"{p}-{suffix}", repository=repository) for p in ("zeta", "alpha", "mid"))
    other_source = monorepo.add_function("other", ("logger",))
    # write_spec writes root/deploy.yaml; move each to its own directory, sources relative to it.
    placements = [("team-b", [{"name": zeta.name, "repository": repository}]),
                  ("team-a/nested", [{"name": mid.name, "repository": repository, "source": f"../../{other_source}"}]),
                  ("team-c", [{"name": alpha.name, "repository": repository}])]
    for directory, entries in placements:
        depth = directory.count("/") + 1
        for entry in entries:
            entry.setdefault("source", "../" * depth + "functions/finalize-with-error")
        written = monorepo.write_spec(entries)
        (monorepo.root / directory).mkdir(parents=True)
        shutil.move(written, monorepo.root / directory / "deploy.yaml")

    result, data = plan_json(monorepo, "team-b", "team-a", "team-c/deploy.yaml")
    assert result.returncode == 0, result.stderr
    assert [f["name"] for f in data["functions"]] == [alpha.name, mid.name, zeta.name]
    assert [f["action"] for f in data["functions"]] == ["build"] * 3
    # spec_file is shown relative to the working directory (the root here).
    assert {f["name"]: f["desired"]["spec_file"] for f in data["functions"]} == {
        alpha.name: "team-c/deploy.yaml", mid.name: "team-a/nested/deploy.yaml", zeta.name: "team-b/deploy.yaml"}
    # Same source, same content tag; the other function's source differs.
    tags = {f["name"]: f["desired"]["content_tag"] for f in data["functions"]}
    assert tags[alpha.name] == tags[zeta.name] != tags[mid.name]

    # The whole tree, searched recursively, gives the same plan.
    everything, data_all = plan_json(monorepo, ".")
    assert everything.returncode == 0, everything.stderr
    assert {**data_all, "hash_key": ""} == {**data, "hash_key": ""}  # each plan has a random key for its secrets' hashes

    text = monorepo.deployer("plan", "team-b", "team-a", "team-c")
    names_in_order = [line.split(":")[0][2:] for line in text.stdout.splitlines() if line.startswith("+ ")]
    assert names_in_order == [alpha.name, mid.name, zeta.name]


# -- what plan does not need and does not touch ------------------------------------------------

def test_plan_needs_no_docker_daemon(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    result = monorepo.deployer("plan", "--detailed-exitcode", "--format", "json", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert_clean(result)
    data = json.loads(result.stdout)
    assert [(f["name"], f["action"]) for f in data["functions"]] == [(function.name, "build")]


def test_plan_leaves_the_source_tree_byte_identical(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function("arm64")
    spec_for(monorepo, function)
    (monorepo.root / "functions" / "finalize-with-error" / ".dockerignore").write_text("*_test.go\n")
    before = tree_fingerprint(monorepo.root)
    assert len(before) > 20  # the shared modules and the function are there
    for fmt in ("text", "markdown", "json"):
        result = monorepo.deployer("plan", "--format", fmt)
        assert result.returncode == 0, result.stderr
    assert tree_fingerprint(monorepo.root) == before
