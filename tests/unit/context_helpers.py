"""Builders shared by the tests of build contexts (`test_context.py`, `test_context_layout.py`):
a repository tree written from a dict, and the FunctionSpec of its function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployer.spec import BuildSettings, FunctionSpec, Location, RepositoryRef

# The repository's own examples: a real monorepo layout, read and never written.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Images and flags that depend on nothing but the test: a digest pinned in a test stays valid when
# the product's defaults change.
PINNED_BUILD: dict[str, Any] = {"builder_image": "go:pinned", "runtime_image": "rt:pinned",
                                "go_build_flags": ("-trimpath",)}


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write `files` (path relative to root -> content) below root, making directories on the way."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def make_fn(root: Path, source: str = "functions/fn", platform: str = "linux/arm64", **build: Any) -> FunctionSpec:
    """Function `fn` in us-east-1 built from `root/source`; `build` sets BuildSettings fields."""
    return FunctionSpec(
        name="fn",
        region="us-east-1",
        repository=RepositoryRef("fn", "us-east-1", "123456789012"),
        platform=platform,
        build=BuildSettings(source=root / source, **build),
        root=root,
        location=Location(root / source / "deploy.yaml", 1, 1),
    )


def pinned_fn(root: Path, source: str = "functions/fn", **build: Any) -> FunctionSpec:
    """make_fn with explicit images and flags (PINNED_BUILD), unless `build` sets them."""
    return make_fn(root, source, **{**PINNED_BUILD, **build})
