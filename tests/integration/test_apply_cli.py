"""`deployer apply` end to end through the real CLI: a real Docker engine builds the example Go
functions, a real registry stores them, moto's ECR and Lambda report what was pushed and deployed.

Each test sets up its own ECR repositories and Lambda functions (unique names: the local cloud is
shared by the session) and runs the CLI as a subprocess with its own TMPDIR, so that leftover
build contexts can be counted.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from tests.conftest import ImageFunction, unique_name
from tests.integration.conftest import Monorepo
from tests.localcloud.cloud import LocalCloud, free_port
from tests.localcloud.images import PushedImage

pytestmark = pytest.mark.integration

EXAMPLE_SOURCE = "functions/finalize-with-error"
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
BUILD_STEP_STARTED = re.compile(r"\[\d+/\d+\] build image")  # a progress line, not the plan's step list
SUMMARY_LINE = re.compile(r"^\s+(\S+)\s+(built|updated|unchanged|failed|cancelled)\s+\d+\.\d+s\b", re.MULTILINE)


# -- helpers ---------------------------------------------------------------------------------

class Cli:
    """Runs the CLI in `monorepo` with TMPDIR set to a directory of its own."""

    def __init__(self, monorepo: Monorepo, tmpdir: Path) -> None:
        self.monorepo = monorepo
        self.tmpdir = tmpdir
        tmpdir.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = self.monorepo.deployer(*args, env={"TMPDIR": str(self.tmpdir), **(env or {})})
        assert "Traceback" not in result.stdout + result.stderr, output(result)
        return result

    def leftover_contexts(self) -> list[Path]:
        return sorted(self.tmpdir.glob("deployer-ctx-*"))


def output(result: Any) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def outcomes(result: Any) -> dict[str, str]:
    """Function name -> status from apply's summary."""
    assert "Apply summary:" in result.stdout, output(result)
    return dict(SUMMARY_LINE.findall(result.stdout.split("Apply summary:", 1)[1]))


def content_tags(cli: Cli) -> dict[str, str]:
    result = cli("plan", "--format", "json")
    assert result.returncode == 0, output(result)
    return {fn["name"]: fn["desired"]["content_tag"] for fn in json.loads(result.stdout)["functions"]}


def ecr_digest(ecr_client: Any, repository: str, tag: str) -> str:
    details = ecr_client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    assert len(details) == 1
    return str(details[0]["imageDigest"])


def ecr_image_count(ecr_client: Any, repository: str) -> int:
    return len(ecr_client.describe_images(repositoryName=repository)["imageDetails"])


def lambda_config(lambda_client: Any, name: str) -> dict[str, Any]:
    return dict(lambda_client.get_function(FunctionName=name)["Configuration"])


def registry_image_config(cloud: LocalCloud, repository: str, reference: str) -> dict[str, Any]:
    """The image config blob the registry holds for repository:reference."""
    auth = (cloud.credentials.username, cloud.credentials.password)
    base = f"http://{cloud.registry_endpoint}/v2/{repository}"
    manifest = requests.get(f"{base}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}, auth=auth, timeout=10)
    manifest.raise_for_status()
    config = requests.get(f"{base}/blobs/{manifest.json()['config']['digest']}", auth=auth, timeout=10)
    config.raise_for_status()
    return dict(config.json())


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file and link under root -> hash of its content (links: of their target)."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            hashes[rel] = "link:" + str(path.readlink())
        elif path.is_file():
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            hashes[rel] = "dir"
    return hashes


def append_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path) -> Cli:
    return Cli(monorepo, tmp_path / "tmpdir")


Setup = Callable[..., ImageFunction]


@pytest.fixture
def deployed_function(monorepo: Monorepo, make_image_function: Setup) -> Callable[..., list[ImageFunction]]:
    """deployed_function((architecture, source, platform), ...): creates each function on a
    placeholder image and writes deploy.yaml declaring them all."""

    def make(*functions: tuple[str, str, str]) -> list[ImageFunction]:
        made, entries = [], []
        for architecture, source, platform in functions:
            fn = make_image_function(architecture)
            made.append(fn)
            entries.append({"name": fn.name, "repository": fn.repository, "source": source, "platform": platform})
        monorepo.write_spec(entries)
        return made

    return make


# -- tests -----------------------------------------------------------------------------------

