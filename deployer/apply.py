"""apply: execute a Plan step by step. The only stage that changes anything.

Each function's steps run in order in one worker; independent functions run in parallel. A
function that fails does not stop the others; every function ends with an Outcome. Before Lambda
is changed the function is read again and compared with the plan, so a concurrent change stops
that function cleanly ("changed since plan") instead of being overwritten; if that change is
another apply deploying the very image this one would, there is nothing left to do.

Ctrl-C cancels: workers stop at a safe point (a build is stopped on the engine) and clean up, and
the outcome says what Lambda was asked to do. Temporary contexts left by a crashed apply are
swept at the start (deployer.context); applies on one machine take turns per image
(deployer.sharing).
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, NoReturn, Protocol

from deployer import locks
from deployer.aws import RegistryLogin
from deployer.context import BuildContext, context_root, sweep_abandoned_contexts, temporary_context
from deployer.errors import AwsError, DeployerError, DockerError, PlanError
from deployer.interrupts import CtrlC
from deployer.observed import FunctionState, ImageState
from deployer import explain
from deployer.plan import (
    ImageRef,
    Action,
    AssembleContext,
    BuildImage,
    Cleanup,
    EcrLogin,
    FunctionPlan,
    Plan,
    PushImage,
    Step,
    UpdateFunctionCode,
    VerifyImage,
    WaitForUpdate,
    short,
)
from deployer.sharing import IMAGE_LOCK_PREFIX, Cancelled, ImageLock, SharedImages
from deployer.spec import FunctionSpec

# Lambda refuses an update while another is in progress; ECR lists a pushed tag after a delay.
CONFLICT_ATTEMPTS = 6
VERIFY_ATTEMPTS = 12
RETRYABLE_LAMBDA_CODES = ("ResourceConflictException", "TooManyRequestsException", "ServiceException")
# How often the main thread looks at its workers and at Ctrl-C presses while it waits.
WAIT_SLICE_SECONDS = 0.1


class Reporter(Protocol):
    def step(self, function: str, number: int, total: int, text: str) -> None: ...
    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None: ...
    def log(self, function: str, line: str) -> None: ...
    def notice(self, text: str) -> None: ...


# What the executor needs of the gateways (deployer.aws, deployer.docker_gateway); tests hand in
# in-memory fakes that mypy checks against these.
class LambdaApi(Protocol):
    def get_function(self, name: str) -> FunctionState: ...
    def update_function_code(self, name: str, image_uri: str, architecture: str, revision_id: str | None) -> str | None: ...
    def wait_updated(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None: ...


class EcrApi(Protocol):
    def describe_image(self, repository: str, tag: str) -> ImageState: ...
    def login(self) -> RegistryLogin: ...


class DockerApi(Protocol):
    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Mapping[str, str],
              labels: Mapping[str, str], log: Callable[[str], None], cancel: threading.Event | None = None) -> str: ...
    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin,
             relogin: Callable[[], RegistryLogin], log: Callable[[str], None], sleep: Callable[[float], None]) -> str: ...
    def remove_tag(self, reference: str) -> None: ...


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 2
    keep_context: bool = False
    verbose: bool = False
    registry_endpoint: str | None = None  # push here instead of the ECR host (local emulators)


# How a function's apply ended. "built": built, pushed and deployed; "updated": deployed an image
# that ECR had; "cancelled": stopped by Ctrl-C before Lambda was asked to change.
Status = Literal["unchanged", "updated", "built", "failed", "cancelled"]


@dataclass(frozen=True)
class Outcome:
    name: str
    status: Status
    detail: str
    seconds: float
    digest: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "cancelled")


class Executor:
    """Runs plans. Gateways come in as per-region factories so tests can hand in in-memory fakes."""

    def __init__(self, lambdas: Callable[[str], LambdaApi], ecrs: Callable[[str], EcrApi], docker: DockerApi,
                 options: ApplyOptions, reporter: Reporter) -> None:
        self.lambdas = lambdas
        self.ecrs = ecrs
        self.docker = docker
        self.options = options
        self.reporter = reporter
        self.cancel = threading.Event()
        self.ctrl_c = CtrlC()  # counts Ctrl-C presses during run, which _wait_for turns into `cancel`
        self.sleep: Callable[[float], None] = self._sleep  # between retries and polls; tests replace it
        self._logins: dict[str, RegistryLogin] = {}
        self._login_lock = threading.Lock()
        self.images = SharedImages(self.cancel)

    def run(self, plan: Plan, specs: dict[str, FunctionSpec]) -> list[Outcome]:
        plan.refuse_blocked()
        work = [fp for fp in plan.functions if fp.changes]
        outcomes = {fp.name: Outcome(fp.name, "unchanged", explain.reason(fp), 0.0, fp.current_digest) for fp in plan.functions if not fp.changes}
        if work:
            with self.ctrl_c.counting():
                self._sweep()
                outcomes.update(self._execute(work, specs))
            if self.ctrl_c.presses:  # pressed as the last worker ended: still an interrupted apply
                self.cancel.set()
        return [outcomes[fp.name] for fp in plan.functions]

    def _sweep(self) -> None:
        """Remove what a crashed apply (kill -9) left in the temp dir."""
        removed = sweep_abandoned_contexts()
        locks.sweep(context_root(), IMAGE_LOCK_PREFIX + "*")
        if removed:
            self.reporter.notice(f"removed {len(removed)} build context(s) left by an apply that did not finish: "
                                 + ", ".join(p.name for p in removed))

    def _execute(self, work: list[FunctionPlan], specs: dict[str, FunctionSpec]) -> dict[str, Outcome]:
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.options.parallelism, len(work))))
        futures = {fp.name: pool.submit(self._function, fp, specs.get(fp.name)) for fp in work}
        try:
            self._wait_for(futures, pool)
        finally:
            # No KeyboardInterrupt can cut this short (deployer.interrupts): every worker has
            # removed its context when it returns.
            pool.shutdown(wait=True, cancel_futures=True)
        return {name: Outcome(name, "cancelled", "interrupted before it started", 0.0) if future.cancelled()
                else future.result() for name, future in futures.items()}

    def _wait_for(self, futures: dict[str, Future[Outcome]], pool: ThreadPoolExecutor) -> None:
        """Wait for the workers, in slices, turning each Ctrl-C seen meanwhile into a notice;
        the first sets `cancel`: workers stop at their next step, output line, retry or poll (a
        build, even a silent one, is stopped on the engine) and clean up; what never started is
        cancelled; what finished meanwhile is reported."""
        pending: set[Future[Outcome]] = set(futures.values())
        noticed = 0
        while pending:
            _, pending = wait(pending, timeout=WAIT_SLICE_SECONDS, return_when=FIRST_COMPLETED)
            presses = self.ctrl_c.presses  # read once: a press may come while a notice prints
            if presses > noticed and not self.cancel.is_set():
                self.cancel.set()
                pool.shutdown(wait=False, cancel_futures=True)
                running = sum(f.running() for f in futures.values())
                self.reporter.notice(f"stopping: waiting for {running} function(s) to reach a safe point and clean up")
            elif presses > noticed:
                self.reporter.notice("still stopping: a push or an AWS call in flight is being let finish")
            noticed = presses

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled while waiting")

    @property
    def interrupted(self) -> bool:
        return self.cancel.is_set()

    def _function(self, fp: FunctionPlan, spec: FunctionSpec | None) -> Outcome:
        started = time.monotonic()
        run: _FunctionRun | None = None
        try:
            run = _FunctionRun(self, fp, spec)  # makes the AWS clients: may fail too
            run.execute()
        except DeployerError as exc:
            if run is None:
                return Outcome(fp.name, "failed", str(exc), time.monotonic() - started)
            return run.stopped(exc, time.monotonic() - started)
        except Exception as exc:  # a bug: this function fails, the others go on, the summary says so
            return Outcome(fp.name, "failed", f"internal error: {type(exc).__name__}: {exc}; this is a bug in deployer, "
                           "please report it", time.monotonic() - started)
        return run.finished(time.monotonic() - started)

    def login(self, region: str, fresh: bool = False) -> RegistryLogin:
        with self._login_lock:
            if fresh or region not in self._logins:
                self._logins[region] = self.ecrs(region).login()
            return self._logins[region]


class _FunctionRun:
    """The mutable state of one function's apply: its context, image and pushed digest."""

    def __init__(self, executor: Executor, fp: FunctionPlan, spec: FunctionSpec | None) -> None:
        self.executor = executor
        self.fp = fp
        self.spec = spec
        self.desired = fp.desired
        self.lam = executor.lambdas(fp.desired.region)
        self.ecr = executor.ecrs(fp.desired.region)
        self.context: BuildContext | None = None
        self.image_id: str | None = None
        self.digest: str | None = fp.desired_digest
        self.revision: str | None = fp.revision_id
        self.cleanup = contextlib.ExitStack()
        self.image = f"{fp.desired.repository_uri}:{fp.desired.content_tag}"
        self.holds_image = False  # this run builds the image; others sharing it wait
        self.reused = False  # another function of this apply built the image
        self.image_lock: ImageLock | None = None  # this machine's lock of the image, while held
        self.local_tag: str | None = None  # the engine's tag made for the push, until removed
        self.pushed_elsewhere = False  # another apply pushed the image since the plan
        self.deployed_elsewhere = False  # another apply even deployed it: nothing was changed
        self.update_sent = False  # UpdateFunctionCode went through: the function changed

    def log(self, line: str) -> None:
        self.executor.reporter.log(self.fp.name, line)

    def execute(self) -> None:
        with self.cleanup:
            if self.settled_elsewhere():
                return
            total = len(self.fp.steps)
            for number, step in enumerate(self.fp.steps, 1):
                if self.executor.cancel.is_set():
                    raise Cancelled("cancelled before: " + step.describe())
                self.executor.reporter.step(self.fp.name, number, total, step.describe())
                started = time.monotonic()
                self.do(step)
                self.executor.reporter.step_done(self.fp.name, number, total, step.describe(), time.monotonic() - started)

    def finished(self, seconds: float) -> Outcome:
        assert self.digest is not None
        if self.deployed_elsewhere:
            return Outcome(self.fp.name, "unchanged", f"already runs {short(self.digest)}: another apply deployed it since the plan",
                           seconds, self.digest)
        if self.pushed_elsewhere:
            return Outcome(self.fp.name, "updated", f"now runs {short(self.digest)} (image pushed by another apply since the plan)",
                           seconds, self.digest)
        status: Status = "built" if self.fp.action is Action.BUILD else "updated"
        return Outcome(self.fp.name, status, f"now runs {short(self.digest)}", seconds, self.digest)

    def stopped(self, error: DeployerError, seconds: float) -> Outcome:
        if isinstance(error, Cancelled) and (self.update_sent or self.deployed_elsewhere):
            # Lambda was changed (by this apply, or by another one): say so, and how far it got.
            status: Status = "unchanged" if self.deployed_elsewhere else "built" if self.fp.action is Action.BUILD else "updated"
            sent = "update sent by another apply" if self.deployed_elsewhere else "update sent"
            return Outcome(self.fp.name, status, f"{sent}; {self.update_status()} when interrupted", seconds, self.digest)
        return Outcome(self.fp.name, "cancelled" if isinstance(error, Cancelled) else "failed", str(error), seconds)

    def update_status(self) -> str:
        try:
            return f"LastUpdateStatus {self.lam.get_function(self.fp.name).last_update_status or 'unknown'}"
        except DeployerError:
            return "LastUpdateStatus unknown (GetFunction failed)"

    def do(self, step: Step) -> None:
        match step:
            case EcrLogin():
                self.executor.login(self.desired.region)
            case AssembleContext(source_digest=planned):
                self.assemble(planned)
            case BuildImage() | PushImage() | VerifyImage() if self.reused:
                self.log("skipped: the image was built and pushed for another function in this apply")
            case PushImage() | VerifyImage() if self.pushed_elsewhere:
                self.log("skipped: another apply pushed the image")
            case BuildImage():
                self.build()
            case PushImage():
                self.push()
            case VerifyImage():
                self.verify()
            case UpdateFunctionCode(image=image, architecture=architecture):
                self.update(image, architecture)
            case WaitForUpdate():
                self.lam.wait_updated(self.fp.name, self.executor.sleep)
            case Cleanup():
                self.cleanup.close()
            case _:
                _unreachable(step)

    def assemble(self, planned: str) -> None:
        if self.spec is None:
            raise PlanError(f"function {self.fp.name} is no longer declared in {self.desired.spec_file}; run plan again")
        shared = self.executor.images.claim(self.image)
        if shared is not None:
            self.digest, self.reused = shared, True
            self.log(f"image {self.desired.content_tag} was built in this apply for another function: deploying {short(shared)}")
            return
        self.holds_image = True
        self.cleanup.push(self.release_image)
        self.context = self.cleanup.enter_context(temporary_context(self.spec, keep=self.executor.options.keep_context))
        if self.executor.options.keep_context:  # said now: a failed build is when it is needed most
            self.log(f"build context kept at {self.context.path}")
        if self.context.digest != planned:
            raise PlanError(f"source of {self.fp.name} changed since plan ({short(planned)} -> {short(self.context.digest)}); run plan again")

    def release_image(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        """ExitStack exit callback: if this run still holds the image, it did not push it."""
        if self.holds_image:
            self.holds_image = False
            # A failure of the build itself would fail the others too; a cancel or a stale plan
            # says nothing about the image.
            failed = error is not None and not isinstance(error, (Cancelled, PlanError))
            reason = str(error).splitlines()[0] if failed else None
            self.executor.images.abandon(self.image, f"{self.fp.name}: {reason}" if failed else None)

    def image_pushed(self, digest: str) -> None:
        """The image is in ECR: functions of this apply waiting for it, and applies on this
        machine waiting for its lock, deploy it instead of building it again."""
        self.digest = digest
        self.holds_image = False
        self.executor.images.done(self.image, digest)
        self.unlock_image()

    def build(self) -> None:
        ctx = self.context
        assert ctx is not None, "AssembleContext precedes BuildImage"
        if self.lock_image():
            return
        # Nothing function-specific: functions sharing the inputs share the image.
        labels = {"dev.deployer.source-digest": ctx.digest, "dev.deployer.spec": self.desired.spec_file}

        def log(line: str) -> None:  # called per output line
            if self.executor.cancel.is_set():
                raise Cancelled("cancelled during docker build")
            if self.executor.options.verbose:
                self.log(line)

        # The local tag only serves the push: it goes right after it, or at cleanup, whatever
        # happens (a build stopped at its very end may have tagged); the layers stay in the
        # engine's cache for the next build.
        self.local_tag = f"{self.push_repository()}:{self.desired.content_tag}"
        self.cleanup.callback(self.drop_local_tag)
        try:
            self.image_id = self.executor.docker.build(str(ctx.path), ctx.dockerfile, self.local_tag, ctx.build_args, labels,
                                                       log, self.executor.cancel)
        except DockerError:
            if self.executor.cancel.is_set():  # the gateway stopped the build on the engine
                raise Cancelled("cancelled during docker build (stopped on the engine)") from None
            raise

    def lock_image(self) -> bool:
        """Take this machine's lock of the image, then ask ECR again. True when another apply
        pushed the image meanwhile: it is deployed instead of being built a second time (a
        second push of the tag would leave the first image untagged in ECR)."""
        lock = ImageLock(self.image, self.executor.sleep, self.log)
        if lock.acquire(self.desired.content_tag):
            self.image_lock = lock
            self.cleanup.callback(self.unlock_image)
        existing = self.ecr.describe_image(self.desired.repository_name, self.desired.content_tag)
        if existing.digest is None:
            return False
        if not existing.single_platform:
            raise DeployerError(f"ECR tag {self.desired.content_tag} was pushed since the plan as a {existing.media_type}; "
                                "Lambda accepts only single-platform manifests")
        self.log(f"ECR got {self.desired.content_tag} since the plan (pushed by another apply): deploying its digest "
                 f"{short(existing.digest)}")
        self.pushed_elsewhere = True
        self.image_pushed(existing.digest)
        return True

    def unlock_image(self) -> None:
        lock, self.image_lock = self.image_lock, None
        if lock is not None:
            lock.release()

    def drop_local_tag(self) -> None:
        tag, self.local_tag = self.local_tag, None
        if tag is not None:
            self.executor.docker.remove_tag(tag)

    def push_repository(self) -> str:
        return f"{self.executor.options.registry_endpoint or self.desired.registry}/{self.desired.repository_name}"

    def push(self) -> None:
        assert self.image_id is not None, "BuildImage precedes PushImage"
        region = self.desired.region
        try:
            self.digest = self.executor.docker.push(self.image_id, self.push_repository(), self.desired.content_tag,
                                                    self.executor.login(region), lambda: self.executor.login(region, fresh=True),
                                                    self.log, self.executor.sleep)
        except DockerError as exc:
            # An immutable repository refuses a second push of a tag. The tag names the image's
            # inputs, so if someone pushed it since the plan, that image is the one to deploy.
            if not _is_immutable_tag_refusal(str(exc)):
                raise
            existing = self.ecr.describe_image(self.desired.repository_name, self.desired.content_tag)
            if existing.digest is None:
                raise
            self.log(f"ECR already holds {self.desired.content_tag} (immutable tag); deploying its digest {short(existing.digest)}")
            self.digest = existing.digest
        finally:
            self.drop_local_tag()

    def verify(self) -> None:
        """ECR must list the tag at the pushed digest with a single-platform media type."""
        seen = None
        for attempt in range(1, VERIFY_ATTEMPTS + 1):
            seen = self.ecr.describe_image(self.desired.repository_name, self.desired.content_tag)
            if seen.digest == self.digest:
                if not seen.single_platform:
                    raise DeployerError(f"pushed image is a {seen.media_type}; Lambda accepts only single-platform manifests "
                                        "(turn off provenance/SBOM attestations)")
                assert self.digest is not None
                self.image_pushed(self.digest)
                return
            self.executor.sleep(min(0.25 * attempt, 2.0))
        raise DeployerError(f"ECR does not list {self.desired.repository_uri}:{self.desired.content_tag} at the pushed digest "
                            f"{self.digest} (it reports {seen.digest if seen else None}); check the registry and push again")

    def settled_elsewhere(self) -> bool:
        """Before anything: stop here, successfully, if another apply deployed since the plan
        exactly what this one would; refuse if anything else changed."""
        now = self.lam.get_function(self.fp.name)
        if self.changed(now):
            wanted = self.digest or self.ecr.describe_image(self.desired.repository_name, self.desired.content_tag).digest
            if self.deployed_meanwhile(now, wanted):
                return True
        self.check_unchanged(now)
        return False

    def changed(self, now: FunctionState) -> bool:
        return now.running_digest != self.fp.current_digest or now.architectures != self.fp.current_architectures

    def deployed_meanwhile(self, now: FunctionState, wanted: str | None) -> bool:
        """True (and said) when the function changed since the plan to run `wanted` with the
        wanted architecture: two applies of one source end in the same state, and the second
        has nothing to do."""
        if not (wanted and self.changed(now) and now.running_digest == wanted
                and now.architectures == (self.desired.architecture,) and "Failed" not in (now.state, now.last_update_status)):
            return False
        self.digest, self.deployed_elsewhere = wanted, True
        self.log(f"already runs {short(wanted)}: another apply deployed it since the plan; nothing to update")
        return True

    def check_unchanged(self, now: FunctionState) -> None:
        changes = []
        if now.running_digest != self.fp.current_digest:
            changes.append(f"digest {short(self.fp.current_digest)} -> {short(now.running_digest)}")
        if now.architectures != self.fp.current_architectures:
            changes.append(f"architectures {','.join(self.fp.current_architectures)} -> {','.join(now.architectures)}")
        if self.fp.revision_id and now.revision_id != self.fp.revision_id:
            changes.append(f"revision {self.fp.revision_id} -> {now.revision_id}")
        if changes:
            raise PlanError(f"function {self.fp.name} changed since plan ({'; '.join(changes)}); run plan again")

    def update(self, planned_image: ImageRef, architecture: str) -> None:
        now = self.lam.get_function(self.fp.name)
        if self.deployed_meanwhile(now, self.digest):
            return
        self.check_unchanged(now)
        # Planned by tag (a build): pinned to the digest this apply pushed or found.
        image = str(planned_image if planned_image.digest else ImageRef(self.desired.repository_uri, digest=self.digest))
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                self.lam.update_function_code(self.fp.name, image, architecture, self.revision)
                self.update_sent = True
                return
            except AwsError as exc:
                if exc.code not in RETRYABLE_LAMBDA_CODES or attempt == CONFLICT_ATTEMPTS:
                    raise
                delay = min(2 ** attempt, 20)
                self.log(f"{exc.code}: retry {attempt}/{CONFLICT_ATTEMPTS - 1} in {delay}s")
                self.executor.sleep(delay)


def _is_immutable_tag_refusal(message: str) -> bool:
    message = message.lower()
    return "tag invalid" in message or "already exists" in message or "immutable" in message


def _unreachable(step: NoReturn) -> NoReturn:
    """mypy proves the match above covers every step type; this only runs on a bug."""
    raise AssertionError(f"unknown step {step!r}")
