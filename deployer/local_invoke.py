"""local_invoke: run a function's image on the Docker engine against a Runtime API served here.

No emulator is needed: the image runs its own entrypoint (the AWS base images' /lambda-entrypoint.sh
execs /var/runtime/bootstrap when AWS_LAMBDA_RUNTIME_API is set), and `RuntimeApi`
(deployer.runtime_api) serves the Runtime API of one invocation. The container runs on the
engine's default bridge network and reaches the API on the bridge's gateway address, which this
machine serves on: the function gets no access to this machine's loopback services (a Docker
engine on TCP, a database) nor to its network namespace. Only where this machine cannot serve on
that address (an engine in a VM, Docker Desktop) does the container share the host's network and
the API listen on 127.0.0.1. Either way the engine must run on this machine (DOCKER_HOST on
another host cannot reach the API).

The run ends on the first of: the function's answer (response, function error, init error), its
timeout (counted from the first `next`, as Lambda's; before it, the init phase has Lambda's 10 s),
the process exiting without an answer, a cancel (Ctrl-C included); the container is then removed,
whatever happened. Everything the container says (output lines, response, error reports) is
foreign: its sizes are bounded here and in runtime_api, its control characters are the printer's
business (`describe` gives one inert line).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import secrets
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from deployer.errors import DeployerError, DockerError
from deployer.interrupts import WAIT_SLICE_SECONDS, Cancelled, CtrlC
from deployer.render import terminal_text
from deployer.runtime_api import MAX_PAYLOAD_BYTES, InvokeStatus, Reported, RuntimeApi

# Lambda gives a function's init phase (start to its first `next`) 10 seconds.
INIT_TIMEOUT_SECONDS = 10.0
# On every container made here: the tests (and a user) find what a run left behind by it.
LABEL = "dev.deployer.invoke"
FUNCTION_LABEL = "dev.deployer.function"
# Bounds on what the container says: an output line longer than this is cut in pieces of it.
LOG_LINE_BYTES = 16 * 1024
# After the run: how long the rest of the output may take to come, and the engine to answer.
DRAIN_SECONDS = 5.0
ENGINE_WAIT_SECONDS = 30

# Names Lambda sets itself and refuses in a function's configuration.
RESERVED = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})
_ENV_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")


@dataclass(frozen=True)
class InvokeResult:
    """One local invocation. SUCCEEDED: `payload` is the response. FUNCTION_ERROR, INIT_ERROR:
    `payload` is the error document as posted, `error_type` and `error_message` (bounded, foreign,
    not escaped) what it says. TIMED_OUT ("Sandbox.Timedout") and EXITED ("Runtime.ExitError",
    "Runtime.OutOfMemory", with `exit_code`): no payload. `init_seconds` runs from the start of
    the container to the first `next`, `duration_seconds` from there to the end (0 without one)."""

    status: InvokeStatus
    request_id: str
    duration_seconds: float
    init_seconds: float
    payload: bytes = b""
    error_type: str = ""
    error_message: str = ""
    stack_trace: tuple[str, ...] = ()
    exit_code: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is InvokeStatus.SUCCEEDED


def describe(result: InvokeResult) -> str:
    """The result as one line that is safe on a terminal and in a CI log."""
    timing = f"{result.duration_seconds * 1000:.2f} ms, init {result.init_seconds * 1000:.2f} ms"
    if result.succeeded:
        return terminal_text(f"succeeded in {timing}, request {result.request_id}")
    return terminal_text(f"{result.status}: {result.error_type}: {result.error_message} "
                         f"(request {result.request_id}, {timing})")


# -- the container ---------------------------------------------------------------------------

Log = Callable[[str], None]


def engine_platform(client: docker.DockerClient) -> str:
    """The platform the engine runs natively, as "linux/amd64"."""
    with _engine("asking the Docker engine for its version"):
        version = client.version()
    return f"{version.get('Os') or 'linux'}/{version.get('Arch') or 'amd64'}".lower()


def image_platform(client: docker.DockerClient, image: str) -> str:
    """The platform `image` is built for, as "linux/arm64"; DockerError when the engine has no such image."""
    with _engine(f"inspecting image {image}"):
        try:
            attrs = client.api.inspect_image(image)
        except docker.errors.NotFound:
            raise DockerError(f"image {image} is not on the Docker engine: build it first, then invoke again") from None
    return f"{attrs.get('Os') or 'linux'}/{attrs.get('Architecture') or 'amd64'}".lower()


def lambda_environment(runtime_api: str, *, function_name: str, memory_mb: int, region: str,
                       env: Mapping[str, str], version: str = "$LATEST") -> dict[str, str]:
    """The variables Lambda sets for a container image function (the image's own ENV, PATH
    included, stays), with `env`; no AWS credentials. AWS_EC2_METADATA_DISABLED keeps the AWS SDKs
    from taking the host's instance credentials instead: the container shares the host's network.
    `version` is the function version that runs ("$LATEST", or a published version's number)."""
    _check_environment(env)
    today = datetime.datetime.now(datetime.timezone.utc)
    return {"TZ": ":UTC", "LANG": "en_US.UTF-8", "AWS_EC2_METADATA_DISABLED": "true", **env,
            "AWS_LAMBDA_RUNTIME_API": runtime_api, "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": version, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today:%Y/%m/%d}/[{version}]{secrets.token_hex(16)}",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime"}


