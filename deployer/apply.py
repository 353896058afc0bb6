"""apply: execute a Plan step by step. The only stage that changes anything.

Each function's steps run in order in one worker; independent functions run in parallel. A
function that fails does not stop the others; every function ends with an Outcome. Before Lambda
is changed the function is read again and compared with the plan, so a concurrent change stops
that function cleanly ("changed since plan") instead of being overwritten.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, NoReturn, Protocol

from deployer.aws import RegistryLogin
from deployer.context import BuildContext, temporary_context
from deployer.errors import AwsError, DeployerError, DockerError, PlanError
from deployer.observed import FunctionState, ImageState
from deployer.plan import (
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
from deployer.spec import FunctionSpec

# Lambda refuses an update while another is in progress; ECR lists a pushed tag after a delay.
CONFLICT_ATTEMPTS = 6
VERIFY_ATTEMPTS = 12
RETRYABLE_LAMBDA_CODES = ("ResourceConflictException", "TooManyRequestsException", "ServiceException")


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
              labels: Mapping[str, str], log: Callable[[str], None]) -> str: ...
    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin,
             relogin: Callable[[], RegistryLogin], log: Callable[[str], None], sleep: Callable[[float], None]) -> str: ...
    def remove_tag(self, reference: str) -> None: ...


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 2
    keep_context: bool = False
    verbose: bool = False
    registry_endpoint: str | None = None  # push here instead of the ECR host (local emulators)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # unchanged | updated | built | failed | cancelled
    detail: str
    seconds: float
    digest: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "cancelled")


class Cancelled(DeployerError):
    """Ctrl-C: workers stop at the next step boundary and clean up."""


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
        self.sleep: Callable[[float], None] = self._sleep  # between retries and polls; tests replace it
        self._logins: dict[str, RegistryLogin] = {}
        self._login_lock = threading.Lock()
        self.images = _SharedImages(self.cancel)

    def run(self, plan: Plan, specs: dict[str, FunctionSpec]) -> list[Outcome]:
        plan.refuse_blocked()
        work = [fp for fp in plan.functions if fp.changes]
        outcomes = {fp.name: Outcome(fp.name, "unchanged", fp.reason, 0.0, fp.current_digest) for fp in plan.functions if not fp.changes}
        if work:
            pool = ThreadPoolExecutor(max_workers=max(1, min(self.options.parallelism, len(work))))
            futures = {fp.name: pool.submit(self._function, fp, specs.get(fp.name)) for fp in work}
            try:
                for name, future in futures.items():
                    outcomes[name] = future.result()
            except KeyboardInterrupt:
                # Workers stop at their next step, build output line, retry or poll, and clean
                # up; what finished meanwhile is reported, what never started is cancelled.
                self.cancel.set()
                running = sum(f.running() for f in futures.values())
                self.reporter.notice(f"stopping: waiting for {running} function(s) to reach a safe point and clean up")
                self._wait_for_workers(pool)
                for name, future in futures.items():
                    outcomes[name] = (Outcome(name, "cancelled", "interrupted before it started", 0.0)
                                      if future.cancelled() else future.result())
            finally:
                pool.shutdown(wait=True)
        return [outcomes[fp.name] for fp in plan.functions]

    def _wait_for_workers(self, pool: ThreadPoolExecutor) -> None:
        while True:
            try:
                pool.shutdown(wait=True, cancel_futures=True)
                return
            except KeyboardInterrupt:  # leaving now would leave temporary contexts behind
                self.reporter.notice("still stopping: a push or an AWS call in flight is being let finish")

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled while waiting")

    @property
    def interrupted(self) -> bool:
        return self.cancel.is_set()

    def _function(self, fp: FunctionPlan, spec: FunctionSpec | None) -> Outcome:
        started = time.monotonic()
        try:
            digest = _FunctionRun(self, fp, spec).execute()
        except DeployerError as exc:
            status = "cancelled" if isinstance(exc, Cancelled) else "failed"
            return Outcome(fp.name, status, str(exc), time.monotonic() - started)
        except Exception as exc:  # a bug: this function fails, the others go on, the summary says so
            return Outcome(fp.name, "failed", f"internal error: {type(exc).__name__}: {exc}; this is a bug in deployer, "
                           "please report it", time.monotonic() - started)
        status = "built" if fp.action is Action.BUILD else "updated"
        return Outcome(fp.name, status, f"now runs {short(digest)}", time.monotonic() - started, digest)

    def login(self, region: str, fresh: bool = False) -> RegistryLogin:
        with self._login_lock:
            if fresh or region not in self._logins:
                self._logins[region] = self.ecrs(region).login()
            return self._logins[region]


class _SharedImages:
    """One build per image in an apply. Functions with the same inputs and repository have the
    same content tag: the first builds and pushes it, the others wait and deploy its digest
    (building twice would push two digests under one tag, and untag an image a function runs).
    If that build fails, the others fail at once with its reason instead of repeating it."""

    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._digests: dict[str, str] = {}
        self._failures: dict[str, str] = {}

    def claim(self, image: str) -> str | None:
        """The digest if the image was already pushed in this apply; else None, and the caller
        holds the image until `done` or `abandon`."""
        with self._guard:
            lock = self._locks.setdefault(image, threading.Lock())
        while not lock.acquire(timeout=0.2):  # in slices: a Ctrl-C must not wait for the build
            if self._cancel.is_set():
                raise Cancelled("cancelled while another function built the same image")
        failure, digest = self._failures.get(image), self._digests.get(image)
        if self._cancel.is_set() or failure or digest:
            lock.release()
        if self._cancel.is_set():
            raise Cancelled("cancelled before building")
        if failure:
            raise DeployerError(f"the same image failed to build for {failure}")
        return digest

    def done(self, image: str, digest: str) -> None:
        self._digests[image] = digest
        self._locks[image].release()

    def abandon(self, image: str, failure: str | None) -> None:
        """The holder stops without pushing. `failure` (function: reason) is kept for the
        functions waiting; None (cancelled, stale plan) lets the next one build it instead."""
        if failure:
            self._failures[image] = failure
        self._locks[image].release()


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

    def log(self, line: str) -> None:
        self.executor.reporter.log(self.fp.name, line)

    def execute(self) -> str:
        with self.cleanup:
            self.check_unchanged()
            total = len(self.fp.steps)
            for number, step in enumerate(self.fp.steps, 1):
                if self.executor.cancel.is_set():
                    raise Cancelled("cancelled before: " + step.describe())
                self.executor.reporter.step(self.fp.name, number, total, step.describe())
                started = time.monotonic()
                self.do(step)
                self.executor.reporter.step_done(self.fp.name, number, total, step.describe(), time.monotonic() - started)
        assert self.digest is not None
        return self.digest

    def do(self, step: Step) -> None:
        match step:
            case EcrLogin():
                self.executor.login(self.desired.region)
            case AssembleContext(source_digest=planned):
                self.assemble(planned)
            case BuildImage() | PushImage() | VerifyImage() if self.reused:
                self.log("skipped: the image was built and pushed for another function in this apply")
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

    def build(self) -> None:
        ctx = self.context
        assert ctx is not None, "AssembleContext precedes BuildImage"
        # Nothing function-specific: functions sharing the inputs share the image.
        labels = {"dev.deployer.source-digest": ctx.digest, "dev.deployer.spec": self.desired.spec_file}

        def log(line: str) -> None:  # called per output line: also where a Ctrl-C stops the build
            if self.executor.cancel.is_set():
                raise Cancelled("cancelled during docker build")
            if self.executor.options.verbose:
                self.log(line)

        reference = f"{self.push_repository()}:{self.desired.content_tag}"
        self.image_id = self.executor.docker.build(str(ctx.path), ctx.dockerfile, reference, ctx.build_args, labels, log)
        # The local tag only serves the push: it goes at cleanup, whatever happens; the layers
        # stay in the engine's cache for the next build.
        self.cleanup.callback(self.executor.docker.remove_tag, reference)

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
                self.holds_image = False
                self.executor.images.done(self.image, self.digest)
                return
            self.executor.sleep(min(0.25 * attempt, 2.0))
        raise DeployerError(f"ECR does not list {self.desired.repository_uri}:{self.desired.content_tag} at the pushed digest "
                            f"{self.digest} (it reports {seen.digest if seen else None}); check the registry and push again")

    def check_unchanged(self) -> None:
        now = self.lam.get_function(self.fp.name)
        changes = []
        if now.running_digest != self.fp.current_digest:
            changes.append(f"digest {short(self.fp.current_digest)} -> {short(now.running_digest)}")
        if now.architectures != self.fp.current_architectures:
            changes.append(f"architectures {','.join(self.fp.current_architectures)} -> {','.join(now.architectures)}")
        if self.fp.revision_id and now.revision_id != self.fp.revision_id:
            changes.append(f"revision {self.fp.revision_id} -> {now.revision_id}")
        if changes:
            raise PlanError(f"function {self.fp.name} changed since plan ({'; '.join(changes)}); run plan again")

    def update(self, planned_image: str, architecture: str) -> None:
        self.check_unchanged()
        image = planned_image if "@" in planned_image else f"{self.desired.repository_uri}@{self.digest}"
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                self.lam.update_function_code(self.fp.name, image, architecture, self.revision)
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
