"""images: build a function's image (`build_image`: the Go build or a Dockerfile), then publish it: push under the content tag and verify that
ECR lists it as Lambda needs it (ko's build and publish). Each step takes what the one before
returned: BuildContext -> BuiltImage -> PushedImage -> PushedImage (verified).

Nothing here is function-specific: functions sharing the inputs and the repository share the
image (deployer.sharing sees to it that it is made once).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from deployer import gitdiff, gitrev, image_inputs
from deployer.context import BuildContext
from deployer.digest import disk_entries
from deployer.errors import DeployerError, DockerError, first_line
from deployer.go_build import CompileJob, Netrc
from deployer.layout import DockerfileBuild, runtime_dockerfile
from deployer.interrupts import Cancelled
from deployer.plan import short
from deployer.ports import DockerApi, EcrApi, ImageVanished, ImmutableTagRefused
from deployer.redact import build_arg_secrets, redact
from deployer.registry import REVISION_LABEL, SOURCE_DIGEST_LABEL, RegistryLogin
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


def build_image(docker: DockerApi, context: BuildContext, tag: str, labels: Mapping[str, str], *, function: str,
                netrc: Netrc | None, log: Callable[[str], None] | None, cancel: threading.Event,
                netrc_env: str = "DEPLOYER_NETRC") -> str:
    """Build the image of an assembled context into the engine under `tag`; its image ID. A Go
    build compiles in a container of the builder image and copies the binary onto the runtime
    image; a Dockerfile build is docker build. `log` gets the build output (--verbose), with no
    secret in it; a cancel raises Cancelled once the engine stopped."""
    recipe = context.recipe
    secrets = build_arg_secrets(recipe.build_args) if isinstance(recipe, DockerfileBuild) else ()

    def output(line: str) -> None:  # called per output line
        if cancel.is_set():
            raise Cancelled("cancelled during the build")
        if log is not None:  # a failing step may print a build arg (a GOPROXY with a token): never shown
            log(redact(line, secrets))

    try:
        if isinstance(recipe, DockerfileBuild):
            return docker.build(str(context.path), recipe.dockerfile, tag, recipe.build_args, labels, output, cancel)
        binary = docker.compile_go(CompileJob(function, context.path, recipe, netrc, netrc_env), output, cancel)
        # Inside the context's directory, which the compile has read already: a crash leaves it
        # to the sweep of abandoned contexts.
        image_dir = Path(tempfile.mkdtemp(dir=context.path, prefix=".deployer-image-"))
        try:
            (image_dir / "bootstrap").write_bytes(binary)
            os.chmod(image_dir / "bootstrap", 0o755)
            (image_dir / "Dockerfile").write_text(runtime_dockerfile(), encoding="utf-8")
            return docker.build(str(image_dir), "Dockerfile", tag, {"RUNTIME_IMAGE": recipe.runtime_image,
                                "TARGETPLATFORM": recipe.platform}, labels, output, cancel)
        finally:
            shutil.rmtree(image_dir, ignore_errors=True)
    except DockerError:
        if cancel.is_set():  # the gateway stopped the build on the engine
            raise Cancelled("cancelled during the build (stopped on the engine)") from None
        raise


def checkout_labels(checkout: Path, context: BuildContext) -> dict[str, str]:
    """What an image records of the git checkout it is built from: the commit (the first build's:
    a later one of the same source reuses the image), whether the context's inputs had uncommitted
    changes then, and the repository's URL."""
    labels = {}
    commit = gitrev.revision(checkout)
    if commit:
        labels[REVISION_LABEL] = commit
        repo = gitdiff.open_checkout(checkout)
        dirty = None  # not told: a checkout deployer does not read (objects borrowed through alternates)
        if repo is not None:
            try:
                dirty = gitdiff.dirty(repo, checkout, commit, context.input_dirs, disk_entries(context.path), context.would_hold)
            finally:
                repo.close()  # its pack files, now rather than whenever it is collected
        if dirty is not False:  # a clean build says nothing; one that may not be clean says so
            labels[image_inputs.DIRTY_LABEL] = "true" if dirty else image_inputs.DIRTY_UNKNOWN
    url = gitdiff.source_url(checkout)
    if url:
        labels[image_inputs.SOURCE_LABEL] = url
    return labels


