"""Credentials for a container registry: what the ECR gateway hands out and the Docker gateway
uses, in a module of their own so that neither gateway imports the other."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from dataclasses import dataclass

from deployer.state import SINGLE_PLATFORM_MEDIA_TYPES


# Labels apply puts on every image it builds: what `deployer history` reads back (from the registry).
SOURCE_DIGEST_LABEL = "dev.deployer.source-digest"
REVISION_LABEL = "org.opencontainers.image.revision"


@dataclass(frozen=True)
class RegistryLogin:
    """Credentials for `docker login`; kept in memory only, never printed (repr hides the password)."""

    username: str
    password: str
    registry: str

    def __repr__(self) -> str:
        return f"RegistryLogin(username={self.username!r}, registry={self.registry!r}, password=***)"


# Bounds on what a registry answers when deployer reads an image's labels (a manifest, a config).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MANIFEST_TYPES = tuple(sorted(SINGLE_PLATFORM_MEDIA_TYPES))  # what deployer asks a registry for, in an Accept header
LABEL_BYTES = 1024  # a label's value, as shown
MAX_LABELS = 1000  # far more than any image deployer builds carries; the rest of a crafted config is dropped
READ_SECONDS = 20.0  # one image's labels, however slowly the registry answers (a read timeout alone restarts per byte)
_BLOB_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def api_base(host: str, repository: str) -> str:
    """The registry API's URL of `repository` on `host` (a registry, or host:port of a local
    emulator): HTTPS, but plain HTTP on loopback, where a local emulator listens."""
    host = host.removeprefix("http://").removeprefix("https://").rstrip("/")
    scheme = "http" if host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]") else "https"
    return f"{scheme}://{host}/v2/{repository}"


class RegistryUnanswered(Exception):
    """The registry did not answer (in time, or at all), or answered with a server error: unlike a
    refusal or a missing image, worth not asking again in the same run."""


def image_labels(registry: str, repository: str, digest: str, login: RegistryLogin, endpoint: str | None = None,
                 timeout: float = 10.0, total: float = READ_SECONDS, raise_unanswered: bool = False) -> dict[str, str] | None:
    """The labels of the image `registry/repository@digest`, read through the registry API (the
    manifest, then its config blob) with `login`: no Docker engine. `endpoint` (host:port) is asked
    instead of the registry host (a local emulator; plain HTTP on loopback). None when the image,
    or anything of it, cannot be read: labels are for display, never acted on. Each read waits at
    most `timeout`, all of them `total`; with `raise_unanswered`, a registry that does not answer
    so (or answers with a server error) raises RegistryUnanswered instead of giving None."""
    import json

    import requests
    import urllib3.exceptions

    base = api_base(endpoint or registry, repository)
    deadline = time.monotonic() + total
    # identity: a compressed answer is no smaller to bound, and could inflate far past it
    headers = {"Accept": ", ".join(MANIFEST_TYPES), "Accept-Encoding": "identity"}
    try:
        with requests.Session() as session:
            session.auth = (login.username, login.password)
            manifest = _bounded(session.get(f"{base}/manifests/{digest}", headers=headers, timeout=timeout, stream=True),
                                MAX_MANIFEST_BYTES, deadline)
            config_digest = json.loads(manifest)["config"]["digest"]
            if not (isinstance(config_digest, str) and _BLOB_DIGEST.fullmatch(config_digest)):
                return None  # not a path to put in a URL
            # ECR answers a blob with a redirect to S3: requests drops the credentials on another host.
            blob = _bounded(session.get(f"{base}/blobs/{config_digest}", headers={"Accept-Encoding": "identity"},
                                        timeout=timeout, stream=True), MAX_CONFIG_BYTES, deadline)
            if "sha256:" + hashlib.sha256(blob).hexdigest() != config_digest:
                return None  # not the config the manifest names
            config = json.loads(blob)
    except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError,
            TimeoutError, requests.HTTPError) as exc:
        answered = isinstance(exc, requests.HTTPError) and (exc.response is None or exc.response.status_code < 500)
        if raise_unanswered and not answered:  # answered: refused, or no such image
            raise RegistryUnanswered(str(exc)) from exc
        return None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # a truncated or undecodable answer too: labels are for display
    return _labels_of(config)


def _labels_of(config: object) -> dict[str, str]:
    """The string labels of an image config, bounded; {} when it has none in the form of labels."""
    inner = config.get("config") if isinstance(config, dict) else None
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if not isinstance(labels, dict):
        return {}
    found = ((k, v) for k, v in labels.items() if isinstance(k, str) and isinstance(v, str))
    return {k[:256]: v[:LABEL_BYTES] for k, v in itertools.islice(found, MAX_LABELS)}


def _bounded(response: object, limit: int, deadline: float) -> bytes:
    """The body of `response`, at most `limit` bytes, read before `deadline` (time.monotonic):
    read as it arrives, so that a registry sending a byte at a time cannot hold the read."""
    import requests

    assert isinstance(response, requests.Response)
    chunks: list[bytes] = []
    size = 0
    with response:
        response.raise_for_status()
        while size <= limit:
            if time.monotonic() > deadline:
                raise TimeoutError("the registry did not send the answer in time")
            chunk = response.raw.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        raise ValueError("larger than deployer reads")
    return b"".join(chunks)
