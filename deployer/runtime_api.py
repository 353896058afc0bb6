"""runtime_api: the Lambda Runtime API of one invocation, served on 127.0.0.1, and the event it hands out.

`RuntimeApi` is the HTTP side of `deployer invoke --local` (deployer.local_invoke runs the
container that talks to it): the first `next` gets the event, the first outcome posted (response,
function error, init error) is kept as a `Reported`. What the function posts is foreign: sizes and
the fields of an error document are bounded here; printing it safely is the printer's business.
`read_event` reads the event the user gives (`--event FILE|-`) as Lambda would accept it.
"""

from __future__ import annotations

import enum
import json
import os
import re
import secrets
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Mapping

from deployer.errors import DeployerError, Diagnostic
from deployer.interrupts import WAIT_SLICE_SECONDS
from deployer.paths import display, git_root, inside, resolve
from deployer.repository_config import partition

# Lambda's limit for a synchronous invocation's event and response (6 MiB).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
ACCOUNT = "000000000000"
# Bounds on what the function posts in an error document.
ERROR_TYPE_CHARS = 256
ERROR_MESSAGE_CHARS = 4096
STACK_FRAMES = 50
STACK_FRAME_CHARS = 512
# A function silent this long in the middle of a request is disconnected.
REQUEST_READ_SECONDS = 30
# Connections served at once (a thread each); past it, a new one is closed unanswered. A runtime
# uses one; every later `next` holds its thread until the API stops, even once its connection is
# gone, so a function opening connections in a loop would otherwise start a thread for each.
MAX_CONNECTIONS = 16
_PREFIX = "/2018-06-01/runtime"
_INVOCATION = re.compile(re.escape(_PREFIX) + r"/invocation/([^/]+)/(response|error)")


class InvokeStatus(str, enum.Enum):
    """How the run ended; the value is the word deployer.local_invoke.describe shows."""

    SUCCEEDED = "succeeded"
    FUNCTION_ERROR = "function error"
    INIT_ERROR = "init error"
    TIMED_OUT = "timed out"
    EXITED = "exited"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Reported:
    """What the function posted to the Runtime API. `payload` is the body as posted (the response,
    or the error document); `error_*` are set for errors, bounded; `at` is time.monotonic()."""

    status: InvokeStatus
    payload: bytes = b""
    error_type: str = ""
    error_message: str = ""
    stack_trace: tuple[str, ...] = ()
    at: float = 0.0


# -- the Runtime API of one invocation ---------------------------------------------------------

