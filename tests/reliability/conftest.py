"""Fixtures of the fault-injection suite: proxies the tests own in front of moto and the registry,
and a CLI runner that talks to the local cloud through them.

Every test gets fresh proxies (new ports): the Docker engine remembers which blobs it pushed to
which registry host, and a fresh host makes it upload layers again, so that a fault mid-push has
bytes to cut. Builds stay fast: the engine caches them across tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import ImageFunction
from tests.integration.conftest import Monorepo, monorepo  # noqa: F401 - the fixture, for this directory
from tests.integration.test_apply_cli import tree_hashes as tree_hashes  # one definition, re-exported here
from tests.localcloud.cloud import LocalCloud
from tests.reliability.proxy import FaultProxy

EXAMPLE_SOURCE = "functions/finalize-with-error"
# Bounds on one CLI run: a hang fails the test long before pytest's own timeout.
RUN_TIMEOUT_SECONDS = 300


@pytest.fixture
def aws_proxy(local_cloud: LocalCloud) -> Iterator[FaultProxy]:
    """In front of moto: the CLI's AWS_ENDPOINT_URL. The test's own boto3 clients go direct."""
    with FaultProxy("127.0.0.1", local_cloud.moto_port, "aws-proxy") as proxy:
        yield proxy


@pytest.fixture
def registry_proxy(local_cloud: LocalCloud) -> Iterator[FaultProxy]:
    """In front of the registry: the CLI's DEPLOYER_REGISTRY_ENDPOINT (the engine pushes here)."""
    with FaultProxy("127.0.0.1", local_cloud.registry_port, "registry-proxy") as proxy:
        yield proxy


@dataclass
class Run:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@dataclass
class Cli:
    """Runs the real CLI in the monorepo, through the proxies, with a TMPDIR of its own."""

    monorepo: Monorepo
    tmpdir: Path
    aws: FaultProxy
    registry: FaultProxy
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "TMPDIR": str(self.tmpdir),
                "AWS_ENDPOINT_URL": self.aws.url, "DEPLOYER_REGISTRY_ENDPOINT": self.registry.endpoint, **self.extra_env}

    def __call__(self, *args: str) -> Run:
        result = subprocess.run([sys.executable, "-m", "deployer", *args], cwd=self.monorepo.root, capture_output=True,
                                text=True, env=self.env, timeout=RUN_TIMEOUT_SECONDS)
        run = Run(result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in run.stdout + run.stderr, run.output
        return run

    def watching(self, *args: str, on_line: Callable[[str], None]) -> Run:
        """Run, calling `on_line` with each line of stdout as it comes (the test's events)."""
        process = subprocess.Popen([sys.executable, "-m", "deployer", *args], cwd=self.monorepo.root, env=self.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: stderr.append(process.stderr.read() if process.stderr else ""), daemon=True)
        reader.start()
        lines: list[str] = []
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                on_line(line)
            process.wait(RUN_TIMEOUT_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(RUN_TIMEOUT_SECONDS)
        run = Run(process.returncode, "".join(lines), "".join(stderr))
        assert "Traceback" not in run.stdout + run.stderr, run.output
        return run

    def leftover_contexts(self) -> list[Path]:
        return sorted(self.tmpdir.glob("deployer-ctx-*"))


@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path, aws_proxy: FaultProxy, registry_proxy: FaultProxy) -> Cli:  # noqa: F811
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    return Cli(monorepo, tmpdir, aws_proxy, registry_proxy)


@pytest.fixture
def one_function(monorepo: Monorepo, make_image_function: Callable[..., ImageFunction]) -> ImageFunction:  # noqa: F811
    """An arm64 function on a placeholder image, declared in the monorepo's deploy.yaml."""
    fn = make_image_function("arm64")
    monorepo.write_spec([{"name": fn.name, "repository": fn.repository, "source": EXAMPLE_SOURCE}])
    return fn


def local_tags(local_cloud: LocalCloud, cli: Cli, repository: str) -> list[str]:
    """Tags in the Docker engine that apply made to push to `repository` (through the proxy)."""
    client = local_cloud.docker()
    try:
        # One listing call: images.list() inspects each image after listing, and an image another
        # test process removes in between would fail it.
        return sorted(tag for image in client.api.images() for tag in image.get("RepoTags") or ()
                      if tag.startswith(f"{cli.registry.endpoint}/{repository}:"))
    finally:
        client.close()


def lambda_config(lambda_client: Any, name: str) -> dict[str, Any]:
    return dict(lambda_client.get_function(FunctionName=name)["Configuration"])
