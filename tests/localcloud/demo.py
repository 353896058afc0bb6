"""`make demo`: the README's main job, end to end against the local cloud.

Brings the cloud up, creates the seed's prerequisites (the ECR repository and the Lambda function,
running a placeholder image), then runs what a team's CI runs: `deployer plan --out plan.json` (the
plan a reviewer approves), `deployer apply plan.json`, and `deployer plan` again, which must report
no changes. It runs in a copy of the repository's examples in a temporary checkout, so nothing of
the working tree is written; deploy.example.yaml is used as committed, except that the copy points
the build at the offline stand-in base images (the real ones cannot be pulled here) and at the
local cloud's Go module proxy (which serves greet's dependencies).
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
from tests.localcloud.images import push_tiny_image

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy.example.yaml"
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
        platform = fn.get("platform", data["defaults"].get("platform", "linux/arm64"))
        build = fn.setdefault("build", {})
        build["runtime_image"] = env["DEPLOYER_STANDIN_RUNTIME_ARM64" if platform == "linux/arm64" else "DEPLOYER_STANDIN_RUNTIME_AMD64"]
    target = dest_dir / "deploy.yaml"
    with target.open("w") as out:
        yaml.dump(data, out)
    return target


def create_prerequisites(cloud: LocalCloud, spec: Path) -> None:
    """The seed's prerequisites: each function's ECR repository, and the function itself running
    a placeholder image (Lambda cannot create an image function without one)."""
    data: Any = YAML(typ="safe").load(spec.read_text())
    ecr, lam, iam = cloud.client("ecr"), cloud.client("lambda"), cloud.client("iam")
    role = iam.create_role(RoleName="deployer-demo-lambda", AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]
    for fn in data["functions"]:
        platform = fn.get("platform", data["defaults"].get("platform", "linux/arm64"))
        ecr.create_repository(repositoryName=fn["repository"])
        placeholder = push_tiny_image(cloud, fn["repository"], "placeholder", "placeholder", platform)
        lam.create_function(FunctionName=fn["name"], PackageType="Image", Role=role, Code={"ImageUri": placeholder.lambda_uri},
                            Architectures=["arm64" if platform == "linux/arm64" else "x86_64"])
        print(f"demo: created repository {fn['repository']} and function {fn['name']} (placeholder {placeholder.digest[:19]})")


def deployer(env: dict[str, str], checkout: Path, *args: str) -> int:
    print(f"\n$ deployer {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "deployer", *args], env=env, cwd=checkout)


def main() -> int:
    try:
        with LocalCloud() as cloud, tempfile.TemporaryDirectory(prefix="deployer-demo-") as tmp:
            checkout = Path(tmp)
            spec = standin_checkout(EXAMPLE, checkout, cloud.env)
            create_prerequisites(cloud, spec)
            env = {**os.environ, **cloud.env}
            steps = [
                (("plan", "--out", "plan.json"), 0),  # what a pull request shows and a reviewer approves
                (("apply", "plan.json"), 0),  # exactly that, checked against deploy.yaml and AWS
                (("plan", "--detailed-exitcode"), 0),  # 2 would mean apply left changes
            ]
            for args, expected in steps:
                code = deployer(env, checkout, *args)
                if code != expected:
                    print(f"\ndemo FAILED: 'deployer {' '.join(args)}' exited {code}, expected {expected}", file=sys.stderr)
                    return 1
            cloud.check_recorder()
    except LocalCloudError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\ndemo OK: plan, apply, and a second plan with no changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
