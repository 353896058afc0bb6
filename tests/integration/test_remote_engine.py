"""The built-in Go build on the engine DOCKER_HOST names, not the machine's default one.

A second engine (tests/localcloud/second_engine.py) runs beside the first on its own socket,
with the stand-in images copied into it (docker save | docker load). The CLI runs with
DOCKER_HOST=unix://<its socket>: compile containers, the Go cache volume, the image and its
push must all happen there. The compile moves the context in and the binary out through the
engine's archive API: a bind mount of a path of this machine would be a path the engine reads on
its own side, which only works by accident on a local engine.

Each test appends a unique comment to its copy of the example's main.go, so its source digest
(the `dev.deployer.source-digest` label of the image it builds) is its own on either engine,
however many other tests share the first engine. Compile containers carry the label
`dev.deployer.go-build=<function>`; both engines' events are followed during each run, filtered
by that label: the second engine must report them (the check sees what it looks for), the first
none.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
import pytest

from deployer.go_build import CACHE_ARCHIVE, CACHE_VOLUME, LABEL, CacheDir
from tests.conftest import ImageFunction, unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import (
    EXAMPLE_SOURCE,
    Cli,
    append_line,
    ecr_digest,
    lambda_config,
    outcomes,
    output,
)
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.second_engine import SecondEngine
from tests.localcloud.standins import ensure_standins

pytestmark = pytest.mark.integration

SOURCE_DIGEST_LABEL = "dev.deployer.source-digest"


@pytest.fixture(scope="module")
def go_cache_seed(local_cloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --cache-dir holding the first engine's Go caches, when it has them: the second engine's
    first compile then restores them (through the archive API) instead of compiling the standard
    library cold for a minute and more. Empty (a cold compile) when the first engine has none."""
    assert local_cloud.standins is not None
    seed = tmp_path_factory.mktemp("go-cache-seed")
    first = local_cloud.docker()
    try:
        try:
            first.volumes.get(CACHE_VOLUME)
        except docker.errors.NotFound:
            return seed  # a helper container mounting it would create it on the first engine
        started = time.monotonic()
        CacheDir(seed).save(first.api, local_cloud.standins.builder, CACHE_VOLUME, lambda line: None)
        print(f"go cache seed: {(seed / CACHE_ARCHIVE).stat().st_size >> 20} MiB from the first engine in "
              f"{time.monotonic() - started:.1f}s", file=sys.stderr)
    finally:
        first.close()
    return seed


@pytest.fixture(scope="module")
def second_engine(local_cloud: LocalCloud) -> Iterator[SecondEngine]:
    """A second engine holding the stand-ins, started once for this module."""
    assert local_cloud.standins is not None and local_cloud.goproxy is not None
    standins = local_cloud.standins
    started = time.monotonic()
    with SecondEngine() as engine:
        up = time.monotonic()
        first = local_cloud.docker()
        try:
            engine.copy_images(first, [standins.builder, standins.runtime_arm64, standins.runtime_amd64])
        finally:
            first.close()
        copied = time.monotonic()
        # The recipe check the local cloud makes: the copies carry the inputs label, so nothing rebuilds.
        ensure_standins(engine.client(), goproxy_ca=local_cloud.goproxy.ca_file)
        print(f"second engine: up in {up - started:.1f}s ({engine.storage_driver}, bridge {engine.bridge} "
              f"{engine.subnet}), stand-ins copied in {copied - up:.1f}s, checked in {time.monotonic() - copied:.1f}s",
              file=sys.stderr)
        yield engine


@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path) -> Cli:
    return Cli(monorepo, tmp_path / "tmpdir")


def on_engine(engine: SecondEngine) -> dict[str, str]:
    # DEPLOYER_GO_CACHE_VOLUME empty: the default volume name, whatever the session's environment says.
    return {"DOCKER_HOST": engine.host, "DEPLOYER_GO_CACHE_VOLUME": ""}


def own_source(monorepo: Monorepo) -> None:
    """Make this test's source digest its own (the comment changes the digest, not the binary)."""
    append_line(monorepo.root / EXAMPLE_SOURCE / "main.go", f"// {unique_name('remote-engine')}")


