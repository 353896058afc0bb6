"""The pipeline reads one way: no module of deployer imports a later stage (DESIGN.md §3.1).

ORDER lists every module, utilities first, then the stages as data flows through them; a new
module must be placed in it, and may import only what comes before it."""

from __future__ import annotations

import ast
from pathlib import Path

import deployer

PACKAGE = Path(deployer.__file__).parent
ORDER = [
    # utilities every stage may use
    "__init__", "errors", "paths", "locks", "gitrev",
    # spec: deploy.yaml files -> Spec
    "function_config", "repository_config", "spec", "yamlfast", "yamldoc", "schema", "function_settings", "release_settings", "environments", "load",
    # build inputs: go.mod files, shared modules, the build context and its digest
    "gomod", "workspace", "module_graph", "digest", "image_inputs", "dockerignore", "layout", "gitdiff", "redact", "context",
    # cloud: what AWS reports, through its gateways
    "state", "registry", "aws", "lambda_config", "lambda_gateway", "ecr_gateway", "observe",
    # plan: pure decisions, their words, their files
    "plan", "explain", "planfile", "binding", "history", "markdown_budget", "render", "shard", "prune", "adopt", "provenance",
    # apply: the only stage that changes anything
    "outcome", "go_build", "ports", "interrupts", "image_copy", "docker_gateway", "images", "sharing", "runtime_api", "local_invoke", "run_release", "run_image", "run_function", "progress", "apply", "local_build",
    # the use cases and the command line
    "app", "cli", "__main__",
]


def imported(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "deployer":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deployer."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("deployer."))
    return names


def test_every_module_is_placed_in_the_pipeline() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(ORDER)


def test_no_module_imports_a_later_stage() -> None:
    rank = {name: index for index, name in enumerate(ORDER)}
    backwards = [f"{module.stem} imports {name}" for module in sorted(PACKAGE.glob("*.py"))
                 for name in sorted(imported(module)) if name in rank and rank[name] > rank[module.stem]]
    assert backwards == []
