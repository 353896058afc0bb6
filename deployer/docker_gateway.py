"""Gateway to the Docker engine: compile (deployer.go_build), build an image, tag, log in, push.

Uses the docker SDK's low-level API to stream build and push output: build lines go to a callback
(shown with --verbose, and their tail in the error when a build fails); the push result gives the
registry's manifest digest. Registry credentials are passed per push and never stored on disk.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import re
import socket
import tempfile
import threading
import time
from typing import Any, Callable, Mapping

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from deployer.errors import DockerError, first_line
from deployer.go_build import ANSI_ESCAPE, CACHE_VOLUME, CacheDir, CompileJob, GoCompiler, engine_said
from deployer.ports import ImageVanished, ImmutableTagRefused, PushStalled, RegistryAuthRefused
from deployer.redact import build_arg_secrets, credential_secrets, redact
from deployer.registry import RegistryLogin

# How many build output lines a failure message carries.
TAIL_LINES = 25
PUSH_ATTEMPTS = 4
# A build may be silent for minutes (a long compile): its stream waits long, and Ctrl-C stops it.
BUILD_READ_TIMEOUT_SECONDS = 600
# Everything else waits at most this long for the engine to say something. A push streams
# progress while bytes move, so a push silent this long means the registry stopped answering.
ENGINE_READ_TIMEOUT_SECONDS = 30

Log = Callable[[str], None]


# What the engine says when an image a build made or reuses from its cache is gone before it is
# used: deleted by the removal of another build's last tag (and its untagged parents, unless the
# removal kept them), or by a prune.
_VANISHED = re.compile(r"failed to get digest|no such image|does not exist locally|unable to find image", re.IGNORECASE)


def _quiet(_: str) -> None:
    pass


class DockerGateway:
    def __init__(self, cache: CacheDir | None = None, cache_volume: str = CACHE_VOLUME, notice: Log = _quiet) -> None:
        self._client: Any = None
        self._short: Any = None  # the same engine, with ENGINE_READ_TIMEOUT_SECONDS for reads
        self._lock = threading.Lock()
        self._calls = threading.local()  # per worker thread: the build whose response to catch
        self._cache = cache
        self._cache_volume = cache_volume
        self._notice = notice
        self._compiler: GoCompiler | None = None

    @property
    def compiler(self) -> GoCompiler:
        """The Go build's compile step on this engine (deployer.go_build)."""
        client = self.client
        with self._lock:
            if self._compiler is None:
                self._compiler = GoCompiler(client.api, self._cache, self._cache_volume, self._notice)
            return self._compiler

    def compile_go(self, job: CompileJob, log: Log = _quiet, cancel: threading.Event | None = None) -> bytes:
        """The binary of a Go build (see deployer.go_build)."""
        return self.compiler.compile(job, log, cancel)

    def local_image(self, reference: str) -> str | None:
        """The ID of the image the engine holds under `reference`, or None."""
        try:
            return str(self.short.inspect_image(reference)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerError(f"cannot inspect image {reference} on the engine: {engine_said(exc)}") from None

    def save_go_cache(self, helper_image: str, log: Log = _quiet) -> None:
        """Save the engine's Go caches to the cache dir, when one is given and a compile ran."""
        if self._compiler is not None:
            self._compiler.save_cache(helper_image, log)

    @property
    def client(self) -> Any:
        with self._lock:  # workers of a parallel apply share one connection to the engine
            return self._connect()

    @property
    def short(self) -> Any:
        """The low-level API of a client whose reads wait at most ENGINE_READ_TIMEOUT_SECONDS."""
        with self._lock:
            self._connect()  # an engine that cannot be reached is said once, by the same message
            if self._short is None:
                self._short = docker.from_env(timeout=ENGINE_READ_TIMEOUT_SECONDS).api
            return self._short

    def _connect(self) -> Any:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=BUILD_READ_TIMEOUT_SECONDS)
                # requests calls response hooks in the thread that sent the request, as soon as
                # the headers are in: that is how a build's connection can be closed from outside.
                self._client.api.hooks["response"].append(self._on_response)
                self._client.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                raise DockerError(redact(f"cannot reach the Docker engine at {host} ({exc}); start Docker or set DOCKER_HOST")) from exc
        return self._client

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        watch = getattr(self._calls, "watch", None)
        if watch is not None:
            watch.attach(response)
        return response

    def engine_platform(self) -> str:
        """The engine's own platform: the builder stage runs there and cross-compiles."""
        version = self.short.version()
        return f"{version.get('Os', 'linux')}/{version.get('Arch', 'amd64')}"

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Mapping[str, str],
              labels: Mapping[str, str], log: Log = _quiet, cancel: threading.Event | None = None) -> str:
        """Build and tag; return the image ID. A failure carries the last lines of output.

        When `cancel` is set the build is stopped on the engine within a poll interval, even in a
        step that prints nothing, and a DockerError says so. A build whose cached image vanished
        before the engine could tag it is run once more (see `ImageVanished`)."""
        try:
            platform = self.engine_platform()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerError(f"docker build failed: the engine did not say its platform: {engine_said(exc)}") from None
        args = {"BUILDPLATFORM": platform, **build_args}
        try:
            return self._build_once(context_dir, dockerfile, tag, args, build_args, labels, log, cancel)
        except ImageVanished as exc:
            log(f"the engine lost the image it had just built ({first_line(exc)}); building again from its cache")
            return self._build_once(context_dir, dockerfile, tag, args, build_args, labels, log, cancel)

    def _build_once(self, context_dir: str, dockerfile: str, tag: str, args: Mapping[str, str], build_args: Mapping[str, str],
                    labels: Mapping[str, str], log: Log, cancel: threading.Event | None) -> str:
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        image_id = None
        try:
            with _BuildWatch(cancel) as watch, _tarred(context_dir, dockerfile) as context:
                self._calls.watch = watch  # the response hook hands this build's response to the watch
                try:
                    stream = self.client.api.build(fileobj=context, custom_context=True, dockerfile=dockerfile, tag=tag,
                                                   buildargs=dict(args), labels=dict(labels), rm=True, forcerm=True,
                                                   pull=False, decode=True)
                finally:
                    self._calls.watch = None
                for chunk in stream:
                    if "error" in chunk:
                        error = ANSI_ESCAPE.sub('', str(chunk['error'])).strip()
                        failure = _build_failure(f"docker build failed: {error}", tail, build_args)
                        raise ImageVanished(str(failure)) if _VANISHED.search(error) else failure
                    image_id = chunk.get("aux", {}).get("ID", image_id)
                    for line in ANSI_ESCAPE.sub("", str(chunk.get("stream", ""))).splitlines():
                        if line.strip():
                            tail.append(line)
                            log(line)
        except (docker.errors.APIError, docker.errors.BuildError, requests.exceptions.RequestException) as exc:
            # from None: the SDK's error holds the request URL, and that URL every build arg.
            raise _build_failure(f"docker build failed: {engine_said(exc)}", tail, build_args) from None
        if image_id is None:
            raise _build_failure("docker build finished without an image ID", tail, build_args)
        return str(image_id)

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin, relogin: Callable[[], RegistryLogin],
             log: Log = _quiet, sleep: Callable[[float], None] = time.sleep,
             progress: Callable[[int, int], None] | None = None) -> str:
        """Tag `image_id` as repository:tag and push it; return the registry's manifest digest.

        Transient faults (registry 5xx, connection resets) are retried with backoff, each retry
        logged; a refused token is replaced by a fresh login once. What the caller acts on comes
        as a type: ImmutableTagRefused, PushStalled, ImageVanished (the image is gone from the
        engine: build it again), RegistryAuthRefused after the fresh login.
        `progress(done, total)` gets the bytes pushed, summed over the layers (`_PushTally`)."""
        try:
            self.short.tag(image_id, repository, tag)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            said = engine_said(exc)
            failure = ImageVanished if _VANISHED.search(said) else DockerError
            raise failure(f"cannot tag image {image_id} as {repository}:{tag}: {said}") from None
        refreshed = False
        registry = repository.split("/", 1)[0]
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                return self._push_once(repository, tag, login, progress)
            except PushStalled:
                raise
            except DockerError as exc:
                if isinstance(exc, RegistryAuthRefused) and not refreshed:
                    log(f"registry refused the credentials; logging in again ({exc})")
                    login, refreshed = relogin(), True
                    continue
                # Judged on what the engine said, not on the names in the message (a repository
                # called "request-timeout-handler" is no timeout).
                if not _is_transient(str(exc).replace(repository, "").lower()):
                    raise
                if attempt == PUSH_ATTEMPTS:
                    raise type(exc)(f"{exc}; check that the registry {registry} is reachable, then run apply again") from None
                delay = min(2 ** attempt, 10)
                log(f"push attempt {attempt}/{PUSH_ATTEMPTS} failed ({exc}); retrying in {delay}s")
                sleep(delay)
        raise DockerError(f"push of {repository}:{tag} failed after {PUSH_ATTEMPTS} attempts")

    def _push_once(self, repository: str, tag: str, login: RegistryLogin, progress: Callable[[int, int], None] | None = None) -> str:
        auth = {"username": login.username, "password": login.password}
        secrets = credential_secrets(login.username, login.password)
        digest = None
        tally = _PushTally(progress)  # per attempt: a retry starts its layers again
        try:
            for chunk in self.short.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
                if "error" in chunk:
                    raise _refusal(str(chunk["error"]))(redact(f"push of {repository}:{tag} failed: {chunk['error']}", secrets))
                digest = chunk.get("aux", {}).get("Digest", digest)
                tally.add(chunk)
        except docker.errors.APIError as exc:
            explanation = engine_said(exc, secrets)
            raise _refusal(explanation)(f"push of {repository}:{tag} failed: {explanation}") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            # The SDK reads a decoded stream from the raw response: urllib3's errors come through.
            if _is_read_timeout(exc):  # closing the connection also ends the push on the engine
                raise PushStalled(f"push of {repository}:{tag} made no progress for {ENGINE_READ_TIMEOUT_SECONDS}s: the "
                                  f"registry {repository.split('/', 1)[0]} stopped answering; check that it is reachable, "
                                  "then run apply again") from None
            raise DockerError(f"push of {repository}:{tag} failed: connection to the Docker engine: {engine_said(exc, secrets)}") from None
        tally.flush()
        if not digest:
            raise DockerError(f"push of {repository}:{tag} reported no manifest digest")
        return str(digest)

    def remove_tag(self, reference: str) -> None:
        """Drop a local tag made for a push; the image layers stay cached for the next build."""
        try:
            self.short.remove_image(reference, noprune=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException, DockerError):
            pass  # already gone, in use, or the engine went away: nothing of the user's depends on it


