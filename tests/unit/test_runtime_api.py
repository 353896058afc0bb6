"""RuntimeApi, driven by an HTTP client that acts as the function's runtime; and the pure parts of
local invoke around it (the event, the environment, the one-line description)."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import docker
import pytest

from deployer.errors import DeployerError, DockerError
from deployer.local_invoke import InvokeResult, describe, invoke_local, lambda_environment
from deployer.runtime_api import (
    ERROR_MESSAGE_CHARS,
    MAX_PAYLOAD_BYTES,
    InvokeStatus,
    Reported,
    RuntimeApi,
    _Handler,
    read_event,
)

EVENT = b'{"name": "unit"}'
NEXT = "/2018-06-01/runtime/invocation/next"
INIT_ERROR = "/2018-06-01/runtime/init/error"
WAIT = 10.0  # bound on every wait for another thread


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


def request(api: RuntimeApi, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    host, port = api.address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.read(), {k: v for k, v in response.getheaders()})
    finally:
        connection.close()


def outcome_path(api: RuntimeApi, kind: str, request_id: str | None = None) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id or api.request_id}/{kind}"


@pytest.fixture
def api() -> Iterator[RuntimeApi]:
    with RuntimeApi(EVENT, function_name="greet", region="eu-west-1", timeout_seconds=3.0) as server:
        yield server


def test_next_hands_out_the_event_with_lambdas_headers(api: RuntimeApi) -> None:
    before_ms = time.time() * 1000
    answer = request(api, "GET", NEXT)
    assert answer.status == 200
    assert answer.body == EVENT
    assert answer.headers["Lambda-Runtime-Aws-Request-Id"] == api.request_id
    assert answer.headers["Lambda-Runtime-Invoked-Function-Arn"] == "arn:aws:lambda:eu-west-1:000000000000:function:greet"
    assert int(before_ms) + 3000 <= int(answer.headers["Lambda-Runtime-Deadline-Ms"]) <= time.time() * 1000 + 3000  # whole ms
    assert answer.headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert api.invoked_at is not None and api.wake.is_set()
    assert api.reported is None


def test_the_arn_names_the_partition_of_the_region() -> None:
    api = RuntimeApi(EVENT, function_name="f", region="cn-north-1", timeout_seconds=1)
    assert api.function_arn == "arn:aws-cn:lambda:cn-north-1:000000000000:function:f"


@dataclass(frozen=True)
class OutcomeCase:
    """A post after `next` (`kind` "response" or "error"), or before it ("init")."""

    name: str
    kind: str
    body: bytes
    expected: Reported
    headers: dict[str, str] = field(default_factory=dict)


FAILED = b'{"errorMessage": "bad input", "errorType": "Handler.BadInput", "stackTrace": ["main.go:12", "proc.go:283"]}'
OUTCOME_CASES = [
    OutcomeCase("response", "response", b'{"ok": true}', Reported(InvokeStatus.SUCCEEDED, b'{"ok": true}')),
    OutcomeCase("empty response", "response", b"", Reported(InvokeStatus.SUCCEEDED, b"")),
    OutcomeCase("function error", "error", FAILED,
                Reported(InvokeStatus.FUNCTION_ERROR, FAILED, "Handler.BadInput", "bad input", ("main.go:12", "proc.go:283"))),
    OutcomeCase("error type from the header", "error", b'{"errorMessage": "no type in the body"}',
                Reported(InvokeStatus.FUNCTION_ERROR, b'{"errorMessage": "no type in the body"}', "Handler.FromHeader",
                         "no type in the body"), {"Lambda-Runtime-Function-Error-Type": "Handler.FromHeader"}),
    OutcomeCase("the body's type wins over the header's", "error", FAILED,
                Reported(InvokeStatus.FUNCTION_ERROR, FAILED, "Handler.BadInput", "bad input", ("main.go:12", "proc.go:283")),
                {"Lambda-Runtime-Function-Error-Type": "Handler.FromHeader"}),
    OutcomeCase("a body that is not JSON is the message", "error", b"panic: nil map",
                Reported(InvokeStatus.FUNCTION_ERROR, b"panic: nil map", "Runtime.Unknown", "panic: nil map")),
    OutcomeCase("JSON that is not an error document", "error", b"[1, 2]",
                Reported(InvokeStatus.FUNCTION_ERROR, b"[1, 2]", "Runtime.Unknown", "")),
    OutcomeCase("init error", "init", b'{"errorMessage": "no config", "errorType": "Init.NoConfig"}',
                Reported(InvokeStatus.INIT_ERROR, b'{"errorMessage": "no config", "errorType": "Init.NoConfig"}',
                         "Init.NoConfig", "no config")),
]


@pytest.mark.parametrize("case", OUTCOME_CASES, ids=lambda c: c.name)
def test_an_outcome_is_recorded_and_accepted(api: RuntimeApi, case: OutcomeCase) -> None:
    if case.kind != "init":
        assert request(api, "GET", NEXT).status == 200
    api.wake.clear()
    path = INIT_ERROR if case.kind == "init" else outcome_path(api, case.kind)
    answer = request(api, "POST", path, case.body, case.headers)
    assert answer.status == 202
    assert api.reported is not None and api.wake.is_set()
    assert api.reported.at > 0
    assert api.reported == Reported(**{**case.expected.__dict__, "at": api.reported.at})


def test_a_chunked_body_is_read_whole(api: RuntimeApi) -> None:
    request(api, "GET", NEXT)
    answer = request(api, "POST", outcome_path(api, "response"), b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                     {"Transfer-Encoding": "chunked"})
    assert answer.status == 202
    assert api.reported is not None and api.reported.payload == b"hello world"


def test_an_unknown_request_id_is_refused_and_the_invocation_goes_on(api: RuntimeApi) -> None:
    request(api, "GET", NEXT)
    refused = request(api, "POST", outcome_path(api, "response", "not-the-id"), b"{}")
    assert refused.status == 400
    assert json.loads(refused.body)["errorType"] == "InvalidRequestID"
    assert api.reported is None
    assert request(api, "POST", outcome_path(api, "response"), b"{}").status == 202


def test_a_response_before_the_event_was_handed_out_is_refused(api: RuntimeApi) -> None:
    assert request(api, "POST", outcome_path(api, "response"), b"{}").status == 400
    assert api.reported is None


def test_the_first_outcome_stays(api: RuntimeApi) -> None:
    request(api, "GET", NEXT)
    assert request(api, "POST", outcome_path(api, "response"), b"first").status == 202
    assert request(api, "POST", outcome_path(api, "error"), FAILED).status == 400
    assert api.reported is not None and api.reported.payload == b"first"


def test_an_init_error_after_the_event_was_handed_out_is_refused(api: RuntimeApi) -> None:
    request(api, "GET", NEXT)
    assert request(api, "POST", INIT_ERROR, FAILED).status == 403
    assert api.reported is None


def test_an_unknown_path_is_not_found(api: RuntimeApi) -> None:
    assert request(api, "GET", "/2020-01-01/extension/event/next").status == 404
    assert request(api, "POST", "/2018-06-01/runtime/invocation/x/other", b"").status == 404


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_response_larger_than_lambdas_limit_is_refused_unread(api: RuntimeApi, chunked: bool) -> None:
    request(api, "GET", NEXT)
    host, port = api.address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        connection.putrequest("POST", outcome_path(api, "response"))
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders(f"{MAX_PAYLOAD_BYTES + 1:x}\r\n".encode())
        else:  # the body is never sent: the server must answer on the header alone
            connection.putheader("Content-Length", str(MAX_PAYLOAD_BYTES + 1))
            connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()
    assert api.reported is not None
    assert (api.reported.status, api.reported.error_type) == (InvokeStatus.FUNCTION_ERROR, "Function.ResponseSizeTooLarge")


def test_a_long_error_message_is_bounded(api: RuntimeApi) -> None:
    request(api, "GET", NEXT)
    body = json.dumps({"errorMessage": "x" * 100_000, "errorType": "T" * 10_000}).encode()
    assert request(api, "POST", outcome_path(api, "error"), body).status == 202
    assert api.reported is not None
    assert len(api.reported.error_message) < ERROR_MESSAGE_CHARS + 50
    assert len(api.reported.error_type) < 300


def test_a_second_next_waits_until_the_api_stops(api: RuntimeApi) -> None:
    request(api, "GET", NEXT)
    request(api, "POST", outcome_path(api, "response"), b"{}")
    answers: list[Answer] = []
    answered = threading.Event()

    def second_next() -> None:
        answers.append(request(api, "GET", NEXT))
        answered.set()

    thread = threading.Thread(target=second_next, daemon=True)
    thread.start()
    assert api.parked.wait(WAIT), "the second next never reached the server"
    assert not answered.is_set()
    api.stop()
    assert answered.wait(WAIT)
    assert answers[0].status == 410


def test_a_connection_the_function_resets_ends_quietly(api: RuntimeApi) -> None:
    """A killed container resets its keep-alive connection; the server thread must not print a
    traceback on deployer's stderr. The handler runs here, in this thread, on the reset socket."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=WAIT)
        served, address = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # linger 0: a reset, as a killed process's connection
    with served:
        type("Handler", (_Handler,), {"api": api})(served, address, None)  # handles, then returns
    assert api.invoked_at is None and api.reported is None


