"""Nothing outside the repository root is read, only regular files are opened, a file that is not
a deploy.yaml is reported once, and no message carries more than a few dozen characters of a file:
through the real CLI (`validate`, `plan`, `context`, run in process), with exact messages, exit 1,
no traceback, no hang, and never the content of a file outside the root in the output."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.cli_harness import CliResult, InProcessCli

# Every test here runs the CLI on files that could make it block (a FIFO opened for reading waits
# for a writer): the timeout turns a hang into a failure.
pytestmark = pytest.mark.timeout(120)

GOOD = """\
version: 1
defaults:
  region: us-east-1
  account: "123456789012"
functions:
  - name: fn
    repository: fn-repo
    build:
      source: fn
"""
SECRET = "AKIA-CANARY-7f3e9d"  # planted in every file outside the root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the repository, holding files that must never be read."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secrets.yaml").write_text(f"aws_secret_access_key: {SECRET}\ntoken: {SECRET}\n")
    (path / "Dockerfile").write_text(f"FROM scratch\n# {SECRET}\n")
    (path / "dockerignore").write_text(f"{SECRET}\n")
    (path / "go.mod").write_text(f"module example.com/fn\n// {SECRET}\n")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "fn").mkdir()
    (root / "fn" / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (root / "fn" / "main.go").write_text("package main\n\nfunc main() {}\n")
    (root / "shared" / "logger").mkdir(parents=True)
    (root / "shared" / "logger" / "go.mod").write_text("module example.com/shared/logger\n")
    (root / "deploy.yaml").write_text(GOOD)
    return root


def assert_problems(result: CliResult, *lines: str) -> None:
    """validate's output: exactly these problems, then the count; exit 1."""
    assert result.exit_code == 1, result
    assert "Traceback" not in result.stderr and SECRET not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [*lines, f"{len(lines)} problem(s) found"]


def assert_plan_refuses(cli: InProcessCli, repo: Path, *lines: str) -> None:
    """plan stops on the same problems before asking AWS anything."""
    result = cli("plan", cwd=repo)
    assert result.exit_code == 1, result
    assert "Traceback" not in result.stderr and SECRET not in result.stdout + result.stderr
    for line in lines:
        assert line in result.stderr


# --- deploy.yaml --------------------------------------------------------------------------------

def test_deploy_yaml_symlinked_out_of_the_root_is_not_read(repo: Path, outside: Path, cli: InProcessCli) -> None:
    (repo / "team").mkdir()
    (repo / "team" / "deploy.yaml").symlink_to(outside / "secrets.yaml")
    expected = (f"team/deploy.yaml: resolves to {outside}/secrets.yaml, outside the repository root {repo}; "
                "deployer reads nothing outside it: replace the symlink with the file itself")
    assert_problems(cli("validate", cwd=repo), expected)
    assert_problems(cli("validate", "team/deploy.yaml", cwd=repo), expected)
    assert_plan_refuses(cli, repo, expected)


def test_deploy_yaml_symlinked_inside_the_root_is_read(repo: Path, cli: InProcessCli) -> None:
    (repo / "team").mkdir()
    (repo / "deploy.yaml").rename(repo / "team" / "real.yaml")
    (repo / "team" / "real.yaml").write_text(GOOD.replace("source: fn", "source: ../fn"))
    (repo / "deploy.yaml").symlink_to("team/real.yaml")
    result = cli("validate", cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "1 file(s) valid: 1 function(s): fn\n"


def test_deploy_yaml_outside_any_git_checkout_is_bounded_by_its_own_directory(tmp_path: Path, outside: Path,
                                                                              cli: InProcessCli) -> None:
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "deploy.yaml").symlink_to("../outside/secrets.yaml")
    result = cli("validate", "loose", cwd=tmp_path)
    assert_problems(result, f"loose/deploy.yaml: resolves to {outside}/secrets.yaml, outside the repository root "
                            f"{tmp_path}/loose; deployer reads nothing outside it: replace the symlink with the file itself")


