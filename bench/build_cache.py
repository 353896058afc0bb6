"""Benchmark: what deployer's built-in Go build (compile in a container of the builder image, Go
caches on an engine volume, `--cache-dir` for CI) saves, against cold builds and the seed pipeline.

    python bench/build_cache.py [--repeat 3]

Starts the local cloud (dockerd if needed, registry, moto, Go module proxy, stand-in images) and
works in a temporary copy of examples/. Every figure is wall time of a `deployer` command run as a
subprocess (Python start-up included), or of the seed pipeline's steps. Four figures, each with
its target and the seed pipeline's time for the same change as a reference:

1. warm incremental / cold, `deployer build greet` (examples/functions/greet: module dependencies
   from the local module proxy, the shared logger). Cold: a fresh cache volume. Warm: the same
   volume after that build, then a one-line code change to main.go (median of --repeat changes).
   Target <= 0.1. Reference: the seed template's build of the same change, cold (no layer cache)
   and with its layer cache warm (its std layer is reused; modules are downloaded and every
   non-std package is compiled again on each change).
2. the CI case: the same one-line change built on a fresh volume with `--cache-dir` restored
   (the archive a previous run saved) vs a fresh volume without it. The restored run's wall time
   includes the restore and the save of the archive after the build (a CI run pays both);
   both are printed. Target <= 0.25. Reference: the seed template's cold build (a fresh CI
   runner has no layer cache).
3. a change to shared/logger, used by 20 small functions (copies of a function importing it, as
   tests/integration's Monorepo.add_function makes them; linux/arm64), `deployer apply --yes
   --parallelism 4`, vs a one-line change to one of them, applied the same way. The functions
   exist in moto with a placeholder image and are deployed once first (that first apply is
   printed, not a figure). Target <= 2. Where the time goes is read from apply's step lines.
   Reference: one full seed pipeline run for one function (build with its layer cache warm,
   push, UpdateFunctionCode, wait); the seed script deploys one function per run, so a shared
   change costs it 20 such runs (printed as 20x, an estimate, not measured).
4. a cold `deployer build finalize-with-error` (fresh volume) vs the seed template's cold build
   of it (nocache). Target <= 0.5.

Cold really is cold: each cold deployer build gets a cache volume of its own that did not exist
(DEPLOYER_GO_CACHE_VOLUME=deployer-bench-<run>-<purpose>), and every build runs on per-run
copies of the stand-in builder and runtime images (bench/scratch.py: new image IDs), so no layer
cache of earlier runs or of tests on the shared engine helps the seed template or deployer's
runtime-image step. Code changes append a package-level variable (a comment could leave the
compiled package, and so the link, cached). The builder copy also sets ENV GOPROXY=<local proxy>:
the seed template's RUN steps see that (the stand-in's ENV GOPROXY=off would override the
template's GOPROXY build arg); deployer's compiles get each function's go_env instead.

Where the time goes: after figure 1 one more warm build of greet runs in this process with the
engine calls timed (start-up, assembly, compile container, upload, go build, binary download,
runtime image); after figure 3 one more shared change is built for the 20 functions in this
process the same way (`deployer build`'s LocalBuilder, -j4, no push), and apply's own step lines
split the applies (assemble, build, push, verify, update, wait).

Timings are noisy on a shared machine: the bench prints figures and ratios, it asserts none.
Everything it creates is removed at the end: the cache volumes, every image built on the per-run
copies and the copies, temporary directories (the local cloud stops with it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import docker.errors  # noqa: E402
import docker.types  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from bench import seed_pipeline  # noqa: E402
from bench.scratch import ScratchImages  # noqa: E402
from deployer.load import load  # noqa: E402
from tests.localcloud.cloud import LocalCloud  # noqa: E402

ROLE_POLICY = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
               '{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
GREET, FINALIZE = "greet", "finalize-with-error"
FLEET_SIZE = 20
PARALLELISM = "4"
TARGETS = {"warm": 0.1, "ci": 0.25, "shared": 2.0, "cold": 0.5}
RESTORED = re.compile(r"restored the Go caches from \S+ in (\d+(?:\.\d+)?)s")
SAVED = re.compile(r"saved the Go caches to \S+ \((\d+) MiB\) in (\d+(?:\.\d+)?)s")
STEP_START = re.compile(r"^(\S+) \[(\d+)/(\d+)\] (.+?) \.\.\.$")
STEP_DONE = re.compile(r"^(\S+) \[(\d+)/(\d+)\] done in (\d+(?:\.\d+)?)s$")
SUMMARY = re.compile(r"(\d+) function\(s\): (\d+) changed, (\d+) unchanged, (\d+) failed")


@dataclass(frozen=True)
class Figure:
    name: str
    numerator: float
    denominator: float
    target: float

    @property
    def ratio(self) -> float:
        return self.numerator / self.denominator

    @property
    def verdict(self) -> str:
        return "ok" if self.ratio <= self.target else "over"

    def line(self) -> str:
        return (f"    ratio {self.ratio:.3f} ({self.numerator:.2f} s / {self.denominator:.2f} s)   target <= {self.target}   "
                f"{self.verdict}")


def timing(phases: dict[str, float], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """`call`, adding its wall seconds to phases[name] (calls from several threads add up)."""
    lock = threading.Lock()

    def timed(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            with lock:
                phases[name] += time.perf_counter() - begun

    return timed


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


class Stopwatch:
    """Wraps a docker SDK low-level client: wall seconds and calls per method (thread-safe)."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.perf_counter() - started
                    self.calls[name] += 1

        return timed


