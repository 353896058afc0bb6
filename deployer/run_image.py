"""run_image: the steps of one function's apply that make its image (deployer.run_function runs
them in the plan's order with the others): assemble the context and claim the image, build, push,
verify, or copy it from another environment's repository; and what each returns.

Functions of one apply that deploy the same image share it (deployer.sharing): the first to claim
it makes it, the others wait and deploy what it published (Ready, ANOTHER_FUNCTION). Another apply
may push it since the plan: it is then deployed, not built again (Ready, ANOTHER_APPLY).
"""

from __future__ import annotations

import contextlib
import enum
import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Mapping, TypeVar

from deployer.context import BuildContext, temporary_context
from deployer.errors import PlanError
from deployer.go_build import Netrc
from deployer.image_copy import CopyAuthRefused, Repository, copy_image
from deployer.images import BuiltImage, ImageMaker, PushedImage
from deployer.paths import git_root
from deployer.plan import FunctionPlan, ImageRef, short
from deployer.ports import DockerApi, EcrApi, Reporter
from deployer.registry import RegistryLogin
from deployer.sharing import ImageClaim, OncePerApply, SharedImages
from deployer.spec import EcrRepository, FunctionSpec

V = TypeVar("V", BuildContext, BuiltImage, PushedImage)


@dataclass(frozen=True)
class Tools:
    """What the functions of one apply share. `sleep` waits between retries and polls and raises
    Cancelled on Ctrl-C; `login(region, fresh)` gives registry credentials, cached per region."""

    reporter: Reporter
    docker: DockerApi
    images: SharedImages
    cancel: threading.Event
    sleep: Callable[[float], None]
    login: Callable[[str, bool], RegistryLogin]
    keep_context: bool
    verbose: bool
    registry_endpoint: str | None
    netrcs: Mapping[str, Netrc] = field(default_factory=dict)  # credentials for Go builds, by variable name
    repositories: OncePerApply = field(default_factory=OncePerApply)  # each repository created or configured once


class ImageSource(enum.Enum):
    """Who made the image a function deploys."""

    THIS_RUN = "this run"
    ANOTHER_FUNCTION = "another function of this apply"
    ANOTHER_APPLY = "another apply, since the plan"
    COPIED = "a copy from another environment's repository"


@dataclass(frozen=True)
class Claimed(Generic[V]):
    """What a step made on the way to the image this run claimed (deployer.sharing): a context,
    a built image, a pushed image not verified yet."""

    value: V
    claim: ImageClaim


@dataclass(frozen=True)
class Ready:
    """The image is in ECR, verified: nothing left to build."""

    image: PushedImage
    source: ImageSource


@dataclass(frozen=True)
class CopiedImage:
    """The image copied under the content tag, not verified in ECR yet."""

    image: PushedImage


SKIPPED = {
    ImageSource.ANOTHER_FUNCTION: "skipped: the image was built and pushed for another function in this apply",
    ImageSource.ANOTHER_APPLY: "skipped: another apply pushed the image",
}


def still_declared(fp: FunctionPlan, spec: FunctionSpec | None) -> FunctionSpec:
    """The function's spec as its deploy.yaml declares it now; a step that needs it refuses a
    function removed from the file since the plan."""
    if spec is None:
        raise PlanError(f"function {fp.name} is no longer declared in {fp.desired.spec_file}; run plan again")
    return spec


