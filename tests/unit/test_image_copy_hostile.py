"""The registry-to-registry copy against registries that misbehave on purpose: credentials never
go to a host other than the registry's (a blob redirected elsewhere, as ECR does to S3; an upload
said to continue elsewhere), and a registry that drips its headers or answers nothing holds the
copy only until its deadline or Ctrl-C, not for a read timeout per byte."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from deployer.image_copy import CopyError, Repository, copy_image
from deployer.interrupts import Cancelled
from tests.unit.test_image_copy import LAYERS, LOGIN, TAG, FakeRegistry, registries  # noqa: F401 - a fixture

__all__ = ["registries"]


class Elsewhere:
    """Another host (S3, or an attacker's): serves what it is given under any path, to anyone,
    and records the Authorization headers it was sent."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.authorizations: list[str] = []
        self.requests = 0
        seen = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                seen.requests += 1
                if "Authorization" in self.headers:
                    seen.authorizations.append(self.headers["Authorization"])
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                name = self.path.rsplit("/", 1)[-1]
                data = blobs.get(name, b"")
                self.send_response(200 if name in blobs or self.command != "GET" else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_PUT = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stalling:
    """A registry that accepts connections, then sends a status line and a header byte every
    `drip` seconds, never finishing its headers (or, with drip None, sends nothing at all)."""

    def __init__(self, drip: float | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.drip = drip
        threading.Thread(target=self.serve, daemon=True).start()
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.hold, args=(conn,), daemon=True).start()

    def hold(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.drip is not None:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self.stop.wait(self.drip or 0.05):
                    if self.drip is not None:
                        conn.sendall(b"a")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    server = Elsewhere({})
    yield server
    server.close()


def test_a_blob_redirected_to_another_host_is_read_there_without_the_credentials(
        registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    s3 = Elsewhere(dict(staging.blobs["fn-staging"]))
    try:
        staging.blob_redirect = s3.url + "/bucket"
        done = copy_image(staging.repository("fn-staging"), digest, production.repository("fn-production"), TAG,
                          cancel=threading.Event())
        assert (done.digest, done.transferred) == (digest, 4)
        assert s3.requests == 4 and s3.authorizations == []
    finally:
        s3.close()


def test_an_upload_said_to_continue_on_another_host_is_refused_before_anything_is_sent_there(
        registries: tuple[FakeRegistry, FakeRegistry], elsewhere: Elsewhere) -> None:
    staging, production = registries
    digest = staging.push("fn-staging", LAYERS)
    production.upload_at = elsewhere.url
    with pytest.raises(CopyError, match=r"the registry said to continue the upload on another host, 'http://127\.0\.0\.1:\d+'; "
                                        "refused, so that the credentials go to no other host"):
        copy_image(staging.repository("fn-staging"), digest, production.repository("fn-production"), TAG,
                   cancel=threading.Event())
    assert (elsewhere.requests, elsewhere.authorizations) == (0, [])
    assert production.tags == {}


def test_a_registry_dripping_its_headers_holds_the_copy_only_until_its_deadline(
        registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    _, production = registries
    dripping = Stalling(drip=0.2)  # each byte well within the read timeout: only the deadline ends it
    try:
        started = time.monotonic()
        with pytest.raises(CopyError, match="the copy took longer than 1 s; check the registries and apply again"):
            copy_image(Repository(dripping.host, "fn-staging", LOGIN), "sha256:" + "a" * 64, production.repository("fn-production"),
                       TAG, cancel=threading.Event(), seconds=1.0)
        assert time.monotonic() - started < 5
    finally:
        dripping.close()


def test_ctrl_c_ends_a_read_from_a_registry_that_sends_nothing(registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    _, production = registries
    silent = Stalling(drip=None)
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    try:
        started = time.monotonic()
        timer.start()
        with pytest.raises(Cancelled, match="cancelled while reading"):
            copy_image(Repository(silent.host, "fn-staging", LOGIN), "sha256:" + "a" * 64, production.repository("fn-production"),
                       TAG, cancel=cancel)
        assert time.monotonic() - started < 5  # not the 60 s read timeout
    finally:
        timer.cancel()
        silent.close()


def test_a_manifest_naming_more_bytes_than_lambda_runs_is_refused_before_any_blob(
        registries: tuple[FakeRegistry, FakeRegistry]) -> None:
    import hashlib
    import json

    from deployer.image_copy import MAX_BLOB_BYTES

    staging, production = registries
    big = [{"digest": f"sha256:{n:064x}", "size": MAX_BLOB_BYTES // 2} for n in range(3)]  # each allowed, not all three
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "0" * 64, "size": 2}, "layers": big}).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    staging.manifests["fn-staging"] = {digest: (manifest, "application/vnd.docker.distribution.manifest.v2+json")}
    with pytest.raises(CopyError, match=r"names \d+ bytes of blobs, more than an image Lambda runs has"):
        copy_image(staging.repository("fn-staging"), digest, production.repository("fn-production"), TAG, cancel=threading.Event())
    assert production.uploads == {} and production.tags == {}