def test_first_apply_deploys_pushed_digest_and_second_apply_changes_nothing(
        cli: Cli, deployed_function: Any, ecr_client: Any, lambda_client: Any, local_cloud: LocalCloud) -> None:
    (fn,) = deployed_function(("arm64", EXAMPLE_SOURCE, "linux/arm64"))
    tag = content_tags(cli)[fn.name]

    first = cli("apply", "--yes")

    assert first.returncode == 0, output(first)
    assert outcomes(first) == {fn.name: "built"}
    digest = ecr_digest(ecr_client, fn.repository, tag)
    config = lambda_config(lambda_client, fn.name)
    assert config["CodeSha256"] == digest.removeprefix("sha256:")
    assert config["CodeSha256"] != fn.image.code_sha256
    assert config["Architectures"] == ["arm64"]
    image_config = registry_image_config(local_cloud, fn.repository, tag)
    assert (image_config["os"], image_config["architecture"]) == ("linux", "arm64")
    assert cli.leftover_contexts() == []

    images_before = ecr_image_count(ecr_client, fn.repository)
    second = cli("apply", "--yes")

    assert second.returncode == 0, output(second)
    assert "No changes" in second.stdout
    assert not BUILD_STEP_STARTED.search(second.stdout) and "Apply summary:" not in second.stdout
    assert ecr_image_count(ecr_client, fn.repository) == images_before
    after = lambda_config(lambda_client, fn.name)
    assert (after["CodeSha256"], after["LastModified"]) == (config["CodeSha256"], config["LastModified"])
    assert cli.leftover_contexts() == []


def test_changing_a_shared_module_rebuilds_only_the_functions_that_use_it(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any) -> None:
    # The example uses errors, logger, s3state and schema; the second function only errors.
    big, small = make_image_function("arm64"), make_image_function("arm64")
    small_source = monorepo.add_function(unique_name("only-errors"), ("errors",))
    monorepo.write_spec([{"name": big.name, "repository": big.repository, "source": EXAMPLE_SOURCE},
                         {"name": small.name, "repository": small.repository, "source": small_source}])
    first = cli("apply", "--yes")
    assert first.returncode == 0, output(first)
    assert outcomes(first) == {big.name: "built", small.name: "built"}
    small_before = lambda_config(lambda_client, small.name)
    big_before = lambda_config(lambda_client, big.name)

    append_line(monorepo.root / "shared/schema/schema.go", "\n// Changed by a test: only users of schema rebuild.")
    second = cli("apply", "--yes")

    assert second.returncode == 0, output(second)
    assert outcomes(second) == {big.name: "built", small.name: "unchanged"}
    big_after = lambda_config(lambda_client, big.name)
    assert big_after["CodeSha256"] != big_before["CodeSha256"]
    assert big_after["CodeSha256"] == ecr_digest(ecr_client, big.repository, content_tags(cli)[big.name]).removeprefix("sha256:")
    assert lambda_config(lambda_client, small.name)["LastModified"] == small_before["LastModified"]
    assert lambda_config(lambda_client, small.name)["CodeSha256"] == small_before["CodeSha256"]


def test_architecture_change_deploys_arm64_image_with_arm64_architecture(
        cli: Cli, deployed_function: Any, ecr_client: Any, lambda_client: Any) -> None:
    (fn,) = deployed_function(("x86_64", EXAMPLE_SOURCE, "linux/arm64"))
    assert lambda_config(lambda_client, fn.name)["Architectures"] == ["x86_64"]
    tag = content_tags(cli)[fn.name]

    result = cli("apply", "--yes")

    assert result.returncode == 0, output(result)
    assert "x86_64 -> arm64" in result.stdout
    config = lambda_config(lambda_client, fn.name)
    assert config["Architectures"] == ["arm64"]
    assert config["CodeSha256"] == ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")


def test_saved_plan_is_refused_when_the_function_changed_since_plan(
        cli: Cli, deployed_function: Any, push_image: Callable[..., PushedImage], lambda_client: Any, ecr_client: Any) -> None:
    (fn,) = deployed_function(("arm64", EXAMPLE_SOURCE, "linux/arm64"))
    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    other = push_image(fn.repository, "other", marker=f"changed behind the plan's back {fn.name}")
    lambda_client.update_function_code(FunctionName=fn.name, ImageUri=other.lambda_uri)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    before = lambda_config(lambda_client, fn.name)
    images_before = ecr_image_count(ecr_client, fn.repository)

    result = cli("apply", "plan.json")

    assert result.returncode == 1, output(result)
    assert outcomes(result) == {fn.name: "failed"}
    assert "changed since plan" in result.stdout and "run plan again" in result.stdout
    after = lambda_config(lambda_client, fn.name)
    assert after["CodeSha256"] == other.code_sha256
    assert after["LastModified"] == before["LastModified"]
    assert ecr_image_count(ecr_client, fn.repository) == images_before
    assert cli.leftover_contexts() == []


