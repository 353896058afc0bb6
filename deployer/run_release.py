"""run_release: the release steps of one function's apply, after its update and wait (deployer.
run_function runs them in the plan's order): publish $LATEST as a version, smoke-test that version,
move the alias to it; and what they did, in the outcome's words.

Each step is guarded by what the plan saw: the version is published only of the digest this apply
deployed and of the configuration deploy.yaml declares (RevisionId), with the smoke event the plan
showed, and the alias is moved only from where the plan saw it (its RevisionId).
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Callable, Protocol, TypeVar

from deployer.errors import AwsError, DeployerError, PlanError
from deployer.function_config import changes
from deployer.interrupts import Cancelled
from deployer.plan import UNVERSIONED_KEYS, FunctionPlan, short
from deployer.ports import LambdaApi
from deployer.spec import FunctionSpec
from deployer.state import AliasTarget, Invoked

T = TypeVar("T")


# What Invoke answers when it did not run the function: safe to send again. (ServiceException, a
# Lambda 500, may come after it ran.)
NOT_RUN_CODES = ("ResourceConflictException", "TooManyRequestsException")
INVOKE_POLL_SECONDS = 0.25  # how often a smoke test's wait looks for Ctrl-C


class Retried(Protocol):
    """FunctionRun.retried: a Lambda call, sent again while Lambda answers with one of `codes`
    (that it is busy)."""

    def __call__(self, send: Callable[[], T], *, codes: tuple[str, ...] = ...) -> T | None: ...


class Releasing:
    """The release steps of one function's apply, and what they made: the version published, and
    whether the alias moved to it."""

    def __init__(self, fp: FunctionPlan, spec: FunctionSpec | None, lam: LambdaApi, log: Callable[[str], None],
                 retried: Retried, sleep: Callable[[float], None]) -> None:
        self.fp = fp
        self.spec = spec
        self.lam = lam
        self.log = log
        self.retried = retried
        self.sleep = sleep  # raises Cancelled on Ctrl-C
        self.version: str | None = None  # the version this apply published
        self.timeout = 0  # its timeout (seconds), as Lambda reported it at the publish: how long an invoke may run
        self.alias_moved = False

    def publish(self, digest: str | None, alias: str | None, previous: str | None) -> None:
        """Publish $LATEST as apply left it: `digest`, the one this apply deployed (or found deployed),
        refused by Lambda should it run another since it was read here, or have changed since
        (RevisionId). The version records the alias's version before it: what a rollback returns to."""
        now = self.lam.get_function(self.fp.name)
        if digest is None or now.running_digest != digest:
            raise PlanError(f"function {self.fp.name} changed since plan (it runs {short(now.running_digest)}, not "
                            f"{short(digest)}, which this apply was to publish); run plan again")
        moved = [c.field for c in changes(self.fp.desired.config, now.config, b"") if c.field.partition(".")[0] not in UNVERSIONED_KEYS]
        if moved:  # someone changed it between our update and this read: not what the reviewer approved
            raise PlanError(f"function {self.fp.name} changed since plan ({', '.join(moved)} no longer as deploy.yaml says); "
                            "nothing was published: run plan again")
        note = f"deployer release; {alias} was {previous or 'none'}" if alias else "deployer release"
        self.timeout = now.config.timeout
        self.version = self.retried(lambda: self.lam.publish_version(self.fp.name, digest.removeprefix("sha256:"), now.revision_id,
                                                                     note))
        self.log(f"published version {self.version}")

    def smoke_test(self, planned: str, expect: str | None) -> None:
        """Invoke the new version with the smoke event (as deploy.yaml holds it now: the one the
        plan showed, else refused) and check its answer; a failure leaves the alias where it is."""
        settings = self.spec.release.smoke_test if self.spec is not None and self.spec.release is not None else None
        if settings is None or hashlib.sha256(settings.event).hexdigest() != planned:
            raise PlanError(f"the smoke test event of {self.fp.name} changed since plan; run plan again")
        version = _expect_version(self.version)
        # Sent again only when Lambda said it did not run it (busy, throttled): never on a lost answer.
        answer = self.retried(lambda: self._interruptible(lambda: self.lam.invoke(self.fp.name, version, settings.event,
                                                                                  self.timeout)),
                              codes=NOT_RUN_CODES)
        assert answer is not None
        failure = smoke_failure(answer, settings.expect_field, settings.expect_value)
        if failure is not None:
            alias = self.fp.release.alias if self.fp.release is not None else None
            where = self.fp.release.current_version if self.fp.release is not None else None
            tail = "\n".join(answer.log_tail.splitlines()[-20:])
            raise DeployerError(f"smoke test of version {version} failed: {failure}; alias {alias} stays on "
                                f"{where or 'nothing (not created)'}" + (f"\nlog tail:\n{tail}" if tail else ""))
        self.log(f"smoke test passed on version {version}")

    def _interruptible(self, send: Callable[[], T]) -> T:
        """`send` in a thread of its own, waited for in short sleeps that Ctrl-C interrupts: an
        invoke lasts as long as the function runs (up to 15 minutes). Interrupted, the invoke goes
        on in Lambda, and the apply stops without waiting for it."""
        done = threading.Event()
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(send())
            except BaseException as exc:  # handed to the waiting thread, raised there
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True, name=f"deployer-invoke-{self.fp.name[:40]}").start()
        try:
            while not done.wait(INVOKE_POLL_SECONDS):
                self.sleep(0)
        except Cancelled:
            raise Cancelled(f"cancelled during the smoke test of version {self.version}: its invoke may still run in Lambda; "
                            "the alias was not moved") from None
        if failure:
            raise failure[0]
        return outcome[0]

    def move_alias(self, alias: str, previous: str | None) -> None:
        """Point the alias at the new version; refused by Lambda if the alias moved since the plan."""
        version = _expect_version(self.version)
        note = f"deployer release; was {previous or 'none'}"
        revision = self.fp.release.alias_revision if self.fp.release is not None else None
        try:
            if previous is None:
                self.lam.create_alias(self.fp.name, alias, version, note)
            elif revision is None:
                raise PlanError(f"alias {alias} of {self.fp.name} had no readable RevisionId at plan time: it is not moved "
                                "unguarded; run plan again")
            else:
                self.lam.update_alias(self.fp.name, alias, version, revision, note)
        except AwsError as exc:
            if exc.code not in ("ResourceConflictException", "PreconditionFailedException"):
                raise
            # Version numbers are never reused: nobody else pointed the alias at the one just published.
            landed, unread = alias_move_landed(lambda: self.lam.list_alias_targets(self.fp.name), alias, version)
            if not landed:
                raise PlanError(f"alias {alias} of {self.fp.name} changed since plan (created or moved by someone else); "
                                f"version {version} is published and was not released: run plan again{unread}") from exc
            # The SDK sent the call again after an answer was lost: the first one had landed.
            self.log(f"alias {alias} already points at version {version} (an earlier attempt of this call landed)")
        self.alias_moved = True

    def released(self) -> list[str]:
        """What the release steps did, in the outcome's words."""
        if self.version is None:
            return []
        alias = self.fp.release.alias if self.fp.release is not None else None
        if alias is None or not self.alias_moved:
            return [f"published version {self.version}"]
        was = self.fp.release.current_version if self.fp.release is not None else None
        return [f"version {self.version} released to {alias} (was {was or 'none'})"]


