"""images: build a function's image, then publish it: push under the content tag and verify that
ECR lists it as Lambda needs it (ko's build and publish). Each step takes what the one before
returned: BuildContext -> BuiltImage -> PushedImage -> PushedImage (verified).

Nothing here is function-specific: functions sharing the inputs and the repository share the
image (deployer.sharing sees to it that it is made once).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable

from deployer.context import BuildContext
from deployer.errors import DeployerError, DockerError
from deployer.interrupts import Cancelled
from deployer.plan import short
from deployer.ports import DockerApi, EcrApi, ImmutableTagRefused
from deployer.redact import build_arg_secrets, redact
from deployer.registry import RegistryLogin
from deployer.state import Desired

# ECR lists a pushed tag after a delay.
VERIFY_ATTEMPTS = 12


@dataclass(frozen=True)
class BuiltImage:
    """An image in the engine, tagged `local_tag` (repository:content tag) only for its push."""

    image_id: str
    local_tag: str


@dataclass(frozen=True)
class PushedImage:
    """The image under the content tag in ECR, by its manifest digest ("sha256:...")."""

    digest: str


class ImageMaker:
    """Makes the image of one desired function. `cleanup` removes, whatever happens, the local tag
    a build makes (a build stopped at its very end may have tagged); the layers stay in the
    engine's cache for the next build. `login(fresh)` gives the registry credentials."""

    def __init__(self, desired: Desired, docker: DockerApi, ecr: EcrApi, cleanup: contextlib.ExitStack, *,
                 registry_endpoint: str | None, login: Callable[[bool], RegistryLogin], cancel: threading.Event,
                 sleep: Callable[[float], None], log: Callable[[str], None], verbose: bool) -> None:
        self.desired = desired
        self.docker = docker
        self.ecr = ecr
        self.cleanup = cleanup
        self.login = login
        self.cancel = cancel
        self.sleep = sleep
        self.log = log
        self.verbose = verbose
        self.repository = f"{registry_endpoint or desired.registry}/{desired.repository_name}"  # where pushes go
        self._local_tags: set[str] = set()  # made for a push and not removed yet

    @property
    def tag(self) -> str:
        return self.desired.content_tag

    def in_ecr(self) -> PushedImage | None:
        """The image ECR holds under the content tag now (pushed since the plan by another apply)."""
        existing = self.ecr.describe_image(self.desired.repository_name, self.tag)
        if existing.digest is None:
            return None
        if not existing.single_platform:
            raise DeployerError(f"ECR tag {self.tag} was pushed since the plan as a {existing.media_type}; "
                                "Lambda accepts only single-platform manifests")
        return PushedImage(existing.digest)

    def build(self, context: BuildContext) -> BuiltImage:
        labels = {"dev.deployer.source-digest": context.digest, "dev.deployer.spec": self.desired.spec_file}

        secrets = build_arg_secrets(context.build_args)

        def log(line: str) -> None:  # called per output line
            if self.cancel.is_set():
                raise Cancelled("cancelled during docker build")
            if self.verbose:  # a failing step may print a build arg (a GOPROXY with a token): never shown
                self.log(redact(line, secrets))

        local_tag = f"{self.repository}:{self.tag}"
        self._local_tags.add(local_tag)
        self.cleanup.callback(self._drop, local_tag)
        try:
            image_id = self.docker.build(str(context.path), context.dockerfile, local_tag, context.build_args, labels,
                                         log, self.cancel)
        except DockerError:
            if self.cancel.is_set():  # the gateway stopped the build on the engine
                raise Cancelled("cancelled during docker build (stopped on the engine)") from None
            raise
        return BuiltImage(image_id, local_tag)

    def push(self, built: BuiltImage) -> PushedImage:
        """Push under the content tag; the local tag goes right after, whatever happens."""
        try:
            return PushedImage(self.docker.push(built.image_id, self.repository, self.tag, self.login(False),
                                                lambda: self.login(True), self.log, self.sleep))
        except ImmutableTagRefused:
            # The tag names the image's inputs: if someone pushed it since the plan, that image
            # is the one to deploy.
            existing = self.ecr.describe_image(self.desired.repository_name, self.tag)
            if existing.digest is None:
                raise
            self.log(f"ECR already holds {self.tag} (immutable tag); deploying its digest {short(existing.digest)}")
            return PushedImage(existing.digest)
        finally:
            self._drop(built.local_tag)

    def verify(self, pushed: PushedImage) -> PushedImage:
        """ECR must list the tag at the pushed digest with a single-platform media type."""
        seen = None
        for attempt in range(1, VERIFY_ATTEMPTS + 1):
            seen = self.ecr.describe_image(self.desired.repository_name, self.tag)
            if seen.digest == pushed.digest:
                if not seen.single_platform:
                    raise DeployerError(f"pushed image is a {seen.media_type}; Lambda accepts only single-platform manifests "
                                        "(turn off provenance/SBOM attestations)")
                return pushed
            self.sleep(min(0.25 * attempt, 2.0))
        raise DeployerError(f"ECR does not list {self.desired.repository_uri}:{self.tag} at the pushed digest "
                            f"{pushed.digest} (it reports {seen.digest if seen else None}); check the registry and push again")

    def _drop(self, local_tag: str) -> None:
        if local_tag in self._local_tags:
            self._local_tags.discard(local_tag)
            self.docker.remove_tag(local_tag)
