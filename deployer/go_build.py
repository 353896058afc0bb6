"""go_build: the built-in Go build's compile step, on the Docker engine.

A container of the builder image (the engine's own platform) receives the build context and,
for private modules, the netrc credentials through the engine's archive API, runs `go build`
cross-compiling for the function's platform, and hands the binary back through the archive API.
Nothing goes through a bind mount, so a remote engine (DOCKER_HOST over TCP or SSH) works as a
local one does. The image is then made from the runtime base and the binary alone (layout's
RUNTIME Dockerfile, no RUN step) by the docker gateway.

Module downloads (GOMODCACHE) and build outputs (GOCACHE) live on one named volume of the
engine, CACHE_VOLUME (or the one DEPLOYER_GO_CACHE_VOLUME names), shared by every build and every function on that engine: the go command
locks its caches itself, so parallel compiles are safe. `--cache-dir` (`CacheDir`) saves that
volume as a tar on this machine after a run that compiled, and restores it into a volume the
engine did not have (a fresh CI machine): both through the archive API as well.

Credentials: the netrc travels into the compile container only, as a file of mode 0400 read
through NETRC; the container is never committed and is removed whatever happens, so the
credentials reach no image layer, config, history or label. Their passwords are masked in every
message the compile produces.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import socket
import stat
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

import docker.errors
import docker.types
import requests.exceptions

from deployer import locks
from deployer.errors import DeployerError, DockerError
from deployer.layout import GoBuild
from deployer.paths import shown
from deployer.redact import redact

CACHE_VOLUME = "deployer-go-cache"
# DEPLOYER_GO_CACHE_VOLUME names another volume: caches kept apart (a bench's cold builds, a team
# that wants one cache per project on a shared engine).
CACHE_VOLUME_ENV = "DEPLOYER_GO_CACHE_VOLUME"
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
CACHE_MOUNT = "/deployer-cache"
SOURCE_DIR = "/src"
BINARY = "/out/bootstrap"
NETRC_PATH = "/deployer-secrets/netrc"
# Every container and volume this module makes carries this label (found and removed by it).
LABEL = "dev.deployer.go-build"
# Which process made a compile container (host/pid): one whose process is gone (kill -9) still
# holds a context and maybe a netrc, and the next compile on this machine removes it.
OWNER_LABEL = "dev.deployer.owner"
OWNER = f"{socket.gethostname()[:64]}/{os.getpid()}"
TAIL_LINES = 25
# A line of the compile's output is shown up to LINE_CHARS characters; secrets are masked in its
# first LINE_WINDOW bytes before it is cut (a secret across the cut is masked whole), and the rest
# of a longer line is dropped as it comes: an engine sending output without line breaks must not
# make deployer hold it, or show it, whole.
LINE_CHARS = 4096
LINE_WINDOW = 64 * 1024
# A failed compile's last lines are read again for at most this long (deployer.go_build._last_lines).
LOG_REREAD_SECONDS = 10
# A compile that runs longer than this is stopped: a module download that hangs would otherwise
# hold the apply forever.
COMPILE_TIMEOUT_SECONDS = 1800
WAIT_SLICE_SECONDS = 0.5
# A Lambda image holds at most 10 GB; a Go binary of a tenth of that is already absurd.
MAX_BINARY_BYTES = 1 << 30
CACHE_ARCHIVE = "go-cache.tar"
# go build flags that let a build run or read what is not in its context, refused in go_build_flags
# and in GOFLAGS alike (deploy.yaml may come from a pull request): -toolexec runs a program of the
# context around every tool, in the compile container, beside the netrc and on the engine's shared
# cache volume, whose compiled packages every later build trusts; -overlay maps any file of the
# container (the netrc) into the build, where a go:embed directive puts it into the binary.
REFUSED_FLAGS = ("toolexec", "overlay")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Netrc:
    """netrc credentials for private modules, from the environment variable `source`. The text
    is a secret: never printed; `secrets` are the values a message must never show."""

    source: str
    text: bytes = b""

    @property
    def secrets(self) -> tuple[str, ...]:
        words = self.text.decode("utf-8", "replace").split()
        # The login too: a token is often written as the login (GitHub's `login <token>`).
        return tuple(value for key, value in zip(words, words[1:]) if key in ("login", "password", "account"))

    def __repr__(self) -> str:  # a dataclass repr would print the text
        return f"Netrc(source={self.source!r})"


def netrc_from_env(variable: str, env: Mapping[str, str]) -> Netrc | None:
    """The credentials named by `variable`: its value is netrc text when it holds whitespace
    (a CI secret put in the environment as is), else the path of a netrc file (as Go's NETRC).
    None when the variable is unset or empty."""
    value = env.get(variable, "")
    if not value:
        return None
    if any(c.isspace() for c in value.strip()):
        return Netrc(variable, value.encode())
    path = Path(os.path.expanduser(value))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DeployerError(f"{variable} names the netrc file {path}, which cannot be opened ({exc.strerror}); "
                            f"fix the path or unset {variable}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DeployerError(f"{variable} names {path}, which is not a regular file; point it at a netrc file")
        text = f.read((1 << 20) + 1)
    if len(text) > 1 << 20:
        raise DeployerError(f"{variable} names {path}, which is larger than 1 MiB: not a netrc file")
    return Netrc(variable, text)


@dataclass(frozen=True)
class CompileJob:
    """One function's compile: its assembled context, its recipe, and its credentials."""

    function: str
    context_dir: Path
    recipe: GoBuild
    netrc: Netrc | None = None
    netrc_env: str = "DEPLOYER_NETRC"  # where credentials would have come from, for the hint of a refusal

    @property
    def secrets(self) -> tuple[str, ...]:
        proxy = self.recipe.go_env.get("GOPROXY", "")
        return (*(self.netrc.secrets if self.netrc else ()), *([proxy] if "@" in proxy else []))

    def environment(self) -> dict[str, str]:
        env = {**self.recipe.go_env, "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": self.recipe.goarch,
               "GOCACHE": f"{CACHE_MOUNT}/build", "GOMODCACHE": f"{CACHE_MOUNT}/mod"}
        if self.netrc is not None:
            env["NETRC"] = NETRC_PATH
        return env


def refused_settings(recipe: GoBuild) -> list[str]:
    """Why the compile of `recipe` must not run: REFUSED_FLAGS, -mod=mod (go.sum unverified, which
    load refuses in GOFLAGS but go_build_flags could still say), and a toolchain download that
    nothing trustworthy verifies. A GOTOOLCHAIN other than the builder's own makes the go command
    download and run a toolchain that only the checksum database vouches for, which it skips for a
    file:// GOPROXY (cmd/go's modfetch.useSumDB) and which a GOSUMDB with a key of its own replaces."""
    problems = []
    words = [*recipe.flags, *recipe.go_env.get("GOFLAGS", "").split()]
    for word in words:
        name = word.lstrip("-").split("=", 1)[0]
        if word.startswith("-") and name in REFUSED_FLAGS:
            problems.append(f"the go build flag {shown(word)} is refused: -{name} lets the build run or read what is "
                            "not in its context (the netrc, the shared Go caches); remove it")
        elif word.startswith("-") and word.lstrip("-") == "mod=mod":  # load refuses it in GOFLAGS already
            problems.append("the go build flag -mod=mod is refused: it lets the go command rewrite go.mod and go.sum "
                            "during the build, so go.sum would not be verified; run `go mod tidy`, commit go.sum and "
                            "remove the flag")
    toolchain = recipe.go_env.get("GOTOOLCHAIN", "local").strip()
    if toolchain not in ("local", "path") and not toolchain.endswith("+path"):
        proxy = recipe.go_env.get("GOPROXY", "").strip()
        sumdb = (recipe.go_env.get("GOSUMDB", "").split() or [""])[0]
        if proxy.startswith("file://") and not any(c in proxy for c in ",|"):
            problems.append(f"GOTOOLCHAIN {shown(toolchain)} with GOPROXY {shown(proxy)} is refused: the go command "
                            "would run a toolchain from those files unverified; use GOTOOLCHAIN local")
        elif "+" in sumdb:
            problems.append(f"GOTOOLCHAIN {shown(toolchain)} with GOSUMDB {shown(sumdb)} is refused: a toolchain the go "
                            "command downloads would be checked against that checksum database's own key only; use "
                            "GOTOOLCHAIN local")
    return problems


def cache_volume_from_env(env: Mapping[str, str]) -> str:
    """The engine volume of the Go caches: CACHE_VOLUME unless the environment names another."""
    name = env.get(CACHE_VOLUME_ENV, "") or CACHE_VOLUME
    if not _VOLUME_NAME.fullmatch(name):
        raise DeployerError(f"{CACHE_VOLUME_ENV}: {name[:80]!r} is not a Docker volume name (letters, digits, _ . -, "
                            "starting with a letter or digit, at most 128); fix or unset it")
    return name


def _tar_of(job: CompileJob) -> IO[bytes]:
    """The compile container's input: the context under src/, an empty out/, and the netrc. In
    an unnamed temporary file: a crash leaves no copy of the credentials behind."""
    out = tempfile.TemporaryFile()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            return info

        tar.add(job.context_dir, arcname=SOURCE_DIR.lstrip("/"), recursive=True, filter=owned_by_root)
        for directory in (os.path.dirname(BINARY), os.path.dirname(NETRC_PATH)):
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        if job.netrc is not None:
            info = tarfile.TarInfo(NETRC_PATH.lstrip("/"))
            info.size, info.mode = len(job.netrc.text), 0o400
            tar.addfile(info, io.BytesIO(job.netrc.text))
    out.seek(0)
    return out


def _binary_from(chunks: Iterator[bytes], function: str) -> bytes:
    """The regular file `bootstrap` of the archive the engine sends for BINARY, bounded."""
    with tempfile.TemporaryFile() as spool:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_BINARY_BYTES + (1 << 20):
                raise DockerError(f"go build produced a binary larger than {MAX_BINARY_BYTES >> 20} MiB")
            spool.write(chunk)
        spool.seek(0)
        try:
            with tarfile.open(fileobj=spool, mode="r|") as tar:
                for member in tar:
                    if member.name == "bootstrap" and member.isreg() and member.size <= MAX_BINARY_BYTES:
                        f = tar.extractfile(member)
                        if f is not None:
                            data = f.read()
                            if len(data) == member.size:
                                return data
                            raise tarfile.ReadError("unexpected end of data")
        except (tarfile.TarError, EOFError) as exc:
            raise DockerError(f"go build of {function} failed: the engine sent an unreadable archive of the binary "
                              f"({exc})") from None
    raise DockerError("go build finished, but the engine sent no regular file bootstrap back")


class GoCompiler:
    """Runs compiles on one engine (`api`: the docker SDK's low-level client, with a long read
    timeout) and keeps its cache volume, restoring it once per process from `cache` if given."""

    def __init__(self, api: Any, cache: CacheDir | None = None, volume: str = CACHE_VOLUME, notice: Log | None = None) -> None:
        self.api = api
        self.cache = cache
        self.volume = volume
        self.notice: Log = notice or (lambda _: None)  # what the cache dir's restore says: shown whatever the verbosity
        self._ready = threading.Lock()
        self._volume_ready = False
        self.compiled = False  # whether anything was compiled: the cache is then worth saving

    def compile(self, job: CompileJob, log: Log, cancel: threading.Event | None = None) -> bytes:
        """The binary of `job` (ELF bytes). A failed compile raises DockerError with the go
        command's last lines, credentials masked; a cancel stops the container at once."""
        refused = refused_settings(job.recipe)
        if refused:
            raise DeployerError(*(f"go build of {job.function}: {problem}" for problem in refused))
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        secrets = job.secrets
        container = None
        try:
            self._ensure_volume(job.recipe.builder_image)
            container = self._create(job)
            with _tar_of(job) as data:
                self.api.put_archive(container, "/", data)
            self.api.start(container)
            reader = threading.Thread(target=self._follow, args=(container, tail, log, secrets), daemon=True,
                                      name="deployer-go-build-log")
            reader.start()
            code = self._wait(container, cancel)
            reader.join(timeout=5)
            if code != 0:
                output = "\n".join(self._last_lines(container, secrets, tail))
                hint = ""
                if job.netrc is None and _REFUSED.search(output):
                    hint = (f"\nno credentials were given: for a private module, set {job.netrc_env} to a netrc file "
                            "(or its text) with the module host's login")
                raise DockerError(redact(f"go build of {job.function} failed (exit code {code}):\n{output}{hint}", secrets))
            chunks, _ = self.api.get_archive(container, BINARY)
            self.compiled = True
            return _binary_from(chunks, job.function)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerError(redact(f"go build of {job.function} failed: {engine_said(exc)}", secrets)) from None
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                    self.api.remove_container(container, force=True)

    def _create(self, job: CompileJob) -> str:
        try:
            host_config = self.api.create_host_config(
                network_mode="host",  # a module proxy on the machine's loopback is reachable
                mounts=[docker.types.Mount(target=CACHE_MOUNT, source=self.volume, type="volume")],
            )
            created = self.api.create_container(
                job.recipe.builder_image, command=["go", "build", *job.recipe.flags, "-o", BINARY, "."],
                working_dir=SOURCE_DIR, environment=job.environment(),
                labels={LABEL: job.function[:64], OWNER_LABEL: OWNER},
                host_config=host_config,
            )
        except docker.errors.ImageNotFound:
            raise DockerError(f"builder image {job.recipe.builder_image} is not on the Docker engine; pull it "
                              "(docker pull) or set build.builder_image to an image that has go") from None
        return str(created["Id"])

    def _follow(self, container: str, tail: collections.deque[str], log: Log, secrets: tuple[str, ...]) -> None:
        with contextlib.suppress(Exception):  # the container may be removed under it: the wait says why
            for line in _shown_lines(self.api.logs(container, stream=True, follow=True), secrets):
                tail.append(line)
                log(line)

    def _last_lines(self, container: str, secrets: tuple[str, ...], followed: collections.deque[str]) -> list[str]:
        """The exited container's last lines, read again whole: the follower may not have caught up
        (a loaded engine, a stream that broke), and a failure must show what go said. What the
        follower saw when this read fails, or takes longer than LOG_REREAD_SECONDS (the SDK reads
        a log stream without a timeout: a wedged engine would hold it for ever)."""
        lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        read = threading.Event()

        def reread() -> None:
            with contextlib.suppress(Exception):  # the engine's errors, and urllib3's from the raw stream
                lines.extend(_shown_lines(self.api.logs(container, stream=True, follow=False, tail=TAIL_LINES), secrets))
                read.set()

        reader = threading.Thread(target=reread, daemon=True, name="deployer-go-build-last-lines")
        reader.start()
        reader.join(LOG_REREAD_SECONDS)
        return list(lines) if read.is_set() and lines else list(followed)

    def _wait(self, container: str, cancel: threading.Event | None) -> int:
        deadline = time.monotonic() + COMPILE_TIMEOUT_SECONDS
        while True:
            if cancel is not None and cancel.is_set():
                with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                    self.api.kill(container)
                raise DockerError("go build stopped: cancelled")
            if time.monotonic() > deadline:
                raise DockerError(f"go build ran longer than {COMPILE_TIMEOUT_SECONDS}s and was stopped; "
                                  "check that the module proxy answers (GOPROXY)")
            try:
                state = self.api.wait(container, timeout=WAIT_SLICE_SECONDS)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                if "timed out" in str(exc).lower() or isinstance(exc, requests.exceptions.ReadTimeout):
                    continue
                raise
            return int(state.get("StatusCode", -1))

    def _ensure_volume(self, helper_image: str) -> None:
        """The cache volume exists; when it had to be made and a cache dir is given, it is
        filled from there first. Once per process; applies on one machine take turns."""
        with self._ready:
            if self._volume_ready:
                return
            with self._machine_lock():
                try:
                    self.api.inspect_volume(self.volume)
                    fresh = False
                except docker.errors.NotFound:
                    self.api.create_volume(self.volume, labels={LABEL: "cache"})
                    fresh = True
                if fresh and self.cache is not None and not self.cache.restore(self.api, helper_image, self.volume, self.notice):
                    # The engine unpacks an archive as it comes: one that failed half way may have
                    # left modules with files missing, which the go command would trust from then on.
                    with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                        self.api.remove_volume(self.volume, force=True)
                        self.api.create_volume(self.volume, labels={LABEL: "cache"})
            self._sweep_abandoned()
            self._volume_ready = True

    def _sweep_abandoned(self) -> None:
        """Remove the compile containers of processes of this machine that died without removing
        them (kill -9): they hold a build context, and a netrc when one was given."""
        host = OWNER.partition("/")[0]
        with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
            for container in self.api.containers(all=True, filters={"label": OWNER_LABEL}):
                owner_host, _, pid = str((container.get("Labels") or {}).get(OWNER_LABEL, "")).partition("/")
                if owner_host == host and pid.isdigit() and not _alive(int(pid)):
                    self.api.remove_container(container["Id"], force=True)

    @contextlib.contextmanager
    def _machine_lock(self) -> Iterator[None]:
        path = Path(tempfile.gettempdir()) / f"deployer-{self.volume}.lock"
        fd = locks.acquire(path, wait=time.sleep, note=f"pid {os.getpid()}")
        try:
            yield
        finally:
            locks.release(fd, path)

    def save_cache(self, helper_image: str, log: Log) -> None:
        """Write the cache volume to the cache dir, if one is given and this run compiled."""
        if self.cache is not None and self.compiled:
            self.cache.save(self.api, helper_image, self.volume, log)


@dataclass(frozen=True)
class CacheDir:
    """A directory of this machine that keeps the engine's Go caches between runs (CI restores
    and saves it, e.g. with actions/cache). With a remote engine the caches travel through the
    engine's API connection both ways."""

    path: Path

    @property
    def archive(self) -> Path:
        return self.path / CACHE_ARCHIVE

    @contextlib.contextmanager
    def _helper(self, api: Any, image: str, volume: str) -> Iterator[str]:
        """A container (never started) that mounts the cache volume, for archive transfers."""
        host_config = api.create_host_config(mounts=[docker.types.Mount(target=CACHE_MOUNT, source=volume, type="volume")])
        container = str(api.create_container(image, command=["true"], labels={LABEL: "cache"}, host_config=host_config)["Id"])
        try:
            yield container
        finally:
            with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                api.remove_container(container, force=True)

    def restore(self, api: Any, image: str, volume: str, log: Log) -> bool:
        """Fill the (new) volume from the archive; False when that failed and the volume may
        hold part of it."""
        if not self.archive.is_file():
            log(f"cache dir {self.path}: no {CACHE_ARCHIVE} yet; starting with empty Go caches")
            return True
        started = time.monotonic()
        try:
            with self._helper(api, image, volume) as container, self.archive.open("rb") as data:
                api.put_archive(container, "/", data)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            # A broken cache costs time, not correctness: the go command fills the caches again.
            log(f"cache dir {self.path}: could not restore the Go caches ({engine_said(exc)}); going on without them")
            return False
        log(f"restored the Go caches from {self.archive} in {time.monotonic() - started:.1f}s")
        return True

    def save(self, api: Any, image: str, volume: str, log: Log) -> None:
        started = time.monotonic()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".go-cache-", suffix=".tmp", delete=False) as out:
                partial = Path(out.name)
                try:
                    with self._helper(api, image, volume) as container:
                        chunks, _ = api.get_archive(container, CACHE_MOUNT)
                        for chunk in chunks:
                            out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise
            os.replace(partial, self.archive)  # a reader never sees half an archive
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise DeployerError(f"cannot save the Go caches to {self.path}: {engine_said(exc)}; "
                                "check the directory, or leave out --cache-dir") from None
        log(f"saved the Go caches to {self.archive} ({self.archive.stat().st_size >> 20} MiB) in "
            f"{time.monotonic() - started:.1f}s")