def _check_environment(env: Mapping[str, str]) -> None:
    """Lambda's rules for a function's variables; a value is never shown (it may be a secret)."""
    problems = [f"environment variable {name}: Lambda sets this name itself; remove it" if name in RESERVED
                else f"environment variable {name!r}: not a valid name (letters, digits and _, starting with a letter)"
                for name in sorted(env) if name in RESERVED or not _ENV_NAME.fullmatch(name)]
    problems += [f"environment variable {name}: its value holds a NUL character" for name in sorted(env) if "\0" in env[name]]
    if problems:
        raise DeployerError(*problems)


@dataclass(frozen=True)
class ImageOverrides:
    """A function's ImageConfig: what Lambda runs instead of the image's own ENTRYPOINT, CMD and
    WORKDIR; an empty field keeps the image's."""

    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    working_dir: str = ""


def invoke_local(client: docker.DockerClient, image: str, event: bytes, *, function_name: str, env: Mapping[str, str],
                 timeout_seconds: float, memory_mb: int, region: str, log: Log,
                 cancel: threading.Event | None = None, version: str = "$LATEST",
                 overrides: ImageOverrides = ImageOverrides()) -> InvokeResult:
    """Run `image` once with `event` (see the module docstring); its output lines go to `log`
    from another thread, as they come, all of them before this returns. `version` and `overrides`
    are the function version's, as Lambda gives them to the container. An image of another
    platform than the engine's is run all the same (the engine may emulate it); when it exits
    without an answer, the message says why that may be. Raises DockerError for the engine's
    failures, Cancelled when `cancel` is set or Ctrl-C is pressed: in the main thread SIGINT is
    counted, not raised, from before the container is made until it is removed, so that no
    KeyboardInterrupt can leave it behind. The container is removed and the server closed in
    every case."""
    if len(event) > MAX_PAYLOAD_BYTES:
        raise DeployerError(f"the event is {len(event)} bytes, more than Lambda's limit of {MAX_PAYLOAD_BYTES} (6 MiB)")
    _check_environment(env)
    platform, engine = image_platform(client, image), engine_platform(client)
    ctrl_c = CtrlC()

    def cancelled() -> bool:
        return bool(ctrl_c.presses) or (cancel is not None and cancel.is_set())

    gateway = bridge_gateway(client)
    with ctrl_c.counting(), RuntimeApi(event, function_name=function_name, region=region, timeout_seconds=timeout_seconds,
                                       host=gateway or "127.0.0.1") as api:
        environment = lambda_environment(api.address, function_name=function_name, memory_mb=memory_mb, region=region,
                                         env=env, version=version)
        run = _Container(client, log, api.wake)
        try:
            run.start(image, environment, function_name, memory_mb, "bridge" if gateway else "host", overrides)
            result = _watch(api, run, timeout_seconds, cancelled)
        except BaseException:
            run.remove(quiet=True)  # what is under way (an error, a cancel) is what the caller must see
            raise
        run.remove(quiet=False)
    if result.status is InvokeStatus.EXITED and platform != engine:  # most likely "exec format error"
        return replace(result, error_message=f"{result.error_message} (the image is {platform} and the Docker "
                                   f"engine runs {engine}: it runs the image only with emulation, QEMU binfmt)")
    return result


