"""image_copy: copy an image by digest from one registry repository to another, through the
registry API (no Docker engine): the image of a source built for one environment, deployed in
another (deployer.plan.CopyImage).

The manifest's exact bytes are copied, so the copy has the source's digest. Blobs the target
has already are skipped; on the same registry host a blob is mounted from the source repository
(nothing is transferred) when the registry allows it, else it is streamed from the source and
uploaded, its digest checked on the way. Everything is bounded: the manifest's size, the number
and size of the blobs, each read's wait and the whole copy's time; Ctrl-C stops between chunks.

Credentials go to each registry's own host only: requests drops them on a redirect to another
host (ECR sends blob reads to S3), and an upload the target says to continue on another host is
refused (a session's credentials would go with every request it sends, wherever). A watchdog
shuts the copy's connections down at Ctrl-C or at its deadline: a registry that drips its answer's
headers, or sends nothing, holds a read only until then, not for a read timeout per byte.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from deployer.errors import DeployerError
from deployer.interrupts import Cancelled
from deployer.paths import shown
from deployer.registry import MANIFEST_TYPES, MAX_MANIFEST_BYTES, RegistryLogin, api_base

if TYPE_CHECKING:
    import requests

MAX_BLOBS = 1000  # a config and its layers: far more than any image Lambda runs has
MAX_BLOB_BYTES = 10 * 1024**3  # Lambda's image limit (uncompressed) is 10 GB: no layer, nor all of them, is larger
COPY_SECONDS = 1800.0  # the whole copy, however slowly the registries answer
TIMEOUT = (10.0, 60.0)  # connect, then each read
CHUNK = 1 << 20
WATCH_SECONDS = 0.1  # how often the watchdog looks at Ctrl-C and the deadline
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ERROR_CODE = re.compile(r"[A-Z_]{1,64}")


class CopyError(DeployerError):
    """The copy failed: what, where, and what to do."""


class CopyAuthRefused(CopyError):
    """A registry refused the credentials (an expired token: log in again once)."""


@dataclass(frozen=True)
class Repository:
    """A repository as the registry API reaches it: `host` (the ECR host, or the emulator's
    host:port that replaces it), the repository's name, and the credentials for it."""

    host: str
    name: str
    login: RegistryLogin

    @property
    def base(self) -> str:
        return api_base(self.host, self.name)

    def __str__(self) -> str:
        return f"{self.host}/{self.name}"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class Copied:
    """What a copy did: the digest under the tag, the blobs transferred, mounted or already there."""

    digest: str
    transferred: int = 0
    mounted: int = 0
    present: int = 0
    already_tagged: bool = False


def copy_image(source: Repository, digest: str, target: Repository, tag: str, *, cancel: threading.Event,
               progress: Callable[[int, int], None] | None = None, seconds: float = COPY_SECONDS) -> Copied:
    """Copy `source@digest` to `target:tag`. A tag that holds the digest already is done; one
    that holds another image is an error (the content tag names one source's image)."""
    copy = _Copy(source, target, cancel, seconds)
    with copy:
        manifest, media_type, blobs = copy.manifest(digest)
        now = copy.tagged(tag)
        if now == digest:
            return Copied(digest, already_tagged=True)
        if now is not None:
            raise CopyError(f"{target}:{tag} holds {now}, not {digest}, the image of this source in {source}; "
                            "delete the tag or run plan again")
        counts = {"transferred": 0, "mounted": 0, "present": 0}
        total, done = sum(b.size for b in blobs), 0
        for blob in blobs:
            counts[copy.blob(blob)] += 1
            done += blob.size
            if progress is not None:
                progress(done, total)
        copy.put_manifest(tag, manifest, media_type, digest)
        return Copied(digest, counts["transferred"], counts["mounted"], counts["present"])


