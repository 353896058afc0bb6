"""image_copy: copy an image by digest from one registry repository to another, through the
registry API (no Docker engine): the image of a source built for one environment, deployed in
another (deployer.plan.CopyImage).

The manifest's exact bytes are copied, so the copy has the source's digest. Blobs the target
has already are skipped; on the same registry host a blob is mounted from the source repository
(nothing is transferred) when the registry allows it, else it is streamed from the source and
uploaded, its digest checked on the way. Everything is bounded: the manifest's size, the number
and size of the blobs, each read's wait and the whole copy's time; Ctrl-C stops between chunks.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from deployer.errors import DeployerError
from deployer.interrupts import Cancelled
from deployer.registry import MANIFEST_TYPES, MAX_MANIFEST_BYTES, RegistryLogin

MAX_BLOBS = 1000  # a config and its layers: far more than any image Lambda runs has
MAX_BLOB_BYTES = 10 * 1024**3  # Lambda's image limit (uncompressed) is 10 GB: no layer is larger
COPY_SECONDS = 1800.0  # the whole copy, however slowly the registries answer
TIMEOUT = (10.0, 60.0)  # connect, then each read
CHUNK = 1 << 20
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
        host = self.host.removeprefix("http://").removeprefix("https://").rstrip("/")
        scheme = "http" if host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]") else "https"
        return f"{scheme}://{host}/v2/{self.name}"

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
        import requests

        self.source, self.target, self.cancel = source, target, cancel
        self.seconds, self.deadline = seconds, time.monotonic() + seconds
        self.same_host = source.host == target.host
        self.pull, self.push = requests.Session(), requests.Session()
        self.pull.auth = (source.login.username, source.login.password)
        self.push.auth = (target.login.username, target.login.password)

    def __enter__(self) -> _Copy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pull.close()
        self.push.close()

    def request(self, session: Any, method: str, url: str, what: str, ok: tuple[int, ...], **kwargs: Any) -> Any:
        """One registry request; CopyError (CopyAuthRefused) for an answer not in `ok`, or none.
        Streamed: no answer is read whole, so none can be larger than what is read of it."""
        import requests

        if time.monotonic() > self.deadline:
            raise CopyError(f"{what}: the copy took longer than {self.seconds:.0f} s; check the registries and apply again")
        try:
            response = session.request(method, url, timeout=TIMEOUT, stream=True, **kwargs)
        except requests.RequestException as exc:
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
        self.upload(blob, _location(started, where))
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
        self.request(self.push, "PUT", _with_query(_location(sent, location), digest=blob.digest), what, (201, 204),
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
                if self.cancel.is_set():
                    raise Cancelled(f"cancelled while {what}")
                if time.monotonic() > self.deadline:
                    raise CopyError(f"{what}: the copy took longer than {self.seconds:.0f} s; check the registries and apply again")
                try:
                    chunk = response.raw.read1(CHUNK) if hasattr(response.raw, "read1") else response.raw.read(CHUNK)
                except Exception as exc:  # urllib3's protocol and timeout errors, OSError
                    raise CopyError(f"{what}: the answer broke off ({type(exc).__name__}); apply again") from exc
                if not chunk:
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
    return list({b.digest: b for b in blobs}.values())  # a blob named twice is copied once


def _location(response: Any, base: str) -> str:
    """Where an upload goes on: the answer's Location, relative to the request's URL."""
    location = response.headers.get("Location")
    response.close()
    if not location:
        raise CopyError(f"{base}: the registry started an upload without saying where it goes (no Location)")
    return str(urllib.parse.urljoin(response.url or base, location))


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
