"""`make demo`: the README's main job, end to end against the local cloud.

Brings the cloud up, creates what deployer does not manage (the functions' IAM role) and nothing
else: the plan creates the ECR repositories and the functions. Then it runs what a team's CI runs: `deployer plan --out plan.json` (the
plan a reviewer approves), `deployer apply plan.json`, and `deployer plan` again, which must report
no changes. greet is released: its first version, smoke-tested (the local cloud really runs it),
gets the alias `live`. Then a pull request changes greet's memory and a shared module: its plan
comment (markdown) says which inputs of finalize-with-error's image changed and which files; merged
and applied, greet's version 2 is smoke-tested and takes `live`; `deployer history greet` shows both, `deployer rollback greet` moves `live` back to 1.

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

from dulwich import porcelain
from ruamel.yaml import YAML

from tests.localcloud.cloud import LocalCloud, LocalCloudError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy.example.yaml"
ROLE_NAME = "deployer-demo-lambda"  # deploy.example.yaml's role
ENGINE_PLATFORMS = {"x86_64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}
ROLE_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'


def standin_checkout(source: Path, dest_dir: Path, env: dict[str, str]) -> Path:
    """A git checkout in `dest_dir` holding a copy of examples/ and of the deploy.yaml `source`,
    with base images set to the stand-ins named in `env` (LocalCloud.env), committed. Returns the
    new deploy.yaml; its relative paths mean what they mean in the repository."""
    shutil.copytree(REPO / "examples", dest_dir / "examples")
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
    porcelain.init(str(dest_dir))
    commit(dest_dir, "the team's monorepo")
    return target


def commit(checkout: Path, message: str) -> None:
    """Commit everything in `checkout` (with dulwich: no git needed), as a merge to main would."""
    porcelain.add(str(checkout))
    porcelain.commit(str(checkout), message=message.encode(), author=DEMO_AUTHOR, committer=DEMO_AUTHOR)


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


def open_a_pull_request(spec: Path) -> None:
    """What a pull request changes: greet's memory, and a shared module finalize-with-error uses."""
    yaml = YAML()
    data: Any = yaml.load(spec.read_text())
    greet = next(fn for fn in data["functions"] if fn["name"] == "greet")
    greet["memory"] = 512
    with spec.open("w") as out:
        yaml.dump(data, out)
    errors_go = spec.parent / "examples" / "shared" / "errors" / "errors.go"
    errors_go.write_text(errors_go.read_text() + SHARED_CHANGE)
    print("\ndemo: a pull request changes greet's memory (256 -> 512) and shared/errors; its plan comment:", flush=True)


# A change to the shared module finalize-with-error imports: its plan says which input changed.
SHARED_CHANGE = """
// IsRetryable reports whether err is worth retrying.
func IsRetryable(err error) bool { return err != nil }
"""
DEMO_AUTHOR = b"deployer demo <demo@example.com>"
# Where the demo also writes the pull request's plan comment, when set (the README shows one).
COMMENT_ENV = "DEPLOYER_DEMO_COMMENT"


def show_the_plan_comment(env: dict[str, str], checkout: Path) -> bool:
    """The markdown plan a pull request's comment shows, printed (and written to $DEPLOYER_DEMO_COMMENT)."""
    print("\n$ deployer plan --format markdown", flush=True)
    made = subprocess.run([sys.executable, "-m", "deployer", "plan", "--format", "markdown"], env=env, cwd=checkout,
                          capture_output=True, text=True)
    print(made.stdout + made.stderr, flush=True)
    if made.returncode != 0 or "shared/errors changed" not in made.stdout:
        print("\ndemo FAILED: the pull request's plan does not say that shared/errors changed", file=sys.stderr)
        return False
    if os.environ.get(COMMENT_ENV):
        Path(os.environ[COMMENT_ENV]).write_text(made.stdout)
    return True


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
            open_a_pull_request(spec)
            if not show_the_plan_comment(env, checkout):
                return 1
            commit(checkout, "greet: 512 MB; errors: IsRetryable")  # merged
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
