"""The copy against the local cloud's real registry (distribution, htpasswd auth): streamed blob by
blob when the two sides are different hosts (the same registry named two ways, as two ECR hosts
of two regions are), mounted when they are one; the copy keeps its digest and ECR lists it."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse

import pytest
import requests

from deployer.image_copy import Repository, copy_image
from deployer.registry import RegistryLogin
from tests.conftest import unique_name
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.integration

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
TAG = "src-" + "b" * 40


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(session: requests.Session, base: str, repository: str, blobs: list[bytes]) -> str:
    """An image of `blobs` (the first its config) pushed by digest, as a build's push would."""
    for blob in blobs:
        started = session.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=10)
        assert started.status_code == 202, started.text
        location = urllib.parse.urljoin(base, started.headers["Location"])
        done = session.put(location, params={"digest": sha(blob)}, data=blob, timeout=10,
                           headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_V2,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha(blobs[0]),
                                      "size": len(blobs[0])},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(b),
                                       "size": len(b)} for b in blobs[1:]]}).encode()
    put = session.put(f"{base}/v2/{repository}/manifests/{sha(manifest)}", data=manifest, headers={"Content-Type": DOCKER_V2},
                      timeout=10)
    assert put.status_code == 201, put.text
    return sha(manifest)


@pytest.mark.parametrize("hosts", ["two", "one"])
def test_a_copy_through_the_real_registry_keeps_the_digest(local_cloud: LocalCloud, hosts: str) -> None:
    ecr = local_cloud.client("ecr")
    source, target = unique_name("copy-src"), unique_name("copy-dst")
    for name in (source, target):  # where the registry's notifications record the pushes
        ecr.create_repository(repositoryName=name)
    endpoint = local_cloud.registry_endpoint
    login = RegistryLogin(local_cloud.credentials.username, local_cloud.credentials.password, "")
    with requests.Session() as session:
        session.auth = (login.username, login.password)
        digest = push(session, f"http://{endpoint}", source, [b'{"architecture": "arm64", "os": "linux"}',
                                                             bytes(range(256)) * 20_000, b"second layer"])
    other_name = endpoint.replace("127.0.0.1", "localhost") if hosts == "two" else endpoint
    copied = copy_image(Repository(other_name, source, login), digest, Repository(endpoint, target, login), TAG,
                        cancel=threading.Event())
    assert copied.digest == digest
    assert (copied.transferred, copied.mounted) == ((3, 0) if hosts == "two" else (0, 3))
    listed = ecr.describe_images(repositoryName=target, imageIds=[{"imageTag": TAG}])["imageDetails"]
    assert [image["imageDigest"] for image in listed] == [digest]
