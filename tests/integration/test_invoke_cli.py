"""`deployer invoke --local` end to end through the real CLI (a subprocess): the built-in Go build
compiles examples/functions/greet against the local cloud's module proxy in the builder stand-in,
onto the amd64 runtime stand-in, and the image runs on the engine against deployer's Runtime API.

The module shares one copy of examples/ with its own deploy.yaml. Function names are unique per
run, so that the images (deployer/<name>:<content tag>) are this module's: the first test to
invoke a function builds it, the others find it in the engine; the module removes them at the
end. Every test checks that no container of its functions (labels dev.deployer.invoke=1 and
dev.deployer.function=<name>) is left behind.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import docker
import pytest
from ruamel.yaml import YAML

from deployer.local_invoke import FUNCTION_LABEL, LABEL
from tests.conftest import unique_name
from tests.integration.conftest import REPO, Monorepo, remove_references
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.integration

# A run that should end at once may take this long on a loaded machine (a container to start).
QUICK_SECONDS = 30.0
# A function that takes the event and never answers: the Runtime API spoken with the standard library.
HANG_MAIN = """\
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	resp, err := http.Get("http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/next")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hang: next:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Fprintln(os.Stderr, "hang: got the event, sleeping")
	for {
		time.Sleep(time.Hour)
	}
}
"""
BROKEN_MAIN = 'package main\n\nfunc main() { undefinedOnPurpose() }\n'


@dataclass(frozen=True)
class Names:
    greet: str
    twice: str  # greet again, for the test that sees its build
    hang: str
    arm64: str  # greet built for linux/arm64
    broken: str  # does not compile

    def all(self) -> list[str]:
        return [self.greet, self.twice, self.hang, self.arm64, self.broken]


@dataclass
class Repo:
    monorepo: Monorepo
    names: Names
    engine: docker.DockerClient

    @property
    def root(self) -> Path:
        return self.monorepo.root

    def deployer(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "deployer", *args], cwd=self.root, capture_output=True, text=True,
                                input=stdin, env={**os.environ, "NO_COLOR": "1"}, timeout=900)
        assert "Traceback" not in result.stdout + result.stderr, output(result)
        return result

    def containers(self, function: str) -> list[Any]:
        return list(self.engine.containers.list(all=True, filters={"label": [f"{LABEL}=1", f"{FUNCTION_LABEL}={function}"]}))

    def built(self, function: str) -> None:
        """The function's image in the engine, so that what a test times is the run alone."""
        result = self.deployer("build", function)
        assert result.returncode == 0, output(result)


def output(result: Any) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def write_function(root: Path, name: str, main_go: str) -> str:
    source = root / "functions" / name
    source.mkdir(parents=True)
    (source / "go.mod").write_text(f"module example.com/functions/{name}\n\ngo 1.22\n")
    (source / "main.go").write_text(main_go)
    return f"functions/{name}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, local_cloud: LocalCloud) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("invoke-cli") / "repo"
    shutil.copytree(REPO / "examples", root)
    (root / ".git").mkdir()  # marks the repository root, as a checkout would
    env = dict(local_cloud.env)
    names = Names(unique_name("greet"), unique_name("greet-twice"), unique_name("hang"), unique_name("greet-arm64"),
                  unique_name("broken"))
    sources = {names.greet: "functions/greet", names.twice: "functions/greet", names.arm64: "functions/greet",
               names.hang: write_function(root, "hang", HANG_MAIN), names.broken: write_function(root, "broken", BROKEN_MAIN)}
    functions = []
    for name in names.all():
        platform = "linux/arm64" if name == names.arm64 else "linux/amd64"
        runtime = env["DEPLOYER_STANDIN_RUNTIME_ARM64" if platform == "linux/arm64" else "DEPLOYER_STANDIN_RUNTIME_AMD64"]
        functions.append({"name": name, "repository": name, "platform": platform,
                          "build": {"source": sources[name], "runtime_image": runtime}})
    spec = {"version": 1,
            "defaults": {"region": "us-east-1",
                         "build": {"builder_image": env["DEPLOYER_STANDIN_BUILDER"],
                                   "go_env": {"GOPROXY": env["DEPLOYER_GOPROXY"]}}},
            "functions": functions}
    with (root / "deploy.yaml").open("w") as out:
        YAML().dump(spec, out)
    engine = local_cloud.docker()
    try:
        yield Repo(Monorepo(root, env), names, engine)
    finally:
        for name in names.all():
            remove_references(engine, f"deployer/{name.lower()}")
        engine.close()


@pytest.fixture
def event_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ev.json"
    path.write_text('{"name": "ada lovelace"}\n')
    yield path


def test_invoke_prints_the_response_on_stdout_and_the_log_on_stderr(repo: Repo, event_file: Path) -> None:
    name = repo.names.greet
    result = repo.deployer("invoke", name, "--local", "--event", str(event_file))
    assert result.returncode == 0, output(result)
    assert result.stdout == '{"greeting":"Hello, Ada Lovelace!"}', output(result)  # the response as it is
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(log["component"], log["msg"]) for log in logs] == [("greet", "greeted")], output(result)
    assert logs[0]["requestId"]
    assert repo.containers(name) == []


def test_the_event_comes_from_standard_input(repo: Repo) -> None:
    name = repo.names.greet
    result = repo.deployer("invoke", name, "--local", "--event", "-", stdin='{"name": "grace hopper"}')
    assert result.returncode == 0, output(result)
    assert json.loads(result.stdout) == {"greeting": "Hello, Grace Hopper!"}
    assert repo.containers(name) == []