def bridge_gateway(client: docker.DockerClient) -> str | None:
    """The gateway address of the engine's default bridge network when this machine can serve on
    it (the engine runs here, natively), else None."""
    try:
        configs = (client.api.inspect_network("bridge").get("IPAM") or {}).get("Config") or []
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    for config in configs:
        gateway = str((config or {}).get("Gateway") or "")
        try:
            address = ipaddress.ip_address(gateway)
        except ValueError:
            continue
        if address.version != 4:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((gateway, 0))  # an address of this machine's: the API can listen there
        except OSError:
            continue
        return gateway
    return None


def _watch(api: RuntimeApi, run: _Container, timeout_seconds: float, cancelled: Callable[[], bool]) -> InvokeResult:
    while True:
        api.wake.clear()  # before looking: a change from here on ends the wait below at once
        now = time.monotonic()
        if api.reported is not None:
            return _result(api, run, api.reported)
        if api.invoked_at is None:
            limit, message = run.started_at + INIT_TIMEOUT_SECONDS, f"Init phase timed out after {INIT_TIMEOUT_SECONDS:.2f} seconds"
        else:
            limit, message = api.invoked_at + timeout_seconds, f"Task timed out after {timeout_seconds:.2f} seconds"
        if now >= limit:
            return _result(api, run, Reported(InvokeStatus.TIMED_OUT, b"", "Sandbox.Timedout", message, (), now))
        if run.output.ended.is_set():  # the container stopped: the process exited
            run.output.check()
            code, out_of_memory = run.exit_status()
            if api.reported is not None:  # posted just before it exited
                return _result(api, run, api.reported)
            return _result(api, run, _exit_report(code, out_of_memory), exit_code=code)
        if cancelled():
            raise Cancelled(f"local invoke of {api.function_name} stopped: cancelled")
        api.wake.wait(min(WAIT_SLICE_SECONDS, limit - now))


def _exit_report(code: int, out_of_memory: bool) -> Reported:
    """Lambda's words for a runtime that exited without an answer (Go's os/exec wording)."""
    if code == 0:
        said = "Runtime exited without providing a reason"
    elif code > 128 and 0 < code - 128 < signal.NSIG and signal.strsignal(code - 128):
        said = f"Runtime exited with error: signal: {str(signal.strsignal(code - 128)).lower()}"
    else:
        said = f"Runtime exited with error: exit status {code}"
    error_type = "Runtime.OutOfMemory" if out_of_memory else "Runtime.ExitError"
    return Reported(InvokeStatus.EXITED, b"", error_type, said, (), time.monotonic())


def _result(api: RuntimeApi, run: _Container, reported: Reported, exit_code: int | None = None) -> InvokeResult:
    invoked = api.invoked_at
    init = (invoked if invoked is not None else reported.at) - run.started_at
    duration = reported.at - invoked if invoked is not None else 0.0
    return InvokeResult(reported.status, api.request_id, max(duration, 0.0), max(init, 0.0), reported.payload,
                        reported.error_type, reported.error_message, reported.stack_trace, exit_code)


