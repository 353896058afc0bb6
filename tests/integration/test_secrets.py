"""No secret in any output: canaries planted in build args (a GOPROXY URL with credentials, an
NPM_TOKEN) and the ECR registry password never reach stdout, stderr or a saved plan, whatever fails:
a RUN step, a Dockerfile the engine cannot parse (its 400 answer quotes the request URL, which holds
every build arg), a base image reference the engine refuses, an unreachable registry, and a registry
that refuses the credentials and quotes them back. With and without --debug and --verbose.

The ECR password is the one moto's GetAuthorizationToken hands out (LocalCloud.credentials); the
refusing registry is a small HTTP server of this test that answers 401 to everything and, like a
careless proxy, puts the Authorization header it received into its error message.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from ruamel.yaml import YAML

from tests.conftest import ImageFunction
from tests.integration.conftest import Monorepo
from tests.localcloud.cloud import LOOPBACK, LocalCloud, free_port

pytestmark = pytest.mark.integration

CANARY = "CANARY-5ec7e7-value"
GOPROXY = f"https://ci-bot:{CANARY}-proxy@goproxy.corp.example/mod"
NPM_TOKEN = f"npm_{CANARY}-token"
SOURCE = "../functions/finalize-with-error"  # from the spec directory below the root

RUN_FAILS = """\
ARG BUILDPLATFORM
ARG BUILDER_IMAGE
FROM --platform=$BUILDPLATFORM $BUILDER_IMAGE
ARG GOPROXY
ARG NPM_TOKEN
# Fails without printing either value.
RUN test -z "$NPM_TOKEN" || exit 7
"""
DOES_NOT_PARSE = "FROM scratch\nFORM nonsense\n"


def secrets_of(cloud: LocalCloud) -> dict[str, str]:
    """Every value no output may hold, by what it is."""
    password = cloud.credentials.password
    token = base64.b64encode(f"{cloud.credentials.username}:{password}".encode()).decode()
    return {"canary": CANARY, "ecr password": password, "ecr token": token}


def assert_no_secret(cloud: LocalCloud, *texts: str) -> None:
    for what, secret in secrets_of(cloud).items():
        for text in texts:
            assert secret not in text, f"{what} printed:\n{text}"


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def write_spec(monorepo: Monorepo, functions: list[dict[str, Any]]) -> Path:
    """deploy.yaml in root/spec/ (custom Dockerfiles beside it): a Dockerfile build's build args
    carry the canaries, the built-in Go build's GOPROXY the one with credentials."""
    spec_dir = monorepo.root / "spec"
    spec_dir.mkdir(exist_ok=True)
    (spec_dir / "run-fails.Dockerfile").write_text(RUN_FAILS)
    (spec_dir / "does-not-parse.Dockerfile").write_text(DOES_NOT_PARSE)
    entries = []
    for fn in functions:
        build: dict[str, Any] = {"source": SOURCE, "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"],
                                 "builder_image": fn.get("builder_image", monorepo.env["DEPLOYER_STANDIN_BUILDER"])}
        if "dockerfile" in fn:
            build["dockerfile"] = fn["dockerfile"]
            build["build_args"] = {"GOPROXY": GOPROXY, "NPM_TOKEN": NPM_TOKEN}
        else:  # the built-in Go build: the canary in its Go environment (the function needs no module download)
            build["go_env"] = {"GOPROXY": GOPROXY}
        entries.append({"name": fn["function"].name, "repository": fn["function"].repository, "platform": "linux/arm64",
                        "build": build})
    path = spec_dir / "deploy.yaml"
    with path.open("w") as out:
        YAML().dump({"version": 1, "defaults": {"region": "us-east-1"}, "functions": entries}, out)
    return path


