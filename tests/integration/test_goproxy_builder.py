"""The stand-in builder image compiles against the local cloud's module proxy as the product's
built-in Go build runs it (deployer/go_build.py): a container of the builder image with host
networking, the context (and a netrc) uploaded through the engine's archive API, no bind mount,
and no environment but the Go settings. The proxy speaks HTTPS with the machine's CA
(goproxy.TLS_DIR), which the image's CA bundle holds: nothing else tells the container to trust it.

Every container (and the one GOCACHE volume, shared by the compiles here only to save a cold
compile of net/http each time) carries LABEL and is removed at the end."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import docker.types
import pytest
import requests

from tests.localcloud.cloud import GOPRIVATE, LocalCloud
from tests.localcloud.goproxy import go_sum_lines
from tests.localcloud.standins import CA_BUNDLE, builder_ca_bundle

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LABEL = "dev.deployer.test.goproxy-builder"
PRIVATE = "private.example.test/vault"
NETRC_PATH = "/deployer-secrets/netrc"
GOCACHE = "/gocache"
BINARY = "/out/bootstrap"
COMPILE_TIMEOUT_SECONDS = 600
ELF_MACHINE_X86_64 = 0x3E


@dataclass
class Compile:
    code: int
    logs: str
    binary: bytes | None
    seconds: float


@dataclass
class Builder:
    """Runs `go build` in containers of the builder stand-in, one container per compile."""

    api: Any
    image: str
    run: str  # this module's label value: every container and the volume carry it
    volume: str
    timings: dict[str, float] = field(default_factory=dict)

    def create(self, command: list[str], env: dict[str, str], network: bool = True) -> str:
        host_config = self.api.create_host_config(
            network_mode="host" if network else "none",
            mounts=[docker.types.Mount(target=GOCACHE, source=self.volume, type="volume")])
        created = self.api.create_container(self.image, command=command, working_dir="/src", environment=env,
                                            labels={LABEL: self.run}, host_config=host_config)
        return str(created["Id"])

    def compile(self, name: str, files: dict[str, bytes], env: dict[str, str],
                netrc: bytes | None = None) -> Compile:
        started = time.monotonic()
        container = self.create(["go", "build", "-trimpath", "-o", BINARY, "."], {**env, "GOCACHE": GOCACHE})
        try:
            self.api.put_archive(container, "/", context_tar(files, netrc))
            self.api.start(container)
            try:
                code = int(self.api.wait(container, timeout=COMPILE_TIMEOUT_SECONDS)["StatusCode"])
            except requests.exceptions.ReadTimeout as exc:
                pytest.fail(f"go build ({name}) ran longer than {COMPILE_TIMEOUT_SECONDS}s: {exc}")
            logs = self.api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")
            binary = read_file(self.api, container, BINARY) if code == 0 else None
        finally:
            self.api.remove_container(container, force=True)
        seconds = time.monotonic() - started
        self.timings[name] = seconds
        return Compile(code, logs, binary, seconds)

    def image_file(self, path: str) -> bytes:
        container = self.create(["true"], {}, network=False)  # never started
        try:
            return read_file(self.api, container, path)
        finally:
            self.api.remove_container(container, force=True)


def context_tar(files: dict[str, bytes], netrc: bytes | None) -> bytes:
    """src/<files>, an empty out/, and the netrc (mode 0400) as go_build uploads them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = {"src", "out"} | {f"src/{p}" for name in files for p in _parents(name)}
        entries: list[tuple[str, bytes | None, int]] = [(d, None, 0o755) for d in directories]
        entries += [(f"src/{name}", data, 0o644) for name, data in files.items()]
        if netrc is not None:
            entries += [(NETRC_PATH.lstrip("/").rpartition("/")[0], None, 0o700), (NETRC_PATH.lstrip("/"), netrc, 0o400)]
        for name, data, mode in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def read_file(api: Any, container: str, path: str) -> bytes:
    chunks, _ = api.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.next()
        assert member is not None and member.isreg(), path
        f = tar.extractfile(member)
        assert f is not None
        return f.read()


def greet_context() -> dict[str, bytes]:
    """examples/functions/greet as deployer lays out its context: the function at the root, the
    shared logger under shared/logger, and go.mod's replace pointed there."""
    files = {p.name: p.read_bytes() for p in sorted((EXAMPLES / "functions/greet").iterdir()) if p.is_file()}
    mod = files["go.mod"].decode()
    assert "=> ../../shared/logger" in mod
    files["go.mod"] = mod.replace("=> ../../shared/logger", "=> ./shared/logger").encode()
    for p in sorted((EXAMPLES / "shared/logger").iterdir()):
        files[f"shared/logger/{p.name}"] = p.read_bytes()
    return files