def alias_move_landed(targets: Callable[[], list[AliasTarget]], alias: str, version: str) -> tuple[bool, str]:
    """After Lambda refused an alias move: whether the alias already sends every invocation to
    `version` (the SDK sent the call again after its answer was lost, and the first one had
    landed). When the aliases (`targets()`) cannot be read, False and why, to say with the refusal."""
    try:
        listed = targets()
    except AwsError as read_error:
        return False, f" (whether an earlier attempt of this call landed could not be read: {read_error})"
    return any(target.name == alias and target.versions == (version,) for target in listed), ""


def _expect_version(version: str | None) -> str:
    if version is None:
        raise AssertionError("PublishVersion precedes the smoke test and the alias")
    return version


def smoke_failure(answer: Invoked, field: str | None, expected: object) -> str | None:
    """Why a smoke test's answer fails it (None: it passed): a function error, an answer that is
    not JSON where a field is expected, or the field's value. Words of the answer are quoted
    bounded; the printer makes them inert."""
    if answer.function_error is not None:
        try:
            error = json.loads(answer.payload)
        except (ValueError, RecursionError):
            error = None
        if isinstance(error, dict):
            return f"function error {str(error.get('errorType', answer.function_error))[:200]}: {str(error.get('errorMessage', ''))[:500]}"
        return f"function error ({answer.function_error})"
    if field is None:
        return None
    try:
        value: object = json.loads(answer.payload)
    except (ValueError, RecursionError):
        return f"the answer is not JSON, so it has no {field}"
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return f"the answer has no {field}"
        value = value[part]
    if value != expected or (type(value) is bool) != (type(expected) is bool):
        return f"{field} is {json.dumps(value)[:200]}, not {json.dumps(expected)}"
    return None
