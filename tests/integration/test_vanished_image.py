"""The race that concurrent applies on one engine run into, on the real engine: two builds of the
same inputs make one image ID, and when one of them removes its last tag the engine deletes the
image under the other, between its build and its push. The gateway must recognise dockerd's words
for that (ImageVanished), so that the image maker builds it again (tests/unit/test_apply.py)
instead of failing the function."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
import pytest

from deployer.docker_gateway import DockerGateway
from deployer.ports import ImageVanished
from deployer.registry import RegistryLogin
from tests.localcloud.cloud import LocalCloud
from tests.conftest import unique_name
from tests.localcloud.standins import RUNTIME_REPOSITORY, RUNTIME_TAGS

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(local_cloud: LocalCloud) -> Iterator[docker.DockerClient]:
    client = local_cloud.docker()
    yield client
    client.close()


def test_an_image_deleted_between_build_and_push_is_reported_as_vanished_and_a_rebuild_pushes(
        local_cloud: LocalCloud, engine: docker.DockerClient, ecr_client: Any, tmp_path: Path) -> None:
    base = f"{RUNTIME_REPOSITORY}:{RUNTIME_TAGS['linux/arm64']}"
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nLABEL test.run={uuid.uuid4().hex}\n")
    repository_name = unique_name("deployer-test-vanished")
    ecr_client.create_repository(repositoryName=repository_name)
    repository = f"{local_cloud.registry_endpoint}/{repository_name}"
    auth = json.loads(local_cloud.registry_auth_file.read_text())
    login = RegistryLogin(auth["username"], auth["password"], f"http://{local_cloud.registry_endpoint}")
    gateway = DockerGateway()
    tag = f"{repository}:src-1"

    def push(image_id: str) -> str:
        return gateway.push(image_id, repository, "src-1", login, lambda: login, lambda line: None, lambda seconds: None)

    try:
        image_id = gateway.build(str(tmp_path), "Dockerfile", tag, {}, {}, lambda line: None)
        engine.images.remove(tag, noprune=True)  # its only tag: the engine deletes the image, as another build's cleanup would
        with pytest.raises(ImageVanished, match=f"cannot tag image {image_id}"):
            push(image_id)
        digest = push(gateway.build(str(tmp_path), "Dockerfile", tag, {}, {}, lambda line: None))
        listed = ecr_client.describe_images(repositoryName=repository_name, imageIds=[{"imageTag": "src-1"}])
        assert listed["imageDetails"][0]["imageDigest"] == digest
    finally:
        try:
            engine.images.remove(tag, noprune=True)
        except docker.errors.ImageNotFound:
            pass
        ecr_client.delete_repository(repositoryName=repository_name, force=True)