def test_saved_plan_is_refused_when_the_source_changed_since_plan(
        cli: Cli, monorepo: Monorepo, deployed_function: Any, lambda_client: Any, ecr_client: Any) -> None:
    (fn,) = deployed_function(("arm64", EXAMPLE_SOURCE, "linux/arm64"))
    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    append_line(monorepo.root / EXAMPLE_SOURCE / "main.go", "// edited after plan")
    images_before = ecr_image_count(ecr_client, fn.repository)

    result = cli("apply", "plan.json")

    assert result.returncode == 1, output(result)
    assert outcomes(result) == {fn.name: "failed"}
    assert f"source of {fn.name} changed since plan" in result.stdout and "run plan again" in result.stdout
    assert not BUILD_STEP_STARTED.search(result.stdout)  # refused before building
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == fn.image.code_sha256
    assert ecr_image_count(ecr_client, fn.repository) == images_before
    assert cli.leftover_contexts() == []


def test_saved_plan_applies_and_keep_context_keeps_and_prints_the_context(
        cli: Cli, deployed_function: Any, ecr_client: Any, lambda_client: Any) -> None:
    (fn,) = deployed_function(("arm64", EXAMPLE_SOURCE, "linux/arm64"))
    planned = cli("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    tag = json.loads((cli.monorepo.root / "plan.json").read_text())["functions"][0]["desired"]["content_tag"]

    result = cli("apply", "--keep-context", "plan.json")

    assert result.returncode == 0, output(result)
    assert outcomes(result) == {fn.name: "built"}
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")
    (kept,) = cli.leftover_contexts()
    try:
        assert f"build context kept at {kept}" in result.stdout
        assert (kept / "main.go").is_file() and (kept / "shared" / "errors" / "go.mod").is_file()
        assert (kept / "shared/schema/go.mod").is_file()
    finally:
        shutil.rmtree(kept)


def test_unreachable_registry_fails_cleanly_and_leaves_everything_as_it_was(
        cli: Cli, monorepo: Monorepo, deployed_function: Any, lambda_client: Any, ecr_client: Any) -> None:
    (fn,) = deployed_function(("arm64", EXAMPLE_SOURCE, "linux/arm64"))
    tree_before = tree_hashes(monorepo.root)
    before = lambda_config(lambda_client, fn.name)
    images_before = ecr_image_count(ecr_client, fn.repository)
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there

    result = cli("apply", "--yes", env={"DEPLOYER_REGISTRY_ENDPOINT": closed})

    assert result.returncode == 1, output(result)
    assert outcomes(result) == {fn.name: "failed"}
    assert f"push of {closed}/{fn.repository}" in result.stdout
    assert "internal error" not in result.stderr
    assert tree_hashes(monorepo.root) == tree_before
    assert cli.leftover_contexts() == []
    after = lambda_config(lambda_client, fn.name)
    assert (after["CodeSha256"], after["LastModified"]) == (before["CodeSha256"], before["LastModified"])
    assert ecr_image_count(ecr_client, fn.repository) == images_before


def test_build_failure_shows_build_output_and_other_functions_still_deploy(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any) -> None:
    good, bad = make_image_function("arm64"), make_image_function("arm64")
    bad_source = monorepo.add_function(unique_name("broken"), ("errors",))
    (monorepo.root / bad_source / "main.go").write_text('package main\n\nfunc main() {\n\tfmt.Println("no closing brace"\n')
    monorepo.write_spec([{"name": good.name, "repository": good.repository, "source": EXAMPLE_SOURCE},
                         {"name": bad.name, "repository": bad.repository, "source": bad_source}])
    tags = content_tags(cli)

    result = cli("apply", "--yes", "--parallelism", "2")

    assert result.returncode == 1, output(result)
    assert outcomes(result) == {good.name: "built", bad.name: "failed"}
    assert f"go build of {bad.name} failed (exit code 1)" in result.stdout
    assert "syntax error" in result.stdout  # the Go compiler's own words, from the compile's output
    assert "\x1b[" not in result.stdout  # the builder's colour escapes are stripped
    assert "1 changed, 0 unchanged, 1 failed" in result.stdout
    assert lambda_config(lambda_client, good.name)["CodeSha256"] == ecr_digest(ecr_client, good.repository, tags[good.name]).removeprefix("sha256:")
    assert lambda_config(lambda_client, bad.name)["CodeSha256"] == bad.image.code_sha256
    assert cli.leftover_contexts() == []
