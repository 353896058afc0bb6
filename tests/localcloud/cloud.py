"""The local cloud: a Docker engine, an OCI registry and moto's AWS APIs on loopback.

`LocalCloud` brings up, on 127.0.0.1 and free ports, with all state in one temp dir:

- the Docker engine (`dockerd`), only when `docker info` fails; stopped on exit only if started here;
- moto's server (ECR, Lambda, IAM, STS) with MOTO_LAMBDA_STUB_ECR=false, run by moto_main.py;
- Debian's `docker-registry` (distribution 2.8) with htpasswd auth holding exactly the credentials
  that moto's ECR GetAuthorizationToken hands out, and a notification endpoint in this process;
- a Go module proxy in this process (goproxy.py), over HTTPS, serving the modules in
  tests/localcloud/gomodules; the private one needs basic auth with a password made per run. Its CA
  and certificate are the machine's, made once in goproxy.TLS_DIR and kept across runs (not in the
  temp dir): the stand-in builder image trusts that CA (see standins.py).

The registry stands in for ECR's storage: the product pushes to DEPLOYER_REGISTRY_ENDPOINT and tells
Lambda `<account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:...`. Moto's ECR cannot see that
registry, so every manifest push is recorded in moto with `PutImage` carrying the registry's real
digest and media type (see `ImageRecorder`); DescribeImages, BatchGetImage and Lambda's CodeSha256
then report what was really pushed.

Lambda's `Invoke` of an Image function really runs it (moto_main.py, point 7): moto pulls the
version's image from this registry onto the engine and runs it. Moto's environment names the
registry (LOCALCLOUD_REGISTRY, host:port: its port is chosen before moto starts) and a file only
this user can read holding the credentials ECR hands out (LOCALCLOUD_REGISTRY_AUTH, written once
they are known, before the registry serves).

For Go builds, `env` has DEPLOYER_GOPROXY (the GOPROXY value), DEPLOYER_GOPROXY_CA (the CA to trust:
SSL_CERT_FILE for a go command on this machine; the stand-in builder image needs nothing, its CA
bundle already holds it), DEPLOYER_TEST_NETRC (a netrc with the private module's credentials, for
NETRC) and DEPLOYER_GOPRIVATE (for GOPRIVATE). The go command sends netrc credentials only over
HTTPS, hence the CA; and GOPRIVATE alone also means "not through the proxy": pair it with
GONOPROXY=none so that the private module is fetched from this proxy too.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

import boto3
import docker
import docker.errors
import requests

from tests.localcloud.goproxy import TLS_DIR, ModuleProxy, write_netrc
from tests.localcloud.standins import StandinImages, ensure_standins

REGION = "us-east-1"
# Regions whose ECR also records what the registry holds: the registry stands in for every
# region's storage, so that a deploy.yaml environment in another region (eu-west-1) deploys too.
# A push is recorded once per repository name: give each region's repositories names of their own.
OTHER_REGIONS = ("eu-west-1",)
LOOPBACK = "127.0.0.1"
DOCKER_SOCKET = Path("/var/run/docker.sock")
DOCKER_PIDFILE = Path("/var/run/docker.pid")
# One file per process using the engine, so that a dockerd started by one test session is not
# stopped under another one running at the same time on the same machine.
DOCKER_USERS = Path(tempfile.gettempdir()) / "deployer-localcloud-docker-users"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
# The module proxy's private modules (GOPRIVATE) and the user its netrc names.
GOPRIVATE = "private.example.test"
GOPROXY_USER = "ci-bot"

# Manifest media types the registry may hold; asked for explicitly so that it never converts.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


class LocalCloudError(RuntimeError):
    """A part of the local cloud failed to start or to do its job; the message has the log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(ready: Callable[[], bool], what: str, timeout: float, log: Path | None = None,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll `ready` until true; bounded by `timeout`. Fails early when `alive` says the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    state = "exited" if not alive() else f"not ready after {timeout:.0f}s"
    tail = f"\n--- last lines of {log} ---\n{log_tail(log)}" if log else ""
    raise LocalCloudError(f"local cloud: {what} {state}{tail}")


@dataclass
class ManagedProcess:
    """A server this harness started; its output goes to `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> ManagedProcess:
        with log.open("ab") as out:
            # New session: a Ctrl-C in the terminal reaches us, and we stop the servers in order.
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        return cls(name, process, log)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str

    @classmethod
    def from_ecr_token(cls, token: str) -> RegistryCredentials:
        username, _, password = base64.b64decode(token).decode().partition(":")
        return cls(username, password)


class ImageRecorder:
    """Copies manifests from the registry into moto's ECR (PutImage with the registry's digest).

    Idempotent: a (repository, digest, tag) already recorded is skipped, and moto's
    ImageAlreadyExistsException for an identical re-push is success."""

    def __init__(self, registry_url: str, credentials: RegistryCredentials, ecr: Any, other_regions: tuple[Any, ...] = ()) -> None:
        self._registry_url = registry_url
        self._auth = (credentials.username, credentials.password)
        self._ecr = ecr
        self._other_regions = other_regions  # ECR clients of OTHER_REGIONS: a repository there records the push too
        self._recorded: set[tuple[str, str, str | None]] = set()
        self._tag_digest: dict[tuple[str, str], str] = {}  # (repository, tag) -> digest
        self._manifests: dict[tuple[str, str], tuple[str, str]] = {}  # (repo, digest) -> (manifest, type)
        self._lock = threading.Lock()
        # One session for every listener thread (urllib3's pool is thread-safe): the registry's
        # connections are kept instead of made per request.
        self._session = requests.Session()
        self._session.auth = self._auth
        self.errors: list[str] = []

    def _http(self) -> requests.Session:
        return self._session

    def record(self, repository: str, reference: str, tag: str | None) -> str:
        """Record the manifest `reference` (tag or digest) of `repository`; returns its digest."""
        response = self._http().get(
            f"{self._registry_url}/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}, timeout=10)
        response.raise_for_status()
        digest = response.headers["Docker-Content-Digest"]
        media_type = response.headers["Content-Type"]
        key = (repository, digest, tag)
        with self._lock:
            if key in self._recorded:
                return digest
            self._put_image(repository, response.text, media_type, digest, tag)
            self._recorded.add(key)
            self._manifests[(repository, digest)] = (response.text, media_type)
            if tag:
                self._keep_untagged(repository, self._tag_digest.get((repository, tag)), digest)
                self._tag_digest[(repository, tag)] = digest
        return digest

    def _keep_untagged(self, repository: str, previous: str | None, current: str) -> None:
        """Moto deletes an image whose only tag moves to another push; real ECR (and the registry)
        keep it untagged, and a function may still run it. Put it back without a tag."""
        if previous is None or previous == current:
            return
        # Tags on `previous` as recorded before this push, the moved tag included.
        tags = [t for (repo, t), d in self._tag_digest.items() if repo == repository and d == previous]
        if len(tags) > 1:
            return  # other tags remain: moto only took the moved one off
        manifest, media_type = self._manifests[(repository, previous)]
        self._put_image(repository, manifest, media_type, previous, None)

    def _put_image(self, repository: str, manifest: str, media_type: str, digest: str, tag: str | None) -> None:
        args: dict[str, Any] = dict(repositoryName=repository, imageManifest=manifest,
                                    imageManifestMediaType=media_type, imageDigest=digest)
        if tag:
            args["imageTag"] = tag
        # Moto's PutImage fails with a bare 500 for a missing repository: asked first, for the other
        # regions; the main one records every push, as before (its failure is the harness's error).
        holding = [ecr for ecr in self._other_regions if self._holds(ecr, repository)]
        for ecr in (self._ecr, *holding) if not holding or self._holds(self._ecr, repository) else holding:
            try:
                ecr.put_image(**args)
            except ecr.exceptions.ImageAlreadyExistsException:
                pass

    @staticmethod
    def _holds(ecr: Any, repository: str) -> bool:
        try:
            ecr.describe_repositories(repositoryNames=[repository])
        except ecr.exceptions.RepositoryNotFoundException:
            return False
        return True

    def sync(self, repository: str) -> None:
        """Record every tag the registry holds for `repository` (a read barrier for moto)."""
        response = self._http().get(f"{self._registry_url}/v2/{repository}/tags/list", timeout=10)
        if response.status_code == 404:  # nothing pushed yet
            return
        response.raise_for_status()
        for tag in response.json().get("tags") or []:
            self.record(repository, tag, tag)

    def on_event(self, event: dict[str, Any]) -> None:
        target = event.get("target", {})
        if event.get("action") != "push" or target.get("mediaType") not in MANIFEST_MEDIA_TYPES:
            return  # blob pushes and pulls
        repository, digest, tag = target["repository"], target["digest"], target.get("tag")
        # Events arrive late: a read barrier may already have recorded a newer push of this tag.
        if tag and self._current_digest(repository, tag) != digest:
            tag = None
        self.record(repository, digest, tag)

    def _current_digest(self, repository: str, tag: str) -> str | None:
        response = self._http().head(f"{self._registry_url}/v2/{repository}/manifests/{tag}",
                                     headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}, timeout=10)
        return response.headers.get("Docker-Content-Digest") if response.ok else None


class _ListenerHandler(BaseHTTPRequestHandler):
    recorder: ImageRecorder  # set on the subclass made per listener

    def do_POST(self) -> None:  # registry notifications
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            for event in json.loads(body).get("events", []):
                self.recorder.on_event(event)
        except Exception as exc:  # noqa: BLE001 - reported to the registry (it retries) and kept
            self.recorder.errors.append(f"notification: {exc!r}")
            self._reply(500, repr(exc))
            return
        self._reply(200, "ok")

    def do_GET(self) -> None:  # /sync?repository=NAME from moto_main.py
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        try:
            self.recorder.sync(query.get("repository", [""])[0])
        except Exception as exc:  # noqa: BLE001
            self.recorder.errors.append(f"sync: {exc!r}")
            self._reply(500, repr(exc))
            return
        self._reply(200, "ok")

    def _reply(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass


def _registry_config(state: Path, port: int, listener_port: int) -> str:
    # JSON is valid YAML; the registry reads this file.
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(state / "registry-data")}, "delete": {"enabled": True}},
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": "deployer-localcloud", "path": str(state / "htpasswd")}},
        "notifications": {"endpoints": [{
            "name": "localcloud",
            "url": f"http://{LOOPBACK}:{listener_port}/events",
            "timeout": "5s", "threshold": 3, "backoff": "200ms",
            "ignore": {"actions": ["pull"]},
        }]},
    }
    return json.dumps(config, indent=2)


def _htpasswd_line(credentials: RegistryCredentials) -> str:
    # bcrypt is the only hash distribution's htpasswd accepts. At its lowest cost (4): the registry
    # checks it on every request, and this is a random credential on loopback, not a password a
    # person chose (at htpasswd's default cost the check was most of an ECR read's time here).
    result = subprocess.run(["htpasswd", "-nbB", "-C", "4", credentials.username, credentials.password],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalCloudError(f"local cloud: htpasswd failed (apache2-utils installed?): {result.stderr}")
    return result.stdout.strip() + "\n"


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _other_docker_users() -> bool:
    return any(_pid_alive(p.name) for p in DOCKER_USERS.glob("*") if p.name != str(os.getpid()))


def _docker_ready() -> bool:
    try:
        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return False


# Held while a process checks for the engine and starts it: sessions starting at once (pytest-xdist
# workers, two test runs) must not each start a dockerd.
ENGINE_LOCK = Path(tempfile.gettempdir()) / "deployer-localcloud-engine.lock"


class EngineUse:
    """This process's use of the Docker engine. `start` starts dockerd when none answers (one
    process at a time), and registers the process as a user; `stop` stops the dockerd it started,
    unless another process on the machine still uses the engine."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.dockerd: ManagedProcess | None = None

    def start(self) -> EngineUse:
        DOCKER_USERS.mkdir(exist_ok=True)
        (DOCKER_USERS / str(os.getpid())).touch()
        with ENGINE_LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if _docker_ready():
                return self
            if os.environ.get("DOCKER_HOST", f"unix://{DOCKER_SOCKET}") != f"unix://{DOCKER_SOCKET}":
                raise LocalCloudError(f"local cloud: DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer")
            if shutil.which("dockerd") is None:
                raise LocalCloudError("local cloud: no Docker engine and no dockerd: run tests/localcloud/install.sh")
            if DOCKER_PIDFILE.exists() and not _pid_alive(DOCKER_PIDFILE.read_text().strip()):
                DOCKER_PIDFILE.unlink()  # left by a dockerd that was killed; it would refuse to start
            log = self.log_dir / "dockerd.log"
            self.dockerd = ManagedProcess.start("dockerd", ["dockerd"], log)
            wait_until(lambda: DOCKER_SOCKET.exists() and _docker_ready(), "dockerd", START_TIMEOUT_SECONDS,
                       log, self.dockerd.alive)
        return self

    def stop(self) -> None:
        (DOCKER_USERS / str(os.getpid())).unlink(missing_ok=True)
        if self.dockerd is not None and not _other_docker_users():
            self.dockerd.stop()
        self.dockerd = None


