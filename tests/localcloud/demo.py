"""`make demo`: the README's main job, end to end against the local cloud.

Brings the cloud up, creates what deployer does not manage (the functions' IAM role) and nothing
else: the plan creates the ECR repositories and the functions. Then it runs what a team's CI runs: `deployer plan --out plan.json` (the
plan a reviewer approves), `deployer apply plan.json`, and `deployer plan` again, which must report
no changes. greet is released: its first version, smoke-tested (the local cloud really runs it),
gets the alias `live`. Then a change is merged (greet's memory) and applied: version 2, smoke-tested,
takes `live`; `deployer history greet` shows both, `deployer rollback greet` moves `live` back to 1.

It runs in a copy of the repository's examples in a temporary checkout, so nothing of the working
tree is written; deploy.example.yaml is used as committed, except that the copy points the build at
the offline stand-in base images (the real ones cannot be pulled here) and at the local cloud's Go
module proxy (which serves greet's dependencies), and builds a smoke-tested function for this
engine's own platform (the local cloud runs it on this engine; Lambda would on arm64).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.localcloud.cloud import LocalCloud, LocalCloudError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy.example.yaml"
ROLE_NAME = "deployer-demo-lambda"  # deploy.example.yaml's role
ENGINE_PLATFORMS = {"x86_64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}
ROLE_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'


def standin_checkout(source: Path, dest_dir: Path, env: dict[str, str]) -> Path:
    """A checkout in `dest_dir` (a `.git` marks its root) holding a copy of examples/ and of the
    deploy.yaml `source`, with base images set to the stand-ins named in `env` (LocalCloud.env).
    Returns the new deploy.yaml; its relative paths mean what they mean in the repository."""
    shutil.copytree(REPO / "examples", dest_dir / "examples")
    (dest_dir / ".git").mkdir()
    yaml = YAML()
    data: Any = yaml.load(source.read_text())
    shared_build = data.setdefault("defaults", {}).setdefault("build", {})
    shared_build["builder_image"] = env["DEPLOYER_STANDIN_BUILDER"]
    shared_build.setdefault("go_env", {})["GOPROXY"] = env["DEPLOYER_GOPROXY"]  # the local cloud's module proxy
    for fn in data["functions"]:
        if "smoke_test" in (fn.get("release") or {}):
            fn["platform"] = ENGINE_PLATFORMS.get(os.uname().machine, "linux/amd64")
        platform = fn.get("platform", data["defaults"].get("platform", "linux/arm64"))
        build = fn.setdefault("build", {})
        build["runtime_image"] = env["DEPLOYER_STANDIN_RUNTIME_ARM64" if platform == "linux/arm64" else "DEPLOYER_STANDIN_RUNTIME_AMD64"]
    target = dest_dir / "deploy.yaml"
    with target.open("w") as out:
        yaml.dump(data, out)
    return target


def create_prerequisites(cloud: LocalCloud) -> None:
    """What deployer does not manage: the functions' execution role (IAM). Everything else (the
    ECR repositories, the functions) the plan creates, from an empty account."""
    role = cloud.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]
    print(f"demo: created the execution role {role}; no repository, no function")


def deployer(env: dict[str, str], checkout: Path, *args: str) -> int:
    print(f"\n$ deployer {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "deployer", *args], env=env, cwd=checkout)


def run(env: dict[str, str], checkout: Path, steps: list[tuple[tuple[str, ...], int]]) -> bool:
    for args, expected in steps:
        code = deployer(env, checkout, *args)
        if code != expected:
            print(f"\ndemo FAILED: 'deployer {' '.join(args)}' exited {code}, expected {expected}", file=sys.stderr)
            return False
    return True


def merge_a_change(spec: Path) -> None:
    """What a merged pull request would change: greet's memory."""
    yaml = YAML()
    data: Any = yaml.load(spec.read_text())
    greet = next(fn for fn in data["functions"] if fn["name"] == "greet")
    greet["memory"] = 512
    with spec.open("w") as out:
        yaml.dump(data, out)
    print("\ndemo: a change is merged: greet's memory 256 -> 512", flush=True)


def main() -> int:
    try:
        with LocalCloud() as cloud, tempfile.TemporaryDirectory(prefix="deployer-demo-") as tmp:
            checkout = Path(tmp)
            spec = standin_checkout(EXAMPLE, checkout, cloud.env)
            create_prerequisites(cloud)
            env = {**os.environ, **cloud.env}
            steps = [
                (("plan", "--out", "plan.json"), 0),  # what a pull request shows and a reviewer approves
                (("apply", "plan.json"), 0),  # exactly that, checked against deploy.yaml and AWS
                (("plan", "--detailed-exitcode"), 0),  # 2 would mean apply left changes
            ]
            if not run(env, checkout, steps):
                return 1
            merge_a_change(spec)
            released = [
                (("apply", "--yes"), 0),  # greet's version 2: smoke-tested, then live
                (("history", "greet"), 0),
                (("rollback", "greet", "--yes"), 0),  # live back to version 1
                (("history", "greet"), 0),
            ]
            if not run(env, checkout, released):
                return 1
            cloud.check_recorder()
    except LocalCloudError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\ndemo OK: plan, apply, a second plan with no changes; a release to live, its history, and a rollback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