class ImageSteps:
    """The image steps of one function's apply. `cleanup` lets go, on every path, of what they
    hold: the context, the image claim and lock, the local tag."""

    def __init__(self, tools: Tools, fp: FunctionPlan, spec: FunctionSpec | None, ecr: EcrApi, cleanup: contextlib.ExitStack,
                 log: Callable[[str], None]) -> None:
        self.tools = tools
        self.fp = fp
        self.spec = spec
        self.desired = fp.desired
        self.cleanup = cleanup
        self.log = log
        self.maker = ImageMaker(fp.desired, tools.docker, ecr, cleanup, registry_endpoint=tools.registry_endpoint,
                                login=lambda fresh: tools.login(fp.desired.region, fresh), cancel=tools.cancel,
                                sleep=tools.sleep, log=log, verbose=tools.verbose,
                                checkout=git_root([spec.root, *spec.root.parents]) if spec is not None else None)

    def assemble(self, planned: str) -> Claimed[BuildContext] | Ready:
        spec = still_declared(self.fp, self.spec)
        shared = self.tools.images.claim(f"{self.desired.repository_uri}:{self.desired.content_tag}", self.fp.name)
        if isinstance(shared, PushedImage):
            self.log(f"image {self.desired.content_tag} was built in this apply for another function: "
                     f"deploying {short(shared.digest)}")
            return Ready(shared, ImageSource.ANOTHER_FUNCTION)
        claim = self.cleanup.enter_context(shared)
        context = self.cleanup.enter_context(temporary_context(spec, keep=self.tools.keep_context))
        if self.tools.keep_context:  # said now: a failed build is when it is needed most
            self.log(f"build context kept at {context.path}")
        if context.digest != planned:
            raise PlanError(f"source of {self.fp.name} changed since plan ({short(planned)} -> {short(context.digest)}); "
                            "run plan again")
        return Claimed(context, claim)

    def build(self, assembled: Claimed[BuildContext]) -> Claimed[BuiltImage] | Ready:
        """Take this machine's lock of the image, then ask ECR again: another apply may have pushed
        it meanwhile; it is deployed then instead of being built a second time (a second push of
        the tag would leave the first image untagged in ECR)."""
        assembled.claim.lock(self.desired.content_tag, self.tools.sleep, self.log)
        existing = self.maker.in_ecr()
        if existing is not None:
            self.log(f"ECR got {self.desired.content_tag} since the plan (pushed by another apply): deploying its digest "
                     f"{short(existing.digest)}")
            assembled.claim.publish(existing)
            return Ready(existing, ImageSource.ANOTHER_APPLY)
        variable = self.spec.build.netrc_env if self.spec is not None else "DEPLOYER_NETRC"
        return Claimed(self.maker.build(assembled.value, self.tools.netrcs.get(variable), variable), assembled.claim)

    def copy(self, source: ImageRef) -> PushedImage:
        """Copy the other environment's image under the content tag here, by digest, registry to
        registry (both through --registry-endpoint when given: a local emulator); each side logs
        in to ECR of its own region. Credentials refused (an expired token) are renewed once."""
        origin = EcrRepository.parse(source.repository_uri)
        if origin is None or source.digest is None:  # the planner's own step (a saved plan's is checked against it)
            raise AssertionError(f"a copy names its source by digest in ECR; got {source}")
        endpoint, digest = self.tools.registry_endpoint, source.digest

        def attempt(fresh: bool) -> str:
            pull = Repository(endpoint or origin.registry, origin.name, self.tools.login(origin.region, fresh))
            push = Repository(endpoint or self.desired.registry, self.desired.repository_name,
                              self.tools.login(self.desired.region, fresh))
            copied = copy_image(pull, digest, push, self.desired.content_tag, cancel=self.tools.cancel,
                                progress=lambda done, total: self.tools.reporter.transfer(self.fp.name, done, total))
            self.log(f"{self.desired.content_tag} already holds {short(digest)}" if copied.already_tagged else
                     f"copied {short(digest)}: {copied.transferred} blob(s) transferred, {copied.mounted} mounted, "
                     f"{copied.present} already there")
            return copied.digest

        try:
            return PushedImage(attempt(False))
        except CopyAuthRefused as exc:
            self.log(f"{exc}: logging in again")
            return PushedImage(attempt(True))

    def push(self, built: Claimed[BuiltImage]) -> Claimed[PushedImage]:
        pushed = self.maker.push(built.value, lambda done, total: self.tools.reporter.transfer(self.fp.name, done, total))
        return Claimed(pushed, built.claim)

    def verify(self, pushed: Claimed[PushedImage]) -> Ready:
        image = self.maker.verify(pushed.value)
        pushed.claim.publish(image)
        return Ready(image, ImageSource.THIS_RUN)

    def verify_copy(self, copied: CopiedImage) -> Ready:
        """ECR must list the tag at the copied digest, as after a push."""
        return Ready(self.maker.verify(copied.image), ImageSource.COPIED)
