"""The executor with in-memory gateways: which calls a plan leads to, retries, stale plans, failures.

The real gateways are exercised against the local cloud in tests/integration; here the fakes let
each case state exactly what AWS and Docker answer.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import pytest

from deployer.apply import ApplyOptions, Executor
from deployer.context import temporary_context
from deployer.go_build import CompileJob
from deployer.errors import AwsError, DockerError, PlanError
from deployer.function_config import EnvValue, FunctionConfig, ImageConfig, ObservedConfig
from deployer.outcome import OutcomeStatus
from deployer.plan import Action, Plan, make_plan
from deployer.ports import ImageVanished, ImmutableTagRefused
from deployer.registry import RegistryLogin
from deployer.repository_config import ObservedRepository, RepositoryConfig
from deployer.spec import ReleaseSettings
from deployer.spec import SmokeTest as SmokeTestSettings
from deployer.spec import BuildSettings, EcrRepository, FunctionSpec, Location, RepositoryRef
from deployer.state import AliasState, AliasTarget, Desired, FunctionState, ImageState, Invoked, Observed

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn-repo"
V2 = "application/vnd.docker.distribution.manifest.v2+json"
OLD = "sha256:" + "b" * 64
NEW = "sha256:" + "c" * 64
REPOSITORY = EcrRepository("123456789012", "us-east-1", "fn-repo")


def configured(config: ObservedConfig, request: Mapping[str, Any]) -> ObservedConfig:
    """What Lambda holds after UpdateFunctionConfiguration(**request)."""
    fields: dict[str, Any] = {"role": request.get("Role"), "memory": request.get("MemorySize"), "timeout": request.get("Timeout"),
                              "ephemeral_storage": request.get("EphemeralStorage", {}).get("Size"),
                              "description": request.get("Description"),
                              "environment": request.get("Environment", {}).get("Variables"),
                              "tags": {**config.tags, **request["Tags"]} if "Tags" in request else None}  # CreateFunction's
    return replace(config, **{key: value for key, value in fields.items() if value is not None})


def arn_of(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"


@dataclass
class FakeLambda:
    functions: dict[str, FunctionState]
    conflicts: int = 0  # how many updates answer ResourceConflictException first
    landed_then: str | None = None  # the first update is applied, but answered with this error code
    fail_with: str | None = None
    updates: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    configurations: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # the mutating calls and waits, in order
    waited: list[str] = field(default_factory=list)
    waiting: threading.Event = field(default_factory=threading.Event)  # a wait_updated has begun
    pushed_first: Callable[[], bool] = lambda: True  # checked at each update: nobody deploys before the push
    # Real Lambda gives a function another RevisionId once an update completes, after the one the
    # update returned (aws/aws-sdk#377): a chained update must not rely on the returned one.
    revision_moves_when_done: bool = False
    creations: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    fail_activation: str | None = None  # wait_active fails with this StateReason
    concurrencies: list[tuple[str, int]] = field(default_factory=list)  # put_function_concurrency calls
    # Whether a call outside UpdateFunctionConfiguration (PutFunctionConcurrency...) gives the
    # function a new RevisionId: AWS does not document it, so the executor must not rely on either.
    separate_calls_move_revision: bool = False
    taggings: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # tag_resource calls
    reports_arn: bool = True  # GetFunction's Configuration.FunctionArn
    versions: list[tuple[str, str, str]] = field(default_factory=list)  # published: (function, code sha256, description)
    aliases: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (function, alias) -> (version, revision)
    answer: Invoked = Invoked(b'{"status": "ok"}', None, "START\nEND")  # what an invoke of a version answers
    invoked: list[tuple[str, str, bytes]] = field(default_factory=list)
    invoke_timeouts: list[int] = field(default_factory=list)  # the function timeout each invoke was sent with
    invoke_errors: list[AwsError] = field(default_factory=list)  # what the next invokes raise, in order

    def publish_version(self, name: str, code_sha256: str, revision_id: str | None, description: str) -> str:
        fn = self.functions[name]
        if fn.code_sha256 != code_sha256 or (revision_id and revision_id != fn.revision_id):
            raise AwsError("the function changed", "PreconditionFailedException")
        self.versions.append((name, code_sha256, description))
        self.calls.append("publish")
        return str(len(self.versions))

    def invoke(self, name: str, qualifier: str, payload: bytes, function_timeout: int) -> Invoked:
        self.invoked.append((name, qualifier, payload))
        self.invoke_timeouts.append(function_timeout)
        self.calls.append(f"invoke {qualifier}")
        if self.invoke_errors:
            raise self.invoke_errors.pop(0)
        return self.answer

    def update_alias(self, name: str, alias: str, version: str, revision_id: str | None, description: str) -> None:
        current = self.aliases[(name, alias)]
        if revision_id and revision_id != current[1]:
            raise AwsError("the alias moved", "PreconditionFailedException")
        self.aliases[(name, alias)] = (version, f"alias-rev-{version}")
        self.calls.append(f"alias {alias} -> {version}")

    def create_alias(self, name: str, alias: str, version: str, description: str) -> None:
        assert (name, alias) not in self.aliases
        self.aliases[(name, alias)] = (version, f"alias-rev-{version}")
        self.calls.append(f"alias {alias} -> {version}")

    def list_alias_targets(self, name: str) -> list[AliasTarget]:
        return [AliasTarget(alias, (version,)) for (function, alias), (version, _) in self.aliases.items() if function == name]

    def get_function(self, name: str) -> FunctionState:
        fn = self.functions.get(name, FunctionState(exists=False))
        return replace(fn, arn=arn_of(name)) if fn.exists and self.reports_arn else fn

    def update_function_configuration(self, name: str, request: Mapping[str, Any], revision_id: str | None) -> str | None:
        if self.conflicts:
            self.conflicts -= 1
            raise AwsError("update in progress", "ResourceConflictException")
        current = self.functions[name].revision_id if name in self.functions else None
        if revision_id and current and revision_id != current:
            raise AwsError("the RevisionId moved", "PreconditionFailedException")
        assert self.pushed_first(), "the configuration was changed before the image was pushed"
        self.configurations.append((name, dict(request), revision_id))
        self.calls.append("configuration")
        revision = f"rev-config-{len(self.configurations)}"
        self.functions[name] = replace(self.functions[name], config=configured(self.functions[name].config, request),
                                       revision_id=revision)
        return revision

    def update_function_code(self, name: str, image_uri: str, architecture: str, revision_id: str | None) -> str | None:
        if self.fail_with:
            raise AwsError(f"lambda:UpdateFunctionCode on function {name} failed: {self.fail_with}", self.fail_with)
        if self.conflicts:
            self.conflicts -= 1
            raise AwsError("update in progress", "ResourceConflictException")
        current = self.functions[name].revision_id if name in self.functions else None
        if revision_id and current and revision_id != current:
            raise AwsError("the RevisionId moved", "PreconditionFailedException")
        assert self.pushed_first(), "an update was sent before the image was pushed"
        self.updates.append((name, image_uri, architecture, revision_id))
        self.calls.append("code")
        self.functions[name] = replace(self.functions[name], code_sha256=image_uri.split("@sha256:")[1],
                                       architectures=(architecture,), revision_id="rev-new")
        if self.landed_then:
            code, self.landed_then = self.landed_then, None
            raise AwsError("what the retry of a landed update was told", code)
        return "rev-new"

    def wait_updated(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None:
        self.waited.append(name)
        self.calls.append("wait")
        if self.revision_moves_when_done and name in self.functions:
            self.functions[name] = replace(self.functions[name], revision_id=f"{self.functions[name].revision_id}-done")
        self.waiting.set()

    def create_function(self, name: str, image_uri: str, architecture: str, request: Mapping[str, Any]) -> str | None:
        """As Lambda: a function of that name already there is a conflict; a new one is Pending."""
        if name in self.functions:
            raise AwsError(f"lambda:CreateFunction on function {name} failed: ResourceConflictException: Function already "
                           "exist", "ResourceConflictException")
        assert self.pushed_first(), "a function was created before its image was pushed"
        self.creations.append((name, image_uri, architecture, dict(request)))
        self.calls.append("create")
        self.functions[name] = FunctionState(exists=True, package_type="Image", code_sha256=image_uri.split("@sha256:")[1],
                                             architectures=(architecture,), state="Pending", revision_id="rev-created",
                                             config=configured(ObservedConfig(), request))
        return "rev-created"

    def put_function_concurrency(self, name: str, reserved: int) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise AwsError("update in progress", "ResourceConflictException")
        self.concurrencies.append((name, reserved))
        self.calls.append("concurrency")
        self._changed_separately(name, replace(self.functions[name].config, reserved_concurrency=reserved))

    def tag_resource(self, arn: str, tags: Mapping[str, str]) -> None:
        """As Lambda: adds and replaces the tags given, leaves the others."""
        name = next(name for name in self.functions if arn_of(name) == arn)
        self.taggings.append((arn, dict(tags)))
        self.calls.append("tag")
        self._changed_separately(name, replace(self.functions[name].config, tags={**self.functions[name].config.tags, **tags}))

    def _changed_separately(self, name: str, config: ObservedConfig) -> None:
        fn = self.functions[name]
        revision = f"{fn.revision_id}-separate" if self.separate_calls_move_revision else fn.revision_id
        self.functions[name] = replace(fn, config=config, revision_id=revision)

    def wait_active(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None:
        self.waited.append(name)
        self.calls.append("wait active")
        if self.fail_activation:
            raise AwsError(f"function {name}: creation did not succeed (State Failed): {self.fail_activation}")
        self.functions[name] = replace(self.functions[name], state="Active")
        self.waiting.set()


@dataclass
class FakeEcr:
    images: dict[str, ImageState] = field(default_factory=dict)  # by tag
    logins: int = 0
    repository_exists: bool = True
    created: list[tuple[str, int]] = field(default_factory=list)  # create_repository calls: (name, untagged expiry days)
    configured: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # configure_repository calls: (name, keys)

    def describe_image(self, repository: EcrRepository, tag: str) -> ImageState:
        assert repository.name == "fn-repo"
        if not self.repository_exists:
            return ImageState(repository_exists=False)
        return self.images.get(tag, ImageState(repository_exists=True))

    def create_repository(self, repository: EcrRepository, config: RepositoryConfig) -> None:
        """As the gateway: a repository that exists already is no error."""
        assert repository.name == "fn-repo"
        self.created.append((repository.name, config.for_creation().untagged_expiry_days or 0))
        self.repository_exists = True

    def configure_repository(self, repository: EcrRepository, config: RepositoryConfig, keys: tuple[str, ...]) -> None:
        assert self.repository_exists
        self.configured.append((repository.name, keys))

    def login(self) -> RegistryLogin:
        self.logins += 1
        return RegistryLogin("AWS", f"token-{self.logins}", "https://registry")


@dataclass
class FakeDocker:
    ecr: FakeEcr
    digest: str = NEW
    push_error: DockerError | None = None  # what the push raises, typed as the gateway raises it
    builds: list[dict[str, Any]] = field(default_factory=list)
    pushes: list[tuple[str, str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    compiles: list[CompileJob] = field(default_factory=list)

    def compile_go(self, job: CompileJob, log: Callable[[str], None], cancel: threading.Event | None = None) -> bytes:
        assert (job.context_dir / "go.mod").is_file()
        self.compiles.append(job)
        return b"\x7fELF compiled " + job.function.encode()

    def local_image(self, reference: str) -> str | None:
        return None

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        assert (Path(context_dir) / dockerfile).is_file()
        self.builds.append({"context": context_dir, "tag": tag, "labels": dict(labels), "args": dict(build_args)})
        return "sha256:image"

    def remove_tag(self, reference: str) -> None:
        self.removed.append(reference)

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin, relogin: Any, log: Any,
             sleep: Any = None, progress: Callable[[int, int], None] | None = None) -> str:
        if self.push_error:
            raise self.push_error
        assert self.ecr.repository_exists, "a push into a repository that does not exist"
        if progress is not None:  # as the gateway sums a push's layers
            progress(512, 2048)
            progress(2048, 2048)
        self.pushes.append((repository, tag, login.password))
        self.ecr.images[tag] = ImageState(True, self.digest, V2)  # what a registry push into ECR does
        return self.digest


class Recorder:
    """The reporter's lines, as events: `wait_for` returns once a line matches."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def _add(self, line: str) -> None:
        with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    def wait_for(self, matches: Callable[[str], bool], count: int = 1, timeout: float = 10) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: sum(map(matches, self.lines)) >= count, timeout)

    def step(self, function: str, number: int, total: int, text: str) -> None:
        self._add(f"{function} {number}/{total} {text}")

    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None:
        self._add(f"{function} {number}/{total} done")

    def transfer(self, function: str, done: int, total: int) -> None:
        self._add(f"{function} pushed {done}/{total}")

    def log(self, function: str, line: str) -> None:
        self._add(f"{function} | {line}")

    def notice(self, text: str) -> None:
        self._add(f"! {text}")


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's contexts and image locks in a temp dir of its own: under pytest-xdist another
    worker's apply of the same source would otherwise hold the very image lock a test takes."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmpdir")))