def test_deploy_yaml_in_a_symlink_loop(repo: Path, cli: InProcessCli) -> None:
    (repo / "team").mkdir()
    (repo / "team" / "deploy.yaml").symlink_to("deploy.yaml")
    assert_problems(cli("validate", cwd=repo), "team/deploy.yaml: cannot read file: Too many levels of symbolic links")


def test_root_may_not_reach_above_the_git_checkout(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text("root: ..\n" + GOOD)
    assert_problems(cli("validate", cwd=repo),
                    f"deploy.yaml:1:7: root: '..' (resolved to {repo.parent}) lies above the git checkout {repo} that holds "
                    "this file; nothing outside it is read, so set root to that directory or below it")


def test_root_must_hold_the_deploy_yaml(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text("root: fn\n" + GOOD)
    assert_problems(cli("validate", cwd=repo),
                    f"deploy.yaml:1:7: root: 'fn' (resolved to {repo}/fn) does not hold this file; "
                    "set root to this file's directory or one of its parents")


def test_a_narrower_root_is_allowed(repo: Path, cli: InProcessCli) -> None:
    (repo / "sub").mkdir()
    (repo / "fn").rename(repo / "sub" / "fn")
    (repo / "deploy.yaml").rename(repo / "sub" / "deploy.yaml")
    (repo / "sub" / "deploy.yaml").write_text("root: .\n" + GOOD)
    result = cli("validate", cwd=repo)
    assert result.exit_code == 0, result.stderr


# --- build.dockerfile, .dockerignore, go.mod --------------------------------------------------

def test_dockerfile_naming_a_system_file_is_refused(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD + "      dockerfile: /etc/passwd\n")
    expected = (f"deploy.yaml:10:19: function 'fn': build.dockerfile '/etc/passwd' lies outside the repository root {repo}; "
                "deployer reads nothing outside it: move the Dockerfile into the repository")
    result = cli("validate", cwd=repo)
    assert_problems(result, expected)
    assert "root:x:0" not in result.stderr
    assert_plan_refuses(cli, repo, expected)


def test_dockerfile_symlinked_out_of_the_root_is_refused(repo: Path, outside: Path, cli: InProcessCli) -> None:
    (repo / "fn" / "Dockerfile").symlink_to(outside / "Dockerfile")
    (repo / "deploy.yaml").write_text(GOOD + "      dockerfile: fn/Dockerfile\n")
    assert_problems(cli("validate", cwd=repo),
                    f"deploy.yaml:10:19: function 'fn': build.dockerfile 'fn/Dockerfile' (resolved to {outside}/Dockerfile) "
                    f"lies outside the repository root {repo}; deployer reads nothing outside it: move the Dockerfile "
                    "into the repository")


def test_dockerignore_symlinked_out_of_the_root_is_refused(repo: Path, outside: Path, cli: InProcessCli) -> None:
    (repo / "fn" / ".dockerignore").symlink_to(outside / "dockerignore")
    expected = (f"fn/.dockerignore: resolves to {outside}/dockerignore, outside the repository root {repo}; deployer "
                "reads only regular files inside the repository root: replace it with a regular file of patterns")
    assert_problems(cli("validate", cwd=repo), expected)
    assert_plan_refuses(cli, repo, expected)


def test_go_mod_symlinked_out_of_the_root_is_refused(repo: Path, outside: Path, cli: InProcessCli) -> None:
    (repo / "fn" / "go.mod").unlink()
    (repo / "fn" / "go.mod").symlink_to(outside / "go.mod")
    assert_problems(cli("validate", cwd=repo),
                    f"fn/go.mod: resolves to {outside}/go.mod, outside the repository root {repo}; deployer reads only "
                    "regular files inside the repository root; replace it with the module's go.mod")


# --- special files: a clear error, never a hang -------------------------------------------------

def test_fifo_deploy_yaml(repo: Path, cli: InProcessCli) -> None:
    (repo / "team").mkdir()
    os.mkfifo(repo / "team" / "deploy.yaml")
    expected = "team/deploy.yaml: is a FIFO, not a regular file; a deploy.yaml must be a regular file"
    assert_problems(cli("validate", cwd=repo), expected)
    assert_problems(cli("validate", "team/deploy.yaml", cwd=repo), expected)
    assert_plan_refuses(cli, repo, expected)


def test_socket_deploy_yaml(repo: Path, monkeypatch: pytest.MonkeyPatch, cli: InProcessCli) -> None:
    monkeypatch.chdir(repo)  # a socket's path is limited to about 100 bytes: bind a relative one
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("deploy.yml")
        assert_problems(cli("validate", cwd=repo),
                        "deploy.yml: is a socket, not a regular file; a deploy.yaml must be a regular file")


def test_fifo_dockerignore(repo: Path, cli: InProcessCli) -> None:
    os.mkfifo(repo / "fn" / ".dockerignore")
    expected = ("fn/.dockerignore: is a FIFO, not a regular file; deployer reads only regular files inside the "
                "repository root: replace it with a regular file of patterns")
    assert_problems(cli("validate", cwd=repo), expected)
    assert_plan_refuses(cli, repo, expected)


def test_fifo_go_mod_of_the_function(repo: Path, cli: InProcessCli) -> None:
    (repo / "fn" / "go.mod").unlink()
    os.mkfifo(repo / "fn" / "go.mod")
    assert_problems(cli("validate", cwd=repo),
                    "deploy.yaml:9:15: function 'fn': 'fn/go.mod' is a FIFO, not a regular file; replace it with the module's go.mod")


def test_fifo_go_mod_of_a_replace_target(repo: Path, cli: InProcessCli) -> None:
    (repo / "fn" / "go.mod").write_text("module example.com/fn\n\nreplace example.com/shared/logger => ../shared/logger\n")
    (repo / "shared" / "logger" / "go.mod").unlink()
    os.mkfifo(repo / "shared" / "logger" / "go.mod")
    assert_problems(cli("validate", cwd=repo),
                    "shared/logger/go.mod: is a FIFO, not a regular file; deployer reads only regular files inside the "
                    "repository root; replace it with the module's go.mod")


def test_fifo_dockerfile(repo: Path, cli: InProcessCli) -> None:
    os.mkfifo(repo / "fn" / "Dockerfile")
    (repo / "deploy.yaml").write_text(GOOD + "      dockerfile: fn/Dockerfile\n")
    assert_problems(cli("validate", cwd=repo),
                    "deploy.yaml:10:19: function 'fn': Dockerfile 'fn/Dockerfile' is a FIFO, not a regular file; "
                    "point build.dockerfile at a Dockerfile")


def test_fifo_go_sum_and_fifo_anywhere_in_the_context(repo: Path, cli: InProcessCli) -> None:
    os.mkfifo(repo / "fn" / "go.sum")
    (repo / "fn" / "data").mkdir()
    os.mkfifo(repo / "fn" / "data" / "pipe")
    expected = ["fn/data/pipe: is a FIFO, which a build context cannot hold; remove it or exclude it in .dockerignore",
                "fn/go.sum: is a FIFO, which a build context cannot hold; remove it or exclude it in .dockerignore"]
    assert_problems(cli("validate", cwd=repo), *expected)
    assert_plan_refuses(cli, repo, *expected)


def test_fifo_excluded_by_dockerignore_is_fine(repo: Path, cli: InProcessCli) -> None:
    os.mkfifo(repo / "fn" / "pipe")
    (repo / "fn" / ".dockerignore").write_text("pipe\n")
    result = cli("validate", cwd=repo)
    assert result.exit_code == 0, result.stderr


# --- files that are not deploy.yaml files -------------------------------------------------------

def test_yaml_file_that_is_not_a_deploy_yaml_is_reported_once_without_its_content(repo: Path, cli: InProcessCli) -> None:
    keys = "".join(f"key{i}: {SECRET}-{i}\n" for i in range(50))
    (repo / "team").mkdir()
    (repo / "team" / "deploy.yaml").write_text(keys)
    assert_problems(cli("validate", cwd=repo),
                    "team/deploy.yaml: not a deploy.yaml: a mapping of 50 key(s), none of them 'version' or 'functions'; "
                    "a deploy.yaml starts with 'version: 1' and lists its 'functions'")


@pytest.mark.parametrize("content, what", [
    (f"- {SECRET}\n", "the top level is a list"),
    (f"{SECRET}\n", "the top level is a single value"),
    ("~\n", "the top level is nothing (null)"),
])
def test_top_level_that_is_not_a_mapping(repo: Path, content: str, what: str, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(content)
    assert_problems(cli("validate", cwd=repo),
                    f"deploy.yaml: not a deploy.yaml: {what}, not a mapping with 'version' and 'functions' keys")


def test_a_deploy_yaml_missing_its_version_is_still_one(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD.replace("version: 1\n", ""))
    assert_problems(cli("validate", cwd=repo), "deploy.yaml:1:1: top level: missing required key 'version'")


def test_many_unknown_keys_are_summed_up(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD + "".join(f"extra{i}: {SECRET}\n" for i in range(8)))
    allowed = "allowed keys: defaults, environments, functions, root, version"
    assert_problems(cli("validate", cwd=repo),
                    f"deploy.yaml:1:1: top level: 3 more unknown key(s); {allowed}",
                    *(f"deploy.yaml:{10 + i}:1: extra{i}: unknown key 'extra{i}'; {allowed}" for i in range(5)))


def test_problems_of_one_file_are_listed_up_to_fifty(repo: Path, cli: InProcessCli) -> None:
    entries = "".join(f"  - {{name: fn{i}, colour: {SECRET}}}\n" for i in range(60))
    (repo / "deploy.yaml").write_text(f"version: 1\nfunctions:\n{entries}")
    result = cli("validate", cwd=repo)
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and SECRET not in result.stderr
    assert len(lines) == 52
    assert lines[0] == "deploy.yaml: 50 problem(s) against the schema listed, 10 more not; fix the listed ones first"
    assert lines[1].startswith("deploy.yaml:3:17: functions[0].colour: unknown key 'colour'")
    assert lines[-1] == "51 problem(s) found"


def test_a_long_unknown_key_is_cut_short(repo: Path, cli: InProcessCli) -> None:
    key = "k" * 500
    (repo / "deploy.yaml").write_text(GOOD + f"? {key}\n: 1\n")
    assert_problems(cli("validate", cwd=repo),
                    f"deploy.yaml:10:3: {'k' * 60}...: unknown key '{'k' * 60}'... (500 characters); "
                    "allowed keys: defaults, environments, functions, root, version")


def test_control_characters_in_a_key_are_escaped(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD + '"bad\\e[31mkey": 1\n')
    assert_problems(cli("validate", cwd=repo),
                    "deploy.yaml:10:1: bad\\x1b[31mkey: unknown key 'bad\\x1b[31mkey'; "
                    "allowed keys: defaults, environments, functions, root, version")


def test_a_long_duplicate_key_is_cut_short(repo: Path, cli: InProcessCli) -> None:
    key = "d" * 500
    (repo / "deploy.yaml").write_text(GOOD + f"{key}: 1\n{key}: 2\n")
    result = cli("validate", cwd=repo)
    assert result.exit_code == 1
    [problem, count] = result.stderr.splitlines()
    assert problem.startswith('deploy.yaml:11:1: found duplicate key "ddd') and len(problem) < 300
    assert "d..." in problem and problem.endswith("; keep one of them") and count == "1 problem(s) found"


# --- shared modules -----------------------------------------------------------------------------

def test_shared_module_that_is_the_repository_root(repo: Path, cli: InProcessCli) -> None:
    (repo / "go.mod").write_text("module example.com/all\n")
    (repo / "fn" / "go.mod").write_text("module example.com/fn\n\nreplace example.com/all => ../\n")
    assert_problems(cli("validate", cwd=repo),
                    "fn/go.mod:3: replace example.com/all => ../: . is the repository root, which a shared module may not be "
                    "(it would copy the whole repository, other functions included); move the shared code into a module "
                    "directory of its own")


def test_listed_shared_module_that_is_the_repository_root(repo: Path, cli: InProcessCli) -> None:
    (repo / "go.mod").write_text("module example.com/all\n")
    (repo / "deploy.yaml").write_text(GOOD + "    shared_modules: [.]\n")
    assert_problems(cli("validate", cwd=repo),
                    "deploy.yaml:6:5: function fn: shared module .: . is the repository root, which a shared module may "
                    "not be (it would copy the whole repository, other functions included); list a module directory of "
                    "its own")


def test_shared_module_holding_the_function(repo: Path, cli: InProcessCli) -> None:
    (repo / "functions" / "fn").mkdir(parents=True)
    (repo / "fn" / "go.mod").rename(repo / "functions" / "fn" / "go.mod")
    (repo / "functions" / "go.mod").write_text("module example.com/functions\n")
    (repo / "functions" / "fn" / "go.mod").write_text("module example.com/fn\n\nreplace example.com/functions => ..\n")
    (repo / "deploy.yaml").write_text(GOOD.replace("source: fn", "source: functions/fn"))
    assert_problems(cli("validate", cwd=repo),
                    "functions/fn/go.mod:3: replace example.com/functions => ..: functions holds the function's own source "
                    "directory, which a shared module may not (it would copy the function, and the functions beside it, "
                    "again); move the shared code into a module directory of its own")


def test_git_and_dotenv_files_never_enter_a_context(repo: Path, tmp_path: Path, cli: InProcessCli) -> None:
    """A shared module holding .git (a nested repository, a git submodule) is fine; its .git and
    every .env file stay out of the context, even when .dockerignore tries to bring them in."""
    lib = repo / "shared" / "logger"
    (lib / ".git").write_text("gitdir: ../../.git/modules/logger\n")
    for directory in (repo / "fn", lib):
        for name in (".env", ".env.local", ".envrc"):
            (directory / name).write_text(f"TOKEN={SECRET}\n")
    (repo / "fn" / ".git").mkdir()
    (repo / "fn" / ".git" / "config").write_text(f"[credential]\n  helper = {SECRET}\n")
    (repo / "fn" / ".dockerignore").write_text("!.env\n!.git\n!**/.env*\n")
    (repo / "fn" / "go.mod").write_text("module example.com/fn\n\nreplace example.com/shared/logger => ../shared/logger\n")
    out = tmp_path / "ctx"
    result = cli("context", "--function", "fn", "--out", str(out), cwd=repo)
    assert result.exit_code == 0, result.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == ["go.mod", "main.go", "shared", "shared/logger", "shared/logger/go.mod"]
    assert not any(SECRET in p.read_text() for p in out.rglob("*") if p.is_file())


# --- exact values: a trailing newline fails where it is written -----------------------------------

NEWLINE_CASES = [
    # (YAML that replaces `source: fn` line's neighbourhood, expected message after the location)
    ("  region: |\n    us-east-1\n", "  region: us-east-1", "defaults.region",
     "expected AWS region, such as us-east-1. Default: AWS_REGION, then AWS_DEFAULT_REGION, then the AWS profile's "
     "region; found 'us-east-1\\n'"),
    ('  account: |\n    123456789012\n', '  account: "123456789012"', "defaults.account",
     "expected 12-digit AWS account ID that owns ECR repositories given by name. Default: the caller's account "
     "(STS GetCallerIdentity); found '123456789012\\n'"),
    ("  - name: |\n      fn\n", "  - name: fn", "functions[0].name",
     "expected Lambda function name: 1 to 64 letters, digits, hyphens or underscores; found 'fn\\n'"),
]


@pytest.mark.parametrize("new, old, where, message", NEWLINE_CASES, ids=["region", "account", "name"])
def test_trailing_newline_in_a_defaults_value(repo: Path, new: str, old: str, where: str, message: str,
                                              cli: InProcessCli) -> None:
    text = GOOD.replace(f"{old}\n", new)
    assert text != GOOD
    (repo / "deploy.yaml").write_text(text)
    result = cli("validate", cwd=repo)
    line = text[: text.index(new)].count("\n") + 1
    col = new.index("|") + 1
    assert_problems(result, f"deploy.yaml:{line}:{col}: {where}: {message}")


FN_KEYS = {
    # key under the function (or its build) -> (value, expected start of the message after "expected ")
    "region": ("eu-west-1", "AWS region, such as us-east-1"),
    "account": ("123456789012", "12-digit AWS account ID"),
    "repository": ("team/fn", "an ECR repository: a full URI"),
    "build.source": ("fn", "a path relative to this file"),
    "build.dockerfile": ("fn/Dockerfile", "a path relative to this file"),
    "build.builder_image": ("golang:1.24-alpine", "a container image reference"),
    "build.runtime_image": ("public.ecr.aws/lambda/provided:al2-arm64", "a container image reference"),
    "build.go_build_flags": ("-trimpath", "One go build flag, without control characters"),
    "shared_modules": ("shared/logger", "a path relative to this file"),
}


@pytest.mark.parametrize("key", sorted(FN_KEYS))
def test_trailing_newline_in_a_function_value(repo: Path, key: str, cli: InProcessCli) -> None:
    value, expected = FN_KEYS[key]
    listed = key in ("build.go_build_flags", "shared_modules")
    block = f"|\n{' ' * 10}{value}\n"
    inner = f"\n{' ' * 8}- {block}" if listed else f" {block}"
    if key.startswith("build."):
        body = f"    build:\n      {key.split('.')[1]}:{inner}" + ("" if key == "build.source" else "      source: fn\n")
    else:
        body = f"    {key}:{inner}    build:\n      source: fn\n"
    head = GOOD.split("    build:\n")[0]
    text = (head.replace("    repository: fn-repo\n", "") if key == "repository" else head) + body
    (repo / "fn" / "Dockerfile").write_text("FROM scratch\n")
    (repo / "deploy.yaml").write_text(text)
    result = cli("validate", cwd=repo)
    assert result.exit_code == 1, (text, result)
    [problem, count] = result.stderr.splitlines()
    where = f"functions[0].{key}" + ("[0]" if listed else "")
    line = text.index("|")
    line_no, col = text[:line].count("\n") + 1, line - text.rfind("\n", 0, line)
    assert problem.startswith(f"deploy.yaml:{line_no}:{col}: {where}: expected {expected}"), problem
    assert problem.endswith(f"; found {value + chr(10)!r}") and count == "1 problem(s) found"


def test_trailing_newline_in_a_build_arg_name(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD + "      build_args:\n        ? |\n          GOPROXY\n        : off\n")
    assert_problems(cli("validate", cwd=repo),
                    "deploy.yaml:11:11: functions[0].build.build_args: invalid name 'GOPROXY\\n': expected letters, "
                    "digits and '_', not starting with a digit")


def test_a_value_without_the_newline_passes(repo: Path, cli: InProcessCli) -> None:
    (repo / "deploy.yaml").write_text(GOOD.replace('  account: "123456789012"\n', "  account: |-\n    123456789012\n"))
    result = cli("validate", cwd=repo)
    assert result.exit_code == 0, result.stderr