class CompileEvents:
    """Events of containers labelled dev.deployer.go-build=<function> on an engine, followed live
    (a live stream is not bounded by the engine's buffer of past events, which others fill)."""

    def __init__(self, client: docker.DockerClient, function: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._stream = client.api.events(since=int(time.time()) - 1, decode=True,
                                         filters={"label": f"{LABEL}={function[:64]}"})
        self._thread = threading.Thread(target=self._read, daemon=True, name="compile-events")
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.events.append(event)
        except Exception:  # noqa: BLE001 - the stream is closed under the reader at the end
            pass

    def actions(self, settle: float = 0.3) -> list[str]:
        """The container actions seen, once events stopped arriving for `settle` seconds."""
        deadline = time.monotonic() + 10
        count = -1
        while count != len(self.events) and time.monotonic() < deadline:
            count = len(self.events)
            time.sleep(settle)
        self._stream.close()
        self._thread.join(timeout=5)
        return [str(e.get("Action") or e.get("status")) for e in self.events if e.get("Type") == "container"]


def images_labelled(client: docker.DockerClient, label: str) -> list[str]:
    return [str(image.id) for image in client.images.list(all=True, filters={"label": label})]


def planned(cli: Cli, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = cli("plan", "--format", "json", env=env)
    assert result.returncode == 0, output(result)
    return {fn["name"]: fn["desired"] for fn in json.loads(result.stdout)["functions"]}


def test_apply_compiles_builds_and_pushes_on_the_engine_docker_host_names(
        second_engine: SecondEngine, cli: Cli, monorepo: Monorepo, make_image_function: Any,
        ecr_client: Any, lambda_client: Any, local_cloud: LocalCloud, go_cache_seed: Path) -> None:
    fn: ImageFunction = make_image_function("arm64")
    own_source(monorepo)
    monorepo.write_spec([{"name": fn.name, "repository": fn.repository, "source": EXAMPLE_SOURCE}])
    env = on_engine(second_engine)
    desired = planned(cli, env)[fn.name]
    first, second = local_cloud.docker(), second_engine.client()
    try:
        fresh_volume = not second.volumes.list(filters={"name": CACHE_VOLUME})
        first_events, second_events = CompileEvents(first, fn.name), CompileEvents(second, fn.name)
        started = time.monotonic()
        # --cache-dir: a fresh volume on the second engine is filled from it, then saved back.
        result = cli("apply", "--yes", "--verbose", "--cache-dir", str(go_cache_seed), env=env)
        seconds = time.monotonic() - started
        first_actions, second_actions = first_events.actions(), second_events.actions()

        assert result.returncode == 0, second_engine.failure(output(result))
        assert outcomes(result) == {fn.name: "built"}
        seeded = "restored the Go caches from" in result.stdout + result.stderr
        if fresh_volume:  # restored once, into the volume the run made: from the seed if it has one
            assert seeded or "no go-cache.tar yet" in result.stdout + result.stderr, output(result)
        assert "saved the Go caches to" in result.stdout + result.stderr, output(result)
        digest = ecr_digest(ecr_client, fn.repository, desired["content_tag"])
        assert lambda_config(lambda_client, fn.name)["CodeSha256"] == digest.removeprefix("sha256:")

        # Compiled on the second engine, with its own cache volume; the first saw no compile.
        assert "create" in second_actions and "destroy" in second_actions, second_actions
        assert first_actions == [], f"the first engine ran a compile of {fn.name}: {first_actions}"
        volume = second.volumes.get(CACHE_VOLUME)
        assert (volume.attrs.get("Labels") or {}).get(LABEL) == "cache"
        # The image was built there (its push tag is gone, its layers stay) and only there.
        source = f"{SOURCE_DIGEST_LABEL}={desired['source_digest']}"
        assert images_labelled(second, source), f"no image labelled {source} on the second engine"
        assert images_labelled(first, source) == [], f"the first engine has an image labelled {source}"
        push_tag = f"{local_cloud.registry_endpoint}/{fn.repository}:{desired['content_tag']}"
        for client in (first, second):
            with pytest.raises(docker.errors.ImageNotFound):
                client.images.get(push_tag)
        print(f"apply on the second engine ({'Go caches restored' if seeded else 'no restore'}): {seconds:.1f}s",
              file=sys.stderr)
    finally:
        first.close()


def test_build_puts_the_image_on_the_engine_docker_host_names(
        second_engine: SecondEngine, cli: Cli, monorepo: Monorepo, local_cloud: LocalCloud, go_cache_seed: Path) -> None:
    name = unique_name("remote-build")
    own_source(monorepo)
    monorepo.write_spec([{"name": name, "repository": unique_name("deployer-test"), "source": EXAMPLE_SOURCE}])
    first, second = local_cloud.docker(), second_engine.client()
    try:
        first_events, second_events = CompileEvents(first, name), CompileEvents(second, name)
        started = time.monotonic()
        # --cache-dir: warm even when this test runs alone on its engine (another pytest-xdist worker).
        result = cli("build", "--cache-dir", str(go_cache_seed), env=on_engine(second_engine))
        seconds = time.monotonic() - started
        first_actions, second_actions = first_events.actions(), second_events.actions()

        assert result.returncode == 0, second_engine.failure(output(result))
        tag = result.stdout.strip().splitlines()[-1]
        assert tag.startswith(f"deployer/{name.lower()}:"), output(result)
        image = second.images.get(tag)
        assert image.labels.get("dev.deployer.function") == name
        assert image.attrs["Architecture"] == "arm64"
        with pytest.raises(docker.errors.ImageNotFound):
            first.images.get(tag)
        assert "create" in second_actions, second_actions
        assert first_actions == [], f"the first engine ran a compile of {name}: {first_actions}"
        print(f"build on the second engine: {seconds:.1f}s", file=sys.stderr)
    finally:
        first.close()
