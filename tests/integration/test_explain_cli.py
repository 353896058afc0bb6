"""Plans that say why an image changes, through the real CLI against the local cloud: apply labels
the image with each input's digest and the commit; after a change to a shared module, plan reads
the running image's labels through the registry API and names the module, the unchanged function
code, the commit, and the files changed since it; an image deployer did not build falls back to
the source digest alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import Cli, output
from tests.integration.test_create_cli import cli, role_arn, write_spec  # noqa: F401 (fixtures)
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.images import push_tiny_image

pytestmark = pytest.mark.integration


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


def committed(monorepo: Monorepo) -> str:
    """The monorepo as a real git checkout with everything committed; its commit."""
    (monorepo.root / ".git").rmdir()
    git(monorepo.root, "init", "-q")
    git(monorepo.root, "add", "-A")
    git(monorepo.root, "commit", "-q", "-m", "start")
    return git(monorepo.root, "rev-parse", "HEAD")


def test_a_shared_module_change_is_explained_with_the_module_and_its_changed_files(
        cli: Cli, monorepo: Monorepo, role_arn: str) -> None:
    name, repository = unique_name("deployer-why-fn"), unique_name("deployer-why")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn}])
    commit = committed(monorepo)
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)

    errors_go = monorepo.root / "shared" / "errors" / "errors.go"
    errors_go.write_text(errors_go.read_text() + "\n// a reviewed change\nvar _ = 1\n")
    planned = cli("plan")
    assert planned.returncode == 0, output(planned)
    relative = errors_go.relative_to(monorepo.root).as_posix()
    assert (f"why:     shared/errors changed; function code, shared/logger, shared/s3state, shared/schema, "
            f"Dockerfile, build settings, base images unchanged; running image built from commit {commit[:7]}") in planned.stdout, output(planned)
    assert f"{relative} | 3 +++" in planned.stdout, output(planned)
    assert "1 file changed, 3 insertions(+), 0 deletions(-)" in planned.stdout, output(planned)
    assert planned.stderr.strip() == "", output(planned)  # nothing of the reads: no warning, no unclosed pack

    as_json = cli("plan", "--format", "json")
    explanation = json.loads(as_json.stdout)["functions"][0]["explanation"]
    assert explanation["changed"] == [{"name": "module/shared/errors", "change": "changed"}]
    assert explanation["commit"] == commit and explanation["dirty"] is False
    assert explanation["files"] == {"files": [{"path": relative, "added": 3, "deleted": 0, "binary": False,
                                               "old_size": explanation["files"]["files"][0]["old_size"],
                                               "new_size": errors_go.stat().st_size, "renamed_from": None}], "total": 1}

    # Built from a checkout with that change uncommitted: the next image says so.
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    (monorepo.root / "functions" / "finalize-with-error" / "main.go").write_text(
        (monorepo.root / "functions" / "finalize-with-error" / "main.go").read_text() + "\n// edited\n")
    (monorepo.root / "shared" / "logger" / "logger.go").rename(monorepo.root / "shared" / "logger" / "log.go")  # moved as it was
    planned = cli("plan")
    assert f"function code changed; " in planned.stdout, output(planned)
    assert f"running image built from commit {commit[:7]} with uncommitted changes" in planned.stdout, output(planned)
    assert any(line.split() == ["shared/logger/{logger.go", "=>", "log.go}", "|", "0"] for line in planned.stdout.splitlines()), \
        output(planned)


def test_a_commit_missing_from_the_local_history_is_said_and_the_inputs_still_compared(
        cli: Cli, monorepo: Monorepo, role_arn: str) -> None:
    name, repository = unique_name("deployer-why-fn"), unique_name("deployer-why")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn}])
    commit = committed(monorepo)
    assert cli("apply", "--yes").returncode == 0
    # A shallow CI checkout of a later commit: the image's commit is not in its history.
    git(monorepo.root, "commit", "-q", "--amend", "-m", "rewritten")
    git(monorepo.root, "reflog", "expire", "--expire=now", "--all")
    git(monorepo.root, "gc", "-q", "--prune=now")
    schema_go = next(p for p in (monorepo.root / "shared" / "schema").glob("*.go") if not p.name.endswith("_test.go"))
    schema_go.write_text(schema_go.read_text() + "\n// changed\n")
    planned = cli("plan")
    assert planned.returncode == 0, output(planned)
    assert "why:     shared/schema changed;" in planned.stdout, output(planned)
    assert f"commit {commit[:7]} is not in the local git history" in planned.stdout, output(planned)


def test_an_image_deployer_did_not_build_falls_back_to_the_source_digest(
        cli: Cli, monorepo: Monorepo, role_arn: str, local_cloud: LocalCloud, lambda_client: Any) -> None:
    name, repository = unique_name("deployer-why-fn"), unique_name("deployer-why")
    write_spec(monorepo, [{"name": name, "repository": repository, "role": role_arn}])
    assert cli("apply", "--yes").returncode == 0
    other = push_tiny_image(local_cloud, repository, "by-hand")  # no labels of deployer's
    lambda_client.update_function_code(FunctionName=name, ImageUri=other.lambda_uri)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)

    planned = cli("plan")
    assert planned.returncode == 0, output(planned)
    assert "why:     the running image records no inputs (built by another tool, or by a deployer from before they were recorded)" in planned.stdout, output(planned)
    assert "update" in planned.stdout and "Traceback" not in planned.stderr
    markdown = cli("plan", "--format", "markdown")
    assert markdown.returncode == 0 and "records no inputs" in markdown.stdout, output(markdown)