class RuntimeApi:
    """An HTTP server on `host` (a free port; loopback by default) serving one invocation of `event`.

    The first `next` hands the event out (`invoked_at` is set); a later one waits until `stop`,
    as the process would stay frozen in Lambda (`parked` is set while one waits). The first
    outcome posted is kept in `reported`; later posts are refused. `wake` is set at every change
    (a caller may share it with other sources)."""

    def __init__(self, event: bytes, *, function_name: str, region: str, timeout_seconds: float,
                 wake: threading.Event | None = None, host: str = "127.0.0.1") -> None:
        self.event = event
        self.host = host  # the address served on: loopback, or the engine's bridge gateway
        self.function_name = function_name
        self.region = region
        self.timeout_seconds = timeout_seconds
        self.request_id = str(uuid.uuid4())
        self.wake = wake or threading.Event()
        self.parked = threading.Event()
        self.invoked_at: float | None = None
        self.reported: Reported | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def function_arn(self) -> str:
        return f"arn:{partition(self.region)}:lambda:{self.region}:{ACCOUNT}:function:{self.function_name}"

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        assert self._server is not None, "RuntimeApi not started"
        return f"{self.host}:{self._server.server_address[1]}"

    def start(self) -> RuntimeApi:
        self._server = _Server((self.host, 0), type("Handler", (_Handler,), {"api": self}))
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": WAIT_SLICE_SECONDS},
                         name="deployer-runtime-api", daemon=True).start()
        return self

    def stop(self) -> None:
        """Release the waiting `next`s and close the server; idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> RuntimeApi:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def next_invocation(self) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            first = self.invoked_at is None and self.reported is None and not self._stopping.is_set()
            if first:
                self.invoked_at = time.monotonic()
        if not first:
            self.parked.set()
            self._stopping.wait()
            return 410, _error_doc("the invocation is over", "Runtime.InvocationOver"), {}
        self.wake.set()
        deadline_ms = int(time.time() * 1000 + self.timeout_seconds * 1000)
        trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
        return 200, self.event, {"Lambda-Runtime-Aws-Request-Id": self.request_id,
                                 "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                                 "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
                                 "Lambda-Runtime-Trace-Id": trace}

    def record(self, request_id: str | None, status: InvokeStatus, body: bytes | None,
               error_type_header: str | None) -> tuple[int, bytes]:
        """An outcome posted for `request_id` (None: the init error); `body` None: too large."""
        with self._lock:
            if request_id is None and self.invoked_at is not None:
                return 403, _error_doc("init error reported after init", "InvalidStateTransition")
            if request_id is not None and (request_id != self.request_id or self.invoked_at is None):
                return 400, _error_doc("unknown request id", "InvalidRequestID")
            if self.reported is not None:
                return 400, _error_doc("the invocation already has an outcome", "InvalidStateTransition")
            self.reported = _reported(status, body, error_type_header)
        self.wake.set()
        if body is None:
            return 413, _error_doc(self.reported.error_message, self.reported.error_type)
        return 202, b'{"status":"OK"}'


def _reported(status: InvokeStatus, body: bytes | None, error_type_header: str | None) -> Reported:
    now = time.monotonic()
    if body is None:
        too_large = f"Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."
        status = InvokeStatus.FUNCTION_ERROR if status is InvokeStatus.SUCCEEDED else status
        return Reported(status, b"", "Function.ResponseSizeTooLarge", too_large, (), now)
    if status is InvokeStatus.SUCCEEDED:
        return Reported(status, body, at=now)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    fields: dict[str, Any] = document if isinstance(document, dict) else {}
    error_type, message = fields.get("errorType"), fields.get("errorMessage")
    if not isinstance(error_type, str):
        error_type = error_type_header
    if not isinstance(message, str):  # a body that is not JSON is the message
        message = "" if document is not None else body[: ERROR_MESSAGE_CHARS * 4].decode("utf-8", "replace")
    trace = fields.get("stackTrace")
    frames = tuple(_bounded(str(f), STACK_FRAME_CHARS) for f in trace[:STACK_FRAMES]) if isinstance(trace, list) else ()
    return Reported(status, body, _bounded(error_type or "Runtime.Unknown", ERROR_TYPE_CHARS),
                    _bounded(message, ERROR_MESSAGE_CHARS), frames, now)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def _error_doc(message: str, error_type: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class _BadRequest(Exception):
    pass


class _Server(ThreadingHTTPServer):
    """At most MAX_CONNECTIONS connections at once, and nothing printed about one that breaks:
    what the function does to its connections is not deployer's failure (the default
    handle_error prints a traceback on deployer's stderr)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started (none left): the slot is free again
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    """HTTP only: what to answer is RuntimeApi's. Keep-alive (HTTP/1.1), as Lambda's runtimes
    expect; every answer has a Content-Length."""

    api: RuntimeApi  # set on the subclass made per server
    protocol_version = "HTTP/1.1"
    server_version = "deployer-runtime-api"
    timeout = REQUEST_READ_SECONDS

    def handle(self) -> None:
        """The requests of one connection. A connection the function breaks (its container killed
        at the end of the run, a reset) ends quietly: left to the server, it would print a
        traceback on deployer's stderr."""
        try:
            super().handle()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path.split("?", 1)[0] != f"{_PREFIX}/invocation/next":
            self._answer(404, _error_doc("not found", "UnknownPath"))
            return
        self._answer(*self.api.next_invocation())

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        match = _INVOCATION.fullmatch(path)
        if match is None and path != f"{_PREFIX}/init/error":
            self._answer(404, _error_doc("not found", "UnknownPath"))
            return
        try:
            body = self._body()
        except (_BadRequest, ValueError, OSError):
            self.close_connection = True
            self._answer(400, _error_doc("unreadable request body", "InvalidRequest"))
            return
        if match is None:
            request_id, status = None, InvokeStatus.INIT_ERROR
        else:
            request_id = match[1]
            status = InvokeStatus.SUCCEEDED if match[2] == "response" else InvokeStatus.FUNCTION_ERROR
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        if body is None:
            self.close_connection = True  # the body was not read
        self._answer(*self.api.record(request_id, status, body, error_type))

    def _body(self) -> bytes | None:
        """The request body; None when it is larger than MAX_PAYLOAD_BYTES (then left unread)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise _BadRequest
        return None if length > MAX_PAYLOAD_BYTES else self.rfile.read(length)

    def _chunked_body(self) -> bytes | None:
        body = bytearray()
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            if size < 0:  # read(-1) would read until the function closes the connection
                raise _BadRequest
            if size == 0:
                for _ in range(100):  # trailers, up to the empty line
                    if self.rfile.readline(1024).strip() == b"":
                        return bytes(body)
                raise _BadRequest
            if len(body) + size > MAX_PAYLOAD_BYTES:
                return None
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _answer(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the function's requests are not output
        pass


# -- the event -------------------------------------------------------------------------------

def read_event(source: str | None, stdin: BinaryIO) -> bytes:
    """The event of `invoke --event SOURCE`: a file, "-" for standard input, None for "{}".
    Lambda takes only a JSON document of at most MAX_PAYLOAD_BYTES; a file must be a regular
    file (a FIFO or device would block or never end)."""
    if source is None:
        return b"{}"
    where = "the event on standard input" if source == "-" else f"event file {source}"
    try:
        data = stdin.read(MAX_PAYLOAD_BYTES + 1) if source == "-" else _read_regular(Path(source))
    except OSError as exc:
        raise DeployerError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise DeployerError(f"{where} is larger than Lambda's limit of {MAX_PAYLOAD_BYTES} bytes (6 MiB)")
    try:
        json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeployerError(f"{where} is not UTF-8 text: Lambda takes a JSON event") from None
    except json.JSONDecodeError as exc:
        summary = f"the event is not JSON ({exc.msg}): Lambda takes a JSON event"
        raise DeployerError(Diagnostic.at(Path(source), exc.lineno, exc.colno, summary) if source != "-"
                            else Diagnostic(f"{where} is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})")) from None
    except RecursionError:
        raise DeployerError(f"{where} is nested too deeply") from None
    return data


def _read_regular(path: Path) -> bytes:
    """The event file: a regular file and, when a symlink leads to it, one inside the directory
    that holds `.git` above the path given (else the path's own directory), as deploy.yaml is
    read. The file may come from a pull request: a link to a JSON file of the machine (registry
    credentials in ~/.docker/config.json) would hand that file to the function as its event."""
    given = Path(os.path.abspath(path))
    real = resolve(given)
    if real != given:
        base = resolve(git_root([given.parent, *given.parent.parents]) or given.parent)
        if not inside(real, base):
            raise OSError(0, f"it is a symlink to {display(real)}, outside {display(base)}; give the event file itself")
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        return file.read(MAX_PAYLOAD_BYTES + 1)

