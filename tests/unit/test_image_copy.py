"""The registry-to-registry copy against small in-process registries speaking the distribution API
over HTTP on loopback (basic auth, chunked uploads, cross-repository mounts): across hosts the
blobs are streamed, on one host mounted; the copy has the source's digest; what cannot be copied
is said clearly and leaves no tag."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from deployer.image_copy import Copied, CopyAuthRefused, CopyError, Repository, copy_image
from deployer.registry import RegistryLogin

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LOGIN = RegistryLogin("AWS", "token", "")
TAG = "src-" + "a" * 40


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Repositories of blobs and manifests, served on 127.0.0.1 to LOGIN's credentials only."""

    def __init__(self, mounts: bool = True) -> None:
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.manifests: dict[str, dict[str, tuple[bytes, str]]] = {}  # repo -> digest -> (bytes, type)
        self.tags: dict[str, dict[str, str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.mounts_allowed = mounts
        self.mounted = 0
        self.corrupt: set[str] = set()  # blobs served with other bytes than their digest names
        self.blob_redirect: str | None = None  # blob GETs answered with a redirect there (ECR: to S3)
        self.upload_at: str | None = None  # uploads said to go on there (scheme://host:port)
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                registry.serve(self, body=True)

            def do_HEAD(self) -> None:
                registry.serve(self, body=False)

            def do_POST(self) -> None:
                registry.serve(self, body=True)

            def do_PATCH(self) -> None:
                registry.serve(self, body=True)

            def do_PUT(self) -> None:
                registry.serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def repository(self, name: str) -> Repository:
        return Repository(self.host, name, LOGIN)

    def push(self, repo: str, layers: list[bytes], media_type: str = DOCKER_V2, tag: str | None = None) -> str:
        config = json.dumps({"architecture": "arm64", "os": "linux"}).encode()
        blobs = self.blobs.setdefault(repo, {})
        for blob in (config, *layers):
            blobs[sha(blob)] = blob
        manifest = json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": {"digest": sha(config), "size": len(config)},
                               "layers": [{"digest": sha(layer), "size": len(layer)} for layer in layers]}).encode()
        self.manifests.setdefault(repo, {})[sha(manifest)] = (manifest, media_type)
        if tag:
            self.tags.setdefault(repo, {})[tag] = sha(manifest)
        return sha(manifest)

    def serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        expected = "Basic " + base64.b64encode(f"{LOGIN.username}:{LOGIN.password}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            return self.reply(handler, 401, b'{"errors": [{"code": "UNAUTHORIZED", "message": "no"}]}', body=body)
        url = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.split("/")  # "", "v2", repo, kind, ref...
        repo, kind, ref = parts[2], parts[3], "/".join(parts[4:])
        method = handler.command
        if kind == "manifests" and method in ("GET", "HEAD"):
            digest = self.tags.get(repo, {}).get(ref, ref)
            found = self.manifests.get(repo, {}).get(digest)
            if found is None:
                return self.reply(handler, 404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}', body=body)
            return self.reply(handler, 200, found[0], {"Content-Type": found[1], "Docker-Content-Digest": digest}, body)
        if kind == "manifests" and method == "PUT":
            data = self.read(handler)
            document = json.loads(data)
            missing = [d["digest"] for d in [document["config"], *document["layers"]] if d["digest"] not in self.blobs.get(repo, {})]
            if missing:
                return self.reply(handler, 400, b'{"errors": [{"code": "MANIFEST_BLOB_UNKNOWN"}]}')
            self.manifests.setdefault(repo, {})[sha(data)] = (data, handler.headers["Content-Type"])
            self.tags.setdefault(repo, {})[ref] = sha(data)
            return self.reply(handler, 201, b"", {"Docker-Content-Digest": sha(data)})
        if kind == "blobs" and method == "GET" and self.blob_redirect and ref in self.blobs.get(repo, {}):
            return self.reply(handler, 307, b"", {"Location": f"{self.blob_redirect}/{ref}"})
        if kind == "blobs" and method in ("GET", "HEAD") and ref in self.blobs.get(repo, {}):
            data = self.blobs[repo][ref]
            return self.reply(handler, 200, b"X" * len(data) if ref in self.corrupt else data, body=body)
        if kind == "blobs" and method in ("GET", "HEAD"):
            return self.reply(handler, 404, b'{"errors": [{"code": "BLOB_UNKNOWN"}]}', body=body)
        if kind == "blobs" and method == "POST":
            source = self.blobs.get(query.get("from", ""), {}).get(query.get("mount", ""))
            if self.mounts_allowed and source is not None:
                self.blobs.setdefault(repo, {})[query["mount"]] = source
                self.mounted += 1
                return self.reply(handler, 201, b"")
            upload = str(uuid.uuid4())
            self.uploads[upload] = bytearray()
            return self.reply(handler, 202, b"", {"Location": f"{self.upload_at or ''}/v2/{repo}/blobs/uploads/{upload}?_state=x"})
        if kind == "blobs" and method == "PATCH":
            self.uploads[parts[5]] += self.read(handler)
            return self.reply(handler, 202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{parts[5]}?_state=y"})
        if kind == "blobs" and method == "PUT":
            data = bytes(self.uploads.pop(parts[5]))
            if sha(data) != query.get("digest"):
                return self.reply(handler, 400, b'{"errors": [{"code": "DIGEST_INVALID"}]}')
            self.blobs.setdefault(repo, {})[sha(data)] = data
            return self.reply(handler, 201, b"")
        return self.reply(handler, 405, b"")

    @staticmethod
    def read(handler: BaseHTTPRequestHandler) -> bytes:
        """The request body, plain or in HTTP/1.1 chunks (how the copy streams a blob)."""
        if handler.headers.get("Transfer-Encoding") != "chunked":
            return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        data = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                return bytes(data)
            data += handler.rfile.read(size)
            handler.rfile.readline()

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None,
              body: bool = True) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


@pytest.fixture
def registries() -> Iterator[tuple[FakeRegistry, FakeRegistry]]:
    staging, production = FakeRegistry(), FakeRegistry()
    yield staging, production
    staging.close()
    production.close()


LAYERS = [b"layer one" * 1000, bytes(range(256)) * 5000, b""]


def copy(source: Repository, digest: str, target: Repository) -> Copied:
    seen: list[tuple[int, int]] = []
    done = copy_image(source, digest, target, TAG, cancel=threading.Event(), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] if seen else True
    return done


def test_across_registries_the_blobs_are_streamed_and_the_digest_kept(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS, tag=TAG)
    done = copy(staging.repository("fn-staging"), digest, production.repository("fn-production"))
    assert (done.digest, done.transferred, done.mounted, done.present) == (digest, 4, 0, 0)
    assert production.tags["fn-production"][TAG] == digest
    assert production.manifests["fn-production"][digest] == staging.manifests["fn-staging"][digest]
    assert production.blobs["fn-production"] == staging.blobs["fn-staging"]
    again = copy(staging.repository("fn-staging"), digest, production.repository("fn-production"))
    assert again == Copied(digest, already_tagged=True)


def test_on_one_registry_the_blobs_are_mounted_and_those_there_skipped(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, _ = registries
    digest = staging.push("fn-staging", LAYERS)
    staging.blobs["fn-production"] = {sha(LAYERS[0]): LAYERS[0]}
    done = copy(staging.repository("fn-staging"), digest, staging.repository("fn-production"))
    assert (done.transferred, done.mounted, done.present, staging.mounted) == (0, 3, 1, 3)
    assert staging.tags["fn-production"][TAG] == digest


def test_a_registry_that_does_not_mount_gets_the_blobs_uploaded() -> None:
    one = FakeRegistry(mounts=False)
    try:
        digest = one.push("fn-staging", LAYERS)
        done = copy(one.repository("fn-staging"), digest, one.repository("fn-production"))
        assert (done.transferred, done.mounted) == (4, 0)
    finally:
        one.close()


def test_a_source_image_gone_since_the_plan_is_said_so(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    gone = "sha256:" + "f" * 64
    with pytest.raises(CopyError, match=r"the image to copy is not there any more \(deleted since the plan\?\); run plan again"):
        copy(staging.repository("fn-staging"), gone, production.repository("fn-production"))
    assert production.tags == {}


def test_a_tag_holding_another_image_is_not_replaced(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    other = production.push("fn-production", [b"other"], tag=TAG)
    with pytest.raises(CopyError, match=f"holds {other}, not {digest}"):
        copy(staging.repository("fn-staging"), digest, production.repository("fn-production"))
    assert production.tags["fn-production"][TAG] == other


def test_an_index_is_refused(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS, media_type=OCI_INDEX)
    with pytest.raises(CopyError, match="not a single-platform image manifest"):
        copy(staging.repository("fn-staging"), digest, production.repository("fn-production"))


def test_bytes_that_are_not_their_digest_are_never_tagged(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    staging.corrupt.add(sha(LAYERS[1]))
    with pytest.raises(CopyError, match="the source sent other bytes than its digest names; nothing was tagged"):
        copy(staging.repository("fn-staging"), digest, production.repository("fn-production"))
    assert production.tags == {}


def test_refused_credentials_are_their_own_error(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    wrong = Repository(production.host, "fn-production", RegistryLogin("AWS", "expired", ""))
    with pytest.raises(CopyAuthRefused, match=r"refused the credentials \(HTTP 401\)"):
        copy(staging.repository("fn-staging"), digest, wrong)


def test_a_registry_that_does_not_answer_is_said_so(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    production.close()
    with pytest.raises(CopyError, match=r"no answer from 127\.0\.0\.1:\d+ \(ConnectionError\)"):
        copy(staging.repository("fn-staging"), digest, production.repository("fn-production"))


def test_a_copy_is_bounded_in_time(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    with pytest.raises(CopyError, match="the copy took longer than 0 s; check the registries and apply again"):
        copy_image(staging.repository("fn-staging"), digest, production.repository("fn-production"), TAG,
                   cancel=threading.Event(), seconds=0)
    assert production.tags == {}


def test_ctrl_c_stops_a_copy_between_chunks(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    from deployer.interrupts import Cancelled

    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="cancelled while reading"):
        copy_image(staging.repository("fn-staging"), digest, production.repository("fn-production"), TAG, cancel=cancel)
    assert production.tags == {}
