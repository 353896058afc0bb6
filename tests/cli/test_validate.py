"""`deployer validate`: exact diagnostics, locations and exit codes for bad input, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
defaults:
  region: us-east-1
functions:
  - name: fn
    repository: fn-repo
    build:
      source: fn
"""


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full_env.update({"AWS_CONFIG_FILE": os.devnull, "NO_COLOR": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "deployer", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny monorepo: a git root with one function module."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    (tmp_path / "shared" / "logger").mkdir(parents=True)
    (tmp_path / "shared" / "logger" / "go.mod").write_text("module example.com/shared/logger\n")
    return tmp_path


def validate(repo: Path, content: str | bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    path = repo / "deploy.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run("validate", *extra, cwd=repo)


def assert_invalid(result: subprocess.CompletedProcess[str], *lines: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    got = result.stderr.splitlines()
    assert got[:-1] == list(lines)
    assert got[-1] == f"{len(lines)} problem(s) found"


def test_valid_file_exits_zero_and_names_functions(repo: Path) -> None:
    result = validate(repo, GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 file(s) valid: 1 function(s): fn\n"


def test_example_validates() -> None:
    result = run("validate", "deploy.example.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "finalize-with-error" in result.stdout


def test_misspelled_key_suggests_the_right_one(repo: Path) -> None:
    result = validate(repo, GOOD.replace("    build:\n      source", "    biuld:\n      source"))
    assert_invalid(result, "deploy.yaml:7:5: functions[0].biuld: unknown key 'biuld'; did you mean 'build'?")


def test_unknown_key_without_close_match_lists_allowed_keys(repo: Path) -> None:
    result = validate(repo, GOOD + "colour: blue\n")
    assert_invalid(result, "deploy.yaml:9:1: colour: unknown key 'colour'; allowed keys: defaults, functions, root, version")


def test_wrong_version_names_expected_and_found(repo: Path) -> None:
    result = validate(repo, GOOD.replace("version: 1", "version: 2"))
    assert_invalid(result, "deploy.yaml:1:10: version: expected 1; found 2")


def test_missing_functions_key(repo: Path) -> None:
    result = validate(repo, "version: 1\n")
    assert_invalid(result, "deploy.yaml:1:1: top level: missing required key 'functions'")


def test_missing_function_name(repo: Path) -> None:
    result = validate(repo, GOOD.replace("  - name: fn\n    repository", "  - repository"))
    assert_invalid(result, "deploy.yaml:5:5: functions[0]: missing required key 'name'")


def test_invalid_function_name(repo: Path) -> None:
    result = validate(repo, GOOD.replace("name: fn", "name: my function"))
    assert_invalid(result, "deploy.yaml:5:11: functions[0].name: expected Lambda function name: 1 to 64 letters, "
                           "digits, hyphens or underscores; found 'my function'")


def test_unknown_platform(repo: Path) -> None:
    result = validate(repo, GOOD.replace("  region: us-east-1\n", "  region: us-east-1\n  platform: linux/arm\n"))
    assert_invalid(result, "deploy.yaml:4:13: defaults.platform: expected one of linux/arm64, linux/amd64; found 'linux/arm'")


def test_invalid_region(repo: Path) -> None:
    result = validate(repo, GOOD.replace("region: us-east-1", "region: US East"))
    assert_invalid(result, "deploy.yaml:3:11: defaults.region: expected AWS region, such as us-east-1. Default: "
                           "AWS_REGION, then AWS_DEFAULT_REGION, then the AWS profile's region; found 'US East'")


def test_invalid_repository_name(repo: Path) -> None:
    result = validate(repo, GOOD.replace("repository: fn-repo", "repository: Fn_Repo"))
    assert result.returncode == 1
    assert result.stderr.startswith("deploy.yaml:6:17: functions[0].repository: expected ECR repository: a full URI")
    assert result.stderr.splitlines()[0].endswith("; found 'Fn_Repo'")


def test_wrong_type_for_build_flags(repo: Path) -> None:
    result = validate(repo, GOOD + "      go_build_flags: -trimpath\n")
    assert_invalid(result, "deploy.yaml:9:23: functions[0].build.go_build_flags: expected a list; found '-trimpath'")


def test_shared_modules_must_be_auto_or_list(repo: Path) -> None:
    result = validate(repo, GOOD + "    shared_modules: all\n")
    assert_invalid(result, "deploy.yaml:9:21: functions[0].shared_modules: expected 'auto' or a list of strings; found 'all'")


def test_empty_functions_list(repo: Path) -> None:
    result = validate(repo, "version: 1\nfunctions: []\n")
    assert_invalid(result, "deploy.yaml:2:12: functions: expected at least 1 item(s); found a list")


def test_duplicate_key(repo: Path) -> None:
    result = validate(repo, GOOD.replace("    repository: fn-repo\n", "    repository: fn-repo\n    repository: other\n"))
    assert_invalid(result, 'deploy.yaml:7:5: found duplicate key "repository" (first defined on line 5); keep one of them')


def test_tab_indentation(repo: Path) -> None:
    result = validate(repo, "version: 1\nfunctions:\n\t- name: fn\n")
    assert_invalid(result, "deploy.yaml:3:1: tab character; YAML indents with spaces only, replace the tab with spaces")


def test_unclosed_bracket_is_a_yaml_syntax_error(repo: Path) -> None:
    result = validate(repo, "version: 1\nfunctions: [\n")
    assert result.returncode == 1
    assert result.stderr.startswith("deploy.yaml:3:1: invalid YAML: ")


def test_empty_file(repo: Path) -> None:
    result = validate(repo, "# nothing yet\n\n")
    assert_invalid(result, "deploy.yaml: file is empty; it needs at least 'version: 1' and a 'functions' list")


def test_top_level_list(repo: Path) -> None:
    result = validate(repo, "- version: 1\n")
    assert_invalid(result, "deploy.yaml: not a deploy.yaml: the top level is a list, not a mapping with 'version' and 'functions' keys")


def test_bytes_that_are_not_utf8(repo: Path) -> None:
    result = validate(repo, b"version: 1\nfunctions:\n  - name: caf\xe9\n")
    assert_invalid(result, "deploy.yaml:3:14: byte 0xe9 is not valid UTF-8; save the file as UTF-8")


def test_binary_junk(repo: Path) -> None:
    result = validate(repo, bytes(range(256)))
    assert_invalid(result, "deploy.yaml: file is binary (it contains NUL bytes), not YAML text")


def test_function_names_unique_across_files(repo: Path) -> None:
    (repo / "other").mkdir()
    (repo / "other" / "deploy.yaml").write_text(GOOD.replace("source: fn", "source: ../fn"))
    result = validate(repo, GOOD)
    assert_invalid(result, "other/deploy.yaml:5:5: function name 'fn' is already used at deploy.yaml:5:5; "
                           "function names must be unique across all deploy.yaml files")


def test_source_dir_missing(repo: Path) -> None:
    result = validate(repo, GOOD.replace("source: fn", "source: fnx"))
    assert_invalid(result, "deploy.yaml:8:15: function 'fn': source directory 'fnx' does not exist; "
                           "set build.source to the function's Go module directory")


def test_source_dir_without_go_mod(repo: Path) -> None:
    result = validate(repo, GOOD.replace("source: fn", "source: shared"))
    assert_invalid(result, "deploy.yaml:8:15: function 'fn': 'shared' holds no go.mod; "
                           "build.source must be the function's Go module directory")


def test_listed_shared_module_missing(repo: Path) -> None:
    result = validate(repo, GOOD + "    shared_modules: [shared/logger, shared/s3state]\n")
    assert_invalid(result, "deploy.yaml:9:37: function 'fn': shared module 'shared/s3state' does not exist "
                           "(resolved to 'shared/s3state')")


def test_repository_uri_region_must_match_function_region(repo: Path) -> None:
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fn-repo"
    result = validate(repo, GOOD.replace("repository: fn-repo", f"repository: {uri}"))
    assert_invalid(result, f"deploy.yaml:3:11: function 'fn': region us-east-1 disagrees with repository {uri} "
                           "in eu-west-1; Lambda pulls images only from its own region's ECR")


def test_no_region_anywhere(repo: Path) -> None:
    result = validate(repo, GOOD.replace("defaults:\n  region: us-east-1\n", ""))
    assert_invalid(result, "deploy.yaml:4:17: function 'fn': no region; set 'region' (on the function or in "
                           "'defaults'), AWS_REGION, or a repository URI")


def test_region_from_environment(repo: Path) -> None:
    (repo / "deploy.yaml").write_text(GOOD.replace("defaults:\n  region: us-east-1\n", ""))
    result = run("validate", cwd=repo, env={"AWS_REGION": "eu-central-1"})
    assert result.returncode == 0, result.stderr


def test_every_problem_reported_at_once(repo: Path) -> None:
    bad = GOOD.replace("version: 1", "version: 3").replace("name: fn", "nmae: fn")
    result = validate(repo, bad)
    lines = result.stderr.splitlines()
    assert lines[-1] == "3 problem(s) found"
    assert [line.split(":")[1] for line in lines[:-1]] == ["1", "5", "5"]


def test_missing_path_argument(repo: Path) -> None:
    result = run("validate", "nowhere.yaml", cwd=repo)
    assert result.returncode == 1
    assert result.stderr == "error: nowhere.yaml: no such file or directory; pass a deploy.yaml or a directory that holds one\n"


def test_directory_without_deploy_yaml(repo: Path) -> None:
    result = run("validate", "fn", cwd=repo)
    assert result.returncode == 1
    assert result.stderr == "error: fn: no deploy.yaml or deploy.yml found in this directory or below it; pass a file or another directory\n"


def test_unknown_option_exits_one_not_two(repo: Path) -> None:
    result = run("validate", "--frobnicate", cwd=repo)
    assert result.returncode == 1
    assert "No such option: --frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


def test_directory_search_finds_nested_files(repo: Path) -> None:
    (repo / "fn" / "deploy.yaml").write_text(GOOD.replace("source: fn", "source: .").replace("name: fn", "name: nested"))
    validate(repo, GOOD)
    result = run("validate", ".", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 file(s) valid: 2 function(s): fn, nested\n"


def test_version_flag() -> None:
    result = run("--version", cwd=REPO)
    assert result.returncode == 0
    assert result.stdout.startswith("deployer ")


def test_schema_command_prints_the_shipped_schema() -> None:
    result = run("schema", cwd=REPO)
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads((REPO / "schemas" / "deploy.schema.json").read_text())


def test_help_lists_plan_and_apply() -> None:
    result = run("--help", cwd=REPO)
    assert result.returncode == 0
    for command in ("validate", "plan", "apply", "schema"):
        assert command in result.stdout


# --- odd YAML: merge keys, aliases, nesting -------------------------------------------------

MERGED = """\
version: 1
defaults: &shared
  region: us-east-1
  repository: fn-repo
functions: [{<<: *shared, name: fn, build: {source: fn}}]
"""


def test_merge_key_is_read_like_the_keys_written_out(repo: Path) -> None:
    result = validate(repo, MERGED)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 file(s) valid: 1 function(s): fn\n"


def test_problem_in_a_merged_key_points_where_the_value_is_written(repo: Path) -> None:
    result = validate(repo, MERGED.replace("region: us-east-1", "region: US East"))
    expected = ("expected AWS region, such as us-east-1. Default: AWS_REGION, then AWS_DEFAULT_REGION, "
                "then the AWS profile's region; found 'US East'")
    assert_invalid(result, f"deploy.yaml:3:11: defaults.region: {expected}",
                           f"deploy.yaml:3:11: functions[0].region: {expected}")


def test_thousand_nested_brackets(repo: Path) -> None:
    result = validate(repo, "version: 1\nfunctions: " + "[" * 1000 + "]" * 1000 + "\n")
    assert_invalid(result, "deploy.yaml: lists or mappings are nested too deeply to read; a deploy.yaml needs at most 32 levels")


def test_nesting_deeper_than_a_deploy_yaml_needs(repo: Path) -> None:
    result = validate(repo, "version: 1\nfunctions: " + "[" * 40 + "]" * 40 + "\n")
    assert_invalid(result, "deploy.yaml:2:44: lists or mappings are nested more than 32 levels deep; a deploy.yaml needs only a few")


def test_aliases_that_expand_into_a_huge_tree(repo: Path) -> None:
    levels = "".join(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7))
    result = validate(repo, GOOD + "    shared_modules:\n      - &l0 [x, x, x, x, x, x, x, x, x, x]\n" + levels.replace("  - ", "      - "))
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert lines[0].endswith(": more than 100000 values once aliases (*name) are expanded; a deploy.yaml needs far fewer")
    assert lines[-1] == "1 problem(s) found"


# --- path-like values the operating system refuses ------------------------------------------

PATH_RULE = "expected a path relative to this file: 1 to 1024 characters, no control characters"


def test_nul_in_source(repo: Path) -> None:
    result = validate(repo, GOOD.replace("source: fn", 'source: "f\\0n"'))
    assert_invalid(result, f"deploy.yaml:8:15: functions[0].build.source: {PATH_RULE}; found 'f\\x00n'")


def test_control_characters_in_root_and_shared_modules(repo: Path) -> None:
    result = validate(repo, 'root: "a\\tb"\n' + GOOD + '    shared_modules: ["shared/\\x01logger"]\n')
    assert_invalid(result, f"deploy.yaml:1:7: root: {PATH_RULE}; found 'a\\tb'",
                           f"deploy.yaml:10:22: functions[0].shared_modules[0]: {PATH_RULE}; found 'shared/\\x01logger'")


def test_dockerfile_path_of_five_thousand_characters(repo: Path) -> None:
    result = validate(repo, GOOD + f"      dockerfile: {'d' * 5000}\n")
    assert_invalid(result, f"deploy.yaml:9:19: functions[0].build.dockerfile: expected at most 1024 characters; "
                           f"found '{'d' * 60}'... (5000 characters)")


def test_path_component_too_long_for_the_file_system(repo: Path) -> None:
    result = validate(repo, GOOD + f"      dockerfile: {'d' * 300}\n")
    assert_invalid(result, f"deploy.yaml:9:19: function 'fn': build.dockerfile '{'d' * 60}'... (300 characters) cannot be "
                           "used as a file: File name too long")


def test_shared_module_in_a_symlink_loop(repo: Path) -> None:
    (repo / "loop").symlink_to("loop")
    result = validate(repo, GOOD + "    shared_modules: [loop/x]\n")
    assert_invalid(result, f"deploy.yaml:9:22: function 'fn': shared module 'loop/x' cannot be used as a directory: "
                           "Too many levels of symbolic links")


# --- ECR in the China regions ----------------------------------------------------------------

def test_china_repository_uri_is_valid(repo: Path) -> None:
    uri = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/fn-repo"
    result = validate(repo, GOOD.replace("region: us-east-1", "region: cn-north-1").replace("repository: fn-repo", f"repository: {uri}"))
    assert result.returncode == 0, result.stderr


def test_china_repository_uri_without_cn_domain(repo: Path) -> None:
    uri = "123456789012.dkr.ecr.cn-north-1.amazonaws.com/fn-repo"
    result = validate(repo, GOOD.replace("region: us-east-1", "region: cn-north-1").replace("repository: fn-repo", f"repository: {uri}"))
    assert_invalid(result, f"deploy.yaml:6:17: function 'fn': repository {uri}: ECR in cn-north-1 is at "
                           "*.amazonaws.com.cn, not *.amazonaws.com; fix the URI")


# --- what plan would refuse, found by validate -------------------------------------------------

def test_reserved_build_arg_is_flagged_at_its_key(repo: Path) -> None:
    result = validate(repo, GOOD + "      build_args:\n        GOPROXY: off\n        TARGETARCH: amd64\n")
    assert_invalid(result, "deploy.yaml:11:9: functions[0].build.build_args.TARGETARCH: TARGETARCH is set by deployer; "
                           "remove it (use builder_image, runtime_image, platform and go_build_flags instead)")


def test_invalid_build_arg_name_is_flagged_at_its_key(repo: Path) -> None:
    result = validate(repo, GOOD + "      build_args:\n        9LIVES: yes\n")
    assert_invalid(result, "deploy.yaml:10:9: functions[0].build.build_args: invalid name '9LIVES': "
                           "expected letters, digits and '_', not starting with a digit")


def test_broken_go_mod(repo: Path) -> None:
    (repo / "fn" / "go.mod").write_text('module "x\n')
    result = validate(repo, GOOD)
    assert_invalid(result, "fn/go.mod:1: unexpected newline in string; fix the go.mod syntax")


def test_replace_target_missing(repo: Path) -> None:
    (repo / "fn" / "go.mod").write_text("module example.com/fn\n\nreplace example.com/lib => ../lib\n")
    result = validate(repo, GOOD)
    assert_invalid(result, "fn/go.mod:3: replace example.com/lib => ../lib: directory lib does not exist; "
                           "fix the path or create the module there")


def test_replace_target_declares_another_module(repo: Path) -> None:
    (repo / "fn" / "go.mod").write_text("module example.com/fn\n\nreplace example.com/log => ../shared/logger\n")
    result = validate(repo, GOOD)
    assert_invalid(result, "fn/go.mod:3: replace example.com/log => ../shared/logger: shared/logger/go.mod declares "
                           "module example.com/shared/logger; make the replace's left side match the module path "
                           "example.com/shared/logger or fix that go.mod")


def test_file_named_like_the_generated_dockerfile(repo: Path) -> None:
    (repo / "fn" / "Dockerfile.deployer").write_text("FROM scratch\n")
    result = validate(repo, GOOD)
    assert_invalid(result, "fn/Dockerfile.deployer: deployer writes the Dockerfile under this name; "
                           "rename the file or set build.dockerfile to it")


def test_symlink_leading_outside_the_function(repo: Path) -> None:
    (repo / "secret").write_text("x\n")
    (repo / "fn" / "key").symlink_to("../secret")
    result = validate(repo, GOOD)
    assert_invalid(result, f"fn/key: symlink to ../secret leads outside fn (to {repo.resolve()}/secret), which the build "
                           "context cannot contain; replace it with a copy of the file or exclude it in .dockerignore")


def test_context_problems_of_every_function_are_reported(repo: Path) -> None:
    (repo / "fn" / "go.mod").write_text('module "x\n')
    (repo / "g").mkdir()
    (repo / "g" / "go.mod").write_text("module example.com/g\n")
    (repo / "g" / "Dockerfile.deployer").write_text("FROM scratch\n")
    second = "  - name: g\n    repository: g-repo\n    build:\n      source: g\n"
    result = validate(repo, GOOD + second)
    assert_invalid(result, "fn/go.mod:1: unexpected newline in string; fix the go.mod syntax",
                           "g/Dockerfile.deployer: deployer writes the Dockerfile under this name; "
                           "rename the file or set build.dockerfile to it")


def test_mapping_made_only_of_merge_keys(repo: Path) -> None:
    result = validate(repo, "version: 1\nfunctions:\n  - &fn {name: fn, region: us-east-1, repository: rr, build: {source: fn}}\n"
                            "  - <<: *fn\n")
    assert_invalid(result, "deploy.yaml:4:5: function name 'fn' is already used at deploy.yaml:3:5; "
                           "function names must be unique across all deploy.yaml files")


def test_defaults_made_only_of_a_merge_key(repo: Path) -> None:
    result = validate(repo, "version: 1\ndefaults: {<<: {region: us-east-1}}\nfunctions:\n"
                            "  - {name: fn, repository: rr, build: {source: fn}}\n")
    assert result.returncode == 0, result.stderr


def test_control_character_in_a_build_flag(repo: Path) -> None:
    result = validate(repo, GOOD + '      go_build_flags: ["-tags=a\\u0007b"]\n')
    assert_invalid(result, "deploy.yaml:9:24: functions[0].build.go_build_flags[0]: expected One go build flag, without "
                           "control characters; found '-tags=a\\x07b'")


def test_build_arg_value_of_the_wrong_type_is_not_shown(repo: Path) -> None:
    # A build arg may hold a token; a mistyped one (a number, unquoted) is described, never echoed.
    result = validate(repo, GOOD + "      build_args:\n        NPM_TOKEN: 987654321987654321\n")
    assert_invalid(result, "deploy.yaml:10:20: functions[0].build.build_args.NPM_TOKEN: expected a string; found a number")
    assert "987654321987654321" not in result.stdout + result.stderr
