"""A second Docker engine beside the machine's first, for tests that point DOCKER_HOST elsewhere.

`SecondEngine` starts its own `dockerd` with everything of its own, all under one short temp dir
(`/tmp/dpl2-*`): the API socket (`unix://<dir>/docker.sock`, see `host`), `--data-root`,
`--exec-root` (so its own managed containerd too), `--pidfile`, an empty `--config-file`, and its
own bridge. The bridge is made here first (`ip link add dplXXXX type bridge`, a free 172.31.x.1/24)
and handed over with `--bridge NAME --iptables=false --ip-masq=false`: the engine then leaves
docker0, the first engine's networks and the machine's iptables alone. Never `--bridge none`:
dockerd then deletes the default bridge docker0, which the first engine owns.

The storage driver is overlay2 (the first engine's), falling back to vfs when overlay2 cannot start.

On exit the engine is stopped (SIGTERM, bounded wait, SIGKILL; then any process still running
from its dir, matched by command line and killed by pid), its bridge deleted, whatever is still
mounted under its dir unmounted, and the dir removed. Its log is `log`; failures carry its tail.

`copy_images` moves images from another engine (`docker save` to `docker load`, streamed through
this process): nothing can be pulled here, so that is how the stand-ins reach it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Iterable, Iterator

import docker
import docker.errors
import requests

from tests.localcloud.cloud import START_TIMEOUT_SECONDS, LocalCloudError, ManagedProcess, log_tail, wait_until

# Subnets tried for the bridge: 172.31.x.0/24 (docker0 is 172.17.0.0/16; the first engine's own
# networks take /16s from 172.17 upwards and skip subnets the machine already routes).
SUBNET_BASE = "172.31.{}.0/24"
# Held while choosing a subnet and making the bridge: two second engines at once pick apart.
BRIDGE_LOCK = Path(tempfile.gettempdir()) / "deployer-second-engine-bridge.lock"
STORAGE_DRIVERS = ("overlay2", "vfs")
KILL_TIMEOUT_SECONDS = 10.0


class SecondEngineError(LocalCloudError):
    """The second engine failed to start or to do its job; the message has the log tail."""


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise SecondEngineError(f"second engine: {' '.join(argv)} failed (exit {result.returncode}): "
                                f"{(result.stderr or result.stdout).strip()}")
    return result


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine has an address or a route in."""
    networks = []
    for line in _run(["ip", "-o", "-4", "addr"]).stdout.splitlines():
        words = line.split()
        if "inet" in words:
            networks.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    for line in _run(["ip", "-4", "route"]).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first and first != "default":
            try:
                networks.append(ipaddress.IPv4Network(first, strict=False))
            except ValueError:
                pass
    return networks


def free_subnet() -> ipaddress.IPv4Network:
    """A 172.31.x.0/24 that overlaps no address or route of the machine."""
    used = _networks_in_use()
    candidates = list(range(1, 255))
    secrets.SystemRandom().shuffle(candidates)
    for third in candidates:
        subnet = ipaddress.IPv4Network(SUBNET_BASE.format(third))
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise SecondEngineError("second engine: no free 172.31.x.0/24 subnet for its bridge")


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 for spaces
            if point == str(root) or point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _pids_using(root: Path) -> list[int]:
    """Processes whose command line names `root` (its dockerd, containerd, shims): ours alone."""
    needle = str(root).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry.name))
    return pids