class ImageMaker:
    """Makes the image of one desired function. `cleanup` removes, whatever happens, the local tag
    a build makes (a build stopped at its very end may have tagged); the layers stay in the
    engine's cache for the next build. `login(fresh)` gives the registry credentials."""

    def __init__(self, desired: Desired, docker: DockerApi, ecr: EcrApi, cleanup: contextlib.ExitStack, *,
                 registry_endpoint: str | None, login: Callable[[bool], RegistryLogin], cancel: threading.Event,
                 sleep: Callable[[float], None], log: Callable[[str], None], verbose: bool, checkout: Path | None = None) -> None:
        self.desired = desired
        self.checkout = checkout  # the git checkout the source is in: its commit labels the image
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
        self._rebuild: Callable[[], BuiltImage] | None = None  # the last build, once more

    @property
    def tag(self) -> str:
        return self.desired.content_tag

    def in_ecr(self) -> PushedImage | None:
        """The image ECR holds under the content tag now (pushed since the plan by another apply)."""
        existing = self.ecr.describe_image(self.desired.repository, self.tag)
        if existing.digest is None:
            return None
        if not existing.single_platform:
            raise DeployerError(f"ECR tag {self.tag} was pushed since the plan as a {existing.media_type}; "
                                "Lambda accepts only single-platform manifests")
        return PushedImage(existing.digest)

    def build(self, context: BuildContext, netrc: Netrc | None = None, netrc_env: str = "DEPLOYER_NETRC") -> BuiltImage:
        labels = {SOURCE_DIGEST_LABEL: context.digest, "dev.deployer.spec": self.desired.spec_file,
                  **image_inputs.labels(context.inputs)}
        if self.checkout is not None:
            labels.update(checkout_labels(self.checkout, context))
        local_tag = f"{self.repository}:{self.tag}"
        self.cleanup.callback(self._drop, local_tag)

        def make() -> BuiltImage:
            self._local_tags.add(local_tag)  # before the build: one stopped at its very end may have tagged
            return BuiltImage(build_image(self.docker, context, local_tag, labels, netrc=netrc, function=self.desired.name,
                                          log=self.log if self.verbose else None, cancel=self.cancel, netrc_env=netrc_env),
                              local_tag)

        self._rebuild = make
        return make()

    def push(self, built: BuiltImage, progress: Callable[[int, int], None] | None = None) -> PushedImage:
        """Push under the content tag; the local tag goes right after, whatever happens.
        `progress(done, total)`: the bytes pushed, as the gateway sums them (DockerApi.push).
        An image the engine lost before its push (ImageVanished: another build of the same inputs
        had its last tag removed meanwhile) is built again, and pushed, once more: its layers are
        cached (a Go build compiles again, from its build cache)."""
        try:
            try:
                return self._push(built, progress)
            except ImageVanished as exc:
                if self._rebuild is None:
                    raise
                self.log(f"the engine lost the image before its push ({first_line(exc)}); building it again")
                return self._push(self._rebuild(), progress)
        except ImmutableTagRefused:
            # The tag names the image's inputs: if someone pushed it since the plan, that image
            # is the one to deploy.
            existing = self.ecr.describe_image(self.desired.repository, self.tag)
            if existing.digest is None:
                raise
            self.log(f"ECR already holds {self.tag} (immutable tag); deploying its digest {short(existing.digest)}")
            return PushedImage(existing.digest)
        finally:
            self._drop(built.local_tag)

    def _push(self, built: BuiltImage, progress: Callable[[int, int], None] | None) -> PushedImage:
        return PushedImage(self.docker.push(built.image_id, self.repository, self.tag, self.login(False),
                                            lambda: self.login(True), self.log, self.sleep, progress))

    def verify(self, pushed: PushedImage) -> PushedImage:
        """ECR must list the tag at the pushed digest with a single-platform media type."""
        seen = None
        for attempt in range(1, VERIFY_ATTEMPTS + 1):
            seen = self.ecr.describe_image(self.desired.repository, self.tag)
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
