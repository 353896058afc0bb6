"""`deployer context`: writes the assembled build context and prints the source digest."""

from __future__ import annotations

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
    assert (out / "Dockerfile.deployer").is_file()
    again = run("context", "deploy.example.yaml", "--function", "finalize-with-error", "--out", str(tmp_path / "ctx2"))
    assert again.stdout == result.stdout  # same inputs, same digest, whatever the directory


def test_context_of_unknown_function_names_the_known_ones(tmp_path: Path) -> None:
    result = run("context", "deploy.example.yaml", "--function", "nope", "--out", str(tmp_path / "ctx"))
    assert result.returncode == 1
    assert result.stderr == "error: no function named 'nope' in 1 deploy.yaml file(s); known: finalize-with-error\n"
    assert not (tmp_path / "ctx").exists()


def test_context_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = run("context", "deploy.example.yaml", "--function", "finalize-with-error", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "not empty" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"
