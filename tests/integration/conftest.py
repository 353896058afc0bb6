"""A copy of the example monorepo with deploy.yaml files pointed at the local cloud's stand-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
import pytest
from ruamel.yaml import YAML

from tests.localcloud.cloud import LocalCloud

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Monorepo:
    """examples/ copied to `root` (a git root). `write_spec` writes root/deploy.yaml."""

    root: Path
    env: dict[str, str]

    def write_spec(self, functions: list[dict[str, Any]], **defaults: Any) -> Path:
        """Each function: {"name", "repository", "source" (relative to root), "platform"?}."""
        entries = []
        for fn in functions:
            platform = fn.get("platform", "linux/arm64")
            entry = {"name": fn["name"], "repository": fn["repository"], "platform": platform,
                     "build": {"source": fn.get("source", "functions/finalize-with-error"),
                               "runtime_image": self.env["DEPLOYER_STANDIN_RUNTIME_ARM64" if platform == "linux/arm64"
                                                         else "DEPLOYER_STANDIN_RUNTIME_AMD64"]}}
            entries.append(entry)
        data = {"version": 1,
                "defaults": {"region": "us-east-1", **defaults,
                             "build": {"builder_image": self.env["DEPLOYER_STANDIN_BUILDER"], "go_env": {"GOPROXY": "off"}}},
                "functions": entries}
        path = self.root / "deploy.yaml"
        with path.open("w") as out:
            YAML().dump(data, out)
        return path

    def add_function(self, name: str, shared: tuple[str, ...]) -> str:
        """A second Go function using only `shared` modules; returns its source dir (relative)."""
        src = self.root / "functions" / name
        src.mkdir(parents=True)
        requires = "\n".join(f"\texample.com/shared/{m} v0.0.0" for m in shared)
        replaces = "\n".join(f"replace example.com/shared/{m} => ../../shared/{m}" for m in shared)
        (src / "go.mod").write_text(f"module example.com/functions/{name}\n\ngo 1.22\n\nrequire (\n{requires}\n)\n\n{replaces}\n")
        imports = "\n".join(f'\t_ "example.com/shared/{m}"' for m in shared)
        (src / "main.go").write_text(f'package main\n\nimport (\n\t"fmt"\n{imports}\n)\n\nfunc main() {{ fmt.Println("{name}") }}\n')
        return f"functions/{name}"

    def deployer(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deployer", *args], cwd=cwd or self.root, capture_output=True, text=True,
                              env={**os.environ, "NO_COLOR": "1", **(env or {})}, timeout=600)


@pytest.fixture
def monorepo(tmp_path: Path, local_cloud: LocalCloud) -> Iterator[Monorepo]:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples", root)
    (root / ".git").mkdir()  # marks the repository root, as a checkout would
    yield Monorepo(root, dict(local_cloud.env))


def remove_references(engine: docker.DockerClient, repository: str) -> None:
    """Every tag and digest reference to `repository` (host/name) the engine holds, by reference:
    never by image ID, which other tests' builds of the same layers share (removing it by force
    would untag their images under them, between their build and their push)."""
    for image in engine.images.list(name=repository):
        for reference in [*image.tags, *(image.attrs.get("RepoDigests") or [])]:
            if reference.startswith((f"{repository}:", f"{repository}@")):
                try:
                    engine.images.remove(reference, noprune=True)  # its parents may be another build's cache
                except docker.errors.ImageNotFound:
                    pass  # its last reference went with the one before
