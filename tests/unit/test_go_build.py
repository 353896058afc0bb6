"""The Go build's compile step against an in-memory engine: what goes into the compile container,
what comes out, what is said, and that nothing is left behind (deployer.go_build). The real
engine runs it in tests/integration/test_go_builds_cli.py."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any, Iterator

import docker.errors
import pytest
import requests.exceptions
import urllib3.exceptions

from deployer.errors import DeployerError, DockerError
from deployer.go_build import (
    BINARY,
    CACHE_ARCHIVE,
    CACHE_VOLUME,
    NETRC_PATH,
    CacheDir,
    CompileJob,
    GoCompiler,
    Netrc,
    cache_volume_from_env,
    netrc_from_env,
)
from deployer.layout import GoBuild
from deployer.spec import DEFAULT_GO_ENV

PASSWORD = "canary-pa55word-7f3e"
NETRC_TEXT = f"machine goproxy.example.internal login ci-bot password {PASSWORD}\n".encode()
RECIPE = GoBuild(builder_image="go:1", runtime_image="rt:1", platform="linux/arm64", flags=("-trimpath",),
                 go_env={**DEFAULT_GO_ENV, "GOPROXY": "https://ci:proxy-token-123@goproxy.example.internal"})


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeApi:
    """The docker SDK's low-level calls the compiler makes, on an engine in memory."""

    def __init__(self, exit_code: int = 0, output: bytes = b"", volumes: tuple[str, ...] = ()) -> None:
        self.exit_code = exit_code
        self.output = output
        self.volumes = set(volumes)
        self.made: dict[str, dict[str, Any]] = {}  # what create_container made and nothing removed yet
        self.containers_left: dict[str, dict[str, Any]] = {}  # made by earlier processes
        self.uploads: dict[str, list[tuple[str, bytes]]] = {}
        self.calls: list[str] = []
        self.exited = threading.Event()

    def containers(self, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:  # noqa: A002 - the SDK's name
        return [{"Id": cid, "Labels": c.get("labels", {})} for cid, c in self.containers_left.items()]

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        if image == "missing:1":
            raise docker.errors.ImageNotFound("no such image")
        cid = f"c{len(self.made)}"
        self.made[cid] = {"image": image, **kwargs}
        self.calls.append(f"create {cid}")
        return {"Id": cid}

    def put_archive(self, container: str, path: str, data: Any) -> bool:
        self.uploads.setdefault(container, []).append((path, data.read()))
        return True

    def start(self, container: str) -> None:
        self.calls.append(f"start {container}")
        self.exited.set()

    def logs(self, container: str, stream: bool, follow: bool, tail: int | str = "all") -> Iterator[bytes]:
        yield from (self.output[i:i + 7] for i in range(0, len(self.output), 7))

    def wait(self, container: str, timeout: float) -> dict[str, int]:
        self.exited.wait()
        return {"StatusCode": self.exit_code}

    def get_archive(self, container: str, path: str) -> tuple[Iterator[bytes], dict[str, Any]]:
        if path == BINARY:
            return iter([tar_of({"bootstrap": b"\x7fELF binary"})]), {}
        return iter([tar_of({"deployer-cache/mod/cache.txt": b"cached"})]), {}

    def remove_container(self, container: str, force: bool) -> None:
        self.calls.append(f"remove {container}")
        self.made.pop(container, None)
        self.containers_left.pop(container, None)

    def kill(self, container: str) -> None:
        self.calls.append(f"kill {container}")

    def inspect_volume(self, name: str) -> dict[str, str]:
        if name not in self.volumes:
            raise docker.errors.NotFound("no such volume")
        return {"Name": name}

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self.volumes.add(name)
        self.calls.append(f"create volume {name}")


@pytest.fixture
def context_dir(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "shared" / "logger").mkdir(parents=True)
    (ctx / "go.mod").write_text("module example.com/fn\n")
    (ctx / "main.go").write_text("package main\n")
    (ctx / "shared" / "logger" / "go.mod").write_text("module example.com/shared/logger\n")
    return ctx


def uploaded(api: FakeApi) -> dict[str, tarfile.TarInfo]:
    (path, data), = api.uploads["c0"]
    assert path == "/"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_a_compile_uploads_the_context_runs_go_build_and_returns_the_binary(context_dir: Path) -> None:
    api = FakeApi()
    binary = GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE), print)
    assert binary == b"\x7fELF binary"
    assert api.made == {} and api.calls[-1] == "remove c0"
    members = uploaded(api)
    assert {"src/go.mod", "src/main.go", "src/shared/logger/go.mod", "out"} <= set(members)
    assert not any(name.startswith("deployer-secrets/") for name in members)  # no credentials given