class _Copy:
    """One copy's two HTTP sessions (each side's credentials) and its deadline."""

    def __init__(self, source: Repository, target: Repository, cancel: threading.Event, seconds: float) -> None:
        self.source, self.target, self.cancel = source, target, cancel
        self.seconds, self.deadline = seconds, time.monotonic() + seconds
        self.same_host = source.host == target.host
        self.sockets = _Sockets()
        self.pull, self.push = self.sockets.session(), self.sockets.session()
        self.pull.auth = (source.login.username, source.login.password)
        self.push.auth = (target.login.username, target.login.password)
        self.done = threading.Event()
        self.watchdog = threading.Thread(target=self.watch, name="image-copy-watchdog", daemon=True)

    def __enter__(self) -> _Copy:
        self.watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.watchdog.join()
        self.pull.close()
        self.push.close()

    def watch(self) -> None:
        """Shut the copy's connections down at Ctrl-C or past the deadline: a blocked read ends."""
        while not self.done.wait(WATCH_SECONDS):
            if self.cancel.is_set() or time.monotonic() > self.deadline:
                self.sockets.shut_down()
                return

    def stop_if_due(self, what: str) -> None:
        """Cancelled at Ctrl-C; CopyError past the deadline (also what a shut connection means)."""
        if self.cancel.is_set():
            raise Cancelled(f"cancelled while {what}")
        if time.monotonic() > self.deadline:
            raise CopyError(f"{what}: the copy took longer than {self.seconds:.0f} s; check the registries and apply again")

    def request(self, session: Any, method: str, url: str, what: str, ok: tuple[int, ...], **kwargs: Any) -> Any:
        """One registry request; CopyError (CopyAuthRefused) for an answer not in `ok`, or none.
        Streamed: no answer is read whole, so none can be larger than what is read of it."""
        import requests

        self.stop_if_due(what)
        try:
            response = session.request(method, url, timeout=TIMEOUT, stream=True, **kwargs)
        except requests.RequestException as exc:
            self.stop_if_due(what)  # the watchdog shut the connection
            raise CopyError(f"{what}: no answer from {urllib.parse.urlsplit(url).netloc} ({type(exc).__name__}); check the "
                            "registry endpoint and the network, and apply again") from exc
        if response.status_code in ok:
            return response
        code = _error_code(response)
        response.close()
        if response.status_code in (401, 403):
            raise CopyAuthRefused(f"{what}: the registry refused the credentials (HTTP {response.status_code}{code}); check "
                                  "that the apply role may pull from the source and push to the target repository")
        raise CopyError(f"{what}: the registry answered HTTP {response.status_code}{code}")

    def manifest(self, digest: str) -> tuple[bytes, str, list[Blob]]:
        """The source manifest's bytes, checked against `digest`, its media type and blobs."""
        what = f"reading {self.source}@{digest}"
        response = self.request(self.pull, "GET", f"{self.source.base}/manifests/{digest}", what, (200, 404),
                                headers={"Accept": ", ".join(MANIFEST_TYPES), "Accept-Encoding": "identity"})
        if response.status_code == 404:
            response.close()
            raise CopyError(f"{what}: the image to copy is not there any more (deleted since the plan?); run plan again")
        body = b"".join(self.read(response, MAX_MANIFEST_BYTES, what))
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise CopyError(f"{what}: the registry sent a manifest of another digest; nothing was copied")
        if media_type not in MANIFEST_TYPES:
            raise CopyError(f"{what}: not a single-platform image manifest ({media_type[:100] or 'no media type'}); "
                            "Lambda runs only those")
        return body, media_type, _blobs(body, what)

    def tagged(self, tag: str) -> str | None:
        """The digest the target's tag holds now (None: no such tag, or no repository yet)."""
        response = self.request(self.push, "HEAD", f"{self.target.base}/manifests/{tag}", f"reading {self.target}:{tag}",
                                (200, 404), headers={"Accept": ", ".join(MANIFEST_TYPES)})
        found = response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None
        response.close()
        return found if isinstance(found, str) and _DIGEST.fullmatch(found) else None

    def blob(self, blob: Blob) -> str:
        """Make `blob` present in the target: "present", "mounted" or "transferred"."""
        where = f"{self.target.base}/blobs"
        checked = self.request(self.push, "HEAD", f"{where}/{blob.digest}", f"checking {blob.digest} in {self.target}", (200, 404))
        checked.close()
        if checked.status_code == 200:
            return "present"
        query = {"mount": blob.digest, "from": self.source.name} if self.same_host else {}
        started = self.request(self.push, "POST", f"{where}/uploads/", f"starting an upload to {self.target}", (201, 202),
                               params=query)
        if started.status_code == 201:
            started.close()
            return "mounted"
        self.upload(blob, _location(started, where, self.target))
        return "transferred"

    def upload(self, blob: Blob, location: str) -> None:
        """Stream the blob from the source into the upload at `location`, then close it with its
        digest (which the target checks too)."""
        what = f"copying {blob.digest} from {self.source} to {self.target}"
        # A redirect (ECR: to S3) is followed without the credentials, which stay with this host.
        response = self.request(self.pull, "GET", f"{self.source.base}/blobs/{blob.digest}", what, (200,),
                                headers={"Accept-Encoding": "identity"})
        hasher = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            for chunk in self.read(response, blob.size, what):
                hasher.update(chunk)
                yield chunk

        sent = self.request(self.push, "PATCH", location, what, (202, 204), data=chunks(),
                            headers={"Content-Type": "application/octet-stream"})
        if "sha256:" + hasher.hexdigest() != blob.digest:
            raise CopyError(f"{what}: the source sent other bytes than its digest names; nothing was tagged")
        self.request(self.push, "PUT", _with_query(_location(sent, location, self.target), digest=blob.digest), what, (201, 204),
                     headers={"Content-Length": "0"}).close()

    def put_manifest(self, tag: str, manifest: bytes, media_type: str, digest: str) -> None:
        """Tag the copy. An immutable tag set meanwhile to the same digest is the same result."""
        what = f"tagging {self.target}:{tag}"
        try:
            response = self.request(self.push, "PUT", f"{self.target.base}/manifests/{tag}", what, (201, 200),
                                    data=manifest, headers={"Content-Type": media_type})
        except CopyAuthRefused:
            raise
        except CopyError:
            if self.tagged(tag) == digest:
                return
            raise
        answered = response.headers.get("Docker-Content-Digest")
        response.close()
        if answered and answered != digest:
            raise CopyError(f"{what}: the registry stored the manifest as {answered[:80]}, not {digest}")

    def read(self, response: Any, limit: int, what: str) -> Iterator[bytes]:
        """The body of `response` in chunks: at most `limit` bytes, before the deadline, stopped by Ctrl-C."""
        size = 0
        with response:
            while True:
                self.stop_if_due(what)
                try:
                    chunk = response.raw.read1(CHUNK) if hasattr(response.raw, "read1") else response.raw.read(CHUNK)
                except Exception as exc:  # urllib3's protocol and timeout errors, OSError
                    self.stop_if_due(what)  # the watchdog shut the connection
                    raise CopyError(f"{what}: the answer broke off ({type(exc).__name__}); apply again") from exc
                if not chunk:
                    self.stop_if_due(what)  # a connection shut by the watchdog ends like an answer
                    return
                size += len(chunk)
                if size > limit:
                    raise CopyError(f"{what}: larger than the {limit} bytes it should be; nothing was tagged")
                yield chunk