def _shown_lines(chunks: Iterable[bytes], secrets: tuple[str, ...]) -> Iterator[str]:
    """The compile's output as shown, line by line (`_shown_line`); a line longer than
    LINE_WINDOW is shown cut once and the rest of it dropped, so nothing is held whole."""
    pending = b""
    cut = False  # the line under way was shown cut already: the rest of it is dropped
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            if not cut:
                line = _shown_line(raw, secrets)
                if line:
                    yield line
            cut = False
        if len(pending) > LINE_WINDOW:
            if not cut:
                yield _shown_line(pending, secrets)
            pending, cut = b"", True
    if pending.strip() and not cut:
        yield _shown_line(pending, secrets)


def _shown_line(raw: bytes, secrets: tuple[str, ...]) -> str:
    """A line of the compile's output as shown: decoded, secrets masked, at most LINE_CHARS."""
    line = redact(raw[:LINE_WINDOW].decode("utf-8", "replace").rstrip(), secrets)
    if len(raw) > LINE_WINDOW or len(line) > LINE_CHARS:
        return f"{line[:LINE_CHARS]} ... (line cut)"
    return line


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


# What the go command says when a module host or proxy wants credentials it was not given.
_REFUSED = re.compile(r"\b(401|403) (Unauthorized|Forbidden)\b|terminal prompts disabled|could not read Username")

# A request URL's query: the build endpoint's holds every build arg.
_URL_QUERY = re.compile(r"(/[^\s?'\"]*)\?[^\s'\")]*")
# The classic builder colours a RUN step's stderr red with ANSI escapes; they would reach logs
# and error messages as stray "[91m" text.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def engine_said(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """What the engine (or the file system) said, without the request: an APIError's
    explanation (its str() starts with the request URL), an OSError's reason, an HTTP status line
    ("HTTP 502 Bad Gateway": retries look for it); otherwise the error's text with every URL
    query cut off. Secrets masked."""
    explanation = getattr(exc, "explanation", None) or getattr(exc, "msg", None) or getattr(exc, "strerror", None)
    if explanation:
        text = str(explanation)
    else:
        response = getattr(exc, "response", None)
        if response is not None:
            text = f"HTTP {response.status_code} {response.reason}"
        else:
            text = _URL_QUERY.sub(r"\1?...", str(exc))
    return redact(ANSI_ESCAPE.sub("", text).strip(), secrets)
