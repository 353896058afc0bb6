"""Shared fixtures. The local cloud (tests/localcloud) starts once per session, and only when a
test asks for it; everything it starts is stopped at the end of the session."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.localcloud.cloud import EngineUse, LocalCloud
from tests.localcloud.images import PushedImage, push_tiny_image

# A trust policy Lambda accepts; moto checks only that the role exists.
LAMBDA_TRUST_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})


def unique_name(prefix: str) -> str:
    """Names are unique per call: the cloud lives for the whole session, shared by all tests."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """With pytest-xdist, the controller makes sure of the Docker engine before its workers start
    their local clouds, and stops it (if it started it) once they are all done: a worker that
    started it could not stop it while the others still build."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    log_dir = Path(tempfile.mkdtemp(prefix="deployer-engine-"))
    engine = EngineUse(log_dir).start()
    config.stash[_ENGINE] = (engine, log_dir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    engine, log_dir = session.config.stash.get(_ENGINE, (None, None))
    if engine is not None and log_dir is not None:
        engine.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


_ENGINE = pytest.StashKey[tuple[EngineUse, Path]]()


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[LocalCloud]:
    """The running local cloud; os.environ holds LocalCloud.env for the session, then is restored."""
    with LocalCloud() as cloud, pytest.MonkeyPatch.context() as env:
        for name, value in cloud.env.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)  # a profile would take precedence over the keys
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        yield cloud
        cloud.check_recorder()


@pytest.fixture(scope="session")
def ecr_client(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("ecr")


@pytest.fixture(scope="session")
def lambda_client(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("lambda")


@pytest.fixture(scope="session")
def lambda_role_arn(local_cloud: LocalCloud) -> str:
    """An IAM role for CreateFunction (moto requires an existing role)."""
    role = local_cloud.client("iam").create_role(RoleName=unique_name("deployer-test-lambda"),
                                                 AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)
    return str(role["Role"]["Arn"])


@pytest.fixture
def make_repository(ecr_client: Any) -> Callable[..., str]:
    """make_repository(name=None, immutable=False) -> repository name, created in moto's ECR."""

    def make(name: str | None = None, immutable: bool = False) -> str:
        name = name or unique_name("deployer-test")
        ecr_client.create_repository(repositoryName=name,
                                     imageTagMutability="IMMUTABLE" if immutable else "MUTABLE")
        return name

    return make


@pytest.fixture
def push_image(local_cloud: LocalCloud) -> Callable[..., PushedImage]:
    """push_image(repository, tag, marker=None, platform="linux/arm64") -> PushedImage: builds a
    tiny image FROM the runtime stand-in and pushes it through the real registry."""

    def push(repository: str, tag: str, marker: str | None = None, platform: str = "linux/arm64") -> PushedImage:
        return push_tiny_image(local_cloud, repository, tag, marker, platform)

    return push


@dataclass(frozen=True)
class ImageFunction:
    """An image-based Lambda function in moto, running `image` (pushed for real)."""

    name: str
    repository: str
    architecture: str  # Lambda's name: "arm64" or "x86_64"
    image: PushedImage


@pytest.fixture
def make_image_function(make_repository: Callable[..., str], push_image: Callable[..., PushedImage],
                        lambda_client: Any, lambda_role_arn: str) -> Callable[..., ImageFunction]:
    """make_image_function(architecture="arm64", name=None, repository=None) -> ImageFunction:
    creates the repository if not given, pushes an initial image of the matching platform, and
    creates the function on it with that `Architectures`."""

    def make(architecture: str = "arm64", name: str | None = None, repository: str | None = None) -> ImageFunction:
        platform = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}[architecture]
        repository = repository or make_repository()
        name = name or unique_name("deployer-test-fn")
        image = push_image(repository, "initial", marker=f"initial {name}", platform=platform)
        lambda_client.create_function(FunctionName=name, PackageType="Image", Role=lambda_role_arn,
                                      Code={"ImageUri": image.lambda_uri}, Architectures=[architecture])
        return ImageFunction(name, repository, architecture, image)

    return make
