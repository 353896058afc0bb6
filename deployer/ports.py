"""What the executor needs of its edges: the gateways (deployer.aws, deployer.docker_gateway) and
a reporter (deployer.progress). Tests hand in in-memory fakes that mypy checks against these.

The Docker port's refusals that the executor acts on are types, recognised from the engine's and
the registry's words in one place, the gateway: the executor never reads an error's text.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Protocol

from deployer.errors import DockerError
from deployer.go_build import CompileJob
from deployer.registry import RegistryLogin
from deployer.repository_config import RepositoryConfig
from deployer.spec import EcrRepository
from deployer.state import AliasTarget, FunctionState, ImageState, Invoked


class ImmutableTagRefused(DockerError):
    """The repository's tags are immutable and the pushed tag exists already. Content tags name
    the image's inputs, so the image under it is the one to deploy."""


class RegistryAuthRefused(DockerError):
    """The registry refused the credentials (an expired token: log in again once)."""


class ImageVanished(DockerError):
    """The image just built was deleted before the engine tagged it (for the build's own tag or a
    push's): another build of the same inputs (the same image ID) had its only tag removed in
    between, which deletes the image. The layers below it stay cached, so building again
    re-creates it at once."""


class PushStalled(DockerError):
    """A push made no progress for the engine's read timeout: not retried, the registry is not
    answering and would hold every attempt as long."""


class Reporter(Protocol):
    """What a function's run tells about itself; called from every worker thread at once."""

    def step(self, function: str, number: int, total: int, text: str) -> None: ...
    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None: ...

    def transfer(self, function: str, done: int, total: int) -> None:
        """Bytes of the running step's push so far: `done` of `total`, both summed over its layers
        (a layer the registry has already counts as done). Called a few times a second at most."""
        ...

    def log(self, function: str, line: str) -> None: ...
    def notice(self, text: str) -> None: ...


class LambdaApi(Protocol):
    def get_function(self, name: str) -> FunctionState: ...
    def update_function_code(self, name: str, image_uri: str, architecture: str, revision_id: str | None) -> str | None: ...
    def update_function_configuration(self, name: str, request: Mapping[str, Any], revision_id: str | None) -> str | None: ...
    def create_function(self, name: str, image_uri: str, architecture: str, request: Mapping[str, Any]) -> str | None: ...
    def put_function_concurrency(self, name: str, reserved: int) -> None: ...
    def publish_version(self, name: str, code_sha256: str, revision_id: str | None, description: str) -> str: ...
    def invoke(self, name: str, qualifier: str, payload: bytes, function_timeout: int) -> Invoked: ...
    def update_alias(self, name: str, alias: str, version: str, revision_id: str | None, description: str) -> None: ...
    def create_alias(self, name: str, alias: str, version: str, description: str) -> None: ...
    def list_alias_targets(self, name: str) -> list[AliasTarget]: ...
    def tag_resource(self, arn: str, tags: Mapping[str, str]) -> None: ...
    def wait_active(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None: ...
    def wait_updated(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None: ...


class EcrApi(Protocol):
    def describe_image(self, repository: EcrRepository, tag: str) -> ImageState: ...
    def create_repository(self, repository: EcrRepository, config: RepositoryConfig) -> None: ...
    def configure_repository(self, repository: EcrRepository, config: RepositoryConfig, keys: tuple[str, ...]) -> None: ...
    def login(self) -> RegistryLogin: ...


class DockerApi(Protocol):
    def local_image(self, reference: str) -> str | None:
        """The ID of the image the engine holds under `reference`, or None."""
        ...

    def compile_go(self, job: CompileJob, log: Callable[[str], None], cancel: threading.Event | None = None) -> bytes:
        """The binary of the Go build of `job`; a DockerError when the compile fails or is cancelled."""
        ...

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Mapping[str, str],
              labels: Mapping[str, str], log: Callable[[str], None], cancel: threading.Event | None = None) -> str:
        """The image ID; a DockerError when the build fails or `cancel` stopped it."""
        ...

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin,
             relogin: Callable[[], RegistryLogin], log: Callable[[str], None], sleep: Callable[[float], None],
             progress: Callable[[int, int], None] | None = None) -> str:
        """The registry's manifest digest; ImmutableTagRefused, PushStalled or another DockerError.
        `progress(done, total)`: bytes pushed so far, summed over the layers, a few times a second
        at most and once at the end of each attempt."""
        ...

    def remove_tag(self, reference: str) -> None: ...
