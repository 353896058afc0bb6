"""A fault-injecting TCP proxy on loopback, for the reliability suite.

`FaultProxy(target)` forwards every connection to `target` (host, port) and can be told, at
runtime, to

- pass everything through (the default), optionally after `latency` seconds per request;
- `drop()`: reset every open connection and each new one at once (a dead server);
- `hold()`: accept connections, read what comes and never answer (a black-holed endpoint);
- act at a chosen request: `when(predicate, action)` runs `action(request)` in the connection's
  thread before the request is forwarded (an outside change lands exactly there; a blocking
  action holds that request), and the action's `Fault` decides what becomes of the request:
  forwarded, the connection reset before it, reset once some bytes of its body have passed, reset
  when the answer comes back (the server did it, the client never hears), or held.

The client-to-server stream is parsed as HTTP/1.1 requests (Content-Length and chunked bodies,
several requests per connection), so that requests can be counted and matched by method, path
and headers (`X-Amz-Target`, Lambda's REST paths, registry blob uploads). The server-to-client
stream is copied as it is.

One thread per connection runs a select loop over both sockets, so that a reset decided by
another thread is carried out by the thread that owns the sockets (SO_LINGER 0, then close: the
peer sees ECONNRESET); a peer's own close is passed on as an orderly one. Everything is bounded: sockets poll every POLL_SECONDS, `close()` ends
every connection and joins the threads.
"""

from __future__ import annotations

import enum
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable, Iterator

LOOPBACK = "127.0.0.1"
POLL_SECONDS = 0.05
CONNECT_TIMEOUT_SECONDS = 5.0
SEND_TIMEOUT_SECONDS = 60.0
JOIN_SECONDS = 5.0
MAX_HEAD_BYTES = 256 * 1024