class SecondEngine:
    """Context manager: `with SecondEngine() as engine: engine.client() ... engine.host ...`."""

    def __init__(self, storage_drivers: Iterable[str] = STORAGE_DRIVERS,
                 start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.storage_drivers = tuple(storage_drivers)
        self.start_timeout = start_timeout
        # Short: containerd's socket lives under the exec root and unix socket paths are < 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="dpl2-", dir="/tmp" if Path("/tmp").is_dir() else None))
        self.socket = self.dir / "docker.sock"
        self.log = self.dir / "dockerd.log"
        self.bridge = f"dpl{secrets.token_hex(2)}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.storage_driver = ""
        self.process: ManagedProcess | None = None
        self._bridge_made = False
        self._clients: list[docker.DockerClient] = []

    @property
    def host(self) -> str:
        """The DOCKER_HOST value of this engine."""
        return f"unix://{self.socket}"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> SecondEngine:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> SecondEngine:
        if shutil.which("dockerd") is None:
            raise SecondEngineError("second engine: no dockerd: run tests/localcloud/install.sh")
        try:
            self._make_bridge()
            failures = []
            for driver in self.storage_drivers:
                try:
                    self._start_dockerd(driver)
                    break
                except LocalCloudError as exc:
                    failures.append(f"--storage-driver {driver}: {exc}")
                    self._stop_dockerd()
                    self._clean_dir(keep_log=True)
            else:
                raise SecondEngineError("second engine: dockerd did not start:\n" + "\n".join(failures))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop what was started here: each step bounded, each one tried whatever the others did."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._stop_dockerd()
        if self._bridge_made:
            _run(["ip", "link", "del", self.bridge], check=False)
            self._bridge_made = False
        self._clean_dir(keep_log=False)

    def _make_bridge(self) -> None:
        with BRIDGE_LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            self.subnet = free_subnet()
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self._bridge_made = True
            _run(["ip", "addr", "add", f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}", "dev", self.bridge])
            _run(["ip", "link", "set", self.bridge, "up"])

    def _start_dockerd(self, driver: str) -> None:
        config = self.dir / "daemon.json"
        config.write_text(json.dumps({}))  # never the machine's /etc/docker/daemon.json
        for sub in ("data", "exec"):
            (self.dir / sub).mkdir(exist_ok=True)
        argv = ["dockerd", "--host", self.host, "--data-root", str(self.dir / "data"),
                "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
                "--config-file", str(config), "--bridge", self.bridge, "--iptables=false", "--ip-masq=false",
                "--storage-driver", driver]
        with self.log.open("a") as out:
            out.write(f"--- {' '.join(argv)}\n")
        self.storage_driver = driver
        self.process = ManagedProcess.start("dockerd (second engine)", argv, self.log)
        process = self.process
        wait_until(self._ready, f"second dockerd ({self.host}, {driver})", self.start_timeout, self.log, process.alive)

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            client = docker.DockerClient(base_url=self.host, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (docker.errors.DockerException, requests.RequestException, OSError):
            return False

    def _stop_dockerd(self) -> None:
        if self.process is not None:
            self.process.stop()  # SIGTERM, bounded wait, SIGKILL
            self.process = None
        # A killed dockerd leaves its containerd (and shims): they are ours by their command line.
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _pids_using(self.dir)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
                time.sleep(0.1)
            if not pids:
                break

    def _clean_dir(self, keep_log: bool) -> None:
        """Unmount what is left under the dir (ours alone), then remove it (all but the log)."""
        for point in _mounts_under(self.dir):
            _run(["umount", "-l", point], check=False)
        if keep_log:
            for child in self.dir.iterdir():
                if child != self.log:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- what tests use --------------------------------------------------------------------
    def client(self, timeout: int = 300) -> docker.DockerClient:
        """A client of this engine (closed when the engine stops)."""
        client = docker.DockerClient(base_url=self.host, timeout=timeout)
        self._clients.append(client)
        return client

    def copy_images(self, source: docker.DockerClient, names: Iterable[str]) -> None:
        """`docker save NAME | docker load` from `source` into this engine, streamed, per image."""
        target = self.client()
        for name in names:
            try:
                stream: Iterator[bytes] = source.api.get_image(name, chunk_size=1 << 20)
                for chunk in target.api.load_image(stream, quiet=True):
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise SecondEngineError(self.failure(f"second engine: loading {name} failed: {chunk['error']}"))
                target.images.get(name)  # ImageNotFound if the load lost it
            except (docker.errors.DockerException, requests.RequestException) as exc:
                raise SecondEngineError(self.failure(f"second engine: copying {name} failed: {exc}")) from exc

    def failure(self, what: str) -> str:
        """`what`, with the tail of the engine's log: for assertion messages."""
        return f"{what}\n--- last lines of {self.log} ---\n{log_tail(self.log)}"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


__all__ = ["SecondEngine", "SecondEngineError", "free_subnet"]