def test_the_compile_container_cross_compiles_with_the_go_environment_on_the_cache_volume(context_dir: Path) -> None:
    api = FakeApi()
    seen: dict[str, Any] = {}
    create = api.create_container

    def spy(image: str, **kwargs: Any) -> dict[str, str]:
        seen.update(image=image, **kwargs)
        return create(image, **kwargs)

    api.create_container = spy  # type: ignore[method-assign]
    GoCompiler(api, volume="team-cache").compile(CompileJob("fn", context_dir, RECIPE), print)
    assert seen["image"] == "go:1"
    assert seen["command"] == ["go", "build", "-trimpath", "-o", BINARY, "."]
    env = seen["environment"]
    assert (env["GOOS"], env["GOARCH"], env["CGO_ENABLED"]) == ("linux", "arm64", "0")
    assert (env["GOFLAGS"], env["GOTOOLCHAIN"]) == ("-mod=readonly", "local")
    assert "NETRC" not in env
    assert seen["host_config"]["network_mode"] == "host"
    (mount,) = seen["host_config"]["mounts"]
    assert (mount["Source"], mount["Type"]) == ("team-cache", "volume")
    assert "create volume team-cache" in api.calls


def test_netrc_goes_into_the_compile_container_only_readable_by_its_owner(context_dir: Path) -> None:
    api = FakeApi()
    GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE, Netrc("DEPLOYER_NETRC", NETRC_TEXT)), print)
    member = uploaded(api)[NETRC_PATH.lstrip("/")]
    assert (member.mode, member.size) == (0o400, len(NETRC_TEXT))
    assert api.made == {}  # removed: the credentials went with it


def test_a_failed_compile_says_the_go_commands_words_without_any_secret(context_dir: Path) -> None:
    output = (f"go: downloading example.internal/vault v0.3.0\n"
              f"verifying example.internal/vault@v0.3.0: reading https://ci:proxy-token-123@goproxy.example.internal: "
              f"401 Unauthorized (password {PASSWORD})\n").encode()
    api = FakeApi(exit_code=1, output=output)
    lines: list[str] = []
    with pytest.raises(DockerError) as failed:
        GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE, Netrc("DEPLOYER_NETRC", NETRC_TEXT)), lines.append)
    message = str(failed.value)
    assert message.startswith("go build of fn failed (exit code 1):\ngo: downloading example.internal/vault v0.3.0\n")
    assert "401 Unauthorized" in message
    for text in (message, *lines):
        assert PASSWORD not in text and "proxy-token-123" not in text
    assert api.made == {}


class LaggingLogApi(FakeApi):
    """A loaded engine: the followed log stream breaks before its first line, but the exited
    container's log, read again, is whole."""

    def logs(self, container: str, stream: bool, follow: bool, tail: int | str = "all") -> Iterator[bytes]:
        if follow:
            raise requests.exceptions.ConnectionError("connection aborted")
        assert tail != "all", "a failure reads only the last lines"
        yield from super().logs(container, stream, follow, tail)


def test_a_failed_compile_shows_go_s_words_even_when_the_followed_log_missed_them(context_dir: Path) -> None:
    api = LaggingLogApi(exit_code=1, output=b"# example.com/fn\n./main.go:3:1: syntax error: non-declaration statement\n")
    with pytest.raises(DockerError) as failed:
        GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE), print)
    assert str(failed.value).endswith("\n# example.com/fn\n./main.go:3:1: syntax error: non-declaration statement")


class BrokenRereadApi(FakeApi):
    """The follower saw go's words; reading them again fails as the SDK's raw stream fails (urllib3's
    own error), or answers nothing."""

    def __init__(self, reread: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reread = reread

    def logs(self, container: str, stream: bool, follow: bool, tail: int | str = "all") -> Iterator[bytes]:
        if follow:
            yield from super().logs(container, stream, follow, tail)
        elif self.reread == "broken":
            yield b"# example.com/fn\n"
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")


@pytest.mark.parametrize("reread", ["broken", "empty"])
def test_a_failed_reread_of_the_log_falls_back_to_what_the_follower_saw(context_dir: Path, reread: str) -> None:
    api = BrokenRereadApi(reread, exit_code=1, output=b"# example.com/fn\n./main.go:3:1: syntax error\n")
    with pytest.raises(DockerError) as failed:
        GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE), print)
    assert str(failed.value).endswith("\n# example.com/fn\n./main.go:3:1: syntax error")


