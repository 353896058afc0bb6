"""Lambda's `Invoke` of a container image function, for the local cloud's moto (moto_main.py, point 7).

Lambda runs the image the invoked version was given, resolved to a digest when the code was set
(CodeSha256; a re-pushed tag is never followed), with that version's configuration. Here:

- resolve: the version's ImageUri (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>[:tag|@digest]`)
  names the repository; the image is `<registry>/<repo>@sha256:<CodeSha256>` in the registry that
  stands in for ECR's storage (LOCALCLOUD_REGISTRY, host:port);
- pull: onto the Docker engine, every time (the registry, like ECR, decides whether the image still
  exists), with the credentials ECR's GetAuthorizationToken decodes to (the JSON file
  LOCALCLOUD_REGISTRY_AUTH names: {"username", "password"}); bounded by PULL_TIMEOUT_SECONDS;
- check: an image built for another architecture than the function's fails as in Lambda, a
  function error `Runtime.InvalidEntrypoint` (exec format error), without running; so does an
  image whose process the engine cannot start (no command, an entrypoint that is not there);
- run: deployer.local_invoke.invoke_local, once, with the version's environment variables, memory,
  timeout (Lambda's own, at most 900 s; init 10 s), name, version, region and ImageConfig; the
  container is removed whatever happens;
- answer: as Lambda does (see `Outcome`), with the execution log Lambda writes (START, the
  function's lines, END, REPORT).

A run that cannot start answers an error, never a success: `InvokeFailure` carries Lambda's HTTP
status and error code. Runs at once are bounded (MAX_RUNS; past it, TooManyRequestsException), and
`stop_runs` cancels those under way, so that a stopping moto leaves no container behind.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import json
import math
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import docker
import docker.errors

from deployer.errors import DeployerError, DockerError
from deployer.interrupts import Cancelled
from deployer.local_invoke import ImageOverrides, InvokeResult, image_platform, invoke_local
from deployer.runtime_api import MAX_PAYLOAD_BYTES, InvokeStatus

REGISTRY_ENV = "LOCALCLOUD_REGISTRY"
REGISTRY_AUTH_ENV = "LOCALCLOUD_REGISTRY_AUTH"
# Lambda's bounds: the longest timeout a function may have; the log tail LogType=Tail returns.
MAX_TIMEOUT_SECONDS = 900.0
LOG_TAIL_BYTES = 4096
# The harness's bounds: a pull; the log kept of one run (the oldest lines go first); runs at once.
PULL_TIMEOUT_SECONDS = 120.0
MAX_LOG_BYTES = 1024 * 1024
MAX_RUNS = 8
ENGINE_TIMEOUT_SECONDS = 60
ECR_HOST = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
DIGEST_HEX = re.compile(r"[0-9a-f]{64}")
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
# How deployer.local_invoke words a failure to make or start the container, and the engine not answering.
LAUNCH_STEPS = ("creating a container of image ", "starting the container of image ")
ENGINE_DOWN = "the Docker engine did not answer"
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)


class InvokeFailure(Exception):
    """The invocation could not run: Lambda's HTTP `status` and error `code`, and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def service_error(message: str) -> InvokeFailure:
    return InvokeFailure(500, "ServiceException", f"The Lambda service encountered an internal error (local cloud: {message})")


@dataclass(frozen=True)
class FunctionVersion:
    """What one Invoke runs: the invoked version's (or alias's version's) code and configuration."""

    name: str
    version: str  # "$LATEST" or the published version's number
    image_uri: str
    code_sha256: str
    environment: Mapping[str, str]
    memory_mb: int
    timeout_seconds: float
    region: str
    architecture: str  # Lambda's name: "x86_64" or "arm64"
    overrides: ImageOverrides = ImageOverrides()