class _Container:
    """The function's container. Its name is made here, unique, so that it can be removed even when
    an interrupt came before the engine said its ID. Lambda's limits where the engine has them:
    memory (no swap), 1024 processes, 1024 open files, a read-only file system but /tmp (512 MB);
    no capability, as Lambda's unprivileged user (the host's network is shared: no raw sockets)."""

    def __init__(self, client: docker.DockerClient, log: Log, wake: threading.Event) -> None:
        self.client = client
        self.name = f"deployer-invoke-{uuid.uuid4().hex[:12]}"
        self.output = _Output(log, wake)
        self.started_at = time.monotonic()
        self._created = False

    def start(self, image: str, environment: Mapping[str, str], function_name: str, memory_mb: int,
              network: str = "bridge", overrides: ImageOverrides = ImageOverrides()) -> None:
        api = self.client.api
        with _engine(f"creating a container of image {image}"):
            host_config = api.create_host_config(
                network_mode=network, mem_limit=f"{memory_mb}m", memswap_limit=f"{memory_mb}m", pids_limit=1024,
                ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024)], read_only=True,
                tmpfs={"/tmp": "rw,size=512m"}, cap_drop=["ALL"], security_opt=["no-new-privileges"],
                log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}})
            self._created = True  # from here on a container may exist, even if the call is interrupted
            api.create_container(image, name=self.name, environment=dict(environment), host_config=host_config,
                                 labels={LABEL: "1", FUNCTION_LABEL: function_name},
                                 entrypoint=list(overrides.entrypoint) or None, command=list(overrides.command) or None,
                                 working_dir=overrides.working_dir or None)
        with _engine(f"starting the container of image {image}"):
            api.start(self.name)
        self.started_at = time.monotonic()
        self.output.start(lambda: api.logs(self.name, stream=True, follow=True))

    def exit_status(self) -> tuple[int, bool]:
        """The exit code of the stopped process, and whether it ran out of memory."""
        with _engine("waiting for the function's container to exit"):
            code = self.client.api.wait(self.name, timeout=ENGINE_WAIT_SECONDS).get("StatusCode", -1)
            state = self.client.api.inspect_container(self.name).get("State") or {}
        return int(code), bool(state.get("OOMKilled"))

    def remove(self, quiet: bool) -> None:
        """Kill, let the output reader finish, remove (anonymous volumes too). `quiet`: a failure
        to remove is not raised (another error is on its way)."""
        if not self._created:
            return
        api = self.client.api
        if self.output.started:
            with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                api.kill(self.name)  # fails when stopped already; removing kills it anyway
            self.output.drain(DRAIN_SECONDS)
        try:
            api.remove_container(self.name, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            if not quiet:
                raise DockerError(f"cannot remove the function's container {self.name}: {_said(exc)}; "
                                  f"remove it with: docker rm -f {self.name}") from None


class _LogFailed(Exception):
    """`log` itself raised (a closed stdout): not the engine's failure."""


class _Output:
    """The container's stdout and stderr, read on a thread of its own and given to `log` line by
    line (a line longer than LOG_LINE_BYTES in pieces of it, bytes not UTF-8 replaced). The stream
    ends when the container stops: then `ended` and `wake` are set, `failure` holds what broke it."""

    def __init__(self, log: Log, wake: threading.Event) -> None:
        self._log = log
        self._wake = wake
        self._stream: Any = None
        self.started = False
        self.ended = threading.Event()
        self.failure: BaseException | None = None

    def start(self, open_stream: Callable[[], Any]) -> None:
        self.started = True
        threading.Thread(target=self._read, args=(open_stream,), name="deployer-invoke-output", daemon=True).start()

    def _read(self, open_stream: Callable[[], Any]) -> None:
        pending = b""
        try:
            self._stream = open_stream()
            for chunk in self._stream:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._emit(line)
                while len(pending) >= LOG_LINE_BYTES:
                    self._emit(pending[:LOG_LINE_BYTES])
                    pending = pending[LOG_LINE_BYTES:]
            if pending:
                self._emit(pending)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread by check()
            self.failure = exc
        finally:
            self.ended.set()
            self._wake.set()

    def _emit(self, line: bytes) -> None:
        for start in range(0, max(len(line), 1), LOG_LINE_BYTES):
            text = line[start:start + LOG_LINE_BYTES].rstrip(b"\r").decode("utf-8", "replace")
            try:
                self._log(text)
            except Exception as exc:
                raise _LogFailed() from exc

    def drain(self, seconds: float) -> None:
        """Wait for the rest of the output; past `seconds` (an engine that does not end the
        stream), close it."""
        if not self.ended.wait(seconds) and self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()

    def check(self) -> None:
        """Raise what broke the stream: `log`'s own error as it is, the engine's as a DockerError."""
        if isinstance(self.failure, _LogFailed) and self.failure.__cause__ is not None:
            raise self.failure.__cause__
        if self.failure is not None:
            raise DockerError(f"reading the function's output failed: {_said(self.failure)}") from None


@contextlib.contextmanager
def _engine(doing: str) -> Iterator[None]:
    """The SDK's failures as a DockerError that says what failed; never the request URL."""
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        if isinstance(exc, requests.exceptions.ConnectionError):
            raise DockerError(f"{doing} failed: the Docker engine did not answer ({_said(exc)}); "
                              "start Docker or set DOCKER_HOST") from None
        raise DockerError(f"{doing} failed: {_said(exc)}") from None


_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)


def _said(exc: BaseException) -> str:
    """What the engine said (an APIError's explanation), with any URL cut out."""
    return _URL.sub("(engine)", str(getattr(exc, "explanation", None) or exc or type(exc).__name__)).strip()