class CacheBench:
    def __init__(self, cloud: LocalCloud, tmp: Path, repeat: int) -> None:
        self.cloud = cloud
        self.repeat = repeat
        self.run = uuid.uuid4().hex[:8]
        self.tmpdir = tmp / "tmp"
        self.tmpdir.mkdir()
        self.root = tmp / "repo"  # examples/ with greet and finalize-with-error
        self.fleet = tmp / "fleet"  # 20 functions sharing shared/logger
        self.cache_dir = tmp / "ci-cache"  # what a CI cache step would keep between runs
        self.docker = cloud.docker()
        self.images = ScratchImages(self.docker, self.run, self.tmpdir)
        self.builder = f"deployer-bench/go-builder:{self.run}"
        self.runtime = f"deployer-bench/lambda-provided:{self.run}-arm64"
        self.volumes: list[str] = []
        self.env = {**os.environ, **cloud.env, "NO_COLOR": "1", "TMPDIR": str(self.tmpdir)}
        self.env.pop("DEPLOYER_CACHE_DIR", None)
        self.goproxy = cloud.env["DEPLOYER_GOPROXY"]
        self.changes = 0
        self.figures: list[Figure] = []
        self.fleet_names = [f"fleet-{index:02d}" for index in range(FLEET_SIZE)]

    # -- setup ----------------------------------------------------------------------------
    def setup(self) -> None:
        # GOPROXY in the image: the seed template's RUN steps see it (the stand-in's GOPROXY=off
        # would override the template's GOPROXY build arg); deployer's compiles get go_env's.
        self.images.copy(self.cloud.env["DEPLOYER_STANDIN_BUILDER"], self.builder, env={"GOPROXY": self.goproxy})
        self.images.copy(self.cloud.env["DEPLOYER_STANDIN_RUNTIME_ARM64"], self.runtime, platform="linux/arm64")
        shutil.copytree(REPO / "examples", self.root)
        (self.root / ".git").mkdir()
        self.write_spec(self.root, [
            {"name": GREET, "repository": f"bench-{self.run}-greet",
             "build": {"source": "functions/greet", "runtime_image": self.runtime, "go_env": {"GOPROXY": self.goproxy}}},
            {"name": FINALIZE, "repository": f"bench-{self.run}-finalize",
             "build": {"source": "functions/finalize-with-error", "runtime_image": self.runtime,
                       "go_env": {"GOPROXY": "off"}}},
        ])
        self.make_fleet()

    def write_spec(self, root: Path, functions: list[dict[str, Any]]) -> None:
        spec = {"version": 1,
                "defaults": {"region": "us-east-1", "platform": "linux/arm64", "build": {"builder_image": self.builder}},
                "functions": functions}
        with (root / "deploy.yaml").open("w") as out:
            YAML().dump(spec, out)

    def make_fleet(self) -> None:
        """fleet/{shared/*, functions/fleet-NN}, deploy.yaml; the functions in moto on a placeholder."""
        (self.fleet / ".git").mkdir(parents=True)
        shutil.copytree(REPO / "examples" / "shared", self.fleet / "shared")
        functions = []
        for name in self.fleet_names:
            src = self.fleet / "functions" / name
            src.mkdir(parents=True)
            (src / "go.mod").write_text(f"module example.com/functions/{name}\n\ngo 1.22\n\nrequire (\n"
                                        "\texample.com/shared/logger v0.0.0\n)\n\n"
                                        "replace example.com/shared/logger => ../../shared/logger\n")
            (src / "main.go").write_text(f'package main\n\nimport (\n\t"fmt"\n\t_ "example.com/shared/logger"\n)\n\n'
                                         f'func main() {{ fmt.Println("{name}") }}\n')
            functions.append({"name": name, "repository": self.repository(name),
                              "build": {"source": f"functions/{name}", "runtime_image": self.runtime,
                                        "go_env": {"GOPROXY": "off"}}})
        self.write_spec(self.fleet, functions)
        placeholder = self.images.copy(self.runtime, f"deployer-bench/placeholder:{self.run}", platform="linux/arm64")
        self.docker.login(username=self.cloud.credentials.username, password=self.cloud.credentials.password,
                          registry=self.cloud.registry_endpoint, reauth=True)
        ecr, lam = self.cloud.client("ecr"), self.cloud.client("lambda")
        role = self.cloud.client("iam").create_role(RoleName=f"bench-cache-{self.run}", AssumeRolePolicyDocument=ROLE_POLICY)
        for name in self.fleet_names:
            ecr.create_repository(repositoryName=self.repository(name))
            digest = self.push(placeholder, self.repository(name), "placeholder")
            lam.create_function(FunctionName=name, PackageType="Image", Role=role["Role"]["Arn"],
                                Code={"ImageUri": f"{self.cloud.ecr_host}/{self.repository(name)}@{digest}"},
                                Architectures=["arm64"])

    def repository(self, name: str) -> str:
        return f"bench-{self.run}-{name}"

    def push(self, image: str, repository: str, tag: str) -> str:
        target = f"{self.cloud.registry_endpoint}/{repository}"
        self.docker.api.tag(image, target, tag)
        digest = None
        for chunk in self.docker.api.push(target, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(f"push of {target}:{tag} failed: {chunk['error']}")
            digest = chunk.get("aux", {}).get("Digest", digest)
        if not digest:
            raise RuntimeError(f"push of {target}:{tag} gave no digest")
        return str(digest)

    # -- helpers ----------------------------------------------------------------------------
    def volume(self, purpose: str) -> str:
        """A cache volume name of this run that the engine does not hold yet."""
        name = f"deployer-bench-{self.run}-{purpose}"
        try:
            self.docker.api.inspect_volume(name)
        except docker.errors.NotFound:
            self.volumes.append(name)
            return name
        raise RuntimeError(f"volume {name} exists already: not a fresh cache")

    def change(self, path: Path) -> None:
        """A one-line code change: a new package-level variable."""
        self.changes += 1
        path.write_text(path.read_text() + f'\nvar benchChange{self.changes} = "{self.run}-{self.changes}"\n')

    def deployer(self, cwd: Path, volume: str, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        env = {**self.env, "DEPLOYER_GO_CACHE_VOLUME": volume}
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "deployer", *args], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=900)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"deployer {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return seconds, result

    def build(self, function: str, volume: str, *extra: str) -> tuple[float, str, str]:
        """`deployer build FUNCTION`: (wall seconds, the image's tag, stderr)."""
        seconds, result = self.deployer(self.root, volume, "build", *extra, function)
        tag = result.stdout.strip().splitlines()[-1]
        if not tag.startswith(f"deployer/{function}:"):
            raise RuntimeError(f"deployer build {function}: no image tag in its output:\n{result.stdout}\n{result.stderr}")
        if "nothing to build" in result.stderr:
            raise RuntimeError(f"deployer build {function}: the image was in the engine already; nothing was measured")
        return seconds, tag, result.stderr

    def apply(self, expect_changed: int) -> tuple[float, str]:
        seconds, result = self.deployer(self.fleet, self.fleet_volume, "apply", "--yes", "--parallelism", PARALLELISM)
        summary = SUMMARY.search(result.stdout)
        if summary is None or (int(summary[1]), int(summary[2]), int(summary[4])) != (FLEET_SIZE, expect_changed, 0):
            raise RuntimeError(f"deployer apply: expected {expect_changed} of {FLEET_SIZE} changed:\n{result.stdout}\n{result.stderr}")
        return seconds, result.stdout

    def seed(self, function: str, nocache: bool, goproxy: str, root: Path | None = None) -> float:
        """The seed template's build of `function` (assembly included), tagged for this run."""
        fn = load([(root or self.root) / "deploy.yaml"]).function(function)
        seconds, _ = seed_pipeline.build(self.docker, fn, f"deployer-bench/seed-{function}:{self.run}", nocache=nocache,
                                         goproxy=goproxy, tmpdir=self.tmpdir)
        return seconds

    def seed_pipeline_run(self, name: str) -> float:
        """The seed script for one function: login, build (layer cache warm), push, update, wait."""
        started = time.perf_counter()
        ecr, lam = self.cloud.client("ecr"), self.cloud.client("lambda")
        ecr.get_authorization_token()
        self.docker.login(username=self.cloud.credentials.username, password=self.cloud.credentials.password,
                          registry=self.cloud.registry_endpoint, reauth=True)
        fn = load([self.fleet / "deploy.yaml"]).function(name)
        target = f"{self.cloud.registry_endpoint}/{self.repository(name)}"
        # The proxy as GOPROXY, as for greet's seed builds: the same build args reuse the same std layer.
        seed_pipeline.build(self.docker, fn, f"{target}:seed", nocache=False, goproxy=self.goproxy, tmpdir=self.tmpdir)
        digest = self.push(f"{target}:seed", self.repository(name), "seed")
        lam.update_function_code(FunctionName=name, Architectures=["arm64"],
                                 ImageUri=f"{self.cloud.ecr_host}/{self.repository(name)}@{digest}")
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        return time.perf_counter() - started

    def python(self, code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, cwd=REPO)
        return time.perf_counter() - started

    # -- the figures ------------------------------------------------------------------------
    def warm_vs_cold(self) -> None:
        main_go = self.root / "functions" / GREET / "main.go"
        self.warm_volume = self.volume("warm")
        self.change(main_go)
        self.cold_greet, _, _ = self.build(GREET, self.warm_volume)
        warm = []
        for _ in range(self.repeat):
            self.change(main_go)
            warm.append(self.build(GREET, self.warm_volume)[0])
        self.warm_greet = statistics.median(warm)
        print(f"(1) one-line change to {GREET}/main.go, deployer build {GREET}")
        print(f"    cold (fresh cache volume)                 {self.cold_greet:7.2f} s")
        print(f"    warm (same volume, one-line change)       {self.warm_greet:7.2f} s   "
              f"(median of {', '.join(f'{s:.2f}' for s in warm)})")
        self.figures.append(Figure("1 warm one-line change / cold build (greet)", self.warm_greet, self.cold_greet,
                                   TARGETS["warm"]))
        print(self.figures[-1].line(), flush=True)

    def breakdown(self) -> None:
        """One more warm build of greet in this process, engine calls timed."""
        from deployer.context import temporary_context
        from deployer.docker_gateway import DockerGateway
        from deployer.images import build_image

        self.change(self.root / "functions" / GREET / "main.go")
        old_tempdir = tempfile.tempdir
        tempfile.tempdir = str(self.tmpdir)
        try:
            started = time.perf_counter()
            fn = load([self.root / "deploy.yaml"]).function(GREET)
            loaded = time.perf_counter()
            gateway = DockerGateway(None, self.warm_volume)
            api = Stopwatch(gateway.compiler.api)
            gateway.compiler.api = api
            connected = time.perf_counter()
            phases: dict[str, float] = defaultdict(float)
            gateway.compile_go = timing(phases, "compile", gateway.compile_go)  # type: ignore[method-assign]
            gateway.build = timing(phases, "image", gateway.build)  # type: ignore[method-assign]
            with temporary_context(fn) as context:
                assembled = time.perf_counter()
                build_image(gateway, context, f"deployer/{GREET}:{context.content_tag}", {"dev.deployer.function": GREET},
                            function=GREET, netrc=None, log=None, cancel=threading.Event())
                built = time.perf_counter()
            total = time.perf_counter() - started
        finally:
            tempfile.tempdir = old_tempdir
        bare = self.bare_container()
        python_start = statistics.median(self.python("pass") for _ in range(3))
        imports = statistics.median(self.python("import deployer.cli, deployer.app, deployer.load, deployer.local_build, "
                                                "deployer.docker_gateway, deployer.go_build") for _ in range(3))
        run_seconds = api.seconds["wait"]
        overhead = sum(api.seconds[name] for name in ("create_host_config", "create_container", "put_archive", "start",
                                                      "get_archive", "remove_container", "inspect_volume"))
        print(f"\n    where a warm incremental build's time goes (one more change, built in this process; "
              f"`deployer build` also pays start-up):")
        rows = [
            ("python start-up (python -c pass)", python_start),
            ("imports (CLI, docker SDK)", imports - python_start),
            ("load deploy.yaml", loaded - started),
            ("engine connection", connected - loaded),
            ("assemble context (copy, digest)", assembled - connected),
            ("compile: create container", api.seconds["create_container"] + api.seconds["create_host_config"]),
            ("compile: upload context (put_archive)", api.seconds["put_archive"]),
            ("compile: start container", api.seconds["start"]),
            ("compile: go build, start to exit", run_seconds),
            (f"  of which a bare container ({bare[1]:.2f} s start to exit)", bare[1]),
            ("compile: fetch binary (get_archive)", api.seconds["get_archive"]),
            ("compile: remove container", api.seconds["remove_container"]),
            ("runtime image: docker build (COPY bootstrap)", phases["image"]),
            ("remove temporary context", total - (built - started)),
        ]
        for label, seconds in rows:
            print(f"      {label:<52} {seconds:6.2f} s")
        print(f"      {'total in process (start-up excluded)':<52} {total:6.2f} s   "
              f"(compile step {phases['compile']:.2f} s, of which engine calls around the run {overhead:.2f} s)")
        print(f"      bare container create+start+wait+remove: {bare[0]:.2f} s", flush=True)

    def bare_container(self) -> tuple[float, float]:
        """(create to removed, start to exit) of a container of the builder image that runs `true`,
        set up as a compile container is (host network, the cache volume): median of 3."""
        api = self.docker.api
        totals, runs = [], []
        for _ in range(3):
            started = time.perf_counter()
            host_config = api.create_host_config(network_mode="host", mounts=[
                docker.types.Mount(target="/deployer-cache", source=self.warm_volume, type="volume")])
            container = api.create_container(self.builder, command=["true"], host_config=host_config)["Id"]
            try:
                begun = time.perf_counter()
                api.start(container)
                api.wait(container, timeout=60)
                runs.append(time.perf_counter() - begun)
            finally:
                api.remove_container(container, force=True)
            totals.append(time.perf_counter() - started)
        return statistics.median(totals), statistics.median(runs)

    def seed_greet(self) -> None:
        main_go = self.root / "functions" / GREET / "main.go"
        self.change(main_go)
        self.seed_greet_cold = self.seed(GREET, nocache=True, goproxy=self.goproxy)
        self.change(main_go)
        self.seed_greet_warm = self.seed(GREET, nocache=False, goproxy=self.goproxy)
        print(f"\n    seed template, same change, reference (docker build of bench/seed.Dockerfile, assembly included):")
        print(f"      cold (no layer cache: a CI runner)       {self.seed_greet_cold:7.2f} s")
        print(f"      layer cache warm (std layer reused)      {self.seed_greet_warm:7.2f} s   "
              f"deployer warm / seed warm = {self.warm_greet / self.seed_greet_warm:.3f}", flush=True)

    def ci(self) -> None:
        main_go = self.root / "functions" / GREET / "main.go"
        self.change(main_go)  # the previous CI run: builds its change and saves the caches
        previous, _, stderr = self.build(GREET, self.warm_volume, "--cache-dir", str(self.cache_dir))
        saved = SAVED.search(stderr)
        archive = self.cache_dir / "go-cache.tar"
        if saved is None or not archive.is_file():
            raise RuntimeError(f"the previous run saved no cache archive:\n{stderr}")
        self.change(main_go)  # this CI run's change
        restored_s, tag, stderr = self.build(GREET, self.volume("ci-restored"), "--cache-dir", str(self.cache_dir))
        restore, save = RESTORED.search(stderr), SAVED.search(stderr)
        if restore is None or save is None:
            raise RuntimeError(f"the CI run restored or saved no cache:\n{stderr}")
        self.docker.api.remove_image(tag, force=True)  # so that the next build of the same change builds
        cold_s, _, _ = self.build(GREET, self.volume("ci-cold"))
        print(f"\n(2) CI: the same one-line change on a fresh volume, deployer build {GREET}")
        print(f"    previous run (warm volume, saves the archive) {previous:7.2f} s   (archive {saved[1]} MiB, "
              f"saved in {saved[2]} s)")
        print(f"    fresh volume, --cache-dir restored        {restored_s:7.2f} s   (restore {restore[1]} s, save after the "
              f"build {save[2]} s; {restored_s - float(save[2]):.2f} s without the save)")
        print(f"    fresh volume, no --cache-dir              {cold_s:7.2f} s")
        self.figures.append(Figure("2 CI: --cache-dir restored / fresh volume (greet)", restored_s, cold_s, TARGETS["ci"]))
        print(self.figures[-1].line())
        print(f"    info: without the save after the build    ratio {(restored_s - float(save[2])) / cold_s:.3f}")
        print(f"    seed template, same change in CI (cold)   {self.seed_greet_cold:7.2f} s   "
              f"deployer restored / seed = {restored_s / self.seed_greet_cold:.3f}", flush=True)

    def shared_change(self) -> None:
        self.fleet_volume = self.warm_volume  # a developer's engine: warm Go caches
        first, _ = self.apply(FLEET_SIZE)
        self.change(self.fleet / "shared" / "logger" / "logger.go")
        shared, shared_out = self.apply(FLEET_SIZE)
        self.change(self.fleet / "functions" / self.fleet_names[0] / "main.go")
        one, one_out = self.apply(1)
        plan, _ = self.deployer(self.fleet, self.fleet_volume, "plan")
        print(f"\n(3) {FLEET_SIZE} functions importing shared/logger, deployer apply --yes --parallelism {PARALLELISM}")
        print(f"    first apply (all {FLEET_SIZE} built; setup)      {first:7.2f} s")
        print(f"    change to shared/logger ({FLEET_SIZE} rebuilt)      {shared:7.2f} s")
        print(f"    change to one function (1 rebuilt)        {one:7.2f} s   (a no-op plan of the {FLEET_SIZE}: {plan:.2f} s)")
        self.figures.append(Figure(f"3 shared change, {FLEET_SIZE} functions / one function (apply -j{PARALLELISM})",
                                   shared, one, TARGETS["shared"]))
        print(self.figures[-1].line())
        print_steps("    steps of the one-function apply (s):", one_out, one)
        print_steps(f"    steps of the shared-change apply (s, summed over {FLEET_SIZE} functions; max of one):", shared_out,
                    shared)
        self.seed_fleet_one = self.seed_pipeline_run(self.fleet_names[1])
        print(f"    seed pipeline, one function (build with layer cache, push, update, wait) {self.seed_fleet_one:.2f} s; "
              f"shared change: {FLEET_SIZE} runs ~ {FLEET_SIZE * self.seed_fleet_one:.0f} s (estimate, one function at a time)",
              flush=True)

    def fleet_breakdown(self) -> None:
        """One more shared change, the 20 images built in this process (`deployer build`'s
        LocalBuilder, -j4, no push) with the engine calls timed: where a shared change's build
        time goes."""
        from io import StringIO

        from rich.console import Console

        from deployer.docker_gateway import DockerGateway
        from deployer.local_build import LocalBuilder, LocalBuildOptions
        from deployer.progress import ConsoleReporter

        self.change(self.fleet / "shared" / "logger" / "logger.go")
        functions = load([self.fleet / "deploy.yaml"]).functions
        gateway = DockerGateway(None, self.fleet_volume)
        api = Stopwatch(gateway.compiler.api)
        gateway.compiler.api = api
        phases: dict[str, float] = defaultdict(float)
        gateway.compile_go = timing(phases, "compile", gateway.compile_go)  # type: ignore[method-assign]
        gateway.build = timing(phases, "image", gateway.build)  # type: ignore[method-assign]
        old_tempdir = tempfile.tempdir
        tempfile.tempdir = str(self.tmpdir)
        try:
            started = time.perf_counter()
            images = LocalBuilder(gateway, ConsoleReporter(Console(file=StringIO())),
                                  LocalBuildOptions(int(PARALLELISM))).build(functions)
            wall = time.perf_counter() - started
        finally:
            tempfile.tempdir = old_tempdir
        failed = [image for image in images if image.error]
        if failed or len(images) != FLEET_SIZE:
            raise RuntimeError(f"in-process build of the fleet: {len(failed)} failed: {failed[:1]}")
        around = sum(api.seconds[name] for name in ("create_host_config", "create_container", "put_archive", "start",
                                                    "get_archive", "remove_container", "inspect_volume"))
        print(f"    where its build time goes ({FLEET_SIZE} images built in this process after one more logger change, "
              f"-j{PARALLELISM}, no push): wall {wall:.2f} s; summed over the functions (they overlap):")
        rows = [("compile: go build, container start to exit", api.seconds["wait"]),
                ("compile: engine calls around it (create, upload, start, fetch binary, remove)", around),
                ("runtime image: docker build", phases["image"])]
        for label, seconds in rows:
            print(f"      {label:<80} {seconds:6.2f} s  ({seconds / FLEET_SIZE:.2f} s per function)")
        print(f"      {'function build total (compile + runtime image)':<80} {phases['compile'] + phases['image']:6.2f} s  "
              f"({(phases['compile'] + phases['image']) / FLEET_SIZE:.2f} s per function; "
              f"{(phases['compile'] + phases['image']) / wall:.1f} running at once on average)", flush=True)

    def cold_vs_seed(self) -> None:
        self.change(self.root / "functions" / FINALIZE / "main.go")
        cold, _, _ = self.build(FINALIZE, self.volume("cold-finalize"))
        seed = self.seed(FINALIZE, nocache=True, goproxy="off")
        print(f"\n(4) cold build of {FINALIZE}")
        print(f"    deployer build, fresh volume              {cold:7.2f} s")
        print(f"    seed template, nocache                    {seed:7.2f} s")
        self.figures.append(Figure(f"4 cold build / seed template cold ({FINALIZE})", cold, seed, TARGETS["cold"]))
        print(self.figures[-1].line(), flush=True)

    # -- cleanup ----------------------------------------------------------------------------
    def cleanup(self) -> str:
        """Remove what the run made on the engine; each part is tried even if another failed, and
        a failure is said (with what is left) instead of hiding the run's own error."""
        said: list[str] = []
        problems: list[str] = []
        try:
            containers = [c["Id"] for volume in self.volumes
                          for c in self.docker.api.containers(all=True, filters={"volume": volume})]
            for container in containers:
                self.docker.api.remove_container(container, force=True)
            said.append(f"{len(containers)} leftover container(s)")
        except docker.errors.DockerException as exc:
            problems.append(f"containers: {exc}")
        removed = 0
        for volume in self.volumes:
            try:
                self.docker.api.remove_volume(volume, force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                problems.append(f"volume {volume}: {exc}")
        said.append(f"{removed} cache volume(s)")
        try:
            said.append(f"{self.images.remove_all()} image(s)/layer(s) built on the per-run copies (copies included)")
        except (docker.errors.DockerException, RuntimeError) as exc:
            problems.append(f"images: {exc}")
        return "removed " + ", ".join(said) + ("" if not problems else "; CLEANUP FAILED: " + "; ".join(problems))


def print_steps(title: str, output: str, wall: float) -> None:
    """Per step of apply's progress lines: seconds summed over the functions (and the longest
    one, when several ran it); for a single function, the rest of the wall time too."""
    names: dict[tuple[str, str], str] = {}  # (function, step number) -> step's first word
    sums: dict[str, float] = defaultdict(float)
    longest: dict[str, float] = defaultdict(float)
    order: dict[str, int] = {}
    for line in output.splitlines():
        start = STEP_START.match(line.strip())
        if start:
            names[(start[1], start[2])] = "cleanup" if start[4].startswith("remove") else start[4].split()[0]
            continue
        done = STEP_DONE.match(line.strip())
        if done and (done[1], done[2]) in names:
            step = names[(done[1], done[2])]
            sums[step] += float(done[4])
            longest[step] = max(longest[step], float(done[4]))
            order.setdefault(step, int(done[2]))
    functions = len({function for function, _ in names})
    print(title)
    print("      " + ", ".join(f"{step} {sums[step]:.2f}" + (f" (max {longest[step]:.2f})" if functions > 1 else "")
                               for step in sorted(sums, key=lambda s: order[s])))
    if functions == 1:
        print(f"      steps {sum(sums.values()):.2f} s of the wall {wall:.2f} s; the rest (start-up, plan, summary) "
              f"{wall - sum(sums.values()):.2f} s")
    elif functions:
        print(f"      steps {sum(sums.values()) / functions:.2f} s per function on average; wall {wall:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm builds in figure 1 (median reported)")
    options = parser.parse_args()
    started = time.perf_counter()
    with LocalCloud() as cloud, tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        bench = CacheBench(cloud, Path(tmp), options.repeat)
        try:
            bench.setup()
            print(f"bench: run {bench.run}, builder {bench.builder}, runtime {bench.runtime} (stand-ins + per-run label), "
                  f"cache volumes deployer-bench-{bench.run}-*; setup {time.perf_counter() - started:.1f} s\n", flush=True)
            bench.warm_vs_cold()
            bench.breakdown()
            bench.seed_greet()
            bench.ci()
            bench.shared_change()
            bench.fleet_breakdown()
            bench.cold_vs_seed()
        finally:
            print(f"\nbench: {bench.cleanup()}")
            bench.docker.close()
        cloud.check_recorder()
    print(f"\n{'figure':<60} {'value':>6} {'target':>8}  {'verdict':<7}  seconds")
    for figure in bench.figures:
        print(f"{figure.name:<60} {figure.ratio:>6.3f} {'<= ' + str(figure.target):>8}  {figure.verdict:<7}  "
              f"{figure.numerator:.2f} / {figure.denominator:.2f}")
    print(f"\nbench took {minutes(time.perf_counter() - started)} (local cloud and cleanup included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