# A push's bytes go to `progress` at most this often; larger counts than these are not believed
# (Lambda takes images of up to 10 GB; an image has at most 127 layers).
PROGRESS_SECONDS = 0.5
MAX_LAYER_BYTES = 1 << 36
MAX_LAYERS = 256
_LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from")


def _byte_count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_LAYER_BYTES:
        return value
    return None


class _PushTally:
    """The bytes of one push attempt, summed from the engine's progress chunks: per layer ("id"),
    the last "Pushing" progressDetail {current, total}; a layer "Pushed", "Layer already exists"
    or "Mounted from ..." counts as done. The engine's values are not trusted: anything that is
    not a sane byte count, or a layer beyond MAX_LAYERS, is left out; nothing here raises.
    `progress` hears the sums when they change, at most every PROGRESS_SECONDS, and at `flush`."""

    def __init__(self, progress: Callable[[int, int], None] | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._progress = progress
        self._clock = clock
        self._layers: dict[str, tuple[int, int]] = {}  # id -> (done, total), done <= total
        self._sent: tuple[int, int] | None = None
        self._sent_at = -math.inf

    def add(self, chunk: object) -> None:
        if self._progress is None or not isinstance(chunk, dict):
            return
        layer, status, detail = chunk.get("id"), chunk.get("status"), chunk.get("progressDetail")
        if not (isinstance(layer, str) and isinstance(status, str)) or len(layer) > 256:
            return
        if layer not in self._layers and len(self._layers) >= MAX_LAYERS:
            return
        done, total = self._layers.get(layer, (0, 0))
        if status == "Pushing" and isinstance(detail, dict):
            current, size = _byte_count(detail.get("current")), _byte_count(detail.get("total"))
            if size is not None and size > 0:
                total = size
            if current is not None:
                done = current
        elif status.startswith(_LAYER_DONE):
            done = total
        self._layers[layer] = (min(done, total), total)
        now = self._clock()
        if now - self._sent_at >= PROGRESS_SECONDS:
            self._send(now)

    def flush(self) -> None:
        self._send(self._clock())

    def _send(self, now: float) -> None:
        figures = (sum(done for done, _ in self._layers.values()), sum(total for _, total in self._layers.values()))
        if self._progress is None or figures == self._sent or not figures[1]:
            return
        self._sent, self._sent_at = figures, now
        self._progress(*figures)


# How often a build's watch looks at the cancel flag: a cancelled build stops within about this.
WATCH_SECONDS = 0.1


class _BuildWatch:
    """Stops a build on the engine when `cancel` is set, from a thread of its own: it shuts the
    build's HTTP connection down. dockerd then cancels the build (it kills and removes the
    container of the running step: rm/forcerm), and the reading thread, blocked in a silent
    step, gets the end of the stream. Leaving the watch closes the response in every case, so a
    build abandoned for any reason is stopped too."""

    def __init__(self, cancel: threading.Event | None) -> None:
        self._cancel = cancel
        self._response: Any = None
        self._lock = threading.Lock()
        self._over = threading.Event()
        self.fired = False

    def attach(self, response: Any) -> None:
        with self._lock:
            self._response = response

    def __enter__(self) -> _BuildWatch:
        if self._cancel is not None:
            threading.Thread(target=self._watch, name="deployer-build-watch", daemon=True).start()
        return self

    def _watch(self) -> None:
        assert self._cancel is not None
        while not self._over.wait(WATCH_SECONDS):
            if self._cancel.is_set() and self._stop():
                return

    def _stop(self) -> bool:
        """Shut the connection down; False while the response has not come yet (upload)."""
        with self._lock:
            if self._response is None or self._over.is_set():
                return False
            self.fired = True
            sock = _socket_of(self._response)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return True

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        with self._lock:
            self._over.set()
            response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
        if self.fired:  # whatever the broken stream raised, the cause is the cancel
            raise DockerError("docker build stopped: cancelled") from None


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under a streamed requests response (unix socket or TCP to the engine), found the
    way the docker SDK finds it for attach; None on a transport that has none (ssh)."""
    try:
        raw = response.raw._fp.fp.raw
        sock = getattr(raw, "_sock", raw)
    except AttributeError:
        return None
    return sock if isinstance(sock, socket.socket) else None


def _tarred(context_dir: str, dockerfile: str) -> Any:
    """The context as a tar in an unnamed temporary file (O_TMPFILE on Linux), so that a crash
    leaves no copy of it in the temp dir (the SDK's own tar is a named temporary file).
    `dockerfile` lies inside the context: the SDK archives it like any file."""
    return docker.utils.tar(context_dir, dockerfile=(dockerfile, None), fileobj=tempfile.TemporaryFile())


def _build_failure(headline: str, tail: collections.deque[str], build_args: Mapping[str, str]) -> DockerError:
    """The error of a failed build: headline and last output lines, with no build-arg value."""
    message = f"{headline}\n--- last build output ---\n" + "\n".join(tail)
    return DockerError(redact(message, build_arg_secrets(build_args)))


def _is_read_timeout(exc: Exception) -> bool:
    """A read timeout: requests' ReadTimeout before the response; while a stream is read,
    urllib3's ReadTimeoutError, raw or wrapped in a requests ConnectionError."""
    return (isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError))
            or "read timed out" in str(exc).lower())


def _refusal(said: str) -> type[DockerError]:
    """The type of a push failure, from what the engine or the registry said (the one place that
    reads their words): an expired or wrong token, or a tag an immutable repository holds already
    (ECR: "tag invalid: The image tag '...' already exists ... cannot be overwritten because the
    repository is immutable"), or an image deleted from the engine under the push (ImageVanished)."""
    said = said.lower()
    if any(word in said for word in ("unauthorized", "authentication required", "denied: ", "no basic auth")):
        return RegistryAuthRefused
    if any(word in said for word in ("tag invalid", "already exists", "immutable")):
        return ImmutableTagRefused
    if _VANISHED.search(said):
        return ImageVanished
    return DockerError


def _is_transient(message: str) -> bool:
    return any(word in message for word in (
        "connection reset", "connection refused", "broken pipe", "eof", "timeout", "timed out",
        "500 internal", "502 bad gateway", "503 service", "504 gateway", "received unexpected http status: 5",
        "temporarily unavailable", "i/o timeout",
    ))