@dataclass(frozen=True)
class Outcome:
    """Lambda's answer to a synchronous Invoke that ran: HTTP 200, the function's response, or on an
    error `function_error` ("Unhandled", the X-Amz-Function-Error header) and the error document;
    `log` is the execution log (the source of X-Amz-Log-Result and of CloudWatch Logs)."""

    payload: bytes
    function_error: str | None
    log: tuple[str, ...]
    version: str

    def headers(self, tail: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": self.version}
        if self.function_error:
            headers["X-Amz-Function-Error"] = self.function_error
        if tail:
            headers["X-Amz-Log-Result"] = log_result(self.log)
        return headers


def log_result(lines: tuple[str, ...]) -> str:
    """X-Amz-Log-Result: base64 of the last 4 KB of the execution log."""
    text = "".join(f"{line}\n" for line in lines).encode("utf-8", "replace")
    return base64.b64encode(text[-LOG_TAIL_BYTES:]).decode("ascii")


# -- resolving and pulling the image -------------------------------------------------------------

def registry_reference(registry: str, image_uri: str, code_sha256: str) -> tuple[str, str]:
    """(repository in the registry, `sha256:<hex>`) of the image Lambda runs for `image_uri`."""
    host, slash, rest = image_uri.partition("/")
    if not slash or not ECR_HOST.fullmatch(host):
        raise service_error(f"ImageUri {image_uri!r} is not an ECR image URI")
    repository = rest.partition("@")[0]
    path, _, last = repository.rpartition("/")
    repository = f"{path}/{last.partition(':')[0]}" if path else last.partition(":")[0]
    if not DIGEST_HEX.fullmatch(code_sha256 or ""):
        raise service_error(f"CodeSha256 {code_sha256!r} is not an image digest (is MOTO_LAMBDA_STUB_ECR=false?)")
    if not registry:
        raise service_error(f"{REGISTRY_ENV} is not set: moto does not know the registry")
    return f"{registry}/{repository}", f"sha256:{code_sha256}"


def registry_credentials() -> dict[str, str]:
    path = os.environ.get(REGISTRY_AUTH_ENV, "")
    try:
        data = json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError) as exc:
        raise service_error(f"cannot read the registry credentials ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("username", "password")):
        raise service_error(f"no registry credentials ({REGISTRY_AUTH_ENV})")
    return {"username": data["username"], "password": data["password"]}


def pull(client: docker.DockerClient, repository: str, digest: str, image_uri: str, auth: dict[str, str]) -> None:
    """Pull `repository@digest` onto the engine. The registry refusing it (gone, no access) is
    Lambda's answer for a function whose image is gone from ECR; the engine failing, the service's."""
    outcome: list[BaseException | str] = []
    done = threading.Event()

    def run() -> None:
        try:
            for line in client.api.pull(repository, tag=digest, auth_config=auth, stream=True, decode=True):
                if isinstance(line, dict) and line.get("error"):
                    outcome.append(str(line["error"]))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="localcloud-pull", daemon=True).start()
    if not done.wait(PULL_TIMEOUT_SECONDS):
        client.close()  # ends the stream: the thread sees an error and exits
        raise service_error(f"pulling {image_uri} took more than {PULL_TIMEOUT_SECONDS:.0f}s")
    if not outcome:
        return
    failure = outcome[0]
    # The registry's refusal comes as an error line of the pull's stream or as the engine's API
    # error (manifest unknown, unauthorized); anything else is the engine's (or the harness's).
    if isinstance(failure, BaseException) and not isinstance(failure, docker.errors.APIError):
        raise service_error(f"pulling {image_uri} failed: {_said(failure)}")
    raise InvokeFailure(502, "ResourceNotReadyException",
                        f"The function's image {image_uri} cannot be pulled from ECR ({_said(failure)}): Lambda fails "
                        "the invocations of a function whose image is gone or no longer readable (its state is Failed)")


def _said(failure: BaseException | str) -> str:
    text = failure if isinstance(failure, str) else str(getattr(failure, "explanation", None) or failure)
    return _URL.sub("(registry)", text).strip() or type(failure).__name__