def vault_context() -> dict[str, bytes]:
    return {
        "go.mod": f"module example.com/usesvault\n\ngo 1.22\n\nrequire {PRIVATE} v0.3.0\n".encode(),
        "go.sum": ("\n".join(go_sum_lines(PRIVATE, "v0.3.0")) + "\n").encode(),
        "main.go": (f'package main\n\nimport "{PRIVATE}"\n\n'
                    'func main() { println(vault.Mask("0123456789")) }\n').encode(),
    }


def go_env(cloud: LocalCloud, **extra: str) -> dict[str, str]:
    """Only Go settings, as deploy.yaml's go_env gives them plus the cross-compile: no SSL_CERT_FILE."""
    return {"GOPROXY": cloud.env["DEPLOYER_GOPROXY"], "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64", **extra}


def assert_amd64_elf(binary: bytes | None) -> None:
    assert binary is not None and binary[:4] == b"\x7fELF"
    assert int.from_bytes(binary[18:20], "little") == ELF_MACHINE_X86_64


@pytest.fixture(scope="module")
def builder(local_cloud: LocalCloud) -> Iterator[Builder]:
    assert local_cloud.standins is not None
    client = local_cloud.docker()
    run = uuid.uuid4().hex[:12]
    volume = f"deployer-test-gocache-{run}"
    client.api.create_volume(volume, labels={LABEL: run})
    made = Builder(client.api, local_cloud.standins.builder, run, volume)
    try:
        yield made
    finally:
        try:
            for container in client.api.containers(all=True, filters={"label": f"{LABEL}={run}"}):
                client.api.remove_container(container["Id"], force=True)
            client.api.remove_volume(volume, force=True)
            assert not client.api.containers(all=True, filters={"label": f"{LABEL}={run}"})
            print("\ngoproxy builder compiles: " + ", ".join(f"{k} {v:.1f}s" for k, v in made.timings.items()))
        finally:
            client.close()


def test_builder_image_trusts_the_machines_ca_and_still_the_public_ones(local_cloud: LocalCloud,
                                                                       builder: Builder) -> None:
    assert local_cloud.goproxy is not None and local_cloud.goproxy.ca_file is not None
    ca_file = local_cloud.goproxy.ca_file
    assert str(ca_file) == local_cloud.env["DEPLOYER_GOPROXY_CA"]
    bundle = builder.image_file("/etc/ssl/certs/ca-certificates.crt")
    assert bundle == builder_ca_bundle(ca_file)
    assert bundle.startswith(CA_BUNDLE.read_bytes().rstrip(b"\n")) and bundle.endswith(ca_file.read_bytes())
    config_env = builder.api.inspect_image(builder.image)["Config"]["Env"]
    assert "GOPROXY=off" in config_env and "GOSUMDB=off" in config_env
    assert not any(e.startswith(("SSL_CERT_FILE=", "SSL_CERT_DIR=")) for e in config_env)


def test_greet_builds_through_the_https_proxy(local_cloud: LocalCloud, builder: Builder) -> None:
    assert local_cloud.goproxy is not None
    before = len(local_cloud.goproxy.served)
    built = builder.compile("greet", greet_context(), go_env(local_cloud))
    assert built.code == 0, built.logs
    assert_amd64_elf(built.binary)
    served = {(path, status) for path, status in local_cloud.goproxy.served[before:]}
    assert ("/example.test/greeting/@v/v1.1.0.zip", 200) in served
    assert ("/example.test/textcase/@v/v1.2.0.zip", 200) in served


def test_without_the_proxy_ca_the_same_build_fails(local_cloud: LocalCloud, builder: Builder) -> None:
    """A control: TLS is verified, and what makes it pass is the proxy CA in the image's bundle.
    (Go reads SSL_CERT_FILE and also every file in SSL_CERT_DIR, /etc/ssl/certs by default.)"""
    files = {**greet_context(), "machine-bundle.crt": CA_BUNDLE.read_bytes()}
    refused = builder.compile("greet without the proxy CA", files,
                              go_env(local_cloud, SSL_CERT_FILE="/src/machine-bundle.crt", SSL_CERT_DIR="/src/none"))
    assert refused.code != 0
    assert "certificate signed by unknown authority" in refused.logs, refused.logs


def test_private_module_builds_with_the_netrc_and_fails_without(local_cloud: LocalCloud, builder: Builder) -> None:
    password = local_cloud.goproxy_password
    netrc = Path(local_cloud.env["DEPLOYER_TEST_NETRC"]).read_bytes()
    assert password.encode() in netrc
    env = go_env(local_cloud, GOPRIVATE=GOPRIVATE, GONOPROXY="none")

    refused = builder.compile("vault without netrc", vault_context(), env)
    assert refused.code != 0
    assert "401 Unauthorized" in refused.logs and f"{PRIVATE}@v0.3.0" in refused.logs, refused.logs
    assert password not in refused.logs

    built = builder.compile("vault with netrc", vault_context(), {**env, "NETRC": NETRC_PATH}, netrc=netrc)
    assert built.code == 0, built.logs
    assert password not in built.logs
    assert_amd64_elf(built.binary)
