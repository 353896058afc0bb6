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
from typing import TYPE_CHECKING, Callable, NoReturn, Protocol

from deployer.aws import EcrGateway, LambdaGateway, RegistryLogin
from deployer.context import BuildContext, temporary_context
from deployer.errors import AwsError, DeployerError, DockerError, PlanError
from deployer.plan import (
    Action,
    AssembleContext,
    BuildImage,
    Cleanup,
    EcrLogin,
    FunctionPlan,
    Plan,
    PushImage,
    UpdateFunctionCode,
    VerifyImage,
    WaitForUpdate,
    short,
)
from deployer.spec import FunctionSpec

if TYPE_CHECKING:  # the docker SDK is imported only when something is built
    from deployer.docker_gateway import DockerGateway

# Lambda refuses an update while another is in progress; ECR lists a pushed tag after a delay.
CONFLICT_ATTEMPTS = 6
VERIFY_ATTEMPTS = 12
RETRYABLE_LAMBDA_CODES = ("ResourceConflictException", "TooManyRequestsException", "ServiceException")


class Reporter(Protocol):
    def step(self, function: str, number: int, total: int, text: str) -> None: ...
    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None: ...
    def log(self, function: str, line: str) -> None: ...


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

    def __init__(self, lambdas: Callable[[str], LambdaGateway], ecrs: Callable[[str], EcrGateway], docker: DockerGateway,
                 options: ApplyOptions, reporter: Reporter) -> None:
        self.lambdas = lambdas
        self.ecrs = ecrs
        self.docker = docker
        self.options = options
        self.reporter = reporter
        self.cancel = threading.Event()
        self.sleep: Callable[[float], None] = time.sleep  # backoff between retries
        self._logins: dict[str, RegistryLogin] = {}
        self._login_lock = threading.Lock()

    def run(self, plan: Plan, specs: dict[str, FunctionSpec]) -> list[Outcome]:
        if plan.blocked:
            raise PlanError("plan has blocked functions (" + ", ".join(fp.name for fp in plan.blocked) + "); fix them and run plan again")
        work = [fp for fp in plan.functions if fp.changes]
        outcomes = {fp.name: Outcome(fp.name, "unchanged", fp.reason, 0.0, fp.current_digest) for fp in plan.functions if not fp.changes}
        if work:
            pool = ThreadPoolExecutor(max_workers=max(1, min(self.options.parallelism, len(work))))
            futures = {fp.name: pool.submit(self._function, fp, specs.get(fp.name)) for fp in work}
            try:
                for name, future in futures.items():
                    outcomes[name] = future.result()
            except KeyboardInterrupt:
                # Workers stop at their next step (or build output line) and clean up; what
                # finished meanwhile is reported, what never started is marked cancelled.
                self.cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                for name, future in futures.items():
                    outcomes[name] = (Outcome(name, "cancelled", "interrupted before it started", 0.0)
                                      if future.cancelled() else future.result())
            finally:
                pool.shutdown(wait=True)
        return [outcomes[fp.name] for fp in plan.functions]

    @property
    def interrupted(self) -> bool:
        return self.cancel.is_set()

    def _function(self, fp: FunctionPlan, spec: FunctionSpec | None) -> Outcome:
        started = time.monotonic()
        run = _FunctionRun(self, fp, spec)
        try:
            digest = run.execute()
        except DeployerError as exc:
            status = "cancelled" if isinstance(exc, Cancelled) else "failed"
            return Outcome(fp.name, status, str(exc), time.monotonic() - started)
        status = "built" if fp.action is Action.BUILD else "updated"
        return Outcome(fp.name, status, f"now runs {short(digest)}", time.monotonic() - started, digest)

    def login(self, region: str, fresh: bool = False) -> RegistryLogin:
        with self._login_lock:
            if fresh or region not in self._logins:
                self._logins[region] = self.ecrs(region).login()
            return self._logins[region]


