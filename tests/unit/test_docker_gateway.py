"""The Docker gateway's push with a fake engine: what the registry says becomes a type the executor
matches on (an immutable tag, refused credentials), and only the gateway reads the words."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import docker.errors
import pytest

from deployer.docker_gateway import MAX_LAYERS, PROGRESS_SECONDS, DockerGateway, _PushTally
from deployer.errors import DockerError
from deployer.ports import ImageVanished, ImmutableTagRefused, RegistryAuthRefused
from deployer.registry import RegistryLogin

DIGEST = "sha256:" + "c" * 64
IMMUTABLE = ("tag invalid: The image tag 'src-1' already exists in the 'fn-repo' repository and cannot be overwritten "
             "because the repository is immutable.")


class FakeEngine:
    """The low-level API's tag and push; each push streams the next of `answers` (an error, or the digest)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.passwords: list[str] = []

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        pass

    def push(self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
        self.passwords.append(auth_config["password"])
        error = self.answers.pop(0)
        yield {"status": "Preparing"}
        yield {"error": error} if error else {"aux": {"Digest": DIGEST}}


def gateway(engine: FakeEngine) -> DockerGateway:
    gw = DockerGateway()
    gw._client, gw._short = object(), engine  # connected: no engine is asked
    return gw


def push(gw: DockerGateway, logs: list[str]) -> str:
    logins = iter(["token-2", "token-3"])
    return gw.push("sha256:image", "registry/fn-repo", "src-1", RegistryLogin("AWS", "token-1", "https://registry"),
                   lambda: RegistryLogin("AWS", next(logins), "https://registry"), logs.append, lambda seconds: None)


def test_an_immutable_tag_refusal_is_raised_as_its_type_without_retrying() -> None:
    engine = FakeEngine(IMMUTABLE)
    with pytest.raises(ImmutableTagRefused, match="push of registry/fn-repo:src-1 failed: tag invalid"):
        push(gateway(engine), [])
    assert engine.passwords == ["token-1"]


def test_refused_credentials_are_renewed_once_then_the_push_goes_through() -> None:
    engine = FakeEngine("unauthorized: authentication required", None)
    logs: list[str] = []
    assert push(gateway(engine), logs) == DIGEST
    assert engine.passwords == ["token-1", "token-2"]
    assert logs == ["registry refused the credentials; logging in again (push of registry/fn-repo:src-1 failed: "
                    "unauthorized: authentication required)"]


def test_credentials_refused_after_a_fresh_login_fail_the_push_as_an_auth_refusal() -> None:
    engine = FakeEngine("denied: requested access to the resource is denied", "denied: requested access to the resource is denied")
    with pytest.raises(RegistryAuthRefused):
        push(gateway(engine), [])
    assert engine.passwords == ["token-1", "token-2"]


def test_a_transient_fault_is_retried_and_the_last_keeps_its_plain_type() -> None:
    engine = FakeEngine(*["received unexpected HTTP status: 502 Bad Gateway"] * 4)
    logs: list[str] = []
    with pytest.raises(DockerError, match="check that the registry registry is reachable") as raised:
        push(gateway(engine), logs)
    assert type(raised.value) is DockerError
    assert len(engine.passwords) == 4 and len(logs) == 3


class LostImageEngine(FakeEngine):
    """An engine whose image was deleted after its build: tagging it fails as dockerd says."""

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        raise docker.errors.APIError("500 Server Error", explanation=(
            f"failed to get digest {image_id}: open /var/lib/docker/image/overlay2/imagedb/content/sha256/"
            f"{image_id.removeprefix('sha256:')}: no such file or directory"))


def test_an_image_deleted_before_its_push_is_raised_as_vanished_without_pushing() -> None:
    engine = LostImageEngine(None)
    with pytest.raises(ImageVanished, match="cannot tag image sha256:image as registry/fn-repo:src-1: failed to get digest"):
        push(gateway(engine), [])
    assert engine.passwords == []


def test_a_tag_gone_from_the_engine_during_the_push_is_raised_as_vanished() -> None:
    engine = FakeEngine("An image does not exist locally with the tag: registry/fn-repo")
    with pytest.raises(ImageVanished):
        push(gateway(engine), [])


def test_a_tag_refused_for_another_reason_stays_a_plain_docker_error() -> None:
    class RefusingEngine(FakeEngine):
        def tag(self, image_id: str, repository: str, tag: str) -> None:
            raise docker.errors.APIError("400 Client Error", explanation="invalid reference format")

    with pytest.raises(DockerError, match="invalid reference format") as raised:
        push(gateway(RefusingEngine(None)), [])
    assert type(raised.value) is DockerError


class FakeBuilds:
    """The low-level API's build: each build streams the next of `errors` (None: success)."""

    def __init__(self, *errors: str | None) -> None:
        self.errors = list(errors)
        self.builds = 0

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.builds += 1
        error = self.errors.pop(0)
        yield {"stream": "Step 1/1 : LABEL x=y\n"}
        yield {"error": error} if error else {"aux": {"ID": "sha256:" + "d" * 64}}

    def version(self) -> dict[str, str]:
        return {"Os": "linux", "Arch": "amd64"}


class FakeClient:
    def __init__(self, api: FakeBuilds) -> None:
        self.api = api


@pytest.mark.parametrize("said", [
    # Two builds of the same inputs give one image ID; the other one's tag removal deletes it.
    "failed to get digest sha256:57a9: open /var/lib/docker/image/overlay2/imagedb/...: no such file",
    # A cached step's image, deleted with the untagged parents of another build's image (seen in CI).
    'unable to find image "sha256:7f785ba3d724404e3bc6c27927da4726f642580d07da5f4810b55b2c12eefacf"',
])
def test_a_build_whose_image_vanished_before_it_was_tagged_is_built_again(tmp_path: Path, said: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    api = FakeBuilds(said, None)
    gw = DockerGateway()
    gw._client, gw._short = FakeClient(api), api
    logged: list[str] = []
    assert gw.build(str(tmp_path), "Dockerfile", "repo:tag", {}, {}, logged.append) == "sha256:" + "d" * 64
    assert api.builds == 2
    assert any("building again from its cache" in line for line in logged)


def test_any_other_build_failure_is_not_retried(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    api = FakeBuilds("The command '/bin/sh -c go build' returned a non-zero code: 1")
    gw = DockerGateway()
    gw._client, gw._short = FakeClient(api), api
    with pytest.raises(DockerError, match="returned a non-zero code"):
        gw.build(str(tmp_path), "Dockerfile", "repo:tag", {}, {})
    assert api.builds == 1


# -- bytes of a push -------------------------------------------------------------------------

MB = 1_000_000


class StreamingEngine(FakeEngine):
    """A push that streams `chunks` (what the engine says per layer), then the digest."""

    def __init__(self, chunks: list[Any]) -> None:
        super().__init__(None)
        self.chunks = chunks

    def push(self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
        yield from self.chunks
        yield {"aux": {"Digest": DIGEST}}


def pushing(layer: Any, current: Any, total: Any) -> dict[str, Any]:
    return {"status": "Pushing", "id": layer, "progressDetail": {"current": current, "total": total}, "progress": "[=>  ]"}


def push_with_progress(chunks: list[Any]) -> list[tuple[int, int]]:
    heard: list[tuple[int, int]] = []
    gw = gateway(StreamingEngine(chunks))
    assert gw.push("sha256:image", "registry/fn-repo", "src-1", RegistryLogin("AWS", "token-1", "https://registry"),
                   lambda: RegistryLogin("AWS", "token-2", "https://registry"), lambda line: None, lambda seconds: None,
                   lambda done, total: heard.append((done, total))) == DIGEST
    return heard


def test_a_push_sums_its_layers_and_layers_the_registry_has_count_as_done() -> None:
    chunks = [{"status": "The push refers to repository [registry/fn-repo]"},
              {"status": "Preparing", "id": "a", "progressDetail": {}}, {"status": "Preparing", "id": "b", "progressDetail": {}},
              {"status": "Preparing", "id": "c", "progressDetail": {}}, {"status": "Waiting", "id": "c", "progressDetail": {}},
              {"status": "Layer already exists", "id": "b", "progressDetail": {}},
              pushing("a", 1 * MB, 8 * MB), pushing("c", 2 * MB, 4 * MB), pushing("a", 9 * MB, 8 * MB),  # past its total
              {"status": "Pushed", "id": "c", "progressDetail": {}}, {"status": "Pushed", "id": "a", "progressDetail": {}},
              {"status": "src-1: digest: sha256:c size: 1234"}]
    heard = push_with_progress(chunks)
    assert heard[0] == (1 * MB, 8 * MB), "the first figures go at once"
    assert heard[-1] == (12 * MB, 12 * MB)
    assert all(done <= total for done, total in heard)


def test_a_push_of_layers_the_registry_all_has_reports_nothing() -> None:
    assert push_with_progress([{"status": "Layer already exists", "id": layer, "progressDetail": {}} for layer in "abc"]) == []


def test_values_of_the_engine_that_are_not_byte_counts_are_ignored_without_failing_the_push() -> None:
    odd: list[Any] = [pushing("a", "5", "10"), pushing("a", -1, -1), pushing("a", True, True), pushing("a", 1.5, 2.5),
                      pushing("a", 10**30, 10**30), pushing("a", None, None), pushing(["a"], 1, 2), pushing("x" * 1000, 1, 2),
                      {"status": "Pushing", "id": "a", "progressDetail": "50%"}, {"status": 7, "id": "a"},
                      {"status": "Pushed", "id": None}, {"id": "a"}]
    assert push_with_progress([*odd, pushing("b", 1 * MB, 2 * MB), *odd, {"status": "Pushed", "id": "b"}]) == [
        (1 * MB, 2 * MB), (2 * MB, 2 * MB)]


def test_an_engine_naming_endless_layers_is_counted_for_the_first_few_only() -> None:
    heard = push_with_progress([pushing(f"layer-{n}", 1, 1) for n in range(10_000)])
    assert heard[-1] == (MAX_LAYERS, MAX_LAYERS)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_push_figures_go_out_at_most_every_progress_seconds_and_at_the_end() -> None:
    heard: list[tuple[int, int]] = []
    clock = Clock()
    tally = _PushTally(lambda done, total: heard.append((done, total)), clock)
    for current in range(1, 101):
        tally.add(pushing("a", current, 100))
    assert heard == [(1, 100)]
    clock.now += PROGRESS_SECONDS
    tally.add(pushing("a", 101, 100))
    assert heard == [(1, 100), (100, 100)]
    tally.flush()  # nothing new
    assert heard == [(1, 100), (100, 100)]
    tally.add(pushing("b", 5, 50))
    tally.flush()
    assert heard[-1] == (105, 150)


def test_each_attempt_of_a_retried_push_counts_its_layers_again() -> None:
    class Flaky(StreamingEngine):
        def push(self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
            yield pushing("a", 3 * MB, 4 * MB)
            if not self.passwords:
                self.passwords.append("failed once")
                yield {"error": "received unexpected HTTP status: 502 Bad Gateway"}
            yield {"status": "Pushed", "id": "a"}
            yield {"aux": {"Digest": DIGEST}}

    heard: list[tuple[int, int]] = []
    gw = gateway(Flaky([]))
    gw.push("sha256:image", "registry/fn-repo", "src-1", RegistryLogin("AWS", "token-1", "https://registry"),
            lambda: RegistryLogin("AWS", "token-2", "https://registry"), lambda line: None, lambda seconds: None,
            lambda done, total: heard.append((done, total)))
    assert heard == [(3 * MB, 4 * MB), (3 * MB, 4 * MB), (4 * MB, 4 * MB)]