@pytest.fixture
def function(tmp_path: Path) -> FunctionSpec:
    (tmp_path / ".git").mkdir()
    src = tmp_path / "fn"
    src.mkdir()
    (src / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (src / "main.go").write_text("package main\n\nfunc main() {}\n")
    return FunctionSpec(name="fn", region="us-east-1", repository=RepositoryRef("fn-repo", "us-east-1", "123456789012"),
                        platform="linux/arm64", build=BuildSettings(source=src), root=tmp_path,
                        location=Location(tmp_path / "deploy.yaml", 1, 1))


def desired_for(fn: FunctionSpec) -> Desired:
    with temporary_context(fn) as ctx:
        return Desired(fn.name, fn.region, REPOSITORY, ctx.content_tag, ctx.digest, fn.architecture, fn.platform, "deploy.yaml")


def running(digest: str, arch: str = "arm64", revision: str | None = None) -> FunctionState:
    return FunctionState(exists=True, package_type="Image", code_sha256=digest.removeprefix("sha256:"),
                         architectures=(arch,), revision_id=revision)


def executor(lam: FakeLambda, ecr: FakeEcr, docker: FakeDocker, **options: Any) -> tuple[Executor, Recorder]:
    reporter = Recorder()
    x = Executor(lambda region: lam, lambda region: ecr, docker, ApplyOptions(**options), reporter)
    x.sleep = lambda seconds: None
    return x, reporter


def plan_for(desired: Desired, lam: FakeLambda, ecr: FakeEcr) -> Plan:
    return make_plan([(desired, Observed(lam.get_function(desired.name), ecr.describe_image(REPOSITORY, desired.content_tag)))])


def test_build_plan_builds_pushes_verifies_and_updates_to_the_pushed_digest(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD, revision="rev-1")}), FakeEcr()
    docker = FakeDocker(ecr)
    plan = plan_for(desired, lam, ecr)
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.digest) == ("built", NEW)
    assert docker.builds[0]["labels"]["dev.deployer.source-digest"] == desired.source_digest
    assert docker.pushes == [(REPO, desired.content_tag, "token-1")]
    assert lam.updates == [("fn", f"{REPO}@{NEW}", "arm64", "rev-1")]
    assert lam.waited == ["fn"]
    assert not docker.compiles[0].context_dir.exists(), "temporary context removed"
    assert reporter.lines[0] == f"fn 1/8 log in to ECR registry 123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_bytes_of_a_push_reach_the_reporter_within_the_push_step_of_their_function(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    x, reporter = executor(lam, ecr, FakeDocker(ecr))
    x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    push = next(i for i, line in enumerate(reporter.lines) if line.startswith("fn 4/8 push"))
    assert reporter.lines[push + 1:push + 4] == ["fn pushed 512/2048", "fn pushed 2048/2048", "fn 4/8 done"]


def test_push_goes_to_the_registry_endpoint_when_one_is_set(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker, registry_endpoint="127.0.0.1:5000")
    x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    assert docker.pushes[0][0] == "127.0.0.1:5000/fn-repo"
    assert lam.updates[0][1] == f"{REPO}@{NEW}", "Lambda is still given the ECR URI"


