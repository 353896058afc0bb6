"""The local cloud tells the truth: ECR's token opens the registry, pushes show up in moto's ECR
with the registry's real digests, Lambda resolves them, and the stand-in images are what they say."""

from __future__ import annotations

import base64
import hashlib
import io
import platform
import tarfile
import textwrap
from pathlib import Path
from typing import Any, Callable

import boto3
import docker
import docker.errors
import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import ImageFunction
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.images import PushedImage, build_again_if_vanished, login, push

pytestmark = pytest.mark.integration

DOCKER_V2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ELF_MACHINE = {62: "amd64", 183: "arm64"}  # e_machine: EM_X86_64, EM_AARCH64


def ecr_token_credentials() -> tuple[str, str]:
    """Ask ECR (configured from the environment only, as the product is) for registry credentials."""
    token = boto3.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    username, _, password = base64.b64decode(token).decode().partition(":")
    return username, password


def registry_manifest(cloud: LocalCloud, repository: str, reference: str) -> requests.Response:
    response = requests.get(f"http://{cloud.registry_endpoint}/v2/{repository}/manifests/{reference}",
                            headers={"Accept": DOCKER_V2_MANIFEST}, auth=ecr_token_credentials(), timeout=10)
    response.raise_for_status()
    return response


def test_ecr_token_logs_in_to_registry_and_wrong_password_is_refused(local_cloud: LocalCloud) -> None:
    username, password = ecr_token_credentials()
    assert username == "AWS"
    client = docker.from_env()
    try:
        assert client.login(username=username, password=password, registry=local_cloud.registry_endpoint,
                            reauth=True)["Status"] == "Login Succeeded"
        with pytest.raises(docker.errors.APIError, match="unauthorized|401"):
            client.login(username=username, password=password + "-wrong",
                         registry=local_cloud.registry_endpoint, reauth=True)
    finally:
        client.close()
    api = f"http://{local_cloud.registry_endpoint}/v2/"
    assert requests.get(api, auth=(username, password), timeout=5).status_code == 200
    assert requests.get(api, auth=(username, "123456789012-wrong"), timeout=5).status_code == 401
    assert requests.get(api, timeout=5).status_code == 401


def test_pushed_manifest_is_in_ecr_with_registry_digest_and_media_type(
        local_cloud: LocalCloud, make_repository: Callable[..., str],
        push_image: Callable[..., PushedImage]) -> None:
    repository = make_repository()
    pushed = push_image(repository, "v1")
    manifest = registry_manifest(local_cloud, repository, "v1")
    assert manifest.headers["Docker-Content-Digest"] == pushed.digest
    assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == pushed.digest

    # Asked right after the push returns, as the product does.
    ecr = boto3.client("ecr")
    details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": "v1"}])["imageDetails"]
    assert [(d["imageDigest"], d["imageManifestMediaType"], d["imageTags"]) for d in details] == [
        (pushed.digest, DOCKER_V2_MANIFEST, ["v1"])]
    images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": pushed.digest}])["images"]
    assert [image["imageManifest"] for image in images] == [manifest.text]


def test_retagged_push_adds_tag_to_same_digest(
        make_repository: Callable[..., str], push_image: Callable[..., PushedImage]) -> None:
    repository = make_repository()
    first = push_image(repository, "content-abc", marker="same")
    second = push_image(repository, "latest", marker="same")
    assert second.digest == first.digest
    details = boto3.client("ecr").describe_images(repositoryName=repository)["imageDetails"]
    assert [(d["imageDigest"], sorted(d["imageTags"])) for d in details] == [
        (first.digest, ["content-abc", "latest"])]


def test_moved_tag_leaves_previous_image_untagged_not_deleted(
        make_repository: Callable[..., str], push_image: Callable[..., PushedImage]) -> None:
    repository = make_repository()
    old = push_image(repository, "latest", marker="first")
    new = push_image(repository, "latest", marker="second")
    details = boto3.client("ecr").describe_images(repositoryName=repository)["imageDetails"]
    assert sorted((d["imageDigest"], d.get("imageTags", [])) for d in details) == sorted(
        [(old.digest, []), (new.digest, ["latest"])])