class LocalCloud:
    """Context manager: `with LocalCloud() as cloud: ... cloud.env ...`. See the module docstring."""

    def __init__(self, build_standins: bool = True, tls_dir: Path = TLS_DIR) -> None:
        self.build_standins = build_standins
        self.tls_dir = tls_dir  # the goproxy's CA and certificate: the machine's, kept across runs
        self.state = Path(tempfile.mkdtemp(prefix="deployer-localcloud-"))
        self._processes: list[ManagedProcess] = []
        self._listener: ThreadingHTTPServer | None = None
        self._handler: type[_ListenerHandler] = _ListenerHandler
        self.moto_port = 0
        self.registry_port = 0
        self.account = ""
        self.credentials = RegistryCredentials("", "")
        self.standins: StandinImages | None = None
        self.recorder: ImageRecorder | None = None
        self._engine: EngineUse | None = None
        self.goproxy: ModuleProxy | None = None
        self.goproxy_password = secrets.token_urlsafe(24)  # per run; only ever in the netrc file
        self.goproxy_netrc = self.state / "goproxy.netrc"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LocalCloud:
        started = time.monotonic()
        try:
            listener_port = self._start_listener()
            self._start_goproxy()
            moto = self._start_moto(listener_port)  # slow to import: overlap it with dockerd
            self._ensure_docker()
            wait_until(self._moto_ready, "moto server", START_TIMEOUT_SECONDS, moto.log, moto.alive)
            self._fetch_credentials()
            self._start_registry(listener_port)
            if self.build_standins:
                self.standins = ensure_standins(goproxy_ca=self.goproxy.ca_file if self.goproxy else None)
        except BaseException:
            self.stop()
            raise
        print(f"local cloud: up in {time.monotonic() - started:.1f}s (moto {self.moto_endpoint}, "
              f"registry {self.registry_endpoint}, goproxy {self.goproxy.url if self.goproxy else '-'}, "
              f"state {self.state})", file=sys.stderr)
        return self

    def server_cpu_seconds(self, name: str) -> float | None:
        """CPU time (user + system) the server `name` ("moto", "docker-registry") has used so far, from
        /proc (None elsewhere, or when it is not running): what the local cloud's own work costs
        in a benchmark that shares its cores."""
        for managed in self._processes:
            if managed.name == name and managed.alive():
                try:
                    fields = Path(f"/proc/{managed.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    return None
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return None

    def stop(self) -> None:
        """Stop everything started here, newest first; each stop is bounded."""
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._engine is not None:
            self._engine.stop()
            self._engine = None
        if self._listener is not None:
            self._listener.shutdown()
            self._listener.server_close()
            self._listener = None
        if self.goproxy is not None:
            self.goproxy.stop()
            self.goproxy = None
        shutil.rmtree(self.state, ignore_errors=True)

    def _start_listener(self) -> int:
        handler = type("Handler", (_ListenerHandler,), {})
        self._listener = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._listener.daemon_threads = True
        self._handler = handler
        threading.Thread(target=self._listener.serve_forever, name="localcloud-listener", daemon=True).start()
        return int(self._listener.server_address[1])

    def _start_goproxy(self) -> None:
        self.goproxy = ModuleProxy(GOPROXY_USER, self.goproxy_password, private=(GOPRIVATE,),
                                   tls_dir=self.tls_dir).start()
        write_netrc(self.goproxy_netrc, self.goproxy.host, GOPROXY_USER, self.goproxy_password)

    @property
    def registry_auth_file(self) -> Path:
        """The registry's credentials for moto's Invoke (JSON: username, password), mode 0600."""
        return self.state / "registry-auth.json"

    def _start_moto(self, listener_port: int) -> ManagedProcess:
        self.moto_port = free_port()
        self.registry_port = free_port()  # moto's Invoke pulls from the registry (started later)
        env = {**os.environ, "MOTO_LAMBDA_STUB_ECR": "false",
               "LOCALCLOUD_SYNC_URL": f"http://{LOOPBACK}:{listener_port}/sync",
               "LOCALCLOUD_REGISTRY": self.registry_endpoint, "LOCALCLOUD_REGISTRY_AUTH": str(self.registry_auth_file)}
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):  # moto must not talk to itself by accident
            env.pop(name, None)
        script = Path(__file__).with_name("moto_main.py")
        process = ManagedProcess.start("moto", [sys.executable, str(script), "--host", LOOPBACK, "--port",
                                                str(self.moto_port)], self.state / "moto.log", env)
        self._processes.append(process)
        return process

    def _moto_ready(self) -> bool:
        try:
            return requests.get(f"{self.moto_endpoint}/moto-api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _ensure_docker(self) -> None:
        self._engine = EngineUse(self.state)
        self._engine.start()

    def _fetch_credentials(self) -> None:
        data = self.client("ecr").get_authorization_token()["authorizationData"][0]
        self.credentials = RegistryCredentials.from_ecr_token(data["authorizationToken"])
        self.account = self.client("sts").get_caller_identity()["Account"]
        auth = json.dumps({"username": self.credentials.username, "password": self.credentials.password})
        fd = os.open(self.registry_auth_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(auth)

    def _start_registry(self, listener_port: int) -> None:
        (self.state / "htpasswd").write_text(_htpasswd_line(self.credentials))
        config = self.state / "registry.yml"
        config.write_text(_registry_config(self.state, self.registry_port, listener_port))
        self.recorder = ImageRecorder(f"http://{self.registry_endpoint}", self.credentials, self.client("ecr"),
                                      tuple(self.client("ecr", region) for region in OTHER_REGIONS))
        self._handler.recorder = self.recorder
        registry = ManagedProcess.start("docker-registry", ["docker-registry", "serve", str(config)],
                                        self.state / "registry.log")
        self._processes.append(registry)
        wait_until(self._registry_ready, "docker-registry", START_TIMEOUT_SECONDS, registry.log, registry.alive)

    def _registry_ready(self) -> bool:
        try:
            # 401 without credentials: it is up and auth is on.
            return requests.get(f"http://{self.registry_endpoint}/v2/", timeout=2).status_code == 401
        except requests.RequestException:
            return False

    # -- what tests and the demo use -------------------------------------------------------
    @property
    def moto_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.moto_port}"

    @property
    def registry_endpoint(self) -> str:
        """host:port of the registry that stands in for ECR's storage."""
        return f"{LOOPBACK}:{self.registry_port}"

    @property
    def ecr_host(self) -> str:
        """The ECR hostname Lambda is given image URIs on (never contacted)."""
        return f"{self.account}.dkr.ecr.{REGION}.amazonaws.com"

    @property
    def env(self) -> dict[str, str]:
        """Environment for the code under test."""
        env = {
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "DEPLOYER_REGISTRY_ENDPOINT": self.registry_endpoint,
        }
        if self.goproxy is not None and self.goproxy.ca_file is not None:
            env |= {
                "DEPLOYER_GOPROXY": self.goproxy.url,
                "DEPLOYER_GOPROXY_CA": str(self.goproxy.ca_file),
                "DEPLOYER_TEST_NETRC": str(self.goproxy_netrc),
                "DEPLOYER_GOPRIVATE": GOPRIVATE,
            }
        if self.standins is not None:
            env |= {
                "DEPLOYER_STANDIN_BUILDER": self.standins.builder,
                "DEPLOYER_STANDIN_RUNTIME_ARM64": self.standins.runtime_arm64,
                "DEPLOYER_STANDIN_RUNTIME_AMD64": self.standins.runtime_amd64,
            }
        return env

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for moto, independent of the process environment."""
        return boto3.client(service, endpoint_url=self.moto_endpoint, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def docker(self) -> docker.DockerClient:
        return docker.from_env(timeout=300)

    def check_recorder(self) -> None:
        """Raise if recording a push into moto failed (such failures happen off the test's thread)."""
        if self.recorder is not None and self.recorder.errors:
            raise LocalCloudError("local cloud: recording pushes in moto failed: " + "; ".join(self.recorder.errors))


__all__ = ["LocalCloud", "LocalCloudError", "RegistryCredentials", "ImageRecorder", "free_port"]
