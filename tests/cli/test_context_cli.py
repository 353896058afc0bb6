"""`deployer context`: writes the assembled build context and prints the source digest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployer", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_context_writes_function_and_shared_modules_and_prints_digest(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = run("context", "deploy.example.yaml", "--function", "finalize-with-error", "--out", str(out))
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71
    assert sorted(p.name for p in (out / "shared").iterdir()) == ["errors", "logger", "s3state", "schema"]
    assert "=> ./shared/logger" in (out / "go.mod").read_text()
    assert not [p for p in out.rglob("*") if p.name.startswith("Dockerfile") or p.name.endswith("_test.go")]
    again = run("context", "deploy.example.yaml", "--function", "finalize-with-error", "--out", str(tmp_path / "ctx2"))
    assert again.stdout == result.stdout  # same inputs, same digest, whatever the directory


def test_context_of_unknown_function_names_the_known_ones(tmp_path: Path) -> None:
    result = run("context", "deploy.example.yaml", "--function", "nope", "--out", str(tmp_path / "ctx"))
    assert result.returncode == 1
    assert result.stderr == "error: no function named 'nope' in 1 deploy.yaml file(s); known: finalize-with-error, greet\n"
    assert not (tmp_path / "ctx").exists()


def test_context_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = run("context", "deploy.example.yaml", "--function", "finalize-with-error", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "not empty" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def _function_repo(root: Path) -> Path:
    """A world-readable monorepo with one function whose deploy.yaml sits next to its go.mod."""
    (root / ".git").mkdir(parents=True)
    fn = root / "fn"
    fn.mkdir()
    (fn / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (fn / "main.go").write_text("package main\n\nfunc main() {}\n")
    (fn / "deploy.yaml").write_text("version: 1\nfunctions:\n  - name: fn\n    region: us-east-1\n    repository: fn-repo\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return fn


def test_deploy_yaml_is_not_part_of_the_context_or_its_digest(tmp_path: Path) -> None:
    fn = _function_repo(tmp_path / "repo")
    first = run("context", str(fn), "--function", "fn", "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "a" / "deploy.yaml").exists()
    with (fn / "deploy.yaml").open("a") as spec:
        spec.write("# a reviewer's comment: no rebuild\n")
    second = run("context", str(fn), "--function", "fn", "--out", str(tmp_path / "b"))
    assert second.stdout == first.stdout


def test_context_out_that_is_a_file_is_a_clean_error(tmp_path: Path) -> None:
    fn = _function_repo(tmp_path / "repo")
    (tmp_path / "file").write_text("mine")
    result = run("context", str(fn), "--function", "fn", "--out", str(tmp_path / "file"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'file'}: cannot use as the build context directory (")
    assert (tmp_path / "file").read_text() == "mine"


def test_unreadable_source_file_is_a_clean_error(tmp_path: Path) -> None:
    fn = _function_repo(tmp_path / "repo")
    (fn / "secret.txt").write_text("x")
    (fn / "secret.txt").chmod(0o000)
    # Root reads everything: drop the capabilities that bypass file permissions, as a user has none.
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.getuid() == 0 else []
    result = subprocess.run([*as_user, sys.executable, "-m", "deployer", "context", str(fn), "--function", "fn",
                             "--out", str(tmp_path / "ctx")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "secret.txt: cannot read (Permission denied) while assembling the build context of fn" in result.stderr
    assert not (tmp_path / "ctx").exists() or not any((tmp_path / "ctx").iterdir())


def test_other_files_named_deploy_yaml_stay_in_the_context(tmp_path: Path) -> None:
    fn = _function_repo(tmp_path / "repo")
    (fn / "testdata").mkdir()
    (fn / "testdata" / "deploy.yaml").write_text("embedded: by the function's tests\n")
    # The directory search skips testdata/ (Go's own convention), so this is not read as a spec;
    # the embed directive keeps testdata/ in the Go build's context.
    (fn / "embed.go").write_text('package main\n\nimport "embed"\n\n//go:embed testdata\nvar fixtures embed.FS\n')
    result = run("context", str(fn), "--function", "fn", "--out", str(tmp_path / "ctx"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ctx" / "testdata" / "deploy.yaml").read_text() == "embedded: by the function's tests\n"
    assert not (tmp_path / "ctx" / "deploy.yaml").exists()


def test_failed_context_leaves_no_directory_it_created(tmp_path: Path) -> None:
    fn = _function_repo(tmp_path / "repo")
    (fn / "escape").symlink_to("/etc/hostname")  # a link out of the tree: the layout refuses it
    result = run("context", str(fn / "deploy.yaml"), "--function", "fn", "--out", str(tmp_path / "new" / "deep" / "ctx"))
    assert result.returncode == 1
    assert "leads outside" in result.stderr
    assert not (tmp_path / "new").exists()
