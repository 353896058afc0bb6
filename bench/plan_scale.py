"""How `deployer plan` scales with the number of functions, against the local cloud.

    python bench/plan_scale.py [--sizes 1,20,200] [--repeat 3] [--profile N]

Starts the local cloud (moto + registry; no stand-in images: plan builds nothing), creates N image
functions in moto, each with its own ECR repository holding one small placeholder manifest (put
straight into moto's ECR: nothing is pushed or built), generates a Go monorepo with N small
functions sharing the example's modules and one deploy.yaml, then runs `deployer plan --format json`
as a subprocess and reports wall time (median of --repeat runs), the child's CPU time and peak RSS,
and moto's CPU time in the same runs: the local cloud serves every read on the same machine, so on a
machine with few cores its work (AWS's, in real use) shows in the plan's wall time.

Every function declares configuration keys and repository settings that differ from what moto
holds, so the plan reads and diffs them all (issue 11: the targets hold with configuration diffs).

Targets (issue 5 section 6): plan(200) / plan(20) <= 3, peak RSS at 200 <= 200 MB.
`--profile N` also runs plan for size N under cProfile and prints the top entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ruamel.yaml import YAML  # noqa: E402

from tests.localcloud.cloud import LocalCloud, LocalCloudError  # noqa: E402

SHARED = ("logger", "schema", "s3state", "errors")
ROLE_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
# A single-platform manifest; moto's ECR stores it as given, Lambda resolves the digest through ECR.
PLACEHOLDER_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()},
    "layers": [],
}, separators=(",", ":"))
PLACEHOLDER_DIGEST = "sha256:" + hashlib.sha256(PLACEHOLDER_MANIFEST.encode()).hexdigest()


def make_monorepo(root: Path, count: int, repository_settings: bool = True) -> Path:
    """root/{shared/*, functions/fn-NNN/{go.mod,main.go}, deploy.yaml, .git/}; returns deploy.yaml."""
    (root / ".git").mkdir(parents=True)
    shutil.copytree(REPO / "examples" / "shared", root / "shared")
    functions = []
    for index in range(count):
        name = f"bench-fn-{index:03d}"
        uses = SHARED[: 1 + index % len(SHARED)]  # functions share modules, in varying subsets
        src = root / "functions" / name
        src.mkdir(parents=True)
        requires = "\n".join(f"\texample.com/shared/{m} v0.0.0" for m in uses)
        replaces = "\n".join(f"replace example.com/shared/{m} => ../../shared/{m}" for m in uses)
        (src / "go.mod").write_text(f"module example.com/functions/{name}\n\ngo 1.22\n\nrequire (\n{requires}\n)\n\n{replaces}\n")
        imports = "\n".join(f'\t_ "example.com/shared/{m}"' for m in uses)
        (src / "main.go").write_text(f'package main\n\nimport (\n\t"fmt"\n{imports}\n)\n\nfunc main() {{ fmt.Println("{name}") }}\n')
        # Configuration and repository settings declared, differing from what the function and
        # its repository have: plan reads and diffs them all (GetFunction, and per repository
        # DescribeRepositories, GetLifecyclePolicy, ListTagsForResource).
        repository: Any = ({"name": name, "scan_on_push": True, "untagged_expiry_days": 14, "tags": {"team": "bench"}}
                           if repository_settings else name)
        functions.append({"name": name, "build": {"source": f"functions/{name}"}, "repository": repository,
                          "memory": 256 + index, "timeout": 30, "description": f"bench function {index}",
                          "environment": {"LOG_LEVEL": "info", "SECRET": {"from_env": "BENCH_SECRET"}},
                          "tags": {"team": "bench"}, "reserved_concurrency": 1})
    spec = {"version": 1,
            "defaults": {"region": "us-east-1", "platform": "linux/arm64",
                         "build": {"builder_image": "deployer-standin/go:bench", "go_env": {"GOPROXY": "off"}}},
            "functions": functions}
    path = root / "deploy.yaml"
    with path.open("w") as out:
        YAML().dump(spec, out)
    return path


def create_functions(cloud: LocalCloud, names: list[str], role: str) -> None:
    ecr, lam = cloud.client("ecr"), cloud.client("lambda")
    for name in names:
        ecr.create_repository(repositoryName=name)
        ecr.put_image(repositoryName=name, imageManifest=PLACEHOLDER_MANIFEST, imageTag="placeholder", imageDigest=PLACEHOLDER_DIGEST,
                      imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json")
        lam.create_function(FunctionName=name, PackageType="Image", Role=role, Architectures=["arm64"],
                            Code={"ImageUri": f"{cloud.ecr_host}/{name}@{PLACEHOLDER_DIGEST}"})


def run_plan(root: Path, env: dict[str, str], extra: list[str] | None = None) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system) and peak RSS in KiB of the plan process alone
    (os.wait4 gives that child's own rusage, not the local cloud's)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, *(extra or []), "-m", "deployer", "plan", "--format", "json"],
                                   cwd=root, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(), stderr.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"plan failed (exit {process.returncode}):\n{err}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out


def bench(cloud: LocalCloud, sizes: list[int], repeat: int, profile: int | None, repository_settings: bool) -> int:
    env = {**os.environ, **cloud.env, "NO_COLOR": "1", "BENCH_SECRET": "not-a-real-secret"}
    env.pop("AWS_PROFILE", None)
    iam = cloud.client("iam")
    role = iam.create_role(RoleName="deployer-bench-lambda", AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]
    created: set[str] = set()
    rows: dict[int, tuple[float, float, float, int, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="deployer-bench-plan-") as tmp:
        for size in sizes:
            names = [f"bench-fn-{i:03d}" for i in range(size)]
            started = time.perf_counter()
            create_functions(cloud, [n for n in names if n not in created], role)
            created.update(names)
            root = Path(tmp, f"repo-{size}")
            make_monorepo(root, size, repository_settings)
            setup = time.perf_counter() - started
            times, cpus, rss, moto_cpus = [], [], 0, []
            for _ in range(repeat):
                moto_before = cloud.server_cpu_seconds("moto")
                elapsed, cpu, maxrss, out = run_plan(root, env)
                moto_after = cloud.server_cpu_seconds("moto")
                if moto_before is not None and moto_after is not None:
                    moto_cpus.append(moto_after - moto_before)
                plan = json.loads(out)
                actions = {f["action"] for f in plan["functions"]}
                assert len(plan["functions"]) == size and actions == {"build"}, (len(plan["functions"]), actions)
                assert all(f["configuration"] and (f["repository_changes"] or not repository_settings)
                           for f in plan["functions"]), "diffs included"
                times.append(elapsed)
                cpus.append(cpu)
                rss = max(rss, maxrss)
            rows[size] = (statistics.median(times), min(times), statistics.median(cpus), rss,
                          statistics.median(moto_cpus) if moto_cpus else None)
            print(f"  size {size:4d}: setup {setup:5.1f}s, plan median {rows[size][0]:.2f}s", file=sys.stderr, flush=True)
            if profile == size:
                prof = Path(tmp, f"plan-{size}.prof")
                run_plan(root, env, ["-m", "cProfile", "-o", str(prof)])
                import pstats

                print(f"\ncProfile of plan with {size} functions (cumulative, top 25):")
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(25)
                # cProfile sees the main thread only: observe's reads (in a pool) show as waits there.
                print("... of which in deployer/ (cumulative, top 40; main thread only):")
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(r"/deployer/", 40)

    # moto serves every read of the plan on the same machine: its CPU time is the local cloud's
    # share of the wall time (AWS's, in real use), which a machine with few cores cannot overlap.
    print(f"\nmachine: {os.cpu_count()} CPUs")
    print(f"{'functions':>9} {'plan median s':>14} {'plan min s':>11} {'s/function':>11} {'plan CPU s':>11} {'moto CPU s':>11} "
          f"{'peak RSS MB':>12}")
    for size, (median, fastest, cpu, rss, moto) in rows.items():
        shown = f"{moto:>11.2f}" if moto is not None else f"{'-':>11}"
        print(f"{size:>9} {median:>14.2f} {fastest:>11.2f} {median / size:>11.3f} {cpu:>11.2f} {shown} {rss / 1024:>12.1f}")
    ok = True
    if 20 in rows and 200 in rows:
        ratio = rows[200][0] / rows[20][0]
        ok &= ratio <= 3
        print(f"\nplan(200) / plan(20) = {ratio:.2f} wall (target <= 3): {'ok' if ratio <= 3 else 'MISSED'}; "
              f"{rows[200][2] / rows[20][2]:.2f} in the plan process's own CPU time")
    if 200 in rows:
        peak = rows[200][3] / 1024
        ok &= peak <= 200
        print(f"peak RSS at 200 = {peak:.1f} MB (target <= 200 MB): {'ok' if peak <= 200 else 'MISSED'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,20,200", help="comma-separated function counts (default 1,20,200)")
    parser.add_argument("--repeat", type=int, default=3, help="plan runs per size; the median is reported")
    parser.add_argument("--profile", type=int, default=None, help="also profile plan at this size with cProfile")
    parser.add_argument("--without-repository-settings", action="store_true",
                        help="declare function configuration only (no repository settings: no ECR reads beyond DescribeImages)")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    try:
        with LocalCloud(build_standins=False) as cloud:
            return bench(cloud, sizes, args.repeat, args.profile, not args.without_repository_settings)
    except LocalCloudError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