def test_a_missing_builder_image_says_what_to_do(context_dir: Path) -> None:
    recipe = GoBuild("missing:1", "rt:1", "linux/arm64", (), DEFAULT_GO_ENV)
    with pytest.raises(DockerError, match="builder image missing:1 is not on the Docker engine; pull it"):
        GoCompiler(FakeApi()).compile(CompileJob("fn", context_dir, recipe), print)


def test_a_cancelled_compile_is_killed_and_removed(context_dir: Path) -> None:
    api = FakeApi()
    def still_running(container: str, timeout: float) -> dict[str, int]:
        raise requests.exceptions.ReadTimeout()

    api.start = lambda container: api.calls.append(f"start {container}")  # type: ignore[method-assign]
    api.wait = still_running  # type: ignore[method-assign]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DockerError, match="cancelled"):
        GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE), print, cancel)
    assert api.calls[-2:] == ["kill c0", "remove c0"]


def test_the_cache_volume_is_made_once_and_filled_from_the_cache_dir_only_when_new(context_dir: Path, tmp_path: Path) -> None:
    cache = CacheDir(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CACHE_ARCHIVE).write_bytes(tar_of({"deployer-cache/mod/m.txt": b"m"}))
    api = FakeApi()
    compiler = GoCompiler(api, cache)
    compiler.compile(CompileJob("fn", context_dir, RECIPE), print)
    compiler.compile(CompileJob("fn", context_dir, RECIPE), print)
    assert api.calls.count(f"create volume {CACHE_VOLUME}") == 1
    restores = [c for c, uploads in api.uploads.items() if any(data.startswith(b"deployer-cache") for _, data in uploads)]
    assert len(restores) == 1  # the helper container of the restore, once

    warm = FakeApi(volumes=(CACHE_VOLUME,))
    GoCompiler(warm, cache).compile(CompileJob("fn", context_dir, RECIPE), print)
    assert not [c for c in warm.calls if c.startswith("create volume")]
    assert len(warm.uploads) == 1  # the compile's own upload; the existing volume is not overwritten


def test_the_cache_is_saved_atomically_only_after_a_compile(context_dir: Path, tmp_path: Path) -> None:
    cache = CacheDir(tmp_path / "cache")
    api = FakeApi(volumes=(CACHE_VOLUME,))
    compiler = GoCompiler(api, cache)
    compiler.save_cache("go:1", print)
    assert not (tmp_path / "cache").exists()  # nothing compiled: nothing to save
    compiler.compile(CompileJob("fn", context_dir, RECIPE), print)
    compiler.save_cache("go:1", print)
    assert sorted(os.listdir(tmp_path / "cache")) == [CACHE_ARCHIVE]
    with tarfile.open(tmp_path / "cache" / CACHE_ARCHIVE) as tar:
        assert tar.getnames() == ["deployer-cache/mod/cache.txt"]
    assert api.made == {}


@pytest.mark.parametrize("value, text", [
    ("machine h login u password p\n", b"machine h login u password p\n"),  # the netrc text itself (a CI secret)
    ("FILE", NETRC_TEXT),  # a path
])
def test_netrc_comes_from_the_variable_as_text_or_as_a_file(tmp_path: Path, value: str, text: bytes) -> None:
    (tmp_path / "netrc").write_bytes(NETRC_TEXT)
    netrc = netrc_from_env("DEPLOYER_NETRC", {"DEPLOYER_NETRC": value.replace("FILE", str(tmp_path / "netrc"))})
    assert netrc is not None and netrc.text == text
    assert netrc_from_env("DEPLOYER_NETRC", {}) is None
    assert PASSWORD not in repr(Netrc("X", NETRC_TEXT)) and Netrc("X", NETRC_TEXT).secrets == ("ci-bot", PASSWORD)


def test_a_netrc_path_that_is_missing_or_not_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployerError, match=r"DEPLOYER_NETRC names the netrc file .*/nope, which cannot be opened \(No such file"):
        netrc_from_env("DEPLOYER_NETRC", {"DEPLOYER_NETRC": str(tmp_path / "nope")})
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DeployerError, match="which is not a regular file"):
        netrc_from_env("DEPLOYER_NETRC", {"DEPLOYER_NETRC": str(tmp_path / "fifo")})  # never blocks