def _blobs(manifest: bytes, what: str) -> list[Blob]:
    """The config and layers a single-platform manifest names, checked for form and size."""
    try:
        data = json.loads(manifest)
        entries = [data["config"], *data["layers"]]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CopyError(f"{what}: the manifest is not an image manifest ({type(exc).__name__}); nothing was copied") from exc
    if len(entries) > MAX_BLOBS:
        raise CopyError(f"{what}: the manifest names {len(entries)} blobs, more than deployer copies ({MAX_BLOBS})")
    blobs = []
    for entry in entries:
        digest, size = (entry.get("digest"), entry.get("size")) if isinstance(entry, dict) else (None, None)
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest) and type(size) is int and 0 <= size <= MAX_BLOB_BYTES):
            raise CopyError(f"{what}: the manifest names a blob without a sha256 digest and a size deployer copies")
        blobs.append(Blob(digest, size))
    unique = list({b.digest: b for b in blobs}.values())  # a blob named twice is copied once
    if sum(b.size for b in unique) > MAX_BLOB_BYTES:  # compressed, the whole image is no larger than one layer may be
        raise CopyError(f"{what}: the manifest names {sum(b.size for b in unique)} bytes of blobs, more than an image Lambda "
                        f"runs has ({MAX_BLOB_BYTES}); nothing was copied")
    return unique


def _location(response: Any, base: str, target: Repository) -> str:
    """Where an upload goes on: the answer's Location, relative to the request's URL, on the
    target's own host and scheme (the push session would send its credentials anywhere)."""
    location = response.headers.get("Location")
    response.close()
    if not location:
        raise CopyError(f"{base}: the registry started an upload without saying where it goes (no Location)")
    url = str(urllib.parse.urljoin(response.url or base, location))
    parts, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target.base)
    if (parts.scheme, parts.netloc.lower()) != (home.scheme, home.netloc.lower()):
        raise CopyError(f"uploading to {target}: the registry said to continue the upload on another host, "
                        f"{shown(parts.scheme + '://' + parts.netloc)}; refused, so that the credentials go to no other host")
    return url


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _error_code(response: Any) -> str:
    """The registry's error code (`errors[0].code`), when it is one: never its free text."""
    try:
        errors = json.loads(response.raw.read(65536)).get("errors") if response.request.method != "HEAD" else None
        code = errors[0].get("code") if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
    except Exception:  # noqa: BLE001 - any answer that is not the registry's error form
        return ""
    return f" {code}" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""


class _Sockets:
    """The sockets of one copy's sessions, to shut down from the watchdog: shutting a socket
    down ends a read blocked on it at once, whatever its timeout (closing it would not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._shut = False

    def add(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open = [s for s in self._open if s.fileno() != -1]
            self._open.append(sock)
            shut = self._shut
        if shut:  # a connection opened as the copy stops
            _shut_down(sock)
        return sock

    def shut_down(self) -> None:
        with self._lock:
            self._shut, sockets = True, list(self._open)
        for sock in sockets:
            _shut_down(sock)

    def session(self) -> requests.Session:
        """A session whose direct connections are registered here (through a proxy they are not:
        those wait for their timeouts)."""
        import requests.adapters
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        sockets = self

        class Plain(HTTPConnection):
            def _new_conn(self) -> socket.socket:
                return sockets.add(super()._new_conn())

        class Tls(HTTPSConnection):
            def _new_conn(self) -> socket.socket:
                return sockets.add(super()._new_conn())

        class PlainPool(HTTPConnectionPool):
            ConnectionCls = Plain

        class TlsPool(HTTPSConnectionPool):
            ConnectionCls = Tls

        class Adapter(requests.adapters.HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = {"http": PlainPool, "https": TlsPool}

        session = requests.Session()
        session.mount("http://", Adapter())
        session.mount("https://", Adapter())
        return session


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already