class _FunctionRun:
    """The mutable state of one function's apply: its context, image and pushed digest."""

    def __init__(self, executor: Executor, fp: FunctionPlan, spec: FunctionSpec | None) -> None:
        self.x = executor
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

    def log(self, line: str) -> None:
        self.x.reporter.log(self.fp.name, line)

    def execute(self) -> str:
        with self.cleanup:
            self.check_unchanged()
            total = len(self.fp.steps)
            for number, step in enumerate(self.fp.steps, 1):
                if self.x.cancel.is_set():
                    raise Cancelled("cancelled before: " + step.describe())
                self.x.reporter.step(self.fp.name, number, total, step.describe())
                started = time.monotonic()
                self.do(step)
                self.x.reporter.step_done(self.fp.name, number, total, step.describe(), time.monotonic() - started)
        assert self.digest is not None
        return self.digest

    def do(self, step: EcrLogin | AssembleContext | BuildImage | PushImage | VerifyImage | UpdateFunctionCode | WaitForUpdate | Cleanup) -> None:
        match step:
            case EcrLogin():
                self.x.login(self.desired.region)
            case AssembleContext(source_digest=planned):
                self.assemble(planned)
            case BuildImage():
                self.build()
            case PushImage():
                self.push()
            case VerifyImage():
                self.verify()
            case UpdateFunctionCode(image=image, architecture=architecture):
                self.update(image, architecture)
            case WaitForUpdate():
                self.lam.wait_updated(self.fp.name)
            case Cleanup():
                self.cleanup.close()
                if self.x.options.keep_context and self.context is not None:
                    self.log(f"build context kept at {self.context.path}")
            case _:
                _unreachable(step)

    def assemble(self, planned: str) -> None:
        if self.spec is None:
            raise PlanError(f"function {self.fp.name} is no longer declared in {self.desired.spec_file}; run plan again")
        self.context = self.cleanup.enter_context(temporary_context(self.spec, keep=self.x.options.keep_context))
        if self.context.digest != planned:
            raise PlanError(f"source of {self.fp.name} changed since plan ({short(planned)} -> {short(self.context.digest)}); run plan again")

    def build(self) -> None:
        ctx = self.context
        assert ctx is not None, "AssembleContext precedes BuildImage"
        labels = {"dev.deployer.source-digest": ctx.digest, "dev.deployer.function": self.fp.name,
                  "dev.deployer.spec": self.desired.spec_file}
        def log(line: str) -> None:  # called per output line: also where a Ctrl-C stops the build
            if self.x.cancel.is_set():
                raise Cancelled("cancelled during docker build")
            if self.x.options.verbose:
                self.log(line)

        self.image_id = self.x.docker.build(str(ctx.path), ctx.dockerfile, f"deployer/{self.fp.name}:{self.desired.content_tag}",
                                            ctx.build_args, labels, log)

    def push_repository(self) -> str:
        host, name = self.desired.repository_uri.split("/", 1)
        return f"{self.x.options.registry_endpoint or host}/{name}"

    def push(self) -> None:
        assert self.image_id is not None, "BuildImage precedes PushImage"
        region = self.desired.region
        try:
            self.digest = self.x.docker.push(self.image_id, self.push_repository(), self.desired.content_tag,
                                             self.x.login(region), lambda: self.x.login(region, fresh=True), self.log)
        except DockerError as exc:
            # An immutable repository refuses a second push of a tag. The tag names the image's
            # inputs, so if someone pushed it since the plan, that image is the one to deploy.
            if not _is_immutable_tag_refusal(str(exc)):
                raise
            existing = self.ecr.describe_image(self.desired.repository_uri.split("/", 1)[1], self.desired.content_tag)
            if existing.digest is None:
                raise
            self.log(f"ECR already holds {self.desired.content_tag} (immutable tag); deploying its digest {short(existing.digest)}")
            self.digest = existing.digest

    def verify(self) -> None:
        """ECR must list the tag at the pushed digest with a single-platform media type."""
        name = self.desired.repository_uri.split("/", 1)[1]
        seen = None
        for attempt in range(1, VERIFY_ATTEMPTS + 1):
            seen = self.ecr.describe_image(name, self.desired.content_tag)
            if seen.digest == self.digest:
                if not seen.single_platform:
                    raise DeployerError(f"pushed image is a {seen.media_type}; Lambda accepts only single-platform manifests "
                                        "(turn off provenance/SBOM attestations)")
                return
            self.x.sleep(min(0.25 * attempt, 2.0))
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
                self.x.sleep(delay)


def _is_immutable_tag_refusal(message: str) -> bool:
    message = message.lower()
    return "tag invalid" in message or "already exists" in message or "immutable" in message


def _unreachable(step: NoReturn) -> NoReturn:
    """mypy proves the match above covers every step type; this only runs on a bug."""
    raise AssertionError(f"unknown step {step!r}")
