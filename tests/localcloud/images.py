"""Pushing small real images through the local cloud's registry (tests and the demo use them to
give ECR and Lambda something true to point at)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from tests.localcloud.cloud import LocalCloud, LocalCloudError

# What the engine says of an image gone while it was used (as deployer.docker_gateway recognises it).
VANISHED = re.compile(r"failed to get digest|no such image|does not exist locally|unable to find image", re.IGNORECASE)
VANISHED_ATTEMPTS = 3

TINY_DOCKERFILE = """\
ARG RUNTIME_IMAGE
FROM $RUNTIME_IMAGE
COPY marker /marker
"""


@dataclass(frozen=True)
class PushedImage:
    """An image the registry holds. `digest` is the manifest digest (`sha256:<hex>`), as the
    registry computed it; `lambda_uri` is what Lambda is given (`<ecr host>/<repo>@<digest>`)."""

    repository: str
    tag: str
    digest: str
    platform: str
    lambda_uri: str

    @property
    def code_sha256(self) -> str:
        """What Lambda reports as CodeSha256 for this image: the digest's hex, no prefix."""
        return self.digest.removeprefix("sha256:")


def login(cloud: LocalCloud, client: docker.DockerClient) -> None:
    """Log the engine in to the registry with the credentials ECR's token decodes to."""
    client.login(username=cloud.credentials.username, password=cloud.credentials.password,
                 registry=cloud.registry_endpoint, reauth=True)


def build_again_if_vanished(client: docker.DockerClient, **build: Any) -> Any:
    """`client.images.build(**build)`, made again when the engine says an image it used vanished:
    tests run at once on one engine, and removing one test's image may take a cached step of
    another's build with it (deployer's own builds do the same: deployer.docker_gateway's
    ImageVanished)."""
    for attempt in range(1, VANISHED_ATTEMPTS + 1):
        try:
            return client.images.build(**build)
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            if attempt == VANISHED_ATTEMPTS or not VANISHED.search(str(exc)):
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def build_tiny_image(cloud: LocalCloud, client: docker.DockerClient, marker: str, platform: str) -> str:
    """Build FROM the runtime stand-in plus a file holding `marker` (so distinct markers give
    distinct digests); returns the image id."""
    if cloud.standins is None:
        raise LocalCloudError("local cloud was started without stand-in images")
    with tempfile.TemporaryDirectory(prefix="deployer-tiny-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(TINY_DOCKERFILE)
        (context / "marker").write_text(marker)
        image, _ = build_again_if_vanished(client, path=str(context), platform=platform, pull=False, rm=True,
                                           buildargs={"RUNTIME_IMAGE": cloud.standins.runtime(platform)})
    return str(image.id)


def push(cloud: LocalCloud, client: docker.DockerClient, image_id: str, repository: str, tag: str) -> str:
    """Push a local image as `<registry>/<repository>:<tag>`; returns the registry's manifest digest."""
    target = f"{cloud.registry_endpoint}/{repository}"
    client.images.get(image_id).tag(target, tag)
    digest = ""
    for line in client.images.push(target, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise LocalCloudError(f"pushing {target}:{tag} failed: {line['error']}")
        digest = line.get("aux", {}).get("Digest", digest)
    if not digest:
        raise LocalCloudError(f"pushing {target}:{tag} reported no digest")
    return digest


def push_tiny_image(cloud: LocalCloud, repository: str, tag: str, marker: str | None = None,
                    platform: str = "linux/arm64") -> PushedImage:
    """Build and push a tiny image; it is then in moto's ECR with the same digest."""
    client = cloud.docker()
    try:
        login(cloud, client)
        for attempt in range(1, VANISHED_ATTEMPTS + 1):
            try:
                image_id = build_tiny_image(cloud, client, marker or f"{repository}:{tag}", platform)
                digest = push(cloud, client, image_id, repository, tag)
                break
            except (docker.errors.APIError, LocalCloudError) as exc:
                # Another test's cleanup may remove this very image between build and push (the
                # same content has the same id): built again, as build_again_if_vanished says.
                if attempt == VANISHED_ATTEMPTS or not VANISHED.search(str(exc)):
                    raise
    finally:
        client.close()
    return PushedImage(repository, tag, digest, platform, f"{cloud.ecr_host}/{repository}@{digest}")
