"""Gateway to the Docker engine: build an assembled context, tag, log in, push.

Uses the docker SDK's low-level API to stream build and push output: build lines go to a callback
(shown with --verbose, and their tail in the error when a build fails); the push result gives the
registry's manifest digest. Registry credentials are passed per push and never stored on disk.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from typing import Any, Callable, Mapping

import docker
import docker.errors
import requests.exceptions

from deployer.aws import RegistryLogin
from deployer.errors import DockerError

# How many build output lines a failure message carries.
TAIL_LINES = 25
PUSH_ATTEMPTS = 4
# The classic builder colours a RUN step's stderr red with ANSI escapes; they would reach logs
# and error messages as stray "[91m" text.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class DockerGateway:
    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:  # workers of a parallel apply share one connection to the engine
            return self._connect()

    def _connect(self) -> Any:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=600)
                self._client.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                raise DockerError(f"cannot reach the Docker engine at {host} ({exc}); start Docker or set DOCKER_HOST") from exc
        return self._client

    def engine_platform(self) -> str:
        """The engine's own platform: the builder stage runs there and cross-compiles."""
        version = self.client.version()
        return f"{version.get('Os', 'linux')}/{version.get('Arch', 'amd64')}"

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Mapping[str, str],
              labels: Mapping[str, str], log: Log = _quiet) -> str:
        """Build and tag; return the image ID. A failure carries the last lines of output."""
        args = {"BUILDPLATFORM": self.engine_platform(), **build_args}
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        image_id = None
        try:
            stream = self.client.api.build(path=context_dir, dockerfile=dockerfile, tag=tag, buildargs=dict(args),
                                           labels=dict(labels), rm=True, forcerm=True, pull=False, decode=True)
            for chunk in stream:
                if "error" in chunk:
                    raise _build_failure(f"docker build failed: {ANSI_ESCAPE.sub('', str(chunk['error'])).strip()}", tail)
                image_id = chunk.get("aux", {}).get("ID", image_id)
                for line in ANSI_ESCAPE.sub("", str(chunk.get("stream", ""))).splitlines():
                    if line.strip():
                        tail.append(line)
                        log(line)
        except (docker.errors.APIError, docker.errors.BuildError, requests.exceptions.RequestException) as exc:
            raise _build_failure(f"docker build failed: {exc}", tail) from exc
        if image_id is None:
            raise _build_failure("docker build finished without an image ID", tail)
        return str(image_id)

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin, relogin: Callable[[], RegistryLogin],
             log: Log = _quiet, sleep: Callable[[float], None] = time.sleep) -> str:
        """Tag `image_id` as repository:tag and push it; return the registry's manifest digest.

        Transient faults (registry 5xx, connection resets) are retried with backoff, each retry
        logged; a refused token is replaced by a fresh login once."""
        try:
            self.client.api.tag(image_id, repository, tag)
        except docker.errors.APIError as exc:
            raise DockerError(f"cannot tag image {image_id} as {repository}:{tag}: {exc}") from exc
        refreshed = False
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                return self._push_once(repository, tag, login)
            except DockerError as exc:
                message = str(exc).lower()
                if _is_auth_error(message) and not refreshed:
                    log(f"registry refused the credentials; logging in again ({exc})")
                    login, refreshed = relogin(), True
                    continue
                if not _is_transient(message) or attempt == PUSH_ATTEMPTS:
                    raise
                delay = min(2 ** attempt, 10)
                log(f"push attempt {attempt}/{PUSH_ATTEMPTS} failed ({exc}); retrying in {delay}s")
                sleep(delay)
        raise DockerError(f"push of {repository}:{tag} failed after {PUSH_ATTEMPTS} attempts")

    def _push_once(self, repository: str, tag: str, login: RegistryLogin) -> str:
        auth = {"username": login.username, "password": login.password}
        digest = None
        try:
            for chunk in self.client.api.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
                if "error" in chunk:
                    raise DockerError(f"push of {repository}:{tag} failed: {chunk['error']}")
                digest = chunk.get("aux", {}).get("Digest", digest)
        except docker.errors.APIError as exc:
            raise DockerError(f"push of {repository}:{tag} failed: {exc.explanation or exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise DockerError(f"push of {repository}:{tag} failed: connection to the Docker engine: {exc}") from exc
        if not digest:
            raise DockerError(f"push of {repository}:{tag} reported no manifest digest")
        return str(digest)

    def remove_tag(self, reference: str) -> None:
        """Drop a local tag made for a push; the image layers stay cached for the next build."""
        try:
            self.client.api.remove_image(reference, noprune=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException, DockerError):
            pass  # already gone, in use, or the engine went away: nothing of the user's depends on it


def _build_failure(headline: str, tail: collections.deque[str]) -> DockerError:
    return DockerError(f"{headline}\n--- last build output ---\n" + "\n".join(tail))


def _is_auth_error(message: str) -> bool:
    return any(word in message for word in ("unauthorized", "authentication required", "denied: ", "no basic auth"))


def _is_transient(message: str) -> bool:
    return any(word in message for word in (
        "connection reset", "connection refused", "broken pipe", "eof", "timeout", "timed out",
        "500 internal", "502 bad gateway", "503 service", "504 gateway", "received unexpected http status: 5",
        "temporarily unavailable", "i/o timeout",
    ))
