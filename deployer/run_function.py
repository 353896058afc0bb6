"""run_function: one function's apply, its plan's steps in order, each taking what the step before
returned (its `Stage`) and returning the next (the image steps in deployer.run_image, the release
steps in deployer.run_release):

    AssembleContext    -> Claimed(BuildContext)  or Ready: another function made the image
    BuildImage         -> Claimed(BuiltImage)    or Ready: another apply pushed it meanwhile
    PushImage          -> Claimed(PushedImage)
    VerifyImage        -> Ready(PushedImage)     the claim publishes it to the functions waiting
    CopyImage          -> CopiedImage            from another environment's repository, by digest
    VerifyImage        -> Ready(PushedImage)     after a copy: ECR lists the tag at the copied digest
    UpdateFunctionConfiguration -> (unchanged)   the declared keys that differ, RevisionId guarded;
                                                 reserved concurrency and tags through their own calls
    UpdateFunctionCode -> SentUpdate(digest)     what Lambda was asked, which the outcome tells

An update plan has only UpdateFunctionCode and WaitForUpdate (after any configuration update): its
digest is in the plan; a configuration plan has only the configuration update and its wait.
Before Lambda is changed the function is read again and compared with the plan, so a concurrent
change stops this function cleanly ("changed since plan") instead of being overwritten; if that
change is another apply deploying the very image this one would, there is nothing left to do.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, NoReturn, TypeVar, Union

from deployer.context import BuildContext
from deployer.function_config import changes, concurrency_request, creation_request, tag_request, update_request
from deployer.errors import AwsError, DeployerError, Diagnostic, PlanError
from deployer.images import BuiltImage, PushedImage
from deployer.interrupts import Cancelled
from deployer.outcome import Outcome, OutcomeStatus
from deployer.run_release import Releasing
from deployer.plan import PREVIOUS_IMAGE_TAG, ROLLED_BACK_TAG
from deployer.plan import (
    Action,
    AssembleContext,
    BuildImage,
    CreateFunction,
    ConfigureRepository,
    CreateRepository,
    Cleanup,
    CopyImage,
    EcrLogin,
    MoveAlias,
    PublishVersion,
    SmokeTest,
    FunctionPlan,
    ImageRef,
    PushImage,
    Step,
    UpdateFunctionCode,
    UpdateFunctionConfiguration,
    VerifyImage,
    WaitForActive,
    WaitForUpdate,
    short,
)
from deployer.ports import EcrApi, LambdaApi
from deployer.run_image import SKIPPED, V, Claimed, CopiedImage, ImageSource, ImageSteps, Ready, Tools, still_declared
from deployer.spec import FunctionSpec
from deployer.state import FunctionState

T = TypeVar("T")

# Lambda refuses an update while another is in progress.
CONFLICT_ATTEMPTS = 6
RETRYABLE_LAMBDA_CODES = ("ResourceConflictException", "TooManyRequestsException", "ServiceException")


@dataclass(frozen=True)
class SentUpdate:
    """Lambda was asked to run `digest`: by this apply, or, `by_another_apply`, since the plan by
    another one that deployed the same image (this one then sent nothing)."""

    digest: str
    source: ImageSource | None = None  # None: an update plan, the digest was in the plan
    by_another_apply: bool = False


# What a function's steps have reached (None: nothing yet).
Stage = Union[Claimed[BuildContext], Claimed[BuiltImage], Claimed[PushedImage], CopiedImage, Ready, SentUpdate, None]
S = TypeVar("S", Ready, SentUpdate)

class FunctionRun:
    """One function's apply. Its only state is what every step shares: the gateways, and the
    cleanup stack that lets go of the context, the image claim and lock and the local tag on every
    path; what a step makes it returns."""

    def __init__(self, tools: Tools, fp: FunctionPlan, spec: FunctionSpec | None, lam: LambdaApi, ecr: EcrApi) -> None:
        self.tools = tools
        self.fp = fp
        self.spec = spec
        self.desired = fp.desired
        self.lam = lam
        self.ecr = ecr
        self.cleanup = contextlib.ExitStack()
        self.revision = fp.revision_id  # what Lambda's RevisionId is expected to be: moved by our own updates
        self.configured_revision: str | None = None  # what our configuration update answered
        self.separately_configured = False  # a key outside UpdateFunctionConfiguration was set (its RevisionId may move)
        self.releasing = Releasing(fp, spec, lam, self.log, self.retried, tools.sleep)
        self.image = ImageSteps(tools, fp, spec, ecr, self.cleanup, self.log)

    def log(self, line: str) -> None:
        self.tools.reporter.log(self.fp.name, line)

    def run(self) -> Outcome:
        """Every step in order; contexts, claims, locks and local tags are let go on every path."""
        started = time.monotonic()
        stage: Stage = None
        try:
            with self.cleanup:
                stage = self.settled_elsewhere()
                if stage is None:
                    for number, step in enumerate(self.fp.steps, 1):
                        stage = self.step(number, step, stage)
        except DeployerError as exc:
            return self.stopped(exc, stage, time.monotonic() - started)
        if self.fp.action in (Action.CONFIGURE, Action.RELEASE) and stage is None:
            done = [f"configuration updated ({self.configured()})"] if self.configured() else []
            return Outcome(self.fp.name, OutcomeStatus.UPDATED, "; ".join(done + self.releasing.released()),
                           time.monotonic() - started, self.fp.current_digest)
        return self.finished(_expect(stage, SentUpdate, "the plan's steps end in an update"), time.monotonic() - started)

    def configured(self) -> str:
        """The keys this function's apply sets; the settings of a repository it creates go unsaid."""
        settings = () if self.fp.create_repository else self.fp.repository_changes
        return ", ".join(change.field for change in (*settings, *self.fp.configuration))

    def step(self, number: int, step: Step, stage: Stage) -> Stage:
        if self.tools.cancel.is_set():
            raise Cancelled("cancelled before: " + step.describe())
        total, text = len(self.fp.steps), step.describe()
        self.tools.reporter.step(self.fp.name, number, total, text)
        started = time.monotonic()
        stage = self.advance(step, stage)
        self.tools.reporter.step_done(self.fp.name, number, total, text, time.monotonic() - started)
        return stage

    def advance(self, step: Step, stage: Stage) -> Stage:
        match step:
            case CreateRepository():
                if not self.tools.repositories.run(f"create {self.desired.repository_uri}", lambda: self.ecr.create_repository(
                        self.desired.repository, self.desired.repository_config)):
                    self.log("the repository was created for another function of this apply")
                return stage
            case ConfigureRepository(keys=keys):
                self.configure_repository(keys)
                return stage
            case EcrLogin():
                self.tools.login(self.desired.region, False)
                return stage
            case AssembleContext(source_digest=planned):
                return self.image.assemble(planned)
            case CopyImage(source=source):
                return CopiedImage(self.image.copy(source))
            case VerifyImage() if isinstance(stage, CopiedImage):
                return self.image.verify_copy(stage)
            case BuildImage() | PushImage() | VerifyImage() if isinstance(stage, Ready):
                self.log(SKIPPED[stage.source])
                return stage
            case BuildImage():
                return self.image.build(_claimed(stage, BuildContext, "AssembleContext precedes BuildImage"))
            case PushImage():
                return self.image.push(_claimed(stage, BuiltImage, "BuildImage precedes PushImage"))
            case VerifyImage():
                return self.image.verify(_claimed(stage, PushedImage, "PushImage precedes VerifyImage"))
            case UpdateFunctionConfiguration():
                self.configure()
                return stage
            case UpdateFunctionCode(image=image, architecture=architecture):
                return self.update(image, architecture, stage)
            case WaitForUpdate():
                self.lam.wait_updated(self.fp.name, self.tools.sleep)
                return stage
            case CreateFunction(image=image, architecture=architecture):
                return self.create(image, architecture, stage)
            case PublishVersion(alias=alias, previous=previous):
                self.releasing.publish(stage.digest if isinstance(stage, SentUpdate) else self.fp.current_digest,
                                        alias, previous)
                return stage
            case SmokeTest(event_sha256=planned, expect=expect):
                self.releasing.smoke_test(planned, expect)
                return stage
            case MoveAlias(alias=alias, previous=previous):
                self.releasing.move_alias(alias, previous)
                return stage
            case WaitForActive():
                self.lam.wait_active(self.fp.name, self.tools.sleep)
                # What CreateFunction has no parameter for, set once the function is Active
                # (Lambda refuses changes to a Pending function).
                self.put_concurrency()
                return stage
            case Cleanup():
                self.cleanup.close()
                return stage
            case _:
                _unreachable(step)

    def configure(self) -> None:
        """Set the declared keys that differ, as deploy.yaml says them now (re-read at apply;
        a saved plan's changes were checked against them), refused by Lambda if the function
        changed since the plan (RevisionId). The sub-keys of image_config, logging and vpc not
        declared are sent as Lambda holds them now (read here, and unchanged since the plan as the
        RevisionId guards), so that replacing the object keeps them. The keys
        UpdateFunctionConfiguration does not set follow it, each with its own call (which takes
        no RevisionId: the function was read and compared with the plan just before)."""
        still_declared(self.fp, self.spec)
        now = self.lam.get_function(self.fp.name)
        self.check_unchanged(now)
        request = update_request(self.desired.config, self.fp.configuration, now.config)
        if request:
            self.revision = self.configured_revision = self.retried(
                lambda: self.lam.update_function_configuration(self.fp.name, request, self.revision))
        self.put_concurrency()
        tags = tag_request(self.desired.config, self.fp.configuration)
        if tags:
            if now.arn is None:
                raise AwsError(Diagnostic("the answer holds no usable FunctionArn, which TagResource needs; check the endpoint "
                                          "(AWS_ENDPOINT_URL_LAMBDA)", operation="lambda:GetFunction", resource=f"function {self.fp.name}"))
            arn = now.arn
            self.retried(lambda: self.lam.tag_resource(arn, tags))
            self.separately_configured = True

    def configure_repository(self, keys: tuple[str, ...]) -> None:
        """Set the repository's settings the plan changes, as deploy.yaml says them now (a saved
        plan's changes were checked against them), once per apply (functions sharing a repository
        declare the same settings: deployer.load)."""
        still_declared(self.fp, self.spec)
        if not self.tools.repositories.run(f"configure {self.desired.repository_uri}", lambda: self.ecr.configure_repository(
                self.desired.repository, self.desired.repository_config, keys)):
            self.log("the repository's settings were set for another function of this apply")

    def put_concurrency(self) -> None:
        """PutFunctionConcurrency, when reserved_concurrency changed (no call of UpdateFunctionConfiguration
        nor CreateFunction sets it)."""
        reserved = concurrency_request(self.desired.config, self.fp.configuration)
        if reserved is not None:
            self.retried(lambda: self.lam.put_function_concurrency(self.fp.name, reserved))
            self.separately_configured = True

    def retried(self, send: Callable[[], T], landed: Callable[[AwsError, int], bool] | None = None, *,
                codes: tuple[str, ...] = RETRYABLE_LAMBDA_CODES) -> T | None:
        """`send`, again after a pause while Lambda answers that it is busy (`codes`: an update in
        progress, throttling), at most CONFLICT_ATTEMPTS times. `landed(error, attempt)` says
        when a refusal means an earlier attempt went through: None is returned then."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return send()
            except AwsError as exc:
                if landed is not None and landed(exc, attempt):
                    return None
                if exc.code not in codes or attempt == CONFLICT_ATTEMPTS:
                    raise
                delay = min(2 ** attempt, 20)
                self.log(f"{exc.code}: retry {attempt}/{CONFLICT_ATTEMPTS - 1} in {delay}s")
                self.tools.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def create(self, planned: ImageRef, architecture: str, stage: Stage) -> SentUpdate:
        """Create the function from the image (planned by digest, or the one this apply made),
        with every declared configuration key. A function that appeared since the plan is left
        alone: "changed since plan"."""
        still_declared(self.fp, self.spec)
        if planned.digest is not None:
            digest, source = planned.digest, None
        else:
            ready = _expect(stage, Ready, "VerifyImage precedes a creation planned by tag")
            digest, source = ready.image.digest, ready.source
        if self.lam.get_function(self.fp.name).exists:
            raise PlanError(f"function {self.fp.name} changed since plan (it was created meanwhile); run plan again")
        request = creation_request(self.desired.config, self.fp.configuration)
        image = str(ImageRef(self.desired.repository_uri, digest=digest))
        self.revision = self.lam.create_function(self.fp.name, image, architecture, request)
        return SentUpdate(digest, source)

    def adopt_configured_revision(self, now: FunctionState) -> None:
        """After our configuration update, Lambda moves the RevisionId once more as the update
        completes (the id UpdateFunctionConfiguration answered is not the last one): the
        function's RevisionId now is taken as ours when it holds what was set and still runs
        what the plan saw."""
        if ((self.configured_revision is not None or self.separately_configured) and now.revision_id != self.revision
                and not changes(self.desired.config, now.config, b"")
                and now.running_digest == self.fp.current_digest and now.architectures == self.fp.current_architectures):
            self.revision = now.revision_id

    def settled_elsewhere(self) -> SentUpdate | None:
        """Before anything: stop here, successfully, if another apply deployed since the plan
        exactly what this one would; refuse if anything else changed."""
        now = self.lam.get_function(self.fp.name)
        if self.changed(now):
            wanted = self.fp.desired_digest or self.ecr.describe_image(self.desired.repository, self.desired.content_tag).digest
            # With a configuration change to make, or a release (the other apply's smoke test may
            # have failed), the image alone does not settle it: the check below stops this
            # function cleanly instead.
            if wanted and not self.fp.configuration and self.fp.release is None and self.deployed_meanwhile(now, wanted):
                return SentUpdate(wanted, by_another_apply=True)
        self.check_unchanged(now)
        return None

    def changed(self, now: FunctionState) -> bool:
        return now.running_digest != self.fp.current_digest or now.architectures != self.fp.current_architectures

    def deployed_meanwhile(self, now: FunctionState, wanted: str) -> bool:
        """True (and said) when the function changed since the plan to run `wanted` with the
        wanted architecture: two applies of one source end in the same state, and the second
        has nothing to do."""
        if not (self.changed(now) and now.running_digest == wanted and now.architectures == (self.desired.architecture,)
                and "Failed" not in (now.state, now.last_update_status)):
            return False
        self.log(f"already runs {short(wanted)}: another apply deployed it since the plan; nothing to update")
        return True

    def check_unchanged(self, now: FunctionState) -> None:
        changes = []
        if now.running_digest != self.fp.current_digest:
            changes.append(f"digest {short(self.fp.current_digest)} -> {short(now.running_digest)}")
        if now.architectures != self.fp.current_architectures:
            changes.append(f"architectures {','.join(self.fp.current_architectures)} -> {','.join(now.architectures)}")
        if self.revision and now.revision_id != self.revision:
            changes.append(f"revision {self.revision} -> {now.revision_id}")
        if changes:
            raise PlanError(f"function {self.fp.name} changed since plan ({'; '.join(changes)}); run plan again")

    def update(self, planned: ImageRef, architecture: str, stage: Stage) -> SentUpdate:
        """Planned by tag (a build): pinned to the digest this apply pushed or found."""
        if planned.digest is not None:
            digest, source = planned.digest, None
        else:
            ready = _expect(stage, Ready, "VerifyImage precedes an update planned by tag")
            digest, source = ready.image.digest, ready.source
        now = self.lam.get_function(self.fp.name)
        if self.deployed_meanwhile(now, digest):
            return SentUpdate(digest, source, by_another_apply=True)
        self.adopt_configured_revision(now)
        self.check_unchanged(now)
        image = str(planned if planned.digest else ImageRef(self.desired.repository_uri, digest=digest))

        def landed(exc: AwsError, attempt: int) -> bool:
            # An earlier attempt landed (its answer was lost, or the conflict was our own update
            # in progress): the RevisionId moved because of us, not of someone else.
            return exc.code == "PreconditionFailedException" and attempt > 1 and self.ours(digest, architecture)

        try:
            self.retried(lambda: self.lam.update_function_code(self.fp.name, image, architecture, self.revision), landed)
        except AwsError as exc:
            if self.deployed_since_read(exc, digest):
                return SentUpdate(digest, source, by_another_apply=True)
            raise
        self.record_previous(now)
        return SentUpdate(digest, source)

    def deployed_since_read(self, refusal: AwsError, digest: str) -> bool:
        """Whether a RevisionId refusal came from another apply of the same source that deployed
        `digest` between the read above and this update: the end the check before sending
        accepts, reached a moment later. Anything else, or a failed read, leaves the refusal."""
        if refusal.code != "PreconditionFailedException":
            return False
        try:
            now = self.lam.get_function(self.fp.name)
        except DeployerError:
            return False
        return self.deployed_meanwhile(now, digest)

    def record_previous(self, before: FunctionState) -> None:
        """Without versions, tag the function with the image this update replaced (what `deployer
        rollback` redeploys) and clear a rollback's hold. A failure is said, not fatal: the update
        went through."""
        if self.fp.release is not None or before.running_digest is None or before.arn is None:
            return
        arn, tags = before.arn, {PREVIOUS_IMAGE_TAG: before.running_digest, ROLLED_BACK_TAG: ""}
        try:
            self.retried(lambda: self.lam.tag_resource(arn, tags))
        except AwsError as exc:
            self.log(f"the previous image ({short(before.running_digest)}) was not recorded on the function, so rollback "
                     f"cannot find it: {exc}")

    def ours(self, digest: str, architecture: str) -> bool:
        """Whether Lambda runs `digest` with `architecture` now (asked after a refused retry)."""
        try:
            now = self.lam.get_function(self.fp.name)
        except DeployerError:
            return False
        return now.running_digest == digest and now.architectures == (architecture,)

    def finished(self, sent: SentUpdate, seconds: float) -> Outcome:
        name, digest = self.fp.name, sent.digest
        released = "".join(f"; {line}" for line in self.releasing.released())
        if sent.by_another_apply:
            return Outcome(name, OutcomeStatus.UNCHANGED if not released else OutcomeStatus.UPDATED,
                           f"already runs {short(digest)}: another apply deployed it since the plan{released}", seconds, digest)
        if self.fp.action is Action.CREATE:
            copied = f", copied from {self.fp.copy_from.environment}'s repository" if self.fp.copy_from is not None else ""
            return Outcome(name, OutcomeStatus.CREATED, f"created, runs {short(digest)}{copied} ({self.configured()}){released}",
                           seconds, digest)
        if sent.source is ImageSource.ANOTHER_APPLY:
            return Outcome(name, OutcomeStatus.UPDATED, f"now runs {short(digest)} (image pushed by another apply since the plan)"
                           f"{released}", seconds, digest)
        configured = f"; configuration updated ({self.configured()})" if self.configured() else ""
        copied = f" (copied from {self.fp.copy_from.environment}'s repository)" if self.fp.copy_from is not None else ""
        return Outcome(name, self.changed_status(), f"now runs {short(digest)}{copied}{configured}{released}", seconds, digest)

    def stopped(self, error: DeployerError, stage: Stage, seconds: float) -> Outcome:
        if isinstance(error, Cancelled) and isinstance(stage, SentUpdate):
            # Lambda was changed (by this apply, or by another one): say so, and how far it got.
            status = OutcomeStatus.UNCHANGED if stage.by_another_apply else self.changed_status()
            sent = "update sent by another apply" if stage.by_another_apply else "update sent"
            # Interrupted in the release steps: what they did, and where they stopped.
            released = "".join(f"; {line}" for line in self.releasing.released())
            where = f"; {error}" if self.releasing.version is not None else ""
            return Outcome(self.fp.name, status, f"{sent}; {self.update_status()} when interrupted{released}{where}", seconds,
                           stage.digest)
        status = OutcomeStatus.CANCELLED if isinstance(error, Cancelled) else OutcomeStatus.FAILED
        return Outcome(self.fp.name, status, str(error), seconds)

    def changed_status(self) -> OutcomeStatus:
        if self.fp.action is Action.CREATE:
            return OutcomeStatus.CREATED
        return OutcomeStatus.BUILT if self.fp.action is Action.BUILD else OutcomeStatus.UPDATED

    def update_status(self) -> str:
        try:
            return f"LastUpdateStatus {self.lam.get_function(self.fp.name).last_update_status or 'unknown'}"
        except DeployerError:
            return "LastUpdateStatus unknown (GetFunction failed)"


def _expect(stage: Stage, kind: type[S], order: str) -> S:
    """The value the step before returned. The planner orders the steps (a saved plan's steps are
    checked against it): only a bug gets a stage of another kind."""
    if not isinstance(stage, kind):
        raise AssertionError(f"{order}; got {stage!r}")
    return stage


def _claimed(stage: Stage, kind: type[V], order: str) -> Claimed[V]:
    """_expect for the values on the way to a claimed image."""
    if not (isinstance(stage, Claimed) and isinstance(stage.value, kind)):
        raise AssertionError(f"{order}; got {stage!r}")
    return Claimed(stage.value, stage.claim)


def _unreachable(step: NoReturn) -> NoReturn:
    """mypy proves the match above covers every step type; this only runs on a bug."""
    raise AssertionError(f"unknown step {step!r}")