def test_on_a_terminal_the_response_is_a_line_of_its_own(repo: Repo, event_file: Path) -> None:
    name = repo.names.greet
    repo.built(name)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "deployer", "invoke", name, "--local", "--event", str(event_file)],
                              cwd=repo.root, stdout=terminal, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"}, timeout=300)
        os.close(terminal)
        terminal = -1
        shown = b""
        while select.select([controller], [], [], 5)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the writer is gone
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0, proc.stderr
    assert shown.decode() == '{"greeting":"Hello, Ada Lovelace!"}\r\n'
    assert repo.containers(name) == []


def test_a_function_error_exits_1_with_its_type_and_message(repo: Repo, tmp_path: Path) -> None:
    name = repo.names.greet
    (tmp_path / "fail.json").write_text('{"name": "bob", "fail": true}')
    result = repo.deployer("invoke", name, "--local", "--event", str(tmp_path / "fail.json"))
    assert result.returncode == 1, output(result)
    assert result.stdout == ""
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, output(result)
    assert error[0].startswith('error: function error: GreetingRefused: refusing to greet "bob": the event asked to fail '
                               "(request "), output(result)
    assert repo.containers(name) == []


def test_a_function_that_hangs_is_stopped_at_its_timeout(repo: Repo) -> None:
    name = repo.names.hang
    repo.built(name)
    started = time.monotonic()
    result = repo.deployer("invoke", name, "--local", "--timeout", "2")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, output(result)
    assert "error: timed out: Sandbox.Timedout: Task timed out after 2.00 seconds (request " in result.stderr, output(result)
    assert "hang: got the event, sleeping" in result.stderr
    assert elapsed < 2 + QUICK_SECONDS, f"{elapsed:.1f}s"
    assert repo.containers(name) == []


def test_ctrl_c_exits_130_and_removes_the_container(repo: Repo) -> None:
    name = repo.names.hang
    repo.built(name)
    proc = subprocess.Popen([sys.executable, "-m", "deployer", "invoke", name, "--local", "--timeout", "600"],
                            cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    assert proc.stderr is not None
    lines: list[str] = []
    hanging = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "hang: got the event" in line:
                hanging.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert hanging.wait(120), "".join(lines)
        assert len(repo.containers(name)) == 1
        proc.send_signal(signal.SIGINT)
        proc.wait(QUICK_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(QUICK_SECONDS)
    stderr = "".join(lines)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.rstrip().endswith("interrupted")
    assert repo.containers(name) == []


def test_an_arm64_function_on_an_amd64_engine_says_it_needs_emulation(repo: Repo, event_file: Path) -> None:
    name = repo.names.arm64
    result = repo.deployer("invoke", name, "--local", "--event", str(event_file))
    assert "the Docker engine runs linux/amd64, the function is built for linux/arm64" in result.stderr, output(result)
    if result.returncode == 0:  # an engine with QEMU binfmt runs it: then it answers as the amd64 build does
        assert result.stdout == '{"greeting":"Hello, Ada Lovelace!"}', output(result)
    else:
        assert result.returncode == 1, output(result)
        error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(error) == 1 and error[0].startswith("error: exited: Runtime.ExitError: "), output(result)
        assert ("(the image is linux/arm64 and the Docker engine runs linux/amd64: "
                "it runs the image only with emulation, QEMU binfmt)") in error[0]
    assert repo.containers(name) == []


def test_invoking_twice_builds_once(repo: Repo, event_file: Path) -> None:
    name = repo.names.twice
    first = repo.deployer("invoke", name, "--local", "--event", str(event_file))
    second = repo.deployer("invoke", name, "--local", "--event", str(event_file))
    assert first.returncode == 0 and second.returncode == 0, output(first) + output(second)
    assert "build image for linux/amd64" in first.stderr, output(first)
    assert "build image for linux/amd64" not in second.stderr, output(second)
    assert "is in the engine already: nothing to build" in second.stderr, output(second)
    assert first.stdout == second.stdout == '{"greeting":"Hello, Ada Lovelace!"}'
    assert repo.containers(name) == []


def test_a_build_failure_exits_1_and_says_so(repo: Repo) -> None:
    name = repo.names.broken
    result = repo.deployer("invoke", name, "--local")
    assert result.returncode == 1, output(result)
    assert f"error: cannot run {name}: its build failed: " in result.stderr, output(result)
    assert "undefinedOnPurpose" in result.stderr, output(result)
    assert result.stdout == ""
    assert repo.containers(name) == []


def test_an_unknown_function_is_refused_with_the_known_names(repo: Repo) -> None:
    result = repo.deployer("invoke", "nope", "--local")
    assert result.returncode == 1, output(result)
    known = ", ".join(sorted(repo.names.all()))
    assert result.stderr == f"error: no function named 'nope' in 1 deploy.yaml file(s); known: {known}\n", output(result)
    assert repo.containers("nope") == []


def test_an_event_that_is_not_json_is_refused_at_its_position_before_any_build(repo: Repo, tmp_path: Path) -> None:
    name = repo.names.broken  # would fail to build: the event is refused first
    (tmp_path / "ev.json").write_text('{\n  "name": "x",\n}\n')
    result = repo.deployer("invoke", name, "--local", "--event", str(tmp_path / "ev.json"))
    assert result.returncode == 1, output(result)
    assert result.stderr.startswith(f"error: {tmp_path / 'ev.json'}:3:1: the event is not JSON"), output(result)
    assert "build" not in result.stderr
    assert repo.containers(name) == []