def test_keep_context_leaves_the_context_and_says_where(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FakeDocker(ecr)
    x, reporter = executor(lam, ecr, docker, keep_context=True)
    x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    kept = docker.compiles[0].context_dir
    try:
        assert kept.is_dir() and f"fn | build context kept at {kept}" in reporter.lines
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_update_plan_makes_no_docker_calls(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status == "updated"
    assert docker.builds == [] and docker.pushes == [] and ecr.logins == 0
    assert lam.updates == [("fn", f"{REPO}@{NEW}", "arm64", None)]


def test_noop_plan_calls_nothing(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(NEW)}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status == "unchanged" and lam.updates == [] and lam.waited == []


def test_function_changed_since_plan_is_refused(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    lam.functions["fn"] = running("sha256:" + "d" * 64)  # someone deployed in between
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {})
    assert outcome.status == "failed"
    assert outcome.detail == "function fn changed since plan (digest sha256:bbbbbbbbbbbb -> sha256:dddddddddddd); run plan again"
    assert lam.updates == []


def test_source_changed_since_plan_is_refused_before_building(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    plan = plan_for(desired_for(function), lam, ecr)
    (function.build.source / "main.go").write_text("package main\n\nfunc main() { println() }\n")
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == "failed" and "source of fn changed since plan" in outcome.detail
    assert docker.builds == [] and lam.updates == []


def test_update_in_progress_is_retried_with_backoff(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}, conflicts=2), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, reporter = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status == "updated"
    assert [line for line in reporter.lines if "ResourceConflictException" in line] == [
        "fn | ResourceConflictException: retry 1/5 in 2s", "fn | ResourceConflictException: retry 2/5 in 4s"]


def test_an_update_that_landed_is_not_mistaken_for_an_outside_change(function: FunctionSpec) -> None:
    # Lambda applied the first attempt, whose retry was told "update in progress" (our own); the
    # next attempt's RevisionId is then stale because of us: Lambda is asked, and runs our image.
    desired = desired_for(function)
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")}, landed_then="ResourceConflictException")
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert (outcome.status, outcome.digest) == (OutcomeStatus.UPDATED, NEW)
    assert len(lam.updates) == 1


def test_a_stale_revision_on_a_retry_that_is_not_ours_is_refused(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")}, conflicts=1)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))

    def someone_else_meanwhile(seconds: float) -> None:  # during the backoff, a change from outside
        lam.functions["fn"] = replace(lam.functions["fn"], revision_id="rev-outside")

    x.sleep = someone_else_meanwhile
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.detail == "the RevisionId moved"  # what Lambda said, not taken for our own update
    assert lam.updates == [] and lam.functions["fn"].code_sha256 == OLD.removeprefix("sha256:")


def test_one_failure_does_not_stop_the_others(function: FunctionSpec) -> None:
    desired = desired_for(function)
    other = replace(desired, name="other")
    lam = FakeLambda({"fn": running(OLD), "other": running(OLD)})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = make_plan([(d, Observed(lam.get_function(d.name), ecr.describe_image(REPOSITORY, d.content_tag))) for d in (desired, other)])
    del lam.functions["fn"]  # deleted after the plan: this one fails, "other" still deploys
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    outcomes = {o.name: o for o in x.run(plan, {})}
    assert outcomes["fn"].status == "failed" and outcomes["other"].status == "updated"


def test_non_retryable_aws_error_fails_the_function_with_its_message(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam = FakeLambda({"fn": running(OLD)}, fail_with="AccessDeniedException")
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status == "failed"
    assert outcome.detail == "lambda:UpdateFunctionCode on function fn failed: AccessDeniedException"


def test_image_pushed_since_the_plan_is_deployed_without_building_it_again(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    plan = plan_for(desired, lam, ecr)
    ecr.images[desired.content_tag] = ImageState(True, NEW, V2)  # a concurrent apply pushed it
    docker = FakeDocker(ecr, digest="sha256:" + "e" * 64)
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.digest) == ("updated", NEW)
    assert outcome.detail == "now runs sha256:cccccccccccc (image pushed by another apply since the plan)"
    assert docker.builds == [] and docker.pushes == [] and docker.removed == []
    assert lam.updates[0][1] == f"{REPO}@{NEW}"
    assert "fn | skipped: another apply pushed the image" in reporter.lines


class RacingImmutableDocker(FakeDocker):
    """Another machine pushes the tag while this build runs: the immutable repository refuses ours."""

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        image = super().build(context_dir, dockerfile, tag, build_args, labels, log, cancel)
        self.ecr.images[tag.rsplit(":", 1)[1]] = ImageState(True, NEW, V2)
        return image


def test_immutable_tag_pushed_during_the_build_deploys_the_existing_image(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    refusal = ImmutableTagRefused("push of x failed: tag invalid: The image tag already exists and cannot be overwritten "
                                  "because the repository is immutable.")
    docker = RacingImmutableDocker(ecr, digest="sha256:" + "e" * 64, push_error=refusal)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert (outcome.status, outcome.digest) == ("built", NEW)
    assert lam.updates[0][1] == f"{REPO}@{NEW}"
    assert docker.removed == [f"{REPO}:{desired.content_tag}"], "the local tag goes although the push was refused"


def test_push_failure_leaves_lambda_alone_and_cleans_up(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FakeDocker(ecr, push_error=DockerError("push of x failed: connection refused"))
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    assert outcome.status == "failed" and "connection refused" in outcome.detail
    assert lam.updates == [] and not docker.compiles[0].context_dir.exists()


class VanishingDocker(FakeDocker):
    """The engine loses the built image before the first `vanish` pushes (another build of the same
    inputs had its last tag removed meanwhile): those pushes cannot tag it."""

    def __init__(self, ecr: FakeEcr, vanish: int) -> None:
        super().__init__(ecr)
        self.vanish = vanish

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin, relogin: Any, log: Any,
             sleep: Any = None, progress: Callable[[int, int], None] | None = None) -> str:
        if self.vanish:
            self.vanish -= 1
            raise ImageVanished(f"cannot tag image {image_id} as {repository}:{tag}: failed to get digest {image_id}: "
                                "no such file or directory")
        return super().push(image_id, repository, tag, login, relogin, log, sleep, progress)


def test_an_image_the_engine_lost_before_its_push_is_built_again_once(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = VanishingDocker(ecr, vanish=1)
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    assert (outcome.status, outcome.digest) == ("built", NEW)
    assert len(docker.builds) == 2 and len(docker.pushes) == 1
    assert any("the engine lost the image before its push" in line for line in reporter.lines)
    assert docker.removed == [docker.builds[0]["tag"]], "the local tag of the second build goes too"


def test_an_image_lost_twice_fails_its_function_without_a_third_build(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = VanishingDocker(ecr, vanish=2)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    assert outcome.status == "failed" and "failed to get digest" in outcome.detail
    assert len(docker.builds) == 2 and lam.updates == []


class IndexPushingDocker(FakeDocker):
    """A push whose result in ECR is an image index (what BuildKit makes with attestations on)."""

    def push(self, image_id: str, repository: str, tag: str, login: RegistryLogin, relogin: Any, log: Any,
             sleep: Any = None, progress: Callable[[int, int], None] | None = None) -> str:
        digest = super().push(image_id, repository, tag, login, relogin, log, sleep, progress)
        self.ecr.images[tag] = ImageState(True, digest, "application/vnd.oci.image.index.v1+json")
        return digest


def test_index_pushed_is_refused_before_lambda_is_touched(function: FunctionSpec) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = IndexPushingDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    assert outcome.status == "failed" and "Lambda accepts only single-platform manifests" in outcome.detail
    assert lam.updates == []


def test_functions_sharing_inputs_and_repository_share_one_build(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD), "fn-prod": running(OLD)}), FakeEcr()
    pairs = [(d, Observed(lam.get_function(d.name), ecr.describe_image(REPOSITORY, d.content_tag)))
             for d in (desired, replace(desired, name="fn-prod"))]
    docker = FakeDocker(ecr)
    x, reporter = executor(lam, ecr, docker, parallelism=2)
    outcomes = x.run(make_plan(pairs), {"fn": function, "fn-prod": replace(function, name="fn-prod")})
    assert [(o.name, o.status, o.digest) for o in outcomes] == [("fn", "built", NEW), ("fn-prod", "built", NEW)]
    assert len(docker.builds) == 1 and len(docker.pushes) == 1
    assert sorted(u[:2] for u in lam.updates) == [("fn", f"{REPO}@{NEW}"), ("fn-prod", f"{REPO}@{NEW}")]
    assert any("was built in this apply for another function" in line for line in reporter.lines)


def test_local_push_tag_is_removed_after_the_push(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert docker.builds[0]["tag"] == f"{REPO}:{desired.content_tag}"
    assert docker.removed == [f"{REPO}:{desired.content_tag}"]


class CrashingLambda(FakeLambda):
    def wait_updated(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None:
        if name == "fn":
            raise RuntimeError("connection pool is closed")
        super().wait_updated(name, sleep, timeout_seconds)


def test_an_unexpected_error_fails_only_its_function_and_the_summary_says_so(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam = CrashingLambda({"fn": running(OLD), "other": running(OLD)})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    pairs = [(d, Observed(lam.get_function(d.name), ecr.describe_image(REPOSITORY, d.content_tag)))
             for d in (desired, replace(desired, name="other"))]
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    outcomes = {o.name: o for o in x.run(make_plan(pairs), {})}
    assert outcomes["fn"].status == "failed"
    assert outcomes["fn"].detail.startswith("internal error: RuntimeError: connection pool is closed; this is a bug")
    assert outcomes["other"].status == "updated"


class FailingBuildDocker(FakeDocker):
    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        super().build(context_dir, dockerfile, tag, build_args, labels, log, cancel)
        raise DockerError("docker build failed: exit status 1")


def test_keep_context_says_where_before_a_failed_build(function: FunctionSpec, tmp_path: Path) -> None:
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FailingBuildDocker(ecr)
    x, reporter = executor(lam, ecr, docker, keep_context=True)
    [outcome] = x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    kept = docker.compiles[0].context_dir
    try:
        assert outcome.status == "failed"
        assert f"fn | build context kept at {kept}" in reporter.lines
        assert kept.is_dir()
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_blocked_plan_is_not_applied(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({}), FakeEcr()
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    with pytest.raises(PlanError, match="1 function\\(s\\) cannot be deployed: fn; see the reasons above"):
        x.run(plan_for(desired, lam, ecr), {})


class GatedDocker(FakeDocker):
    """A build that prints a line every few milliseconds until `release` is set, so that other
    functions really wait for it, and a cancel can stop it at an output line."""

    def __init__(self, ecr: FakeEcr, fail: bool = False) -> None:
        super().__init__(ecr)
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = fail

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        image = super().build(context_dir, dockerfile, tag, build_args, labels, log, cancel)
        self.started.set()
        while not self.release.wait(0.01):
            log("Step 5/9 : RUN go build")
        if self.fail:
            raise DockerError("docker build failed: exit status 2")
        return image


def sharing_plan(desired: Desired, lam: FakeLambda, ecr: FakeEcr, names: tuple[str, ...]) -> Plan:
    return make_plan([(replace(desired, name=n), Observed(lam.get_function(n), ecr.describe_image(REPOSITORY, desired.content_tag)))
                      for n in names])


def run_in_thread(x: Executor, plan: Plan, specs: dict[str, FunctionSpec]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(x.run(plan, specs)))
    thread.start()
    return thread, result


def test_functions_waiting_for_a_shared_build_really_wait_and_reuse_it(function: FunctionSpec) -> None:
    names = ("a", "b", "c")
    desired = desired_for(function)
    lam, ecr = FakeLambda({n: running(OLD) for n in names}), FakeEcr()
    docker = GatedDocker(ecr)
    lam.pushed_first = lambda: bool(docker.pushes)  # nobody deploys before the one build is pushed
    x, reporter = executor(lam, ecr, docker, parallelism=3)
    thread, result = run_in_thread(x, sharing_plan(desired, lam, ecr, names), {n: replace(function, name=n) for n in names})
    assert docker.started.wait(10)
    # All three reached the image while the one build runs: the two others wait for it.
    assert reporter.wait_for(lambda line: "2/8 assemble build context" in line, count=3)
    assert lam.updates == []
    docker.release.set()
    thread.join(10)
    assert [o.status for o in result[0]] == [OutcomeStatus.BUILT] * 3
    assert len(docker.builds) == 1 and len(docker.pushes) == 1
    assert {u[1] for u in lam.updates} == {f"{REPO}@{NEW}"}


def test_a_failed_shared_build_fails_the_others_at_once_without_rebuilding(function: FunctionSpec) -> None:
    names = ("a", "b", "c")
    desired = desired_for(function)
    lam, ecr = FakeLambda({n: running(OLD) for n in names}), FakeEcr()
    docker = GatedDocker(ecr, fail=True)
    docker.release.set()
    x, _ = executor(lam, ecr, docker, parallelism=3)
    thread, result = run_in_thread(x, sharing_plan(desired, lam, ecr, names), {n: replace(function, name=n) for n in names})
    thread.join(10)
    assert not thread.is_alive(), "a failed holder releases the image"
    outcomes = {o.name: o for o in result[0]}
    assert len(docker.builds) == 1
    builder = next(n for n, o in outcomes.items() if "exit status 2" in o.detail and "same image" not in o.detail)
    for name, outcome in outcomes.items():
        assert outcome.status == "failed"
        if name != builder:
            assert outcome.detail == f"the same image failed to build for {builder}: docker build failed: exit status 2"
    assert lam.updates == []


def test_cancel_stops_a_build_at_its_next_line_and_the_waiters_at_once(function: FunctionSpec) -> None:
    names = ("a", "b")
    desired = desired_for(function)
    lam, ecr = FakeLambda({n: running(OLD) for n in names}), FakeEcr()
    docker = GatedDocker(ecr)  # never released: only the cancel ends it
    reporter = Recorder()
    x = Executor(lambda region: lam, lambda region: ecr, docker, ApplyOptions(parallelism=2), reporter)
    thread, result = run_in_thread(x, sharing_plan(desired, lam, ecr, names), {n: replace(function, name=n) for n in names})
    assert docker.started.wait(10)
    x.cancel.set()  # what Ctrl-C does
    thread.join(10)
    assert not thread.is_alive(), "the gated build never ends by itself: only the cancel stopped it"
    assert [o.status for o in result[0]] == ["cancelled", "cancelled"]
    assert len(docker.builds) == 1 and lam.updates == []
    assert not docker.compiles[0].context_dir.exists()
    # A build stopped at its very end may have tagged the image: the tag is removed in any case.
    assert docker.removed == [f"{REPO}:{desired.content_tag}"]


def test_cancel_interrupts_retry_backoff(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam = FakeLambda({"fn": running(OLD)}, conflicts=5)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    reporter = Recorder()
    x = Executor(lambda region: lam, lambda region: ecr, FakeDocker(ecr), ApplyOptions(), reporter)
    thread, result = run_in_thread(x, plan_for(desired, lam, ecr), {})
    assert reporter.wait_for(lambda line: "ResourceConflictException: retry 1/5 in 2s" in line)  # backing off
    started = time.monotonic()
    x.cancel.set()
    thread.join(10)
    assert time.monotonic() - started < 5, "the 2 s + 4 s backoff was cut short"
    [outcome] = result[0]
    assert outcome.status == "cancelled"


class EndlessInvokeLambda(FakeLambda):
    """A smoke test's function that runs until the test lets it go (up to its 15 minutes, in Lambda)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invoking, self.release = threading.Event(), threading.Event()

    def invoke(self, name: str, qualifier: str, payload: bytes, function_timeout: int) -> Invoked:
        self.invoking.set()
        self.release.wait(60)
        return super().invoke(name, qualifier, payload, function_timeout)


def test_ctrl_c_stops_an_apply_waiting_for_a_smoke_invoke_without_moving_the_alias(function: FunctionSpec) -> None:
    lam = EndlessInvokeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    x = Executor(lambda region: lam, lambda region: ecr, FakeDocker(ecr), ApplyOptions(), Recorder())
    thread, result = run_in_thread(x, plan, {"fn": spec})
    try:
        assert lam.invoking.wait(10)
        x.cancel.set()
        thread.join(10)
        assert not thread.is_alive(), "the apply stopped while the invoke still ran"
    finally:
        lam.release.set()
    [outcome] = result[0]
    assert lam.aliases[("fn", "live")] == ("8", "alias-rev-8")
    assert outcome.detail == ("update sent; LastUpdateStatus unknown when interrupted; published version 1; cancelled during the "
                              "smoke test of version 1: its invoke may still run in Lambda; the alias was not moved")


def test_local_push_tag_is_removed_when_the_push_fails(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FakeDocker(ecr, push_error=DockerError("push failed: connection refused"))
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "failed"
    assert docker.removed == [f"{REPO}:{desired.content_tag}"]


# -- Ctrl-C, crashes and concurrent applies ------------------------------------------------------

class SlowWaitLambda(FakeLambda):
    """Lambda accepts the update, then reports it InProgress until the wait is cancelled."""

    def get_function(self, name: str) -> FunctionState:
        state = super().get_function(name)
        return replace(state, last_update_status="InProgress") if self.updates else state

    def wait_updated(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None:
        self.waited.append(name)
        self.waiting.set()
        while True:
            sleep(0.05)


@pytest.mark.parametrize("prebuilt", [False, True], ids=["build", "update"])
def test_cancel_after_the_update_went_through_reports_it_updated_with_the_state_reached(
        function: FunctionSpec, prebuilt: bool) -> None:
    desired = desired_for(function)
    lam = SlowWaitLambda({"fn": running(OLD)})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)} if prebuilt else {})
    x = Executor(lambda region: lam, lambda region: ecr, FakeDocker(ecr), ApplyOptions(), Recorder())
    plan = plan_for(desired, lam, ecr)
    thread, result = run_in_thread(x, plan, {"fn": function})
    assert lam.waiting.wait(10)
    x.cancel.set()
    thread.join(10)
    [outcome] = result[0]
    assert (outcome.status, outcome.digest) == ("updated" if prebuilt else "built", NEW)
    assert outcome.detail == "update sent; LastUpdateStatus InProgress when interrupted"
    assert not outcome.failed


def test_a_function_another_apply_deployed_since_the_plan_is_left_as_it_is(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    lam.functions["fn"] = running(NEW)  # the other apply, same source, same image
    x, reporter = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {})
    assert (outcome.status, outcome.digest) == ("unchanged", NEW)
    assert outcome.detail == "already runs sha256:cccccccccccc: another apply deployed it since the plan"
    assert lam.updates == []


def test_a_build_plan_whose_image_another_apply_pushed_and_deployed_does_nothing(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    plan = plan_for(desired, lam, ecr)
    ecr.images[desired.content_tag] = ImageState(True, NEW, V2)
    lam.functions["fn"] = running(NEW)
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == "unchanged" and docker.builds == [] and lam.updates == []


class RacedLambda(FakeLambda):
    """Another apply deploys `other` (its own RevisionId) just before this one's update lands."""

    other: str = NEW

    def update_function_code(self, name: str, image_uri: str, architecture: str, revision_id: str | None) -> str | None:
        if self.functions[name].revision_id != "rev-other":
            self.functions[name] = running(self.other, revision="rev-other")
        return super().update_function_code(name, image_uri, architecture, revision_id)


def test_an_update_refused_because_another_apply_just_deployed_the_same_image_ends_unchanged(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = RacedLambda({"fn": running(OLD, revision="rev-1")}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.digest) == ("unchanged", NEW), outcome.detail
    assert outcome.detail == "already runs sha256:cccccccccccc: another apply deployed it since the plan"
    assert lam.updates == []


def test_an_update_refused_because_another_apply_deployed_another_image_still_fails(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam = RacedLambda({"fn": running(OLD, revision="rev-1")})
    lam.other = "sha256:" + "d" * 64
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.detail) == (OutcomeStatus.FAILED, "the RevisionId moved")  # the refusal, as it came
    assert lam.updates == [] and lam.functions["fn"].code_sha256 == "d" * 64


def test_another_change_since_the_plan_is_still_refused(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    lam.functions["fn"] = running(NEW, arch="x86_64")  # right image, wrong architecture: not what the plan would do
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {})
    assert outcome.status == "failed" and "changed since plan" in outcome.detail


def test_an_apply_waits_for_another_process_building_the_same_image_then_deploys_its_push(function: FunctionSpec) -> None:
    from deployer import locks
    from deployer.sharing import ImageLock

    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    plan = plan_for(desired, lam, ecr)
    docker = FakeDocker(ecr)
    x, reporter = executor(lam, ecr, docker)
    x.sleep = time.sleep
    other = ImageLock(f"{REPO}:{desired.content_tag}", time.sleep, lambda line: None)
    fd = locks.acquire(other.path, note="pid 4242")  # what the other apply holds while it builds
    thread, result = run_in_thread(x, plan, {"fn": function})
    assert reporter.wait_for(lambda line: "waiting for it" in line)
    assert f"fn | another apply on this machine (pid 4242) is building {desired.content_tag}; waiting for it" in reporter.lines
    ecr.images[desired.content_tag] = ImageState(True, NEW, V2)  # its push
    locks.release(fd, other.path)
    thread.join(10)
    [outcome] = result[0]
    assert (outcome.status, outcome.digest) == ("updated", NEW)
    assert docker.builds == [] and docker.pushes == [] and lam.updates[0][1] == f"{REPO}@{NEW}"
    assert not other.path.exists(), "no lock file left"


class DeafDocker(GatedDocker):
    """A build that does not look at the cancel (a push or an AWS call in flight) until released."""

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        self.builds.append({"context": context_dir})
        self.started.set()
        assert self.release.wait(10)
        log("Step 9/9 : done")  # where the cancel is seen
        return "sha256:image"


def test_ctrl_c_pressed_three_times_cancels_cleans_up_and_returns_outcomes(function: FunctionSpec) -> None:
    import os
    import signal

    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = DeafDocker(ecr)
    reporter = Recorder()
    x = Executor(lambda region: lam, lambda region: ecr, docker, ApplyOptions(), reporter)
    previous = signal.getsignal(signal.SIGINT)

    def press_three_times() -> None:
        assert docker.started.wait(10)
        for count in (1, 2, 3):
            os.kill(os.getpid(), signal.SIGINT)
            assert reporter.wait_for(lambda line: line.startswith("! "), count)
        docker.release.set()

    presser = threading.Thread(target=press_three_times)
    presser.start()
    try:
        [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})  # in the main thread, as the CLI runs it
    finally:
        docker.release.set()
        presser.join(10)
        signal.signal(signal.SIGINT, previous)
    assert x.interrupted and outcome.status == "cancelled"
    assert not docker.compiles[0].context_dir.exists()
    assert [line for line in reporter.lines if line.startswith("! ")] == [
        "! stopping: waiting for 1 function(s) to reach a safe point and clean up",
        "! still stopping: a push or an AWS call in flight is being let finish",
        "! still stopping: a push or an AWS call in flight is being let finish"]


def test_apply_sweeps_contexts_left_by_a_killed_apply_and_leaves_live_and_kept_ones(
        function: FunctionSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import subprocess
    import sys
    import tempfile

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    dead = tmpdir / "deployer-ctx-1-20260101T000000-dead"
    (dead / "shared").mkdir(parents=True)
    (dead / "main.go").write_text("package main\n")
    (tmpdir / (dead.name + ".lock")).write_text("pid 1")  # nobody holds it: its owner was killed
    (tmpdir / "deployer-image-0123.lock").write_text("pid 1")
    kept = tmpdir / "deployer-ctx-2-20260101T000000-kept"  # --keep-context: no lock file
    kept.mkdir()
    live = tmpdir / "deployer-ctx-3-20260101T000000-live"
    live.mkdir()
    live_lock = tmpdir / (live.name + ".lock")
    live_lock.touch()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'r+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(live_lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with open(live_lock, "r+") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
        x, reporter = executor(lam, ecr, FakeDocker(ecr))
        [outcome] = x.run(plan_for(desired_for(function), lam, ecr), {"fn": function})
    finally:
        holder.kill()
        holder.wait()
    assert outcome.status == "built"
    assert f"! removed 1 build context(s) left by an apply that did not finish: {dead.name}" in reporter.lines
    assert sorted(p.name for p in tmpdir.iterdir()) == sorted([kept.name, live.name, live_lock.name])


def test_a_claimant_stopped_by_a_stale_plan_leaves_the_shared_image_to_the_next_function(
        function: FunctionSpec, tmp_path: Path) -> None:
    names = ("a", "b")
    desired = desired_for(function)
    lam, ecr = FakeLambda({n: running(OLD) for n in names}), FakeEcr()
    changed = tmp_path / "changed"  # a's source no longer what the plan was made from
    shutil.copytree(function.build.source, changed)
    (changed / "main.go").write_text("package main\n\nfunc main() { println() }\n")
    specs = {"a": replace(function, name="a", build=replace(function.build, source=changed)), "b": replace(function, name="b")}
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker, parallelism=1)  # a claims the image first, then b
    outcomes = {o.name: o for o in x.run(sharing_plan(desired, lam, ecr, names), specs)}
    assert outcomes["a"].status == OutcomeStatus.FAILED and "source of a changed since plan" in outcomes["a"].detail
    assert (outcomes["b"].status, outcomes["b"].digest) == (OutcomeStatus.BUILT, NEW), "b built it: a's stop said nothing about the image"
    assert len(docker.builds) == 1 and [u[0] for u in lam.updates] == ["b"]


# -- configuration -------------------------------------------------------------------------------

SECRET = "s3cret-from-ci"


def declaring(desired: Desired, **config: Any) -> Desired:
    """`desired` with configuration declared (resolved: from_env values read, as observe does)."""
    return replace(desired, config=FunctionConfig(**config))


def test_a_configuration_plan_updates_the_configuration_once_and_builds_nothing(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512, timeout=3)
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    docker = FakeDocker(ecr)
    plan = plan_for(desired, lam, ecr)
    assert plan.functions[0].action is Action.CONFIGURE
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.detail, outcome.digest) == (OutcomeStatus.UPDATED, "configuration updated (memory)", NEW)
    assert lam.configurations == [("fn", {"MemorySize": 512}, "rev-1")]
    assert lam.calls == ["configuration", "wait"]
    assert lam.updates == [] and docker.builds == [] and docker.pushes == [] and ecr.logins == 0
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP, "a plan after the apply settles"


@pytest.mark.parametrize("prebuilt", [False, True], ids=["build", "update"])
def test_configuration_goes_first_and_the_code_update_carries_the_revision_it_returned(
        function: FunctionSpec, prebuilt: bool) -> None:
    environment = MappingProxyType({"API_KEY": EnvValue(SECRET, from_env="CI_API_KEY"), "MODE": EnvValue("live")})
    desired = declaring(desired_for(function), timeout=30, environment=environment)
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)} if prebuilt else {})
    docker = FakeDocker(ecr)
    lam.pushed_first = lambda: prebuilt or bool(docker.pushes)  # nothing changes in Lambda before the image is in ECR
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert (outcome.status, outcome.digest) == ("updated" if prebuilt else "built", NEW)
    assert outcome.detail == "now runs sha256:cccccccccccc; configuration updated (timeout, environment.API_KEY, environment.MODE)"
    assert lam.calls == ["configuration", "wait", "code", "tag", "wait"]  # tag: the image replaced, for rollback
    assert lam.configurations == [("fn", {"Timeout": 30, "Environment": {"Variables": {"API_KEY": SECRET, "MODE": "live"}}}, "rev-1")]
    assert lam.updates == [("fn", f"{REPO}@{NEW}", "arm64", "rev-config-1")]
    assert all(SECRET not in line for line in reporter.lines) and SECRET not in outcome.detail


def test_a_build_with_configuration_succeeds_when_the_revision_moves_as_the_update_completes(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512)
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")}, revision_moves_when_done=True)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "updated", outcome.detail
    assert [u[1] for u in lam.updates] == [f"{REPO}@{NEW}"]


def test_a_failed_build_leaves_the_configuration_alone(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    x, _ = executor(lam, ecr, FailingBuildDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "failed"
    assert lam.configurations == [] and lam.updates == []


def test_an_image_config_update_sends_back_the_sub_keys_not_declared_as_lambda_holds_them(function: FunctionSpec) -> None:
    # Lambda replaces the whole ImageConfig: the entry point and working directory set outside
    # must go with the declared command, read again at apply (under the plan's RevisionId).
    desired = declaring(desired_for(function), image_config=ImageConfig(command=("serve", "--debug")))
    held = ObservedConfig(image_config=ImageConfig(("/entry",), ("serve",), "/app"))
    lam = FakeLambda({"fn": replace(running(NEW, revision="rev-1"), config=held)})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.detail == "configuration updated (image_config.command)"
    assert lam.configurations == [
        ("fn", {"ImageConfig": {"EntryPoint": ["/entry"], "Command": ["serve", "--debug"], "WorkingDirectory": "/app"}}, "rev-1")]


def test_a_configuration_plan_on_a_function_changed_since_is_refused(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512)
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    lam.functions["fn"] = replace(lam.functions["fn"], revision_id="rev-outside", config=ObservedConfig(memory=1024))
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == "failed"
    assert outcome.detail == "function fn changed since plan (revision rev-1 -> rev-outside); run plan again"
    assert lam.configurations == []


def test_a_configuration_update_in_conflict_is_retried_with_backoff(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512)
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")}, conflicts=2)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, reporter = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "updated"
    assert [line for line in reporter.lines if "ResourceConflictException" in line] == [
        "fn | ResourceConflictException: retry 1/5 in 2s", "fn | ResourceConflictException: retry 2/5 in 4s"]
    assert lam.configurations == [("fn", {"MemorySize": 512}, "rev-1")]


def test_a_configuration_plan_whose_function_is_no_longer_declared_fails(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512)
    lam = FakeLambda({"fn": running(NEW)})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status == "failed" and "no longer declared" in outcome.detail
    assert lam.configurations == []


def test_an_image_deployed_elsewhere_does_not_skip_the_configuration(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512)
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    lam.functions["fn"] = running(NEW, revision="rev-other")  # another apply deployed the image, not this configuration
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.failed or lam.functions["fn"].config.memory == 512, outcome


def test_reserved_concurrency_alone_is_put_without_a_configuration_update(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), reserved_concurrency=5)
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    plan = plan_for(desired, lam, ecr)
    assert plan.functions[0].action is Action.CONFIGURE
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.detail) == (OutcomeStatus.UPDATED, "configuration updated (reserved_concurrency)")
    assert lam.concurrencies == [("fn", 5)] and lam.configurations == []
    assert lam.calls == ["concurrency", "wait"]
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP, "a plan after the apply settles"


def test_reserved_concurrency_is_put_after_the_configuration_update(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512, reserved_concurrency=0)
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.detail == "configuration updated (memory, reserved_concurrency)", outcome
    assert lam.calls == ["configuration", "concurrency", "wait"]
    assert lam.configurations == [("fn", {"MemorySize": 512}, "rev-1")], "no concurrency in UpdateFunctionConfiguration"
    assert lam.concurrencies == [("fn", 0)]
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP


def test_a_reserved_concurrency_put_in_conflict_is_retried(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), reserved_concurrency=5)
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")}, conflicts=1)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, reporter = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "updated" and lam.concurrencies == [("fn", 5)]
    assert "fn | ResourceConflictException: retry 1/5 in 2s" in reporter.lines


@pytest.mark.parametrize("moves", [False, True], ids=["revision-kept", "revision-moved"])
def test_a_code_update_follows_a_concurrency_put_whether_or_not_it_moved_the_revision(function: FunctionSpec, moves: bool) -> None:
    desired = declaring(desired_for(function), reserved_concurrency=5)
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")}, separate_calls_move_revision=moves)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "updated", outcome.detail
    assert lam.calls == ["concurrency", "wait", "code", "tag", "wait"]
    assert lam.updates == [("fn", f"{REPO}@{NEW}", "arm64", "rev-1-separate" if moves else "rev-1")]


def test_declared_tags_that_differ_are_tagged_and_the_others_left_alone(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), memory=512, reserved_concurrency=3,
                        tags=MappingProxyType({"team": "payments", "cost-center": "42", "same": "x"}))
    lam = FakeLambda({"fn": replace(running(NEW, revision="rev-1"),
                                    config=ObservedConfig(tags={"team": "ops", "same": "x", "outside": "kept"}))})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.detail == "configuration updated (memory, reserved_concurrency, tags.cost-center, tags.team)", outcome
    assert lam.calls == ["configuration", "concurrency", "tag", "wait"]
    assert lam.configurations == [("fn", {"MemorySize": 512}, "rev-1")], "tags are not UpdateFunctionConfiguration's"
    assert lam.taggings == [(arn_of("fn"), {"cost-center": "42", "team": "payments"})], "only the changed tags"
    assert lam.functions["fn"].config.tags == {"team": "payments", "cost-center": "42", "same": "x", "outside": "kept"}
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP


def test_tags_need_the_function_arn_getfunction_reports(function: FunctionSpec) -> None:
    desired = declaring(desired_for(function), tags=MappingProxyType({"team": "payments"}))
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")}, reports_arn=False)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "failed" and "no usable FunctionArn" in outcome.detail, outcome
    assert lam.taggings == []


@pytest.mark.parametrize("moves", [False, True], ids=["revision-kept", "revision-moved"])
def test_a_code_update_follows_tagging_whether_or_not_it_moved_the_revision(function: FunctionSpec, moves: bool) -> None:
    desired = declaring(desired_for(function), tags=MappingProxyType({"team": "payments"}))
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")}, separate_calls_move_revision=moves)
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == "updated", outcome.detail
    assert lam.calls == ["tag", "wait", "code", "tag", "wait"]


# -- creating missing repositories and functions ---------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/fn-role"


def creatable(desired: Desired, **config: Any) -> Desired:
    """`desired` with a role declared (what a missing function is created with) and `config`."""
    return replace(desired, config=FunctionConfig(role=ROLE, **config))


def test_a_creation_builds_pushes_then_creates_the_function_on_the_pushed_digest_with_its_configuration(
        function: FunctionSpec) -> None:
    environment = MappingProxyType({"API_KEY": EnvValue(SECRET, from_env="CI_API_KEY"), "MODE": EnvValue("live")})
    desired = creatable(desired_for(function), memory=512, environment=environment)
    lam, ecr = FakeLambda({}), FakeEcr()
    docker = FakeDocker(ecr)
    lam.pushed_first = lambda: bool(docker.pushes)
    plan = plan_for(desired, lam, ecr)
    assert plan.functions[0].action is Action.CREATE
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert (outcome.status, outcome.digest) == (OutcomeStatus.CREATED, NEW)
    assert outcome.status.value == "created" and outcome.changed and not outcome.failed
    assert outcome.detail == "created, runs sha256:cccccccccccc (role, memory, environment.API_KEY, environment.MODE)"
    assert docker.pushes == [(REPO, desired.content_tag, "token-1")]
    assert lam.creations == [("fn", f"{REPO}@{NEW}", "arm64", {
        "Role": ROLE, "MemorySize": 512, "Environment": {"Variables": {"API_KEY": SECRET, "MODE": "live"}}})]
    assert lam.calls == ["create", "wait active"] and lam.updates == [] and lam.configurations == []
    assert lam.functions["fn"].state == "Active"
    assert ecr.created == [], "the repository exists"
    assert not docker.compiles[0].context_dir.exists(), "temporary context removed"
    assert [line for line in reporter.lines if line.startswith("fn 6/8")] == [
        f"fn 6/8 create function fn from {REPO}:{desired.content_tag} (arm64)", "fn 6/8 done"]
    assert all(SECRET not in line for line in reporter.lines) and SECRET not in outcome.detail
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP, "a plan after the creation settles"


def test_a_creation_from_the_image_in_ecr_builds_nothing(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert (outcome.status, outcome.digest) == (OutcomeStatus.CREATED, NEW)
    assert lam.creations == [("fn", f"{REPO}@{NEW}", "arm64", {"Role": ROLE})]
    assert docker.builds == [] and docker.pushes == [] and ecr.logins == 0


def test_a_created_function_gets_its_reserved_concurrency_once_active(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function), reserved_concurrency=7)
    lam, ecr = FakeLambda({}), FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == OutcomeStatus.CREATED, outcome.detail
    assert outcome.detail == "created, runs sha256:cccccccccccc (role, reserved_concurrency)"
    assert lam.creations == [("fn", f"{REPO}@{NEW}", "arm64", {"Role": ROLE})], "CreateFunction has no concurrency parameter"
    assert lam.calls == ["create", "wait active", "concurrency"] and lam.concurrencies == [("fn", 7)]
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP, "a plan after the creation settles"


def test_a_function_is_created_with_its_tags(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function), tags=MappingProxyType({"team": "payments"}))
    lam, ecr = FakeLambda({}), FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.detail == "created, runs sha256:cccccccccccc (role, tags.team)", outcome
    assert lam.creations == [("fn", f"{REPO}@{NEW}", "arm64", {"Role": ROLE, "Tags": {"team": "payments"}})]
    assert lam.calls == ["create", "wait active"] and lam.taggings == []
    assert plan_for(desired, lam, ecr).functions[0].action is Action.NOOP


def test_a_missing_repository_is_created_first_with_the_untagged_expiry(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr(repository_exists=False)
    docker = FakeDocker(ecr)  # a push into a missing repository fails the test
    plan = plan_for(desired, lam, ecr)
    assert plan.functions[0].create_repository
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == OutcomeStatus.CREATED, outcome.detail
    assert ecr.created == [("fn-repo", 14)]
    assert reporter.lines[0] == (f"fn 1/9 create ECR repository {REPO} (scan_on_push: true, tag_mutability: IMMUTABLE, "
                                 "encryption: AES256, untagged_expiry_days: 14)")
    assert [c[1] for c in lam.creations] == [f"{REPO}@{NEW}"]


def test_a_build_into_a_missing_repository_creates_it_and_updates_the_function(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr(repository_exists=False)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert (outcome.status, outcome.digest) == (OutcomeStatus.BUILT, NEW)
    assert ecr.created == [("fn-repo", 14)] and lam.creations == []
    assert lam.updates == [("fn", f"{REPO}@{NEW}", "arm64", None)]


def test_functions_sharing_a_new_repository_create_it_once_and_share_one_build(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr(repository_exists=False)
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker, parallelism=2)
    plan = sharing_plan(desired, lam, ecr, ("a", "b"))
    assert [fp.create_repository for fp in plan.functions] == [True, True]
    outcomes = x.run(plan, {n: replace(function, name=n) for n in ("a", "b")})
    assert [(o.name, o.status) for o in outcomes] == [("a", OutcomeStatus.CREATED), ("b", OutcomeStatus.CREATED)]
    assert ecr.created == [("fn-repo", 14)], "once per apply: the second function waits for the first's creation"
    assert len(docker.builds) == 1 and len(docker.pushes) == 1
    assert sorted(c[:2] for c in lam.creations) == [("a", f"{REPO}@{NEW}"), ("b", f"{REPO}@{NEW}")]


def test_a_function_created_since_the_plan_is_refused_before_anything_is_built(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr()
    plan = plan_for(desired, lam, ecr)
    lam.functions["fn"] = running(OLD, revision="rev-outside")  # made by hand, or by another apply
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == OutcomeStatus.FAILED
    assert outcome.detail.startswith("function fn changed since plan (digest - -> sha256:bbbbbbbbbbbb")
    assert outcome.detail.endswith("; run plan again")
    assert lam.creations == [] and docker.builds == []


class CreatingDocker(FakeDocker):
    """While this apply builds, someone creates the function."""

    def __init__(self, ecr: FakeEcr, lam: FakeLambda) -> None:
        super().__init__(ecr)
        self.lam = lam

    def build(self, context_dir: str, dockerfile: str, tag: str, build_args: Any, labels: Any, log: Callable[[str], None],
              cancel: threading.Event | None = None) -> str:
        self.lam.functions["fn"] = running(OLD, revision="rev-outside")
        return super().build(context_dir, dockerfile, tag, build_args, labels, log, cancel)


def test_a_function_created_during_the_build_is_left_alone(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr()
    docker = CreatingDocker(ecr, lam)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == OutcomeStatus.FAILED
    assert outcome.detail == "function fn changed since plan (it was created meanwhile); run plan again"
    assert lam.creations == [] and lam.functions["fn"] == running(OLD, revision="rev-outside")
    assert not docker.compiles[0].context_dir.exists()


def test_a_creation_whose_function_is_no_longer_declared_fails(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {})
    assert outcome.status == OutcomeStatus.FAILED and "no longer declared" in outcome.detail
    assert lam.creations == []


def test_a_function_that_fails_to_become_active_fails_with_lambdas_reason(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam = FakeLambda({}, fail_activation="The role defined for the function cannot be assumed by Lambda.")
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert outcome.status == OutcomeStatus.FAILED
    assert outcome.detail == ("function fn: creation did not succeed (State Failed): "
                              "The role defined for the function cannot be assumed by Lambda.")


def test_a_missing_function_without_a_role_is_not_applied(function: FunctionSpec) -> None:
    desired = desired_for(function)
    lam, ecr = FakeLambda({}), FakeEcr(repository_exists=False)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    with pytest.raises(PlanError, match="cannot be deployed: fn"):
        x.run(plan_for(desired, lam, ecr), {"fn": function})
    assert ecr.created == [] and lam.creations == []


def test_a_creation_whose_image_another_apply_pushed_since_the_plan_is_reported_created(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam, ecr = FakeLambda({}), FakeEcr()
    plan = plan_for(desired, lam, ecr)
    ecr.images[desired.content_tag] = ImageState(True, NEW, V2)  # a concurrent apply pushed it
    docker = FakeDocker(ecr)
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert docker.builds == [] and [c[1] for c in lam.creations] == [f"{REPO}@{NEW}"]
    assert (outcome.status, outcome.detail) == (OutcomeStatus.CREATED, "created, runs sha256:cccccccccccc (role)")


class SlowActivationLambda(FakeLambda):
    """Lambda accepts the creation, then keeps the function Pending until the wait is cancelled."""

    def wait_active(self, name: str, sleep: Callable[[float], None], timeout_seconds: int = 600) -> None:
        self.waited.append(name)
        self.waiting.set()
        while True:
            sleep(0.05)


def test_cancel_after_the_creation_went_through_reports_it_created(function: FunctionSpec) -> None:
    desired = creatable(desired_for(function))
    lam = SlowActivationLambda({})
    ecr = FakeEcr({desired.content_tag: ImageState(True, NEW, V2)})
    x = Executor(lambda region: lam, lambda region: ecr, FakeDocker(ecr), ApplyOptions(), Recorder())
    thread, result = run_in_thread(x, plan_for(desired, lam, ecr), {"fn": function})
    assert lam.waiting.wait(10)
    x.cancel.set()
    thread.join(10)
    [outcome] = result[0]
    assert (outcome.status, outcome.digest) == (OutcomeStatus.CREATED, NEW)
    assert not outcome.failed and outcome.detail.endswith("when interrupted"), outcome.detail
    assert len(lam.creations) == 1


def test_repository_settings_are_set_before_anything_is_pushed(function: FunctionSpec) -> None:
    desired = replace(desired_for(function), repository_config=RepositoryConfig(scan_on_push=True, tags={"team": "b"}))
    lam, ecr = FakeLambda({"fn": running(OLD)}), FakeEcr()
    docker = FakeDocker(ecr)
    seen = ObservedRepository(scan_on_push=False, tags={"team": "a"})
    plan = make_plan([(desired, Observed(lam.get_function("fn"), ecr.describe_image(REPOSITORY, desired.content_tag), seen))])
    assert plan.functions[0].action is Action.BUILD
    x, reporter = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == OutcomeStatus.BUILT, outcome.detail
    assert ecr.configured == [("fn-repo", ("scan_on_push", "tags"))]
    assert reporter.lines[0] == f"fn 1/9 update the settings of ECR repository {REPO} (scan_on_push, tags)"


def test_a_settings_only_plan_builds_nothing_and_leaves_lambda_alone(function: FunctionSpec) -> None:
    desired = replace(desired_for(function), repository_config=RepositoryConfig(untagged_expiry_days=30))
    lam, ecr = FakeLambda({"fn": running(NEW)}), FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    docker = FakeDocker(ecr)
    seen = ObservedRepository(untagged_expiry_days=14)
    plan = make_plan([(desired, Observed(lam.get_function("fn"), ecr.describe_image(REPOSITORY, desired.content_tag), seen))])
    assert plan.functions[0].action is Action.CONFIGURE
    x, _ = executor(lam, ecr, docker)
    [outcome] = x.run(plan, {"fn": function})
    assert outcome.status == OutcomeStatus.UPDATED and outcome.detail == "configuration updated (repository.untagged_expiry_days)"
    assert ecr.configured == [("fn-repo", ("untagged_expiry_days",))]
    assert docker.builds == [] and docker.pushes == [] and lam.updates == [] and lam.calls == []


def test_functions_sharing_a_repository_set_its_settings_once(function: FunctionSpec) -> None:
    desired = replace(desired_for(function), repository_config=RepositoryConfig(scan_on_push=True))
    lam = FakeLambda({n: running(NEW) for n in ("a", "b")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    seen = ObservedRepository(scan_on_push=False)
    plan = make_plan([(replace(desired, name=n), Observed(lam.get_function(n), ecr.describe_image(REPOSITORY, desired.content_tag), seen))
                      for n in ("a", "b")])
    x, reporter = executor(lam, ecr, FakeDocker(ecr), parallelism=2)
    outcomes = x.run(plan, {n: replace(function, name=n) for n in ("a", "b")})
    assert [o.status for o in outcomes] == [OutcomeStatus.UPDATED] * 2
    assert ecr.configured == [("fn-repo", ("scan_on_push",))]
    assert any("set for another function of this apply" in line for line in reporter.lines)


# -- releases --------------------------------------------------------------------------------------

SMOKE = SmokeTestSettings(Path("smoke.json"), b'{"ping": true}', "status", "ok")


def released(function: FunctionSpec, lam: FakeLambda, ecr: FakeEcr, alias_on: str | None = "8",
             smoke: SmokeTestSettings | None = None) -> tuple[Plan, FunctionSpec]:
    """A plan for `function` released to `live` (on version `alias_on` now), with `smoke`."""
    settings = ReleaseSettings(alias="live", smoke_test=smoke)
    spec = replace(function, release=settings)
    desired = replace(desired_for(function), release=settings)
    if alias_on is not None:
        lam.aliases[("fn", "live")] = (alias_on, f"alias-rev-{alias_on}")
    alias = AliasState(True, alias_on, f"alias-rev-{alias_on}", OLD.removeprefix("sha256:")) if alias_on else AliasState(False)
    observed = Observed(lam.get_function("fn"), ecr.describe_image(REPOSITORY, desired.content_tag), None, alias)
    return make_plan([(desired, observed)]), spec


def test_an_update_is_published_and_the_alias_moved_to_it(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.UPDATED, outcome.detail
    assert outcome.detail == "now runs sha256:cccccccccccc; version 1 released to live (was 8)"
    assert lam.versions == [("fn", NEW.removeprefix("sha256:"), "deployer release; live was 8")]
    assert lam.aliases[("fn", "live")][0] == "1"
    assert lam.calls[-2:] == ["publish", "alias live -> 1"]


def test_the_smoke_invoke_waits_as_long_as_the_published_function_may_run(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": replace(running(OLD, revision="rev-1"), config=ObservedConfig(timeout=120))})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.UPDATED, outcome.detail
    assert lam.invoke_timeouts == [120]


def test_a_smoke_invoke_lambda_refused_before_running_it_is_sent_again(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    lam.invoke_errors = [AwsError("TooManyRequestsException: Rate exceeded", "TooManyRequestsException")]
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.UPDATED, outcome.detail
    assert len(lam.invoked) == 2 and lam.aliases[("fn", "live")][0] == "1"


def test_a_smoke_invoke_that_may_have_run_is_never_sent_again(function: FunctionSpec) -> None:
    # A Lambda 500 (or a lost answer) may come after the function ran: a second run could repeat its effects.
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    lam.invoke_errors = [AwsError("ServiceException: internal error", "ServiceException")]
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.FAILED and "ServiceException" in outcome.detail
    assert len(lam.invoked) == 1 and lam.aliases[("fn", "live")] == ("8", "alias-rev-8")


def test_a_failed_smoke_test_leaves_the_alias_and_fails_the_function(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    lam.answer = Invoked(b'{"errorType": "Panic", "errorMessage": "nil map"}', "Unhandled", "START\npanic: nil map\nEND")
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.FAILED
    assert outcome.detail.startswith("smoke test of version 1 failed: function error Panic: nil map; alias live stays on 8")
    assert "panic: nil map" in outcome.detail, "the log's tail"
    assert lam.aliases[("fn", "live")] == ("8", "alias-rev-8") and lam.invoked == [("fn", "1", b'{"ping": true}')]


def test_a_smoke_test_checks_the_expected_field(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    lam.answer = Invoked(b'{"status": "degraded"}', None, "")
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.detail == 'smoke test of version 1 failed: status is "degraded", not "ok"; alias live stays on 8'
    lam.answer = Invoked(b'{"status": "ok"}', None, "")
    lam.functions["fn"] = running(OLD, revision="rev-1")
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.UPDATED and outcome.detail.endswith("version 2 released to live (was 8)")


def test_a_smoke_event_changed_since_the_plan_is_refused(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, smoke=SMOKE)
    edited = replace(spec, release=ReleaseSettings(alias="live", smoke_test=replace(SMOKE, event=b'{"ping": false}')))
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": edited})
    assert outcome.status == OutcomeStatus.FAILED and "smoke test event of fn changed since plan" in outcome.detail
    assert lam.aliases[("fn", "live")][0] == "8" and lam.invoked == []


def test_a_release_alone_publishes_and_creates_the_missing_alias(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, alias_on=None)
    assert plan.functions[0].action is Action.RELEASE
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert (outcome.status, outcome.detail) == (OutcomeStatus.UPDATED, "version 1 released to live (was none)")
    assert lam.aliases[("fn", "live")][0] == "1" and lam.updates == []


class LostAnswerLambda(FakeLambda):
    """The alias call lands but its answer is lost; the SDK sends it again, which Lambda refuses
    (the RevisionId moved on with our own change; the alias exists now)."""

    def update_alias(self, name: str, alias: str, version: str, revision_id: str | None, description: str) -> None:
        super().update_alias(name, alias, version, revision_id, description)
        super().update_alias(name, alias, version, revision_id, description)

    def create_alias(self, name: str, alias: str, version: str, description: str) -> None:
        super().create_alias(name, alias, version, description)
        raise AwsError("Alias already exists", "ResourceConflictException")


@pytest.mark.parametrize("alias_on", ["8", None])
def test_an_alias_move_whose_answer_was_lost_and_retried_is_found_done(function: FunctionSpec, alias_on: str | None) -> None:
    lam = LostAnswerLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr, alias_on=alias_on)
    x, reporter = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.UPDATED, outcome.detail
    assert f"version 1 released to live (was {alias_on or 'none'})" in outcome.detail
    assert lam.aliases[("fn", "live")][0] == "1"
    assert any("alias live already points at version 1 (an earlier attempt of this call landed)" in line for line in reporter.lines)


class UnreadableAliasesLambda(FakeLambda):
    def list_alias_targets(self, name: str) -> list[AliasTarget]:
        raise AwsError("lambda:ListAliases on function fn: AccessDeniedException: not authorized", "AccessDeniedException")


@pytest.mark.parametrize(("lambda_type", "unchecked"), [
    (FakeLambda, ""),
    (UnreadableAliasesLambda, " (whether an earlier attempt of this call landed could not be read: lambda:ListAliases on "
                              "function fn: AccessDeniedException: not authorized)"),  # the refusal stays, and says why
])
def test_an_alias_moved_since_the_plan_is_refused_by_its_revision(function: FunctionSpec, lambda_type: type[FakeLambda],
                                                                  unchecked: str) -> None:
    lam = lambda_type({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr)
    lam.aliases[("fn", "live")] = ("5", "alias-rev-moved")  # moved outside after the plan
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.FAILED
    assert outcome.detail == ("alias live of fn changed since plan (created or moved by someone else); version 1 is published and "
                              f"was not released: run plan again{unchecked}")
    assert lam.aliases[("fn", "live")] == ("5", "alias-rev-moved")


def test_a_tags_only_change_publishes_nothing(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(NEW, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    settings = ReleaseSettings(alias="live")
    desired = replace(desired_for(function), release=settings, config=FunctionConfig(tags=MappingProxyType({"team": "a"})))
    lam.aliases[("fn", "live")] = ("8", "alias-rev-8")
    alias = AliasState(True, "8", "alias-rev-8", NEW.removeprefix("sha256:"))
    [fp] = make_plan([(desired, Observed(lam.get_function("fn"), ecr.describe_image(REPOSITORY, desired.content_tag), None, alias))]).functions
    assert fp.action is Action.CONFIGURE and fp.release is None
    assert not any(type(step).__name__ in ("PublishVersion", "SmokeTest", "MoveAlias") for step in fp.steps)


def test_publish_refuses_a_configuration_changed_by_someone_else_since_the_update(function: FunctionSpec) -> None:
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr)
    plan = replace(plan, functions=(replace(plan.functions[0], desired=replace(plan.functions[0].desired,
                                                                              config=FunctionConfig(memory=512))),))
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.FAILED and "memory no longer as deploy.yaml says" in outcome.detail
    assert lam.versions == [] and lam.aliases[("fn", "live")][0] == "8"


def test_a_release_is_not_settled_by_another_apply_deploying_the_same_image(function: FunctionSpec) -> None:
    """The other apply's smoke test may have failed: the image alone says nothing of the alias."""
    lam = FakeLambda({"fn": running(OLD, revision="rev-1")})
    ecr = FakeEcr({desired_for(function).content_tag: ImageState(True, NEW, V2)})
    plan, spec = released(function, lam, ecr)
    lam.functions["fn"] = running(NEW, revision="rev-other")  # another apply deployed it since the plan
    x, _ = executor(lam, ecr, FakeDocker(ecr))
    [outcome] = x.run(plan, {"fn": spec})
    assert outcome.status == OutcomeStatus.FAILED and "changed since plan" in outcome.detail
    assert lam.versions == [] and lam.aliases[("fn", "live")][0] == "8"