def test_the_cache_volume_name_is_checked() -> None:
    assert cache_volume_from_env({}) == CACHE_VOLUME
    assert cache_volume_from_env({"DEPLOYER_GO_CACHE_VOLUME": "team.cache-1"}) == "team.cache-1"
    with pytest.raises(DeployerError, match="is not a Docker volume name"):
        cache_volume_from_env({"DEPLOYER_GO_CACHE_VOLUME": "../x"})


def test_a_refusal_without_credentials_says_where_they_would_come_from(context_dir: Path) -> None:
    output = b"go: example.internal/vault@v0.3.0: reading https://goproxy/vault/@v/v0.3.0.zip: 401 Unauthorized\n"
    with pytest.raises(DockerError) as without:
        GoCompiler(FakeApi(exit_code=1, output=output)).compile(CompileJob("fn", context_dir, RECIPE, netrc_env="TEAM_NETRC"), print)
    assert str(without.value).endswith("\nno credentials were given: for a private module, set TEAM_NETRC to a netrc file "
                                       "(or its text) with the module host's login")
    with pytest.raises(DockerError) as given:
        GoCompiler(FakeApi(exit_code=1, output=output)).compile(
            CompileJob("fn", context_dir, RECIPE, Netrc("TEAM_NETRC", NETRC_TEXT), "TEAM_NETRC"), print)
    assert "no credentials were given" not in str(given.value)  # wrong ones: the 401 says enough


# -- what a hostile engine (or a go command run with a pull request's settings) may send --------

class ChattyApi(FakeApi):
    """An engine whose log stream is `chunks`, as they are given."""

    def __init__(self, chunks: list[bytes], exit_code: int = 1) -> None:
        super().__init__(exit_code=exit_code)
        self.chunks = chunks

    def logs(self, container: str, stream: bool, follow: bool, tail: int | str = "all") -> Iterator[bytes]:
        yield from self.chunks


def test_endless_output_without_a_line_break_is_cut_not_held_or_repeated_whole(context_dir: Path) -> None:
    chunks = [b"y" * (1 << 16)] * 160 + [b"\ngo: the last words\n"]  # a 10 MiB line, then one more
    lines: list[str] = []
    with pytest.raises(DockerError) as failed:
        GoCompiler(ChattyApi(chunks)).compile(CompileJob("fn", context_dir, RECIPE), lines.append)
    message = str(failed.value)
    assert len(message) < 10_000 and message.endswith("\ngo: the last words")
    assert all(len(line) < 5_000 for line in lines) and lines[-1] == "go: the last words"


def test_a_secret_at_the_place_a_long_line_is_cut_is_masked_whole(context_dir: Path) -> None:
    for before in range(4_080, 4_100):
        chunks = [b"z" * before + PASSWORD.encode() + b"z" * 100_000 + b"\n"]
        lines: list[str] = []
        with pytest.raises(DockerError) as failed:
            GoCompiler(ChattyApi(chunks)).compile(
                CompileJob("fn", context_dir, RECIPE, Netrc("DEPLOYER_NETRC", NETRC_TEXT)), lines.append)
        for text in (str(failed.value), *lines):
            assert PASSWORD[:5] not in text, before


@pytest.mark.parametrize("answer", [b"not a tar at all" * 100, tar_of({"bootstrap": b"\x7fELF binary"})[:515]],
                         ids=["not-a-tar", "cut-short"])
def test_a_binary_archive_the_engine_garbles_is_a_docker_error(context_dir: Path, answer: bytes) -> None:
    api = FakeApi()
    api.get_archive = lambda container, path: (iter([answer]), {})  # type: ignore[method-assign]
    with pytest.raises(DockerError, match="go build of fn failed: the engine sent an unreadable archive"):
        GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE), print)
    assert api.made == {}


@pytest.mark.parametrize("flags, go_env, refused", [
    (("-toolexec=/src/steal.sh",), {}, "the go build flag '-toolexec=/src/steal.sh' is refused"),
    (("-trimpath", "-toolexec", "/src/steal.sh"), {}, "the go build flag '-toolexec' is refused"),
    (("--overlay=overlay.json",), {}, "the go build flag '--overlay=overlay.json' is refused"),
    ((), {"GOFLAGS": "-mod=readonly -overlay=o.json"}, "the go build flag '-overlay=o.json' is refused"),
    ((), {"GOFLAGS": "-toolexec=/src/x"}, "the go build flag '-toolexec=/src/x' is refused"),
    (("-trimpath", "-mod=mod"), {}, "the go build flag -mod=mod is refused: it lets the go command rewrite go.mod"),
    ((), {"GOTOOLCHAIN": "go1.99.0", "GOPROXY": "file:///src/proxy"}, "GOTOOLCHAIN 'go1.99.0' with GOPROXY 'file:///src/proxy' is refused"),
    ((), {"GOTOOLCHAIN": "auto", "GOSUMDB": "evil+abcdef https://sum.evil.example"}, "GOTOOLCHAIN 'auto' with GOSUMDB 'evil+abcdef' is refused"),
], ids=["toolexec", "toolexec-separate", "overlay-double-dash", "overlay-in-goflags", "toolexec-in-goflags",
        "mod-mod", "toolchain-from-files", "toolchain-own-sumdb"])
