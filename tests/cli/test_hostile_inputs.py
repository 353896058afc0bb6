"""Attacks a reviewer found after issue 9 landed, kept as regression tests: a plan choosing its own
deploy.yaml, lines injected into CI logs, inputs that crashed, a directory linked out of the
repository. Each ends in a clean message and exit 1; nothing is read that should not be."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.cli.test_plan_errors import make_repo
from tests.cli_harness import InProcessCli

NO_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}


def saved_plan(repo: Path, *sources: str) -> Path:
    plan = repo / "plan.json"
    plan.write_text(json.dumps({"format_version": 7, "functions": [], "hash_key": "1" * 64, "environment": None,
                                "sources": [{"path": path, "sha256": "0" * 64} for path in sources]}))
    return plan


def test_a_plan_cannot_choose_which_yaml_file_is_the_deploy_yaml(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "docs").mkdir()
    (repo / "docs" / "sample.yaml").write_text((repo / "deploy.yaml").read_text())  # "a documentation sample"
    saved_plan(repo, "docs/sample.yaml")

    result = cli("apply", "plan.json", cwd=repo, env=NO_AWS)

    assert result.exit_code == 1
    assert result.stderr == ("error: plan.json: the plan was made from other deploy.yaml files than apply was given:\n"
                             "  'docs/sample.yaml': in the plan, not among the deploy.yaml files apply was given\n"
                             "  'deploy.yaml': given to apply, not in the plan\n"
                             "give apply the paths plan was given (deployer apply PLAN.json PATH...), or run plan again\n")


def test_a_plan_cannot_learn_the_digest_of_a_file_it_names(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / ".env").write_text("TOKEN=hunter2\n")
    saved_plan(repo, ".env", "deploy.yaml")

    result = cli("apply", "plan.json", cwd=repo, env=NO_AWS)

    assert result.exit_code == 1
    assert "'.env': in the plan, not among the deploy.yaml files apply was given" in result.stderr
    assert "sha256" not in result.stderr  # refused on its paths, before anything named is read


def test_apply_takes_the_paths_plan_was_given(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "team").mkdir()
    (repo / "deploy.yaml").rename(repo / "team" / "deploy.yaml")
    (repo / "team" / "deploy.yaml").write_text((repo / "team" / "deploy.yaml").read_text().replace("source: fn", "source: ../fn"))
    plan = saved_plan(repo, "team/deploy.yaml")
    plan.write_text(plan.read_text().replace('"0000', '"1111'))

    result = cli("apply", "plan.json", "team", cwd=repo, env=NO_AWS)

    # Past the scope: the file is the one the plan names, and its digest is what is refused.
    assert result.exit_code == 1
    assert "'team/deploy.yaml' changed since the plan was made" in result.stderr


def test_a_file_name_cannot_start_a_line_of_its_own(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    os.mkfifo(repo / "fn" / "x\n::error file=deploy.yaml::PWNED")

    result = cli("validate", cwd=repo)

    assert result.exit_code == 1
    assert not [line for line in result.stderr.splitlines() if line.lstrip().startswith("::")], result.stderr
    assert result.stderr.endswith("1 problem(s) found\n")
    assert "fn/x\\n::error file=deploy.yaml::PWNED: is a FIFO" in result.stderr


def test_numbers_too_large_for_python_are_clean_errors(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "plan.json").write_text('{"format_version": ' + "9" * 5000 + "}")
    result = cli("apply", "plan.json", cwd=repo, env=NO_AWS)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: plan.json: not a plan deployer wrote (")

    (repo / "deploy.yaml").write_text("version: " + "9" * 5000 + "\nfunctions: []\n")
    result = cli("validate", cwd=repo)
    assert (result.exit_code, result.stderr) == (1, "deploy.yaml: a number in this file is too large to read; a deploy.yaml "
                                                    "needs no such number\n1 problem(s) found\n")


def test_a_tagged_sequence_is_read_as_a_sequence(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "deploy.yaml").write_text("version: 1\nfunctions: !foo [a]\n")
    result = cli("validate", cwd=repo)
    assert (result.exit_code, result.stderr) == (1, "deploy.yaml:2:12: functions[0]: expected a mapping; found 'a'\n"
                                                    "1 problem(s) found\n")


def test_a_directory_tree_a_thousand_levels_deep_is_searched_without_crashing(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    levels = [repo / "fn" / ("d/" * depth + "d") for depth in range(1200)]  # deeper than Python's recursion limit
    for level in levels:
        os.mkdir(level)
    try:
        result = cli("validate", cwd=repo)
        assert result.exit_code == 0, result.stderr
    finally:  # shutil.rmtree (pytest's clean-up of old runs) recurses: remove it bottom up
        for level in reversed(levels):
            os.rmdir(level)


def test_a_directory_linked_out_of_the_repository_is_not_read(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "deploy.yaml").write_text("version: 1\nsecret: hunter2\nfunctions: []\n")
    (repo / "sub").symlink_to(elsewhere)

    result = cli("validate", "sub", cwd=repo)

    assert result.exit_code == 1
    assert result.stderr == (f"{repo}/sub/deploy.yaml: resolves to {elsewhere / 'deploy.yaml'}, outside the repository root {repo}; "
                             "deployer reads nothing outside it: replace the symlink with the file itself\n1 problem(s) found\n")
    assert "hunter2" not in result.stdout + result.stderr


def test_plan_out_names_apply_takes_for_a_plan_in_a_directory_that_exists(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    (repo / "other").mkdir()
    for out, message in [
        ("plan.out", "--out plan.out: a plan file's name ends in .json (that is how apply tells it from a deploy.yaml); "
                     "choose a name such as plan.json"),
        ("other/deploy.yaml", "--out other/deploy.yaml: a plan file's name ends in .json (that is how apply tells it from a "
                              "deploy.yaml); choose a name such as plan.json"),
        ("nodir/plan.json", "--out nodir/plan.json: directory nodir does not exist; create it or choose another path"),
    ]:
        result = cli("plan", "--out", out, cwd=repo, env=NO_AWS)
        assert (result.exit_code, result.stderr, result.stdout) == (1, f"error: {message}\n", ""), out


def test_a_plan_that_leaves_every_function_out_is_refused(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 2)
    plan = saved_plan(repo, "deploy.yaml")
    data = json.loads(plan.read_text())
    data["sources"][0]["sha256"] = hashlib.sha256((repo / "deploy.yaml").read_bytes()).hexdigest()
    plan.write_text(json.dumps(data))

    result = cli("apply", "plan.json", cwd=repo, env=NO_AWS)

    assert result.exit_code == 1
    assert result.stderr == ("error: plan.json: the plan was not made from these deploy.yaml files (edited after it was saved?):\n"
                             "  function fn-0 is declared but missing from the plan\n"
                             "  function fn-1 is declared but missing from the plan\nrun plan again\n")


def test_no_foreign_value_forges_a_ci_log_command(cli: InProcessCli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1)
    forged = repo / "::error title=Deploy approved::all checks passed"
    forged.mkdir()
    (forged / "deploy.yaml").write_text("version: 1\nfunctions:\n  - name: x\n    repository: r\n    bogus: 1\n"
                                        "    build: {source: ../fn}\n    region: us-east-1\n")
    (repo / "##[warning]forged").mkdir()
    (repo / "##[warning]forged" / "deploy.yaml").write_text("version: 1\nfunctions: []\n")

    result = cli("validate", cwd=repo)

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("::") or "##[" in line], result.stderr
    assert any(line.startswith(": :error title=Deploy approved::all checks passed/deploy.yaml:5:5: functions[0].bogus") for line in lines)
