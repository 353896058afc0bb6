"""Benchmark: what deployer saves over the seed's always-rebuild pipeline, on the example function.

    python bench/noop_vs_full.py [--repeat 3]

Starts the local cloud (dockerd if needed, registry, moto, stand-in base images), copies examples/
to a temporary monorepo (main.go gets a per-run marker line, so no image cached by earlier runs or
tests matches), creates the ECR repository and the Lambda function on a placeholder image, then:

(a) the seed's pipeline by hand, every step every time: ECR login + docker login, assemble the
    context (copy shared modules, rewrite go.mod; deployer.context.assemble does what the seed's
    cp/sed did), docker build with the docker SDK (classic builder, the product's Dockerfile
    template and build args), push, boto3 update_function_code (repo@digest), function_updated_v2
    wait. Timed once with nocache=True (a fresh CI runner) and --repeat times with the layer cache
    warm (a developer's second run: unchanged source). Against that, a no-op `deployer apply --yes`
    (subprocess wall time, median of --repeat) after a first apply. Target: noop / pipeline <= 0.05.
    Start-up figures split the no-op: `python -c pass`, importing what apply imports, and the
    apply's own remainder (load + observe: context assembly and hashing, STS, GetFunction,
    DescribeImages).

(b) `deployer apply --yes` after a change to main.go with the build cache cleared (the images
    deployer built for this function removed, `docker builder prune -af`; the stand-in base images
    stay) vs after a one-line change to main.go with the cache warm.
    Target: incremental / cold <= 0.5. The build step's own time is read from apply's progress.

Everything the bench creates is removed at the end (the local cloud stops with it).
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
import time
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from deployer.context import assemble  # noqa: E402
from deployer.load import load  # noqa: E402
from tests.localcloud.cloud import LocalCloud  # noqa: E402
from tests.localcloud.images import push_tiny_image  # noqa: E402

SOURCE = "functions/finalize-with-error"
ROLE_POLICY = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
               '{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
BUILD_STEP = re.compile(r"\[3/8\] done in (\d+\.\d+)s")
NOOP_TARGET = 0.05
INCREMENTAL_TARGET = 0.5


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


class Bench:
    def __init__(self, cloud: LocalCloud, root: Path, tmpdir: Path) -> None:
        self.cloud = cloud
        self.root = root
        self.tmpdir = tmpdir
        self.env = {**os.environ, **cloud.env, "NO_COLOR": "1", "TMPDIR": str(tmpdir)}
        self.docker = cloud.docker()
        self.ecr, self.lam = cloud.client("ecr"), cloud.client("lambda")
        run = uuid.uuid4().hex[:8]
        self.function = f"bench-noop-{run}"
        self.repository = f"bench-noop-{run}"

    # -- setup ----------------------------------------------------------------------------
    def setup(self) -> None:
        shutil.copytree(REPO / "examples", self.root)
        (self.root / ".git").mkdir()
        self.edit_main(f"bench run {self.function}")
        env = self.cloud.env
        spec = {"version": 1,
                "defaults": {"region": "us-east-1", "build": {"builder_image": env["DEPLOYER_STANDIN_BUILDER"],
                                                              "build_args": {"GOPROXY": "off"}}},
                "functions": [{"name": self.function, "repository": self.repository, "platform": "linux/arm64",
                               "build": {"source": SOURCE, "runtime_image": env["DEPLOYER_STANDIN_RUNTIME_ARM64"]}}]}
        with (self.root / "deploy.yaml").open("w") as out:
            YAML().dump(spec, out)
        role = self.cloud.client("iam").create_role(RoleName=f"bench-{self.function}", AssumeRolePolicyDocument=ROLE_POLICY)
        self.ecr.create_repository(repositoryName=self.repository)
        placeholder = push_tiny_image(self.cloud, self.repository, "placeholder", f"placeholder {self.function}")
        self.lam.create_function(FunctionName=self.function, PackageType="Image", Role=role["Role"]["Arn"],
                                 Code={"ImageUri": placeholder.lambda_uri}, Architectures=["arm64"])

    def edit_main(self, line: str) -> None:
        main = self.root / SOURCE / "main.go"
        main.write_text(main.read_text() + f"\n// {line}\n")

    # -- (a) the seed's pipeline ----------------------------------------------------------
    def seed_pipeline(self, nocache: bool) -> float:
        """One full run of the seed's steps; returns wall seconds."""
        started = time.perf_counter()
        token = self.ecr.get_authorization_token()["authorizationData"][0]
        self.docker.login(username=self.cloud.credentials.username, password=self.cloud.credentials.password,
                          registry=self.cloud.registry_endpoint, reauth=True)
        assert token["authorizationToken"]
        (fn,) = load([self.root / "deploy.yaml"]).functions
        context = Path(tempfile.mkdtemp(prefix="bench-seed-ctx-", dir=self.tmpdir))
        try:
            ctx = assemble(fn, context)
            version = self.docker.version()
            args = {"BUILDPLATFORM": f"{version['Os']}/{version['Arch']}", **ctx.build_args}
            target = f"{self.cloud.registry_endpoint}/{self.repository}"
            image_id = None
            for chunk in self.docker.api.build(path=str(ctx.path), dockerfile=ctx.dockerfile, tag=f"{target}:latest",
                                               buildargs=args, rm=True, forcerm=True, pull=False, nocache=nocache,
                                               decode=True):
                if "error" in chunk:
                    raise RuntimeError(f"seed pipeline: docker build failed: {chunk['error']}")
                image_id = chunk.get("aux", {}).get("ID", image_id)
            assert image_id, "docker build gave no image ID"
        finally:
            shutil.rmtree(context)
        digest = None
        for chunk in self.docker.api.push(target, tag="latest", stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(f"seed pipeline: push failed: {chunk['error']}")
            digest = chunk.get("aux", {}).get("Digest", digest)
        assert digest, "push gave no digest"
        self.lam.update_function_code(FunctionName=self.function, Architectures=["arm64"],
                                      ImageUri=f"{self.cloud.ecr_host}/{self.repository}@{digest}")
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=self.function, WaiterConfig={"Delay": 1})
        return time.perf_counter() - started

    # -- deployer ---------------------------------------------------------------------------
    def deployer(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        seconds, result = timed(lambda: subprocess.run([sys.executable, "-m", "deployer", *args], cwd=self.root,
                                                       env=self.env, capture_output=True, text=True, timeout=900))
        if result.returncode != 0:
            raise RuntimeError(f"deployer {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return seconds, result

    def apply(self, expect: str) -> tuple[float, float | None]:
        """(wall seconds, seconds of the build step or None)."""
        seconds, result = self.deployer("apply", "--yes")
        if expect not in result.stdout:
            raise RuntimeError(f"deployer apply: expected {expect!r} in its output:\n{result.stdout}")
        build = BUILD_STEP.search(result.stdout)
        return seconds, float(build.group(1)) if build else None

    def python(self, code: str) -> float:
        return timed(lambda: subprocess.run([sys.executable, "-c", code], env=self.env, check=True))[0]

    # -- cache ------------------------------------------------------------------------------
    def clear_build_cache(self) -> int:
        """Remove the images built for this bench's function (deployer's and the seed
        pipeline's, with their untagged parents: the classic builder's cache) and prune the
        BuildKit cache. The stand-in base images are not touched. Returns images removed."""
        images = self.docker.images.list(filters={"label": f"dev.deployer.function={self.function}"})
        images += [i for i in self.docker.images.list() if any(self.repository in t for t in i.tags)]
        removed = 0
        for image in {i.id: i for i in images}.values():
            try:
                self.docker.images.remove(image.id, force=True, noprune=False)
                removed += 1
            except docker.errors.ImageNotFound:
                pass
        subprocess.run(["docker", "builder", "prune", "-af"], check=True, capture_output=True)
        return removed


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(ratio: float, target: float) -> str:
    return "OK" if ratio <= target else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each warm measurement (median reported)")
    options = parser.parse_args()

    with LocalCloud() as cloud, tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
        tmpdir = Path(tmp) / "tmp"
        tmpdir.mkdir()
        bench = Bench(cloud, Path(tmp) / "repo", tmpdir)
        bench.setup()
        print(f"bench: function {bench.function}, example source {SOURCE}, {options.repeat} run(s) per warm figure\n")

        # (a) seed pipeline vs no-op apply
        seed_cold = bench.seed_pipeline(nocache=True)
        seed_warm = median([bench.seed_pipeline(nocache=False) for _ in range(options.repeat)])
        first_apply, _ = bench.apply("built")
        noops = [bench.apply("No changes")[0] for _ in range(options.repeat)]
        noop = median(noops)
        python_start = median([bench.python("pass") for _ in range(options.repeat)])
        imports = median([bench.python("import deployer.cli, deployer.apply, deployer.aws, deployer.docker_gateway, "
                                       "deployer.load, deployer.observe, deployer.render, deployer.progress, boto3")
                          for _ in range(options.repeat)])
        plan = median([bench.deployer("plan")[0] for _ in range(options.repeat)])

        print("(a) seed's always-rebuild pipeline vs no-op deployer apply")
        print(f"    seed pipeline, cold (nocache)       {seed_cold:7.2f} s")
        print(f"    seed pipeline, warm layer cache     {seed_warm:7.2f} s   (median)")
        print(f"    deployer apply, first (builds)      {first_apply:7.2f} s")
        print(f"    deployer apply, no-op               {noop:7.2f} s   (median of {', '.join(f'{n:.2f}' for n in noops)})")
        print(f"      of which python start             {python_start:7.2f} s")
        print(f"      of which imports (boto3, docker)  {imports - python_start:7.2f} s")
        print(f"      load + observe + render           {noop - imports:7.2f} s")
        print(f"    deployer plan (same work, no apply) {plan:7.2f} s")
        ratio_cold, ratio_warm = noop / seed_cold, noop / seed_warm
        print(f"    ratio noop / seed pipeline (cold)   {ratio_cold:7.3f}   target <= {NOOP_TARGET}  {verdict(ratio_cold, NOOP_TARGET)}")
        print(f"    ratio noop / seed pipeline (warm)   {ratio_warm:7.3f}   target <= {NOOP_TARGET}  {verdict(ratio_warm, NOOP_TARGET)}")

        # (b) cold vs incremental build
        bench.edit_main("bench: cold build")
        removed = bench.clear_build_cache()
        cold, cold_build = bench.apply("built")
        bench.edit_main("bench: one-line change")
        incremental, incremental_build = bench.apply("built")
        print(f"\n(b) cold vs incremental build (deployer apply --yes after a main.go change; {removed} image(s) removed for cold)")
        print(f"    cold apply                          {cold:7.2f} s   (build step {cold_build or 0:.2f} s)")
        print(f"    incremental apply (one-line change) {incremental:7.2f} s   (build step {incremental_build or 0:.2f} s)")
        ratio_inc = incremental / cold
        print(f"    ratio incremental / cold            {ratio_inc:7.3f}   target <= {INCREMENTAL_TARGET}  {verdict(ratio_inc, INCREMENTAL_TARGET)}")
        bench.docker.close()
        cloud.check_recorder()
    return 0


if __name__ == "__main__":
    sys.exit(main())