# -- the event ---------------------------------------------------------------------------------

def test_no_event_is_an_empty_object() -> None:
    assert read_event(None, io.BytesIO(b"ignored")) == b"{}"


def test_an_event_is_read_from_standard_input_or_a_file(tmp_path: Path) -> None:
    assert read_event("-", io.BytesIO(b'{"a": 1}')) == b'{"a": 1}'
    (tmp_path / "event.json").write_bytes(b'[1, 2]')
    assert read_event(str(tmp_path / "event.json"), io.BytesIO()) == b"[1, 2]"


def test_an_event_that_is_not_json_is_refused_at_its_position(tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text('{\n  "a": 1,\n}\n')
    with pytest.raises(DeployerError) as error:
        read_event(str(tmp_path / "event.json"), io.BytesIO())
    assert str(error.value).startswith(f"{tmp_path / 'event.json'}:3:1: the event is not JSON")
    with pytest.raises(DeployerError, match="standard input is not JSON"):
        read_event("-", io.BytesIO(b"hello"))


def test_an_event_larger_than_lambdas_limit_is_refused() -> None:
    with pytest.raises(DeployerError, match="larger than Lambda's limit"):
        read_event("-", io.BytesIO(b" " * (MAX_PAYLOAD_BYTES + 1)))


def test_an_event_file_must_be_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    with pytest.raises(DeployerError, match="not a regular file"):
        read_event(str(fifo), io.BytesIO())
    with pytest.raises(DeployerError, match="cannot read event file"):
        read_event(str(tmp_path / "missing.json"), io.BytesIO())


# -- the environment ---------------------------------------------------------------------------

def test_lambdas_variables_are_set_and_no_credentials() -> None:
    env = lambda_environment("127.0.0.1:9001", function_name="greet", memory_mb=256, region="eu-west-1",
                             env={"GREETING": "hi", "TZ": "Europe/Paris"})
    assert {k: env[k] for k in ("AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
                                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_DEFAULT_REGION",
                                "LAMBDA_TASK_ROOT", "GREETING", "TZ")} == {
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "AWS_LAMBDA_FUNCTION_NAME": "greet",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1", "LAMBDA_TASK_ROOT": "/var/task", "GREETING": "hi", "TZ": "Europe/Paris"}
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & env.keys()
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"


def test_reserved_and_malformed_names_are_refused_without_their_values() -> None:
    with pytest.raises(DeployerError) as error:
        lambda_environment("127.0.0.1:1", function_name="f", memory_mb=128, region="us-east-1",
                           env={"AWS_SECRET_ACCESS_KEY": "secret-value-1", "A=B": "secret-value-2", "OK": "nul\0secret-value-3"})
    message = str(error.value)
    assert "AWS_SECRET_ACCESS_KEY: Lambda sets this name itself" in message
    assert "'A=B': not a valid name" in message
    assert "OK: its value holds a NUL character" in message
    assert "secret-value" not in message


# -- the one-line description ------------------------------------------------------------------

def test_a_failure_is_described_on_one_inert_line() -> None:
    result = InvokeResult(InvokeStatus.FUNCTION_ERROR, "req-1", 0.012, 0.003, error_type="Handler\x1b[31m.Bad",
                          error_message="first line\nsecond \x1b]0;title\x07line ::error::x")
    line = describe(result)
    assert line == "function error: Handler.Bad: first line second line ::error::x (request req-1, 12.00 ms, init 3.00 ms)"


def test_a_success_is_described_with_its_timing() -> None:
    result = InvokeResult(InvokeStatus.SUCCEEDED, "req-2", 0.5, 0.25, payload=b"{}")
    assert describe(result) == "succeeded in 500.00 ms, init 250.00 ms, request req-2"


# -- the engine --------------------------------------------------------------------------------

def test_an_engine_that_does_not_answer_is_a_docker_error_without_the_request(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path / 'no-engine.sock'}", version="1.41", timeout=5)
    with pytest.raises(DockerError) as error:
        invoke_local(client, "repo/image:tag", b"{}", function_name="f", env={}, timeout_seconds=3, memory_mb=128,
                     region="us-east-1", log=lambda line: None)
    message = str(error.value)
    assert message.startswith("inspecting image repo/image:tag failed: the Docker engine did not answer")
    assert message.endswith("start Docker or set DOCKER_HOST")
    assert "://" not in message and "/images/" not in message


# -- what a hostile function may send ---------------------------------------------------------

def test_a_negative_chunk_size_is_refused_at_once_not_read_to_the_end(api: RuntimeApi) -> None:
    """`-1` as a chunk size must not become read(-1): that reads until the function closes the
    connection, holding whatever it sends in memory."""
    request(api, "GET", NEXT)
    host, port = api.address.split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(f"POST {outcome_path(api, 'response')} HTTP/1.1\r\nHost: x\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n-1\r\n".encode() + b"x" * 65536)
        started = time.monotonic()
        answer = sock.recv(4096)  # the connection stays open: only the server's answer ends this
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert time.monotonic() - started < WAIT / 2
    assert api.reported is None


def test_connections_past_the_limit_are_closed_so_a_function_cannot_exhaust_threads(api: RuntimeApi) -> None:
    """Every later `next` waits (a thread each) until the API stops, even when its connection is
    gone: a function opening connections in a loop must not make deployer start a thread for each."""
    request(api, "GET", NEXT)
    request(api, "POST", outcome_path(api, "response"), b"{}")
    host, port = api.address.split(":")
    before = threading.active_count()
    for _ in range(200):
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # the server takes the connections in on its own thread
        time.sleep(0.05)
    assert threading.active_count() - before <= 40


def test_an_event_file_that_links_out_of_its_repository_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull request may replace the event file CI names with a link to a JSON file of the machine
    (~/.docker/config.json holds registry credentials): the function would get it as its event."""
    secret = tmp_path / "home" / ".docker" / "config.json"
    secret.parent.mkdir(parents=True)
    secret.write_text('{"auths": {"registry.example": {"auth": "dXNlcjpodW50ZXIy"}}}')
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "events").mkdir()
    (repo / "events" / "greet.json").symlink_to(secret)
    (repo / "events" / "inside.json").symlink_to("../event.json")
    (repo / "event.json").write_text('{"name": "Ada"}')
    monkeypatch.chdir(repo / "events")  # paths in messages: absolute, as neither is below it

    with pytest.raises(DeployerError) as refused:
        read_event(str(repo / "events" / "greet.json"), io.BytesIO())
    assert str(refused.value) == (f"cannot read event file {repo / 'events' / 'greet.json'}: it is a symlink to {secret}, "
                                  f"outside {repo}; give the event file itself")
    assert read_event(str(repo / "events" / "inside.json"), io.BytesIO()) == b'{"name": "Ada"}'
    assert read_event(str(repo / "event.json"), io.BytesIO()) == b'{"name": "Ada"}'