def test_update_function_code_to_pushed_digest_sets_code_sha256(
        make_image_function: Callable[..., ImageFunction], push_image: Callable[..., PushedImage]) -> None:
    function = make_image_function(architecture="arm64")
    lam = boto3.client("lambda")
    before = lam.get_function(FunctionName=function.name)["Configuration"]
    assert before["CodeSha256"] == function.image.code_sha256

    new = push_image(function.repository, "v2", marker="second build")
    assert new.digest != function.image.digest
    lam.update_function_code(FunctionName=function.name, ImageUri=new.lambda_uri, Architectures=["arm64"])
    lam.get_waiter("function_updated_v2").wait(FunctionName=function.name,
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    after = lam.get_function(FunctionName=function.name)
    assert after["Configuration"]["CodeSha256"] == new.code_sha256
    assert after["Configuration"]["Architectures"] == ["arm64"]
    assert after["Code"]["ImageUri"] == f"{function.image.lambda_uri.split('@')[0]}@{new.digest}"


def test_update_function_code_applies_architectures(
        make_image_function: Callable[..., ImageFunction], push_image: Callable[..., PushedImage]) -> None:
    function = make_image_function(architecture="x86_64")
    arm = push_image(function.repository, "arm", platform="linux/arm64")
    lam = boto3.client("lambda")
    lam.update_function_code(FunctionName=function.name, ImageUri=arm.lambda_uri, Architectures=["arm64"])
    configuration = lam.get_function(FunctionName=function.name)["Configuration"]
    assert (configuration["Architectures"], configuration["CodeSha256"]) == (["arm64"], arm.code_sha256)


def test_update_function_code_to_digest_never_pushed_fails(
        make_image_function: Callable[..., ImageFunction]) -> None:
    function = make_image_function()
    unknown = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    lam = boto3.client("lambda")
    with pytest.raises(ClientError) as raised:
        lam.update_function_code(FunctionName=function.name,
                                 ImageUri=f"{function.image.lambda_uri.split('@')[0]}@{unknown}")
    assert raised.value.response["Error"]["Code"] == "ImageNotFoundException"
    assert lam.get_function(FunctionName=function.name)["Configuration"]["CodeSha256"] == function.image.code_sha256


def test_standin_images_have_the_right_architectures(local_cloud: LocalCloud) -> None:
    assert local_cloud.standins is not None
    client = local_cloud.docker()
    try:
        arches = {name: (client.images.get(name).attrs["Os"], client.images.get(name).attrs["Architecture"])
                  for name in (local_cloud.standins.runtime_arm64, local_cloud.standins.runtime_amd64,
                               local_cloud.standins.builder)}
        host = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
        assert arches == {local_cloud.standins.runtime_arm64: ("linux", "arm64"),
                          local_cloud.standins.runtime_amd64: ("linux", "amd64"),
                          local_cloud.standins.builder: ("linux", host)}
        output = client.containers.run(local_cloud.standins.builder, ["sh", "-c", "go version && go env GOROOT GOTOOLCHAIN"],
                                       remove=True, network_disabled=True)
        assert b"go version go1." in output and b"/usr/local/go\nlocal\n" in output
        bundle = _read_file(client, local_cloud.standins.runtime_arm64, "/etc/ssl/certs/ca-certificates.crt")
        assert bundle == Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    finally:
        client.close()


# The shape of the product's Dockerfile: the classic builder (docker SDK) expands FROM --platform
# only from ARGs declared before the first FROM and passed as build args.
FUNCTION_DOCKERFILE = """\
ARG BUILDPLATFORM=linux/amd64
ARG TARGETPLATFORM=linux/arm64
ARG BUILDER_IMAGE
ARG RUNTIME_IMAGE
FROM --platform=$BUILDPLATFORM $BUILDER_IMAGE AS builder
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 GOOS=linux GOARCH=arm64 GOPROXY=off GOFLAGS=-mod=mod go build -trimpath -o /out/bootstrap .
FROM --platform=$TARGETPLATFORM $RUNTIME_IMAGE
COPY --from=builder /out/bootstrap /var/runtime/bootstrap
ENTRYPOINT ["/var/runtime/bootstrap"]
"""


def test_classic_builder_cross_builds_arm64_function_from_standins_and_pushes_single_platform(
        local_cloud: LocalCloud, tmp_path: Path, make_repository: Callable[..., str]) -> None:
    assert local_cloud.standins is not None
    (tmp_path / "Dockerfile").write_text(FUNCTION_DOCKERFILE)
    (tmp_path / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (tmp_path / "main.go").write_text(textwrap.dedent("""\
        package main

        import "fmt"

        func main() { fmt.Println("hello") }
        """))
    client = local_cloud.docker()
    try:
        build_platform = f"linux/{client.info()['Architecture'].replace('x86_64', 'amd64').replace('aarch64', 'arm64')}"
        image, _ = build_again_if_vanished(client, path=str(tmp_path), pull=False, rm=True, buildargs={
            "BUILDPLATFORM": build_platform, "TARGETPLATFORM": "linux/arm64",
            "BUILDER_IMAGE": local_cloud.standins.builder,
            "RUNTIME_IMAGE": local_cloud.standins.runtime_arm64})
        assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", "arm64")
        assert image.attrs["Config"]["Entrypoint"] == ["/var/runtime/bootstrap"]
        binary = _read_file(client, str(image.id), "/var/runtime/bootstrap")
        assert binary[:4] == b"\x7fELF" and ELF_MACHINE[int.from_bytes(binary[18:20], "little")] == "arm64"

        repository = make_repository()
        login(local_cloud, client)
        digest = push(local_cloud, client, str(image.id), repository, "fn")
    finally:
        client.close()
    detail = boto3.client("ecr").describe_images(repositoryName=repository,
                                                 imageIds=[{"imageTag": "fn"}])["imageDetails"][0]
    assert (detail["imageDigest"], detail["imageManifestMediaType"]) == (digest, DOCKER_V2_MANIFEST)
    manifest = registry_manifest(local_cloud, repository, "fn").json()
    config = requests.get(f"http://{local_cloud.registry_endpoint}/v2/{repository}/blobs/{manifest['config']['digest']}",
                          auth=ecr_token_credentials(), timeout=10).json()
    assert (config["os"], config["architecture"]) == ("linux", "arm64")


def _read_file(client: docker.DockerClient, image: str, path: str) -> bytes:
    # Never started: the command only satisfies create for images without one.
    container: Any = client.containers.create(image, command=["/none"])
    try:
        chunks, _ = container.get_archive(path)
        archive = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
        member = archive.extractfile(Path(path).name)
        assert member is not None, f"{path} is not a regular file in {image}"
        return member.read()
    finally:
        container.remove()
