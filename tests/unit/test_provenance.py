"""Reading the labels of running images from a registry that may be hostile or broken, through a
real HTTP server on loopback: a crafted config never breaks the plan; a config that is not the
one the manifest names is not believed; a registry that drips its answer or never answers costs a
bounded time, once per plan rather than once per function; a missing image does not make the
plan give up on the registry's other images."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest

from deployer.aws import Clients
from deployer.plan import make_plan
from deployer.provenance import explain_plan
from deployer.registry import MAX_LABELS, RegistryLogin, RegistryUnanswered, image_labels
from deployer.spec import EcrRepository
from deployer.state import Desired, FunctionState, ImageState, Observed

LOGIN = RegistryLogin("AWS", "secret", "https://registry")
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Registry:
    """Answers GET /v2/<repo>/manifests/<digest> and /blobs/<digest> from `images` (image digest ->
    (manifest, config)); `stall` makes every answer wait that long first, `drip` sends bodies a
    byte at a time that far apart; `missing` answers 404 for those image digests."""

    images: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    stall: float = 0.0
    drip: float = 0.0
    missing: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def add(self, labels: Any, config: bytes | None = None, config_digest: str | None = None) -> str:
        config = config if config is not None else json.dumps({"config": {"Labels": labels}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                               "config": {"digest": config_digest or digest_of(config)}, "layers": []}).encode()
        self.blobs[digest_of(config)] = config
        self.images[digest_of(manifest)] = (manifest, config)
        return digest_of(manifest)


@pytest.fixture
def registry() -> Iterator[tuple[Registry, str]]:
    state = Registry()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            time.sleep(state.stall)
            kind, _, digest = self.path.rpartition("/")
            body = None
            if kind.endswith("/manifests") and digest not in state.missing and digest in state.images:
                body = state.images[digest][0]
            elif kind.endswith("/blobs"):
                body = state.blobs.get(digest)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if state.drip:
                    time.sleep(state.drip)
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
            if not state.drip:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that went away (timed out) is what these tests provoke

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def read(endpoint: str, digest: str, **bounds: float) -> dict[str, str] | None:
    return image_labels("registry", "repo", digest, LOGIN, endpoint, raise_unanswered=True, **bounds)


def test_labels_of_a_crafted_config_are_bounded_strings_and_odd_shapes_give_none(registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    many: dict[str, Any] = {"n": 1, "l": ["x"], **{f"k{i}": "v" * 1500 for i in range(MAX_LABELS * 3)}}
    found = read(endpoint, state.add(many))
    assert found is not None and len(found) == MAX_LABELS and all(len(v) == 1024 for v in found.values())
    for config in (b'{"config": [1]}', b'{"config": "x"}', b"[]", b'{"config": {"Labels": [1]}}'):
        assert read(endpoint, state.add(None, config=config)) == {}


def test_a_config_digest_that_is_no_digest_or_not_the_configs_is_not_followed(registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    assert read(endpoint, state.add({"a": "b"}, config_digest="../../other/blobs/sha256:" + "0" * 64)) is None
    assert not any("other" in path for path in state.requests)
    # A blob that is not the config the manifest names (a registry that answers anything).
    other_config = json.dumps({"config": {"Labels": {"forged": "yes"}}}).encode()
    named = digest_of(b"the real config")
    digest = state.add(None, config=other_config, config_digest=named)
    state.blobs[named] = other_config
    assert read(endpoint, digest) is None


def test_a_registry_dripping_its_answer_costs_the_total_bound_not_a_read_timeout_per_byte(
        registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    digest = state.add({"a": "b" * 200})
    state.drip = 0.05  # each byte well within the read timeout
    started = time.monotonic()
    with pytest.raises(RegistryUnanswered):
        read(endpoint, digest, timeout=1.0, total=0.5)
    assert time.monotonic() - started < 2.0


def test_a_missing_image_is_none_and_a_silent_registry_is_unanswered(registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    assert read(endpoint, "sha256:" + "0" * 64) is None
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with pytest.raises(RegistryUnanswered):
            read(f"127.0.0.1:{silent.getsockname()[1]}", "sha256:" + "0" * 64, timeout=0.3)
        assert image_labels("registry", "repo", "sha256:" + "0" * 64, LOGIN, f"127.0.0.1:{silent.getsockname()[1]}",
                            timeout=0.3) is None


# -- a plan's explanations: one read per running image, a bounded cost for a silent registry ----------

class FakeEcr:
    def get_authorization_token(self) -> dict[str, Any]:
        import base64

        return {"authorizationData": [{"authorizationToken": base64.b64encode(b"AWS:secret").decode(),
                                       "proxyEndpoint": "https://registry"}]}


class FakeClients(Clients):
    def client(self, service: str, region: str) -> Any:
        return FakeEcr()


def plan_of(running: Callable[[int], str], count: int) -> tuple[Any, list[tuple[Desired, Observed]]]:
    repository = EcrRepository("123456789012", "us-east-1", "repo")
    pairs = [(Desired(name=f"fn{i:03}", region="us-east-1", repository=repository, content_tag="src-" + "a" * 40,
                      source_digest="sha256:" + "a" * 64, architecture="arm64", platform="linux/arm64", spec_file="deploy.yaml",
                      inputs={"function": "sha256:" + "1" * 64}),
              Observed(FunctionState(exists=True, package_type="Image", code_sha256=running(i).removeprefix("sha256:"),
                                     architectures=("arm64",)),
                       ImageState(repository_exists=True, digest=None, media_type=None)))
             for i in range(count)]
    return make_plan(pairs), pairs


def test_functions_running_one_image_share_its_read_and_missing_images_do_not_stop_the_others(
        registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    shared = state.add({"dev.deployer.input.function": "sha256:" + "2" * 64})
    missing = ["sha256:" + f"{i:064x}" for i in range(5)]
    last = state.add({"dev.deployer.input.function": "sha256:" + "1" * 64})
    images = [*missing, *[shared] * 20, last]
    plan, pairs = plan_of(lambda i: images[i], len(images))
    explained = explain_plan(plan, pairs, FakeClients(), endpoint)
    why = {fp.name: fp.explanation for fp in explained.functions}
    assert all(w is not None and w.unreadable for w in list(why.values())[:5])
    assert all(w is not None and w.labelled and w.changed for w in list(why.values())[5:25])
    assert why[f"fn{len(images) - 1:03}"] is not None and why[f"fn{len(images) - 1:03}"].unchanged == ("function",)  # type: ignore[union-attr]
    assert sum(path.endswith(shared) for path in state.requests) == 1


def test_a_silent_registry_costs_a_plan_of_200_functions_a_few_timeouts_not_one_per_function(
        registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    state.stall = 3.0  # past the read timeout
    plan, pairs = plan_of(lambda i: "sha256:" + f"{i:064x}", 200)
    started = time.monotonic()
    explained = explain_plan(plan, pairs, FakeClients(), endpoint, timeout=0.5)
    assert time.monotonic() - started < 2.5  # a wave of 8 readers times out (two at most); the rest are not tried
    assert all(fp.explanation is not None and fp.explanation.unreadable for fp in explained.functions)
    assert len(state.requests) < 16  # the first wave, and a few readers that started before it ended


def test_a_registry_answering_each_read_just_in_time_cannot_hold_the_plan_past_its_budget(
        registry: tuple[Registry, str]) -> None:
    state, endpoint = registry
    images = [state.add({"dev.deployer.input.function": "sha256:" + f"{i:064x}"}) for i in range(100)]
    state.stall = 0.2  # answered, within the read timeout: never counted as silence
    plan, pairs = plan_of(lambda i: images[i], len(images))
    started = time.monotonic()
    explained = explain_plan(plan, pairs, FakeClients(), endpoint, timeout=1.0, budget=1.0)
    assert time.monotonic() - started < 2.5  # 100 images x 2 reads x 0.2 s / 8 readers would be 5 s
    told = [fp.explanation for fp in explained.functions]
    assert any(w is not None and w.labelled for w in told) and any(w is not None and w.unreadable for w in told)
