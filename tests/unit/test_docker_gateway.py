"""The Docker gateway's push with a fake engine: what the registry says becomes a type the executor
matches on (an immutable tag, refused credentials), and only the gateway reads the words."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from deployer.docker_gateway import DockerGateway
from deployer.errors import DockerError
from deployer.ports import ImmutableTagRefused, RegistryAuthRefused
from deployer.registry import RegistryLogin

DIGEST = "sha256:" + "c" * 64
IMMUTABLE = ("tag invalid: The image tag 'src-1' already exists in the 'fn-repo' repository and cannot be overwritten "
             "because the repository is immutable.")


class FakeEngine:
    """The low-level API's tag and push; each push streams the next of `answers` (an error, or the digest)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.passwords: list[str] = []

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        pass

    def push(self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
        self.passwords.append(auth_config["password"])
        error = self.answers.pop(0)
        yield {"status": "Preparing"}
        yield {"error": error} if error else {"aux": {"Digest": DIGEST}}


def gateway(engine: FakeEngine) -> DockerGateway:
    gw = DockerGateway()
    gw._client, gw._short = object(), engine  # connected: no engine is asked
    return gw


def push(gw: DockerGateway, logs: list[str]) -> str:
    logins = iter(["token-2", "token-3"])
    return gw.push("sha256:image", "registry/fn-repo", "src-1", RegistryLogin("AWS", "token-1", "https://registry"),
                   lambda: RegistryLogin("AWS", next(logins), "https://registry"), logs.append, lambda seconds: None)


def test_an_immutable_tag_refusal_is_raised_as_its_type_without_retrying() -> None:
    engine = FakeEngine(IMMUTABLE)
    with pytest.raises(ImmutableTagRefused, match="push of registry/fn-repo:src-1 failed: tag invalid"):
        push(gateway(engine), [])
    assert engine.passwords == ["token-1"]


def test_refused_credentials_are_renewed_once_then_the_push_goes_through() -> None:
    engine = FakeEngine("unauthorized: authentication required", None)
    logs: list[str] = []
    assert push(gateway(engine), logs) == DIGEST
    assert engine.passwords == ["token-1", "token-2"]
    assert logs == ["registry refused the credentials; logging in again (push of registry/fn-repo:src-1 failed: "
                    "unauthorized: authentication required)"]


def test_credentials_refused_after_a_fresh_login_fail_the_push_as_an_auth_refusal() -> None:
    engine = FakeEngine("denied: requested access to the resource is denied", "denied: requested access to the resource is denied")
    with pytest.raises(RegistryAuthRefused):
        push(gateway(engine), [])
    assert engine.passwords == ["token-1", "token-2"]


def test_a_transient_fault_is_retried_and_the_last_keeps_its_plain_type() -> None:
    engine = FakeEngine(*["received unexpected HTTP status: 502 Bad Gateway"] * 4)
    logs: list[str] = []
    with pytest.raises(DockerError, match="check that the registry registry is reachable") as raised:
        push(gateway(engine), logs)
    assert type(raised.value) is DockerError
    assert len(engine.passwords) == 4 and len(logs) == 3


class FakeBuilds:
    """The low-level API's build: each build streams the next of `errors` (None: success)."""

    def __init__(self, *errors: str | None) -> None:
        self.errors = list(errors)
        self.builds = 0

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.builds += 1
        error = self.errors.pop(0)
        yield {"stream": "Step 1/1 : LABEL x=y\n"}
        yield {"error": error} if error else {"aux": {"ID": "sha256:" + "d" * 64}}

    def version(self) -> dict[str, str]:
        return {"Os": "linux", "Arch": "amd64"}


class FakeClient:
    def __init__(self, api: FakeBuilds) -> None:
        self.api = api


def test_a_build_whose_image_vanished_before_it_was_tagged_is_built_again(tmp_path: Path) -> None:
    # Two builds of the same inputs give one image ID; the other one's tag removal deletes it.
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    api = FakeBuilds("failed to get digest sha256:57a9: open /var/lib/docker/image/overlay2/imagedb/...: no such file", None)
    gw = DockerGateway()
    gw._client, gw._short = FakeClient(api), api
    logged: list[str] = []
    assert gw.build(str(tmp_path), "Dockerfile", "repo:tag", {}, {}, logged.append) == "sha256:" + "d" * 64
    assert api.builds == 2
    assert any("building again from its cache" in line for line in logged)


def test_any_other_build_failure_is_not_retried(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    api = FakeBuilds("The command '/bin/sh -c go build' returned a non-zero code: 1")
    gw = DockerGateway()
    gw._client, gw._short = FakeClient(api), api
    with pytest.raises(DockerError, match="returned a non-zero code"):
        gw.build(str(tmp_path), "Dockerfile", "repo:tag", {}, {})
    assert api.builds == 1