class RefusingRegistry:
    """Answers 401 to every request, quoting the Authorization header it got in the error."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                got = self.headers.get("Authorization", "")
                if got:
                    registry.authorizations.append(got)
                password = ""
                if got.startswith("Basic "):
                    password = base64.b64decode(got[6:]).decode(errors="replace").partition(":")[2]
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": f"bad credentials {got!r} ({password})",
                                               "detail": got}]}).encode()
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="refusing"')
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _refuse

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"{LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="refusing-registry", daemon=True)

    def __enter__(self) -> RefusingRegistry:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def refusing_registry() -> Iterator[RefusingRegistry]:
    with RefusingRegistry() as registry:
        yield registry


Setup = Callable[..., ImageFunction]
VARIANTS = [pytest.param((), id="plain"), pytest.param(("--debug",), id="debug"), pytest.param(("--debug", "--verbose"), id="debug-verbose")]


def apply(monorepo: Monorepo, flags: tuple[str, ...], *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    debug = [f for f in flags if f == "--debug"]
    rest = [f for f in flags if f != "--debug"]
    return monorepo.deployer(*debug, "apply", "--yes", *rest, *args, env=env)


@pytest.mark.parametrize("flags", VARIANTS)
def test_failed_builds_print_no_build_arg_value(monorepo: Monorepo, make_image_function: Setup, local_cloud: LocalCloud,
                                                flags: tuple[str, ...]) -> None:
    run_fails, unparsable, bad_base = (make_image_function("arm64") for _ in range(3))
    write_spec(monorepo, [
        {"function": run_fails, "dockerfile": "run-fails.Dockerfile"},
        {"function": unparsable, "dockerfile": "does-not-parse.Dockerfile"},
        # A reference the engine refuses: repository names are lowercase.
        {"function": bad_base, "builder_image": "Invalid/Builder:Image"},
    ])

    result = apply(monorepo, flags, "--parallelism", "3")

    assert result.returncode == 1, output(result)
    assert_no_secret(local_cloud, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, output(result)
    assert "0 changed, 0 unchanged, 3 failed" in result.stdout, output(result)
    assert "returned a non-zero code: 7" in result.stdout, output(result)  # the RUN step's own failure
    assert "unknown instruction" in result.stdout.lower(), output(result)  # the engine's explanation
    assert "invalid reference format" in result.stdout, output(result)
    assert "buildargs" not in result.stdout, output(result)  # no request URL


def test_a_saved_plan_holds_no_build_arg_value_and_its_failed_apply_prints_none(
        monorepo: Monorepo, make_image_function: Setup, local_cloud: LocalCloud) -> None:
    fn = make_image_function("arm64")
    write_spec(monorepo, [{"function": fn, "dockerfile": "does-not-parse.Dockerfile"}])

    planned = monorepo.deployer("plan", "--out", "plan.json")
    assert planned.returncode == 0, output(planned)
    saved = (monorepo.root / "plan.json").read_text()
    applied = monorepo.deployer("--debug", "apply", "plan.json")

    assert applied.returncode == 1, output(applied)
    assert "unknown instruction" in applied.stdout.lower(), output(applied)
    assert_no_secret(local_cloud, planned.stdout, planned.stderr, saved, applied.stdout, applied.stderr)


@pytest.mark.parametrize("flags", VARIANTS)
def test_a_registry_that_refuses_and_quotes_the_credentials_gets_them_masked(
        monorepo: Monorepo, make_image_function: Setup, local_cloud: LocalCloud, refusing_registry: RefusingRegistry,
        flags: tuple[str, ...]) -> None:
    fn = make_image_function("arm64")
    # The build must succeed to reach the push: the function downloads no module, so its GOPROXY
    # (credentials in it) is never asked.
    write_spec(monorepo, [{"function": fn}])

    result = apply(monorepo, flags, env={"DEPLOYER_REGISTRY_ENDPOINT": refusing_registry.endpoint})

    assert result.returncode == 1, output(result)
    # The password did reach the registry, and came back in its error message...
    sent = {base64.b64decode(a.removeprefix("Basic ")).decode() for a in refusing_registry.authorizations if a.startswith("Basic ")}
    assert f"{local_cloud.credentials.username}:{local_cloud.credentials.password}" in sent, refusing_registry.authorizations
    # ...which deployer shows without it.
    assert "bad credentials" in result.stdout, output(result)
    assert_no_secret(local_cloud, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, output(result)


@pytest.mark.parametrize("flags", VARIANTS)
def test_an_unreachable_registry_prints_no_secret(monorepo: Monorepo, make_image_function: Setup, local_cloud: LocalCloud,
                                                  flags: tuple[str, ...]) -> None:
    fn = make_image_function("arm64")
    write_spec(monorepo, [{"function": fn}])
    closed = f"{LOOPBACK}:{free_port()}"

    result = apply(monorepo, flags, env={"DEPLOYER_REGISTRY_ENDPOINT": closed})

    assert result.returncode == 1, output(result)
    assert f"push of {closed}/{fn.repository}" in result.stdout, output(result)
    assert_no_secret(local_cloud, result.stdout, result.stderr)