# -- running it --------------------------------------------------------------------------------

class _Log:
    """The function's output lines, the oldest dropped past MAX_LOG_BYTES (given from another thread)."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            self._size += len(line) + 1
            while self._size > MAX_LOG_BYTES and self.lines:
                self._size -= len(self.lines.popleft()) + 1


@dataclass
class _Runs:
    """The runs under way, each with its cancel event; bounded by MAX_RUNS."""

    cancels: set[threading.Event] = field(default_factory=set)
    stopping: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)

    @contextlib.contextmanager
    def run(self) -> Iterator[threading.Event]:
        cancel = threading.Event()
        with self.changed:
            if self.stopping:
                raise service_error("the local cloud is stopping")
            if len(self.cancels) >= MAX_RUNS:
                raise InvokeFailure(429, "TooManyRequestsException", f"Rate Exceeded. (local cloud: {MAX_RUNS} runs at once)")
            self.cancels.add(cancel)
        try:
            yield cancel
        finally:
            with self.changed:
                self.cancels.discard(cancel)
                self.changed.notify_all()

    def stop(self, timeout: float) -> None:
        with self.changed:
            self.stopping = True
            for cancel in self.cancels:
                cancel.set()
            self.changed.wait_for(lambda: not self.cancels, timeout)


_RUNS = _Runs()


def stop_runs(timeout: float) -> None:
    """Cancel the runs under way and wait (at most `timeout`) for their containers to be removed."""
    _RUNS.stop(timeout)


def invoke(version: FunctionVersion, event: bytes) -> Outcome:
    """Run `version` once with `event` (from `parse_event`); InvokeFailure when it cannot run."""
    repository, digest = registry_reference(os.environ.get(REGISTRY_ENV, ""), version.image_uri, version.code_sha256)
    auth = registry_credentials()
    with _RUNS.run() as cancel:
        try:
            client = docker.from_env(timeout=ENGINE_TIMEOUT_SECONDS)
        except docker.errors.DockerException as exc:
            raise service_error(f"no Docker engine: {_said(exc)}") from None
        try:
            pull(client, repository, digest, version.image_uri, auth)
            return _run(client, version, f"{repository}@{digest}", event, cancel)
        finally:
            client.close()


def _run(client: docker.DockerClient, version: FunctionVersion, image: str, event: bytes,
         cancel: threading.Event) -> Outcome:
    try:
        platform = image_platform(client, image)
    except DockerError as exc:
        raise service_error(str(exc)) from None
    wanted = PLATFORMS.get(version.architecture, version.architecture)
    if platform != wanted:
        return _launch_error(version, f"fork/exec: exec format error (the image is {platform}; the function's "
                                      f"architecture is {version.architecture}, {wanted})")
    if cancel.is_set():  # stopped during the pull: make no container
        raise service_error("the local cloud is stopping; the run was cancelled")
    log = _Log()
    try:
        result = invoke_local(client, image, event, function_name=version.name, env=version.environment,
                              timeout_seconds=min(version.timeout_seconds, MAX_TIMEOUT_SECONDS), memory_mb=version.memory_mb,
                              region=version.region, log=log, cancel=cancel, version=version.version,
                              overrides=version.overrides)
    except Cancelled:
        raise service_error("the local cloud is stopping; the run was cancelled") from None
    except DockerError as exc:
        said = str(exc)
        # The engine answered but cannot make or start the process (no command, an entrypoint that
        # is not there): Lambda's launch error. local_invoke says which step failed.
        if said.startswith(LAUNCH_STEPS) and ENGINE_DOWN not in said:
            return _launch_error(version, said.partition(" failed: ")[2] or said)
        raise service_error(said) from None
    except DeployerError as exc:  # what Lambda refuses in a configuration (reserved variable names)
        raise InvokeFailure(400, "InvalidParameterValueException", str(exc)) from None
    return _outcome(version, result, tuple(log.lines))


def _outcome(version: FunctionVersion, result: InvokeResult, output: tuple[str, ...]) -> Outcome:
    rid = result.request_id
    start = f"START RequestId: {rid} Version: {version.version}"
    report = (f"REPORT RequestId: {rid}\tDuration: {result.duration_seconds * 1000:.2f} ms\t"
              f"Billed Duration: {max(1, math.ceil(result.duration_seconds * 1000))} ms\t"
              f"Memory Size: {version.memory_mb} MB\tInit Duration: {result.init_seconds * 1000:.2f} ms")
    if result.status is InvokeStatus.SUCCEEDED:
        return Outcome(result.payload, None, (start, *output, f"END RequestId: {rid}", report), version.version)
    if result.status in (InvokeStatus.FUNCTION_ERROR, InvokeStatus.INIT_ERROR):
        # The error document as the function posted it (Lambda passes it through).
        payload = result.payload or _error_document(result.error_type, result.error_message)
        return Outcome(payload, "Unhandled", (start, *output, f"END RequestId: {rid}", report), version.version)
    # Timed out or exited without an answer: Lambda's own words, with the request.
    message = f"RequestId: {rid} Error: {result.error_message}"
    status = "timeout" if result.status is InvokeStatus.TIMED_OUT else "error"
    said = (f"{_now()} {rid} {result.error_message}" if result.status is InvokeStatus.TIMED_OUT
            else f"{message}\n{result.error_type}")
    return Outcome(_error_document(result.error_type, message), "Unhandled",
                   (start, *output, *said.splitlines(), f"END RequestId: {rid}", f"{report}\tStatus: {status}"),
                   version.version)


def _launch_error(version: FunctionVersion, said: str) -> Outcome:
    """Lambda failing to start the image's process (another architecture, no such entrypoint):
    a function error, before any request reaches the function."""
    rid = str(uuid.uuid4())
    log = ("INIT_REPORT Init Duration: 0.00 ms\tPhase: init\tStatus: error\tError Type: Runtime.InvalidEntrypoint",
           f"START RequestId: {rid} Version: {version.version}", f"IMAGE\tLaunch error: {said}",
           f"END RequestId: {rid}",
           f"REPORT RequestId: {rid}\tDuration: 0.00 ms\tBilled Duration: 1 ms\tMemory Size: {version.memory_mb} MB\t"
           "Status: error\tError Type: Runtime.InvalidEntrypoint")
    return Outcome(_error_document("Runtime.InvalidEntrypoint", f"RequestId: {rid} Error: {said}"), "Unhandled", log,
                   version.version)


def _error_document(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_event(body: Any) -> bytes:
    """The Invoke payload as the function gets it: JSON, `{}` when none was given."""
    event = body.encode() if isinstance(body, str) else bytes(body or b"")
    if not event.strip():
        return b"{}"
    if len(event) > MAX_PAYLOAD_BYTES:
        raise InvokeFailure(413, "RequestTooLargeException",
                            f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation")
    try:
        json.loads(event)
    except (ValueError, RecursionError) as exc:
        raise InvokeFailure(400, "InvalidRequestContentException",
                            f"Could not parse request body into json: {type(exc).__name__}") from None
    return event


def run_in_background(version: FunctionVersion, event: bytes, done: Callable[[Outcome | InvokeFailure], None]) -> None:
    """InvocationType=Event: Lambda queues the event and answers at once; the run happens later.
    `done(outcome_or_failure)` is called with the result (for the function's logs)."""
    def run() -> None:
        try:
            done(invoke(version, event))
        except InvokeFailure as failure:
            done(failure)

    threading.Thread(target=run, name=f"localcloud-event-{version.name}", daemon=True).start()


__all__ = ["FunctionVersion", "InvokeFailure", "Outcome", "invoke", "parse_event", "run_in_background", "stop_runs"]
