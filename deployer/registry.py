"""Credentials for a container registry: what the ECR gateway hands out and the Docker gateway
uses, in a module of their own so that neither gateway imports the other."""

from __future__ import annotations

from dataclasses import dataclass


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
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json")
LABEL_BYTES = 1024  # a label's value, as shown


def image_labels(registry: str, repository: str, digest: str, login: RegistryLogin, endpoint: str | None = None,
                 timeout: float = 10.0) -> dict[str, str] | None:
    """The labels of the image `registry/repository@digest`, read through the registry API (the
    manifest, then its config blob) with `login`: no Docker engine. `endpoint` (host:port) is asked
    instead of the registry host (a local emulator; plain HTTP on loopback). None when the image,
    or anything of it, cannot be read: labels are for display, never acted on."""
    import json

    import requests
    import urllib3.exceptions

    host = (endpoint or registry).removeprefix("http://").removeprefix("https://").rstrip("/")
    scheme = "http" if host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]") else "https"
    base = f"{scheme}://{host}/v2/{repository}"
    try:
        with requests.Session() as session:
            session.auth = (login.username, login.password)
            manifest = _bounded(session.get(f"{base}/manifests/{digest}", headers={"Accept": ", ".join(MANIFEST_TYPES)},
                                            timeout=timeout, stream=True), MAX_MANIFEST_BYTES)
            config_digest = json.loads(manifest)["config"]["digest"]
            # ECR answers a blob with a redirect to S3: requests drops the credentials on another host.
            config = json.loads(_bounded(session.get(f"{base}/blobs/{config_digest}", timeout=timeout, stream=True), MAX_CONFIG_BYTES))
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # a truncated, stalled or undecodable answer too: labels are for display
    labels = (config.get("config") or {}).get("Labels") if isinstance(config, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {k[:256]: v[:LABEL_BYTES] for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


def _bounded(response: object, limit: int) -> bytes:
    import requests

    assert isinstance(response, requests.Response)
    with response:
        response.raise_for_status()
        data = response.raw.read(limit + 1, decode_content=True)
    if len(data) > limit:
        raise ValueError("larger than deployer reads")
    return bytes(data)
