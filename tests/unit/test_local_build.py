"""`deployer build` without an engine: images tagged deployer/<function>:<content tag>, a tag the
engine has already is not built again, one failure does not stop the others, credentials go to
the Go builds that name them (deployer.local_build)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from deployer.context import temporary_context
from deployer.errors import DockerError
from deployer.go_build import CompileJob, Netrc
from deployer.local_build import LocalBuilder, LocalBuildOptions, local_tag
from deployer.registry import RegistryLogin
from deployer.spec import BuildSettings, FunctionSpec, Location, RepositoryRef


class FakeEngine:
    def __init__(self, tags: dict[str, str] | None = None, failing: str = "") -> None:
        self.tags = dict(tags or {})
        self.failing = failing
        self.compiles: list[CompileJob] = []
        self.lock = threading.Lock()

    def local_image(self, reference: str) -> str | None:
        return self.tags.get(reference)

    def compile_go(self, job: CompileJob, log: Callable[[str], None], cancel: threading.Event | None = None) -> bytes:
        if job.function == self.failing:
            raise DockerError(f"go build of {job.function} failed (exit code 1):\nmain.go:3: syntax error")
        with self.lock:
            self.compiles.append(job)
        return b"\x7fELF"

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        assert (Path(context_dir) / "bootstrap").read_bytes() == b"\x7fELF"
        with self.lock:
            self.tags[tag] = f"sha256:{len(self.tags)}"
            return self.tags[tag]

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin, relogin: Any, log: Any,
             sleep: Any = None, progress: Callable[[int, int], None] | None = None) -> str:
        raise AssertionError("deployer build never pushes")

    def remove_tag(self, reference: str) -> None:
        raise AssertionError("deployer build keeps its tags")


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, function: str, number: int, total: int, text: str) -> None:
        self.lines.append(f"{function} {number}/{total} {text}")

    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None:
        self.lines.append(f"{function} {number}/{total} done")

    def log(self, function: str, line: str) -> None:
        self.lines.append(f"{function} | {line}")

    def notice(self, text: str) -> None:
        self.lines.append(text)

    def transfer(self, function: str, done: int, total: int) -> None:
        raise AssertionError("nothing is pushed")


def make_function(root: Path, name: str, netrc_env: str = "DEPLOYER_NETRC") -> FunctionSpec:
    src = root / name
    src.mkdir(parents=True)
    (src / "go.mod").write_text(f"module example.com/{name}\n\ngo 1.22\n")
    (src / "main.go").write_text(f"package main\n\n// {name}\nfunc main() {{}}\n")
    return FunctionSpec(name=name, region="us-east-1", repository=RepositoryRef(name, "us-east-1", None), platform="linux/arm64",
                        build=BuildSettings(source=src, netrc_env=netrc_env), root=root, location=Location(root / "deploy.yaml", 1, 1))


def content_tag(fn: FunctionSpec) -> str:
    with temporary_context(fn) as ctx:
        return ctx.content_tag


def test_images_are_tagged_by_function_and_content_and_nothing_is_pushed(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    fns = [make_function(tmp_path, "Alpha"), make_function(tmp_path, "beta")]
    engine, lines = FakeEngine(), Lines()
    images = LocalBuilder(engine, lines, LocalBuildOptions(parallelism=2)).build(fns)
    assert [i.tag for i in images] == [f"deployer/alpha:{content_tag(fns[0])}", f"deployer/beta:{content_tag(fns[1])}"]
    assert all(i.image_id == engine.tags[i.tag] and not i.error for i in images)


def test_an_image_the_engine_has_is_not_built_again(tmp_path: Path) -> None:
    fn = make_function(tmp_path, "fn")
    tag = local_tag("fn", content_tag(fn))
    engine, lines = FakeEngine({tag: "sha256:old"}), Lines()
    (image,) = LocalBuilder(engine, lines, LocalBuildOptions()).build([fn])
    assert (image.tag, image.image_id, engine.compiles) == (tag, "sha256:old", [])
    assert f"fn | {tag} is in the engine already: nothing to build" in lines.lines


def test_one_failing_build_does_not_stop_the_others(tmp_path: Path) -> None:
    fns = [make_function(tmp_path, "bad"), make_function(tmp_path, "good")]
    images = LocalBuilder(FakeEngine(failing="bad"), Lines(), LocalBuildOptions(parallelism=1)).build(fns)
    assert images[0].error.startswith("go build of bad failed (exit code 1)") and images[0].tag == ""
    assert images[1].tag.startswith("deployer/good:src-") and not images[1].error


def test_each_go_build_gets_the_credentials_its_variable_names(tmp_path: Path) -> None:
    fns = [make_function(tmp_path, "a"), make_function(tmp_path, "b", netrc_env="TEAM_NETRC")]
    netrc = Netrc("TEAM_NETRC", b"machine h login u password p\n")
    engine = FakeEngine()
    LocalBuilder(engine, Lines(), LocalBuildOptions(netrcs={"TEAM_NETRC": netrc})).build(fns)
    assert {job.function: job.netrc for job in engine.compiles} == {"a": None, "b": netrc}


# The path component of a Docker image reference (distribution/reference's grammar).
REFERENCE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"


def test_every_valid_function_name_gives_a_valid_image_reference() -> None:
    """Lambda takes 1 to 64 letters, digits, hyphens and underscores in any order; Docker does
    not: `_greet`, `greet-`, `a___b` and `a_-b` are no repository names."""
    import re

    names = ["greet", "Greet", "my_func", "my__func", "a-b", "a--b", "_greet", "greet-", "a___b", "a_-b", "-", "_", "__x__"]
    tags = {name: local_tag(name, "src-0123") for name in names}
    for name, tag in tags.items():
        repository, _, content = tag.partition(":")
        assert content == "src-0123"
        assert re.fullmatch(rf"deployer/{REFERENCE_COMPONENT}", repository), (name, tag)
    assert tags["greet"] == "deployer/greet:src-0123" and tags["my__func"] == "deployer/my__func:src-0123"
    assert len({tags[name] for name in ("_greet", "greet-", "greet")}) == 3  # no two functions share a repository
