"""apply: execute a Plan. The only stage that changes anything.

Each function's steps run in order in one worker (deployer.run_function); independent functions
run in parallel. A function that fails does not stop the others; every function ends with an
Outcome. Functions with the same inputs and repository share one build (deployer.sharing).

Ctrl-C cancels: workers stop at a safe point (a build is stopped on the engine) and clean up, and
the outcome says what Lambda was asked to do. Temporary contexts left by a crashed apply are
swept at the start (deployer.context); applies on one machine take turns per image
(deployer.sharing).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Mapping

from deployer import explain, locks
from deployer.context import context_root, sweep_abandoned_contexts
from deployer.errors import DeployerError
from deployer.go_build import Netrc
from deployer.interrupts import WAIT_SLICE_SECONDS, Cancelled, CtrlC
from deployer.outcome import Outcome, OutcomeStatus
from deployer.plan import FunctionPlan, Plan
from deployer.ports import DockerApi, EcrApi, LambdaApi, Reporter
from deployer.registry import RegistryLogin
from deployer.run_function import FunctionRun
from deployer.run_image import Tools
from deployer.sharing import IMAGE_LOCK_PREFIX, SharedImages
from deployer.spec import FunctionSpec


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 2
    keep_context: bool = False
    verbose: bool = False
    registry_endpoint: str | None = None  # push here instead of the ECR host (local emulators)
    netrcs: Mapping[str, Netrc] = field(default_factory=dict)  # credentials for Go builds, by variable name


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
        outcomes = {fp.name: Outcome(fp.name, OutcomeStatus.UNCHANGED, explain.reason(fp), 0.0, fp.current_digest)
                    for fp in plan.functions if not fp.changes}
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
        tools = Tools(self.reporter, self.docker, self.images, self.cancel, self.sleep, self.login,
                      self.options.keep_context, self.options.verbose, self.options.registry_endpoint, self.options.netrcs)
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.options.parallelism, len(work))))
        futures = {fp.name: pool.submit(self._function, tools, fp, specs.get(fp.name)) for fp in work}
        try:
            self._wait_for(futures, pool)
        finally:
            # No KeyboardInterrupt can cut this short (deployer.interrupts): every worker has
            # removed its context when it returns.
            pool.shutdown(wait=True, cancel_futures=True)
        return {name: Outcome(name, OutcomeStatus.CANCELLED, "interrupted before it started", 0.0) if future.cancelled()
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

    def _function(self, tools: Tools, fp: FunctionPlan, spec: FunctionSpec | None) -> Outcome:
        started = time.monotonic()
        try:
            run = FunctionRun(tools, fp, spec, self.lambdas(fp.desired.region), self.ecrs(fp.desired.region))
            return run.run()
        except DeployerError as exc:  # making the AWS clients failed
            return Outcome(fp.name, OutcomeStatus.FAILED, str(exc), time.monotonic() - started)
        except Exception as exc:  # a bug: this function fails, the others go on, the summary says so
            return Outcome(fp.name, OutcomeStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}; this is a bug in "
                           "deployer, please report it", time.monotonic() - started)

    def login(self, region: str, fresh: bool = False) -> RegistryLogin:
        with self._login_lock:
            if fresh or region not in self._logins:
                self._logins[region] = self.ecrs(region).login()
            return self._logins[region]