def test_settings_that_let_a_build_run_or_read_outside_its_context_are_refused_before_any_container(
        context_dir: Path, flags: tuple[str, ...], go_env: dict[str, str], refused: str) -> None:
    recipe = GoBuild("go:1", "rt:1", "linux/arm64", flags, {**DEFAULT_GO_ENV, **go_env})
    api = FakeApi()
    with pytest.raises(DeployerError, match="^go build of fn: " + refused.replace("(", r"\(").replace("+", r"\+")):
        GoCompiler(api).compile(CompileJob("fn", context_dir, recipe, Netrc("DEPLOYER_NETRC", NETRC_TEXT)), print)
    assert api.calls == [] and api.uploads == {}


@pytest.mark.parametrize("go_env", [
    {"GOTOOLCHAIN": "local", "GOPROXY": "file:///src/proxy"},  # modules from files, go.sum checks them
    {"GOTOOLCHAIN": "go1.24.1", "GOSUMDB": "sum.golang.org"},  # the checksum database's own key
    {"GOTOOLCHAIN": "go1.24.1+path", "GOPROXY": "file:///src/proxy"},  # no download
], ids=["local-toolchain", "known-sumdb", "path-only"])
def test_settings_without_such_a_way_compile(context_dir: Path, go_env: dict[str, str]) -> None:
    recipe = GoBuild("go:1", "rt:1", "linux/arm64", ("-trimpath", "-ldflags=-X main.overlay=toolexec"), {**DEFAULT_GO_ENV, **go_env})
    assert GoCompiler(FakeApi()).compile(CompileJob("fn", context_dir, recipe), print) == b"\x7fELF binary"


def test_a_restore_that_fails_half_way_leaves_an_empty_volume_not_half_a_module_cache(context_dir: Path, tmp_path: Path) -> None:
    """The engine unpacks an archive as it comes: a cut archive (a broken CI cache) leaves
    modules with files missing, which the go command then trusts for every later build."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CACHE_ARCHIVE).write_bytes(tar_of({"deployer-cache/mod/m@v1/a.go": b"package m\n" * 100})[:700])

    class CutShort(FakeApi):
        def put_archive(self, container: str, path: str, data: Any) -> bool:
            if path == "/" and self.made[container]["labels"] == {"dev.deployer.go-build": "cache"}:
                self.calls.append(f"unpacked part of the archive into {container}")
                raise docker.errors.APIError("unexpected EOF")
            return super().put_archive(container, path, data)

        def remove_volume(self, name: str, force: bool = False) -> None:
            self.volumes.discard(name)
            self.calls.append(f"remove volume {name}")

    api = CutShort()
    notices: list[str] = []
    GoCompiler(api, CacheDir(tmp_path / "cache"), notice=notices.append).compile(CompileJob("fn", context_dir, RECIPE), print)
    restore = api.calls.index("unpacked part of the archive into c0")
    assert api.calls[restore + 1:restore + 5] == ["remove c0", f"remove volume {CACHE_VOLUME}", f"create volume {CACHE_VOLUME}",
                                                  "create c0"]  # then the compile's container
    assert "could not restore the Go caches (unexpected EOF); going on without them" in notices[-1]


def test_compile_containers_of_processes_that_died_are_removed_and_others_kept(context_dir: Path) -> None:
    from deployer.go_build import OWNER, OWNER_LABEL

    host = OWNER.partition("/")[0]
    dead = subprocess.Popen(["true"])
    dead.wait()
    api = FakeApi()
    api.containers_left = {"killed": {"labels": {OWNER_LABEL: f"{host}/{dead.pid}"}},
                           "running": {"labels": {OWNER_LABEL: f"{host}/{os.getpid()}"}},
                           "elsewhere": {"labels": {OWNER_LABEL: f"another-host/{dead.pid}"}}}
    GoCompiler(api).compile(CompileJob("fn", context_dir, RECIPE), print)
    assert sorted(api.containers_left) == ["elsewhere", "running"]
