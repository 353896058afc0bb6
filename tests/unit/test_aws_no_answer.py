"""AWS calls that get no answer (deployer/aws.py): bounded in time, said with the endpoint and what
to do, and an UpdateFunctionCode whose answer was lost is told apart from someone else's change.
In-memory fakes stand for the boto3 clients; botocore's own exception types are raised."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import Any, Callable, Iterator

import boto3
import botocore.exceptions
import pytest

import deployer.aws
from deployer.aws import (
    ATTEMPTS,
    CALL_BOUND_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    NO_ANSWER,
    READ_TIMEOUT_SECONDS,
    RETRY_CONFIG,
    Clients,
    call,
    invoke_wait,
)
from deployer.lambda_gateway import LambdaGateway
from deployer.errors import AwsError

URL = "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/fn?Qualifier=x"
DIGEST = "ab" * 32
IMAGE = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo@sha256:{DIGEST}"


def fail_with(exc: Exception) -> Callable[[], None]:
    def fn() -> None:
        raise exc
    return fn


@pytest.mark.parametrize(("error", "said"), [
    (botocore.exceptions.ReadTimeoutError(endpoint_url=URL, error="x"),
     f"https://lambda.eu-west-1.amazonaws.com accepted the connection but did not answer within {READ_TIMEOUT_SECONDS}s"),
    (botocore.exceptions.ConnectTimeoutError(endpoint_url=URL, error="x"),
     f"connecting to https://lambda.eu-west-1.amazonaws.com timed out after {CONNECT_TIMEOUT_SECONDS}s"),
    (botocore.exceptions.EndpointConnectionError(endpoint_url=URL, error="x"),
     "cannot connect to https://lambda.eu-west-1.amazonaws.com"),
    (botocore.exceptions.ConnectionClosedError(endpoint_url=URL),
     "https://lambda.eu-west-1.amazonaws.com closed the connection before answering"),
    (botocore.exceptions.HTTPClientError(error="boom"), "the connection to the AWS endpoint failed (HTTPClientError)"),
])
def test_no_answer_names_the_endpoint_and_what_to_do(error: Exception, said: str) -> None:
    with pytest.raises(AwsError) as caught:
        call(fail_with(error), "lambda:GetFunction", "function fn (eu-west-1)")

    message = str(caught.value)
    assert message.startswith("lambda:GetFunction on function fn (eu-west-1): no answer: ")
    assert said in message
    assert "check the network" in message and "AWS_ENDPOINT_URL" in message
    assert "/2015-03-31" not in message and "Qualifier" not in message  # the endpoint, not the request
    assert caught.value.code == NO_ANSWER


def test_every_call_is_bounded_by_its_attempts_and_timeouts() -> None:
    assert RETRY_CONFIG.retries == {"mode": "standard", "total_max_attempts": ATTEMPTS}
    assert (RETRY_CONFIG.connect_timeout, RETRY_CONFIG.read_timeout) == (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
    backoff = sum(2 ** n for n in range(ATTEMPTS - 1))  # standard mode: at most 1 s, 2 s, ...
    assert ATTEMPTS * max(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS) + backoff < CALL_BOUND_SECONDS <= 30


# -- UpdateFunctionCode whose answer may be lost ------------------------------------------

class FakeLambda:
    """update_function_code fails as told; get_function reports `running` (or fails too)."""

    def __init__(self, update_error: Exception, running: str | None) -> None:
        self.update_error = update_error
        self.running = running
        self.get_calls = 0

    def update_function_code(self, **_: Any) -> dict[str, Any]:
        raise self.update_error

    def get_function(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.get_calls += 1
        if self.running is None:
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=URL)
        return {"Configuration": {"PackageType": "Image", "CodeSha256": self.running, "Architectures": ["arm64"],
                                  "RevisionId": "rev-after"}}


class FakeClients(Clients):
    def __init__(self, client: Any) -> None:
        super().__init__()
        self.fake = client

    def client(self, service: str, region: str) -> Any:
        return self.fake


def precondition_failed(retry_attempts: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": "PreconditionFailedException", "Message": "The Revision Id provided does not match"},
         "ResponseMetadata": {"RetryAttempts": retry_attempts, "HTTPStatusCode": 412}}, "UpdateFunctionCode")


def update(fake: FakeLambda) -> str | None:
    return LambdaGateway(FakeClients(fake), "eu-west-1").update_function_code("fn", IMAGE, "arm64", "rev-planned")


def test_a_refusal_after_a_retry_is_our_own_update_when_lambda_runs_our_image() -> None:
    fake = FakeLambda(precondition_failed(retry_attempts=1), running=DIGEST)

    assert update(fake) == "rev-after"
    assert fake.get_calls == 1


def test_a_refusal_at_the_first_attempt_is_someone_elses_change() -> None:
    fake = FakeLambda(precondition_failed(retry_attempts=0), running=DIGEST)

    with pytest.raises(AwsError) as caught:
        update(fake)

    assert caught.value.code == "PreconditionFailedException"
    assert "changed since the plan" in str(caught.value)
    assert fake.get_calls == 0


def test_a_refusal_after_a_retry_with_another_image_running_stays_a_refusal() -> None:
    fake = FakeLambda(precondition_failed(retry_attempts=2), running="cd" * 32)

    with pytest.raises(AwsError) as caught:
        update(fake)

    assert caught.value.code == "PreconditionFailedException"


def test_no_answer_and_lambda_unreachable_says_the_update_may_or_may_not_have_landed() -> None:
    fake = FakeLambda(botocore.exceptions.ConnectionClosedError(endpoint_url=URL), running=None)

    with pytest.raises(AwsError) as caught:
        update(fake)

    assert "may or may not run the new image; run 'deployer plan' to see" in str(caught.value)


def test_no_answer_and_lambda_runs_the_old_image_says_the_update_did_not_land() -> None:
    fake = FakeLambda(botocore.exceptions.ReadTimeoutError(endpoint_url=URL, error="x"), running="cd" * 32)

    with pytest.raises(AwsError) as caught:
        update(fake)

    assert "Lambda did not apply the update (the function still runs sha256:cdcdcdcdcdcd)" in str(caught.value)


def test_a_failed_account_lookup_is_asked_once_and_said_to_every_caller() -> None:
    class Sts:
        calls = 0

        def get_caller_identity(self) -> dict[str, Any]:
            Sts.calls += 1
            raise botocore.exceptions.ReadTimeoutError(endpoint_url="https://sts.amazonaws.com/", error="x")

    clients = FakeClients(Sts())
    for _ in range(3):
        with pytest.raises(AwsError, match="did not answer"):
            clients.account("eu-west-1")

    assert Sts.calls == 1


# -- Invoke: sent once, waited for as long as the function may run ---------------------------

class SlowLambda(http.server.BaseHTTPRequestHandler):
    """A Lambda endpoint on loopback that takes `delay` seconds to answer each Invoke."""

    delay = 3.0
    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        body = b'{"status": "ok"}'
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up waiting

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(deployer.aws, "INVOKE_WAIT_STEP", 1)  # seconds, not whole minutes
    SlowLambda.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowLambda)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{server.server_address[1]}")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def gateway() -> LambdaGateway:
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="eu-west-1")
    return LambdaGateway(Clients(session), "eu-west-1")


def test_an_invoke_waits_past_the_read_timeout_of_other_calls_for_a_slow_function(slow_lambda: str,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployer.aws, "INVOKE_MARGIN_SECONDS", 2)
    SlowLambda.delay = 3.0  # over a read timeout of 1 s: the function's timeout, below the 3 s with the margin
    assert gateway().invoke("fn", "1", b"{}", function_timeout=2).payload == b'{"status": "ok"}'
    assert len(SlowLambda.requests) == 1


def test_an_invoke_without_an_answer_is_not_sent_again_and_says_so(slow_lambda: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployer.aws, "INVOKE_MARGIN_SECONDS", 0)
    SlowLambda.delay = 3.0
    with pytest.raises(AwsError) as caught:
        gateway().invoke("fn", "1", b"{}", function_timeout=1)
    assert len(SlowLambda.requests) == 1, "a second send would run the function a second time"
    assert caught.value.code == NO_ANSWER
    assert ("lambda:Invoke on function fn:1: no answer within 1s (the function's timeout of 1s and a margin); it was invoked "
            "once and not again") in str(caught.value)


def test_an_invoke_that_could_not_connect_is_tried_again_as_nothing_was_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # a port nobody listens on: the connection is refused, nothing sent
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{port}")
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    with pytest.raises(AwsError) as caught:
        gateway().invoke("fn", "1", b"{}", function_timeout=3)
    assert slept == [1, 2], "three connections tried"
    assert f"cannot connect to http://127.0.0.1:{port} ({ATTEMPTS} attempts)" in str(caught.value)


def test_other_calls_keep_the_sdk_s_retries() -> None:
    clients = Clients(boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="eu-west-1"))
    invoking = clients.invoke_client("eu-west-1", 30).meta.config
    assert invoking.retries["total_max_attempts"] == 1 and invoking.read_timeout == 60 + deployer.aws.INVOKE_MARGIN_SECONDS
    assert clients.client("lambda", "eu-west-1").meta.config.retries["total_max_attempts"] == ATTEMPTS
    assert clients.invoke_client("eu-west-1", 30) is clients.invoke_client("eu-west-1", 45), "one client per minute of timeout"


@pytest.mark.parametrize(("timeout", "wait"), [(0, 60), (3, 60), (60, 60), (61, 120), (900, 900), (2 ** 20, 900)])
def test_an_invoke_waits_for_lambda_s_longest_run_at_most(timeout: int, wait: int) -> None:
    assert invoke_wait(timeout) == wait + deployer.aws.INVOKE_MARGIN_SECONDS