class Mode(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    HOLD = "hold"


class FaultKind(enum.Enum):
    FORWARD = "forward"
    RESET = "reset"  # before the request reaches the server
    RESET_AFTER_BYTES = "reset after bytes"  # once `after_bytes` of its body reached the server
    RESET_ON_ANSWER = "reset on answer"  # the server handled it; its answer is lost
    HOLD = "hold"  # the request is never forwarded, the connection never answered


@dataclass(frozen=True)
class Fault:
    kind: FaultKind = FaultKind.FORWARD
    after_bytes: int = 0


FORWARD = Fault()
RESET = Fault(FaultKind.RESET)
RESET_ON_ANSWER = Fault(FaultKind.RESET_ON_ANSWER)
HOLD = Fault(FaultKind.HOLD)


def reset_after(body_bytes: int) -> Fault:
    return Fault(FaultKind.RESET_AFTER_BYTES, body_bytes)


@dataclass(frozen=True)
class HttpRequest:
    """A request's head as the client sent it; header names lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    number: int  # 1-based, counted over the proxy's lifetime
    at: float = 0.0  # time.monotonic() when its head arrived

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


Predicate = Callable[[HttpRequest], bool]
Action = Callable[[HttpRequest], "Fault | None"]


@dataclass
class Trigger:
    """A rule: the first request(s) matching `predicate` run `action`. `fired` is set (and
    `request` filled) once the action has returned."""

    predicate: Predicate
    action: Action
    once: bool = True
    fired: threading.Event = field(default_factory=threading.Event)
    request: HttpRequest | None = None
    spent: bool = False


def lambda_rest(method: str, suffix: str) -> Predicate:
    """Matches a Lambda REST call, e.g. lambda_rest("PUT", "code") for UpdateFunctionCode
    (PUT /2015-03-31/functions/NAME/code), lambda_rest("GET", "") for GetFunction."""
    tail = f"/{suffix}" if suffix else ""
    pattern = re.compile(rf"/20\d\d-\d\d-\d\d/functions/[^/?]+{re.escape(tail)}/?(\?.*)?")
    return lambda request: request.method == method and bool(pattern.fullmatch(request.path))


def amz_target(operation: str) -> Predicate:
    """Matches a JSON-protocol call (ECR) by the operation in X-Amz-Target."""
    return lambda request: request.header("X-Amz-Target").rsplit(".", 1)[-1] == operation


def blob_upload(request: HttpRequest) -> bool:
    """A registry blob upload carrying data (docker pushes each layer in a PATCH)."""
    return request.method == "PATCH" and "/blobs/uploads/" in request.path


class FaultProxy:
    """See the module docstring. Use as a context manager, or call start() and close()."""

    def __init__(self, target_host: str, target_port: int, name: str = "proxy") -> None:
        self.target = (target_host, target_port)
        self.name = name
        self.latency = 0.0
        self._mode = Mode.PASS
        self._lock = threading.Lock()
        self._triggers: list[Trigger] = []
        self._requests: list[HttpRequest] = []
        self._connections: set[_Connection] = set()
        self._closing = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self.port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._listener.listen(64)
        self._acceptor.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._acceptor.join(JOIN_SECONDS)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.join(JOIN_SECONDS)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- what tests use --------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """host:port, as DEPLOYER_REGISTRY_ENDPOINT takes it."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """http://host:port, as AWS_ENDPOINT_URL takes it."""
        return f"http://{self.endpoint}"

    def mode(self) -> Mode:
        """A method, not a property: other threads change it at any time."""
        return self._mode

    def pass_through(self) -> None:
        """Forward again; connections held by hold() are reset, as by a restarted server."""
        self._mode = Mode.PASS

    def drop(self) -> None:
        """Reset every open connection and every new one, until pass_through()."""
        self._mode = Mode.DROP

    def hold(self) -> None:
        """Accept new connections and never answer them; open ones stop being answered."""
        self._mode = Mode.HOLD

    def when(self, predicate: Predicate, action: Action, once: bool = True) -> Trigger:
        trigger = Trigger(predicate, action, once)
        with self._lock:
            self._triggers.append(trigger)
        return trigger

    @property
    def requests(self) -> list[HttpRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, predicate: Predicate) -> int:
        return sum(1 for request in self.requests if predicate(request))

    # -- internals -------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            ready, _, _ = select.select([self._listener], [], [], POLL_SECONDS)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            connection = _Connection(self, client)
            with self._lock:
                self._connections.add(connection)
            connection.start()

    def _forgotten(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _on_request(self, method: str, path: str, headers: dict[str, str]) -> Fault:
        with self._lock:
            request = HttpRequest(method, path, headers, len(self._requests) + 1, time.monotonic())
            self._requests.append(request)
            matched = [t for t in self._triggers if not t.spent and t.predicate(request)]
            for trigger in matched:
                trigger.spent = trigger.once
        fault = FORWARD
        for trigger in matched:  # outside the lock: an action may block, or call the proxy
            verdict = trigger.action(request)
            trigger.request = request
            trigger.fired.set()
            if verdict is not None and verdict.kind is not FaultKind.FORWARD:
                fault = verdict
        if self.latency and fault is FORWARD:
            time.sleep(self.latency)  # the fault itself: a slow network
        return fault


def _close(sock: socket.socket) -> None:
    """An orderly end (FIN): what was sent before still reaches the peer."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP reset, not an orderly end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Connection(threading.Thread):
    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        super().__init__(name=f"{proxy.name}-conn", daemon=True)
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.parser = _RequestParser()
        self.holding = False
        self.held_by_mode = False  # held by hold(), not by a request's fault: reset by pass_through()
        self.reset_on_answer = False
        self.body_budget: int | None = None  # bytes of the current body still allowed through
        self.ended = False  # a peer closed: the other gets an orderly end, not a reset

    def run(self) -> None:
        try:
            self._serve()
        except OSError:
            pass  # a peer went away: nothing to report, the test looks at what the client saw
        finally:
            for sock in (self.client, self.upstream):
                if sock is not None:
                    _close(sock) if self.ended else _reset(sock)
            self.proxy._forgotten(self)

    def _serve(self) -> None:
        if self.proxy.mode() is Mode.DROP:
            return  # reset in run()
        if self.proxy.mode() is Mode.HOLD:
            self.holding = self.held_by_mode = True
        else:
            self.upstream = socket.create_connection(self.proxy.target, timeout=CONNECT_TIMEOUT_SECONDS)
            self.upstream.settimeout(SEND_TIMEOUT_SECONDS)
        while not self.proxy._closing.is_set():
            mode = self.proxy.mode()  # another thread may change it at any time
            if mode is Mode.DROP:
                return
            if mode is Mode.HOLD:
                self.holding = self.held_by_mode = True
            elif self.held_by_mode:
                return  # back in service, as a restarted server would be: what it held is reset
            sockets = [self.client] + ([self.upstream] if self.upstream is not None and not self.holding else [])
            ready, _, _ = select.select(sockets, [], [], POLL_SECONDS)
            if self.client in ready:
                data = self.client.recv(65536)
                if not data:
                    self.ended = True
                    return
                if self.holding:
                    self._count_held(data)
                elif not self._from_client(data):
                    return
            if self.upstream is not None and self.upstream in ready and not self.holding:
                data = self.upstream.recv(65536)
                if self.reset_on_answer:
                    return
                if not data:
                    self.ended = True  # the server closed after its answer: the client must get all of it
                    return
                self.client.sendall(data)

    def _count_held(self, data: bytes) -> None:
        """A held connection answers nothing, but its requests are still seen (and counted)."""
        for part in self.parser.feed(data):
            if isinstance(part, _Head):
                self.proxy._on_request(part.method, part.path, part.headers)

    def _from_client(self, data: bytes) -> bool:
        """Forward what the client sent, acting on each request; False ends the connection."""
        assert self.upstream is not None
        for part in self.parser.feed(data):
            if isinstance(part, _Head):
                fault = self.proxy._on_request(part.method, part.path, part.headers)
                self.body_budget = None
                if fault.kind is FaultKind.RESET:
                    return False
                if fault.kind is FaultKind.HOLD:
                    self.holding = True
                    return True
                if fault.kind is FaultKind.RESET_ON_ANSWER:
                    self.reset_on_answer = True
                if fault.kind is FaultKind.RESET_AFTER_BYTES:
                    self.body_budget = fault.after_bytes
                self.upstream.sendall(part.raw)
            else:  # body bytes
                chunk = part
                if self.body_budget is not None:
                    if len(chunk) >= self.body_budget:
                        self.upstream.sendall(chunk[:self.body_budget])
                        return False
                    self.body_budget -= len(chunk)
                self.upstream.sendall(chunk)
        return True


_HTTP_START = re.compile(rb"[A-Z]{3,10} ")


@dataclass(frozen=True)
class _Head:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes


class _RequestParser:
    """Splits a client's byte stream into requests: yields a _Head for each request's head and
    bytes for its body, keeping the bytes exactly as they came."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "head"
        self._remaining = 0  # bytes left in a Content-Length body or in the current chunk
        self._chunked = False

    def feed(self, data: bytes) -> Iterator[_Head | bytes]:
        self._buffer += data
        while self._buffer:
            if self._state == "raw":
                yield bytes(self._buffer)
                self._buffer.clear()
            elif self._state == "head":
                if not _HTTP_START.match(self._buffer[:16]) and (len(self._buffer) >= 16 or not self._buffer.isupper()):
                    # Not HTTP (a TLS hello, say: the engine tries https first): pass it through
                    # untouched, or the client would wait for an answer to bytes held here.
                    self._state = "raw"
                    continue
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD_BYTES:
                        raise OSError("request head too large")
                    return
                head = _parse_head(bytes(self._buffer[:end + 4]))
                del self._buffer[:end + 4]
                yield head
                headers = head.headers
                self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                self._remaining = int(headers.get("content-length", "0") or 0)
                self._state = "chunk-size" if self._chunked else ("body" if self._remaining else "head")
            elif self._state == "body":
                take = bytes(self._buffer[:self._remaining])
                del self._buffer[:len(take)]
                self._remaining -= len(take)
                yield take
                if self._remaining == 0:
                    self._state = "head"
            elif self._state in ("chunk-size", "trailer"):
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(self._buffer[:end + 2])
                del self._buffer[:end + 2]
                yield line
                if self._state == "trailer":
                    if line == b"\r\n":
                        self._state = "head"
                    continue
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining = size + 2  # the data and its CRLF
                    self._state = "chunk-data"
            elif self._state == "chunk-data":
                take = bytes(self._buffer[:self._remaining])
                del self._buffer[:len(take)]
                self._remaining -= len(take)
                yield take
                if self._remaining == 0:
                    self._state = "chunk-size"


def _parse_head(raw: bytes) -> _Head:
    lines = raw.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.rpartition(" ")[0] or rest
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Head(method, path, headers, raw)
