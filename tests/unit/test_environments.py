"""deployer.environments: the layers an environment adds, how they merge, and where their values
are said to be written. Each case is a deploy.yaml, an environment, and what the loaded
FunctionSpec of `fn` holds then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.environments import overlay, select
from deployer.errors import Diagnostic, InvalidSpecError
from deployer.function_config import EnvValue
from deployer.load import load, load_each
from deployer.yamldoc import MAX_VALUES, YamlDocument, parse_yaml

BASE = """\
version: 1
defaults:
  region: us-east-1
  repository: fn-repo
  memory: 256
  environment: {LOG_LEVEL: debug, COLOR: blue}
  build: {go_build_flags: [-trimpath]}
functions:
  - name: fn
    build: {source: fn}
    timeout: 10
    tags: {team: a}
  - name: other
    build: {source: fn}
"""


def doc(text: str) -> YamlDocument:
    parsed = parse_yaml(text.encode(), Path("deploy.yaml"))
    assert isinstance(parsed, YamlDocument), parsed
    return parsed


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "go.mod").write_text("module example.com/fn\n\ngo 1.22\n")
    return tmp_path


def loaded(repo: Path, environments: str, name: str, function: str = "fn") -> Any:
    (repo / "deploy.yaml").write_text(BASE + "environments:\n" + environments)
    return load([repo], env={}, environment=name).function(function)


# (what the environment says, the function's field, what it holds then)
CASES = [
    pytest.param("  prod: {memory: 1024}\n", lambda fn: fn.config.memory, 1024, id="replaces a default"),
    pytest.param("  prod: {timeout: 30}\n", lambda fn: fn.config.timeout, 30, id="wins over the function's own setting"),
    pytest.param("  prod: {timeout: 30, functions: {fn: {timeout: 60}}}\n", lambda fn: fn.config.timeout, 60,
                 id="its entry for the function wins over it"),
    pytest.param("  prod: {environment: {COLOR: red}}\n", lambda fn: dict(fn.config.environment),
                 {"COLOR": EnvValue("red"), "LOG_LEVEL": EnvValue("debug")}, id="mappings merge key by key"),
    pytest.param("  prod: {functions: {fn: {tags: {env: prod}}}}\n", lambda fn: dict(fn.config.tags),
                 {"env": "prod", "team": "a"}, id="a function's own mapping merges too"),
    pytest.param("  prod: {build: {go_build_flags: [-v]}}\n", lambda fn: fn.build.go_build_flags, ("-v",),
                 id="lists are replaced"),
    pytest.param("  prod: {repository: {name: fn-prod, create: false}}\n", lambda fn: (fn.repository.name, fn.repository.create),
                 ("fn-prod", False), id="a mapping replaces a string"),
    pytest.param("  prod: {account: '222222222222', region: eu-west-1}\n", lambda fn: (fn.repository.account, fn.region),
                 ("222222222222", "eu-west-1"), id="account and region"),
    pytest.param("  prod: {}\n  staging: {memory: 2048}\n", lambda fn: fn.config.memory, 256, id="another environment's settings do not apply"),
]


@pytest.mark.parametrize("environments, field, expected", CASES)
def test_an_environment_is_layered_on_defaults_and_the_function(repo: Path, environments: str, field: Any, expected: Any) -> None:
    assert field(loaded(repo, environments, "prod")) == expected


def test_an_override_for_one_function_leaves_the_others_alone(repo: Path) -> None:
    other = loaded(repo, "  prod: {functions: {fn: {memory: 4096}}}\n", "prod", "other")
    assert other.config.memory == 256


def test_the_loaded_spec_names_its_environment(repo: Path) -> None:
    (repo / "deploy.yaml").write_text(BASE + "environments:\n  prod: {}\n  staging: {}\n")
    assert load([repo], env={}, environment="staging").environment == "staging"
    assert [spec.environment for spec in load_each([repo], env={})] == ["prod", "staging"]


def test_merged_values_keep_the_position_of_the_override() -> None:
    text = BASE + "environments:\n  prod:\n    timeout: 30\n    environment: {COLOR: red}\n    functions:\n      fn: {memory: 512}\n"
    merged = overlay(doc(text), "prod")
    assert isinstance(merged, YamlDocument)
    assert merged.position(("functions", 0, "timeout")) == (17, 14)  # the environment's, not the function's
    assert merged.position(("defaults", "timeout")) == (17, 14)
    assert merged.position(("defaults", "environment", "COLOR")) == (18, 26)
    assert merged.position(("defaults", "environment", "LOG_LEVEL")) == (6, 28)  # not overridden: where it was
    assert merged.position(("functions", 0, "memory")) == (20, 20)
    assert merged.position(("functions", 0, "memory"), key=True) == (20, 12)
    assert "environments" not in merged.data


def test_overlay_leaves_the_document_read_as_it_was() -> None:
    original = doc(BASE + "environments:\n  prod: {timeout: 30, environment: {COLOR: red}}\n")
    before = repr((original.data, original.values, original.keys))
    overlay(original, "prod")
    assert repr((original.data, original.values, original.keys)) == before


def test_a_replaced_value_leaves_no_position_behind() -> None:
    text = BASE.replace("tags: {team: a}", "tags: {team: a, cost: b}") + "environments:\n  prod: {functions: {fn: {tags: x}}}\n"
    merged = overlay(doc(text), "prod")
    assert isinstance(merged, YamlDocument)
    assert ("functions", 0, "tags", "cost") not in merged.values


@pytest.mark.parametrize("name, files_environments, message", [
    (None, "  prod: {}\n  staging: {}\n",
     "deploy.yaml:15:1: this file declares environments ('prod', 'staging'): choose one with --env NAME (or DEPLOYER_ENV=NAME)"),
    ("production", "  prod: {}\n  staging: {}\n",
     "deploy.yaml:15:1: environment 'production' is not declared in this file (it declares 'prod', 'staging')"),
    ("stagin", "  prod: {}\n  staging: {}\n",
     "deploy.yaml:15:1: environment 'stagin' is not declared in this file (it declares 'prod', 'staging'); did you mean 'staging'?"),
    ("prod", None,
     "deploy.yaml: environment 'prod' is selected (--env or DEPLOYER_ENV), but this file declares no environments; add "
     "`environments:` with 'prod' to it, or leave the file out of the paths given"),
    ("prod", "  prod: {functions: {fnn: {}}}\n",
     "deploy.yaml:16:22: environment 'prod': no function 'fnn' in this file (it declares 'fn', 'other'); did you mean 'fn'?"),
])
def test_selection_problems(name: str | None, files_environments: str | None, message: str) -> None:
    text = BASE + ("environments:\n" + files_environments if files_environments else "")
    chosen = select(doc(text), name)
    assert isinstance(chosen, list) and [str(d) for d in chosen] == [message]


def test_a_file_without_environments_is_read_as_it_is_without_one() -> None:
    original = doc(BASE)
    assert select(original, None) is original


def test_validate_names_the_environments_a_problem_is_limited_to(repo: Path) -> None:
    (repo / "deploy.yaml").write_text(BASE + "environments:\n  prod: {functions: {fn: {build: {source: nowhere}}}}\n  staging: {}\n")
    with pytest.raises(InvalidSpecError) as raised:
        load_each([repo], env={})
    [problem] = raised.value.diagnostics
    assert (problem.line, problem.column) == (16, 43)  # the override's source
    assert problem.summary.startswith("function 'fn': source directory ")
    assert problem.summary.endswith("does not exist; set build.source to the function's Go module directory (in environment prod)")


def test_an_override_copied_into_many_functions_is_bounded() -> None:
    functions = "".join(f"  - name: f{i}\n    tags: {{}}\n" for i in range(200))
    tags = ", ".join(f"k{i}: v" for i in range(MAX_VALUES // 200 + 10))
    merged = overlay(doc(f"version: 1\nfunctions:\n{functions}environments:\n  prod: {{tags: {{{tags}}}}}\n"), "prod")
    assert isinstance(merged, list) and isinstance(merged[0], Diagnostic)
    assert "more than 100000 values once merged" in merged[0].summary


def big_file(environments: int, own: str) -> str:
    """A small file that aliases expand: f0's 1,800 variables (`&big`), each environment's `own`."""
    variables = ", ".join(f"V{i}: x" for i in range(1800))
    functions = "".join(f"  - {{name: f{i}, environment: {{AB: b}}}}\n" for i in range(1, 40))
    declared = "".join(f"  e{e}: {own}\n" for e in range(environments))
    return (f"version: 1\nfunctions:\n  - {{name: f0, environment: &big {{{variables}}}}}\n{functions}"
            f"environments:\n{declared}")


@pytest.mark.parametrize("own, count, values", [
    # Every environment holds the copy: the file itself is 92,000 values, checked 50 times.
    pytest.param("{environment: *big}", 50, 92063, id="the file's own values"),
    # One environment copies it into every function: 75,000 values once merged, checked 10 times.
    pytest.param("{memory: 256}", 10, 75784, id="the values merged"),
])
def test_the_schema_checks_of_all_environments_are_bounded(own: str, count: int, values: int) -> None:
    # Checked, such files took minutes to validate (50 schema checks of 90,000 values), from 20 KB.
    text = big_file(count, own).replace("e0: {memory: 256}", "e0: {environment: *big}")
    chosen = select(doc(text), "e0")
    assert isinstance(chosen, list)
    [problem] = chosen
    assert str(problem) == (
        f"deploy.yaml:43:1: environments: {count} environments of {values} values each (once aliases (*name) are expanded "
        "and overrides merged) are more than 500000 values to check; a deploy.yaml needs far fewer: copy fewer large "
        "mappings with aliases, or split the file")


def test_an_environment_within_the_bound_is_merged() -> None:
    chosen = select(doc(big_file(2, "{memory: 256}")), "e1")
    assert isinstance(chosen, YamlDocument) and chosen.data["defaults"] == {"memory": 256}


def test_validate_lists_at_most_ten_environments_a_problem_is_limited_to(repo: Path) -> None:
    declared = "".join(f"  e{e:02}: {{}}\n" for e in range(30))
    text = BASE.replace("  - name: other\n    build: {source: fn}", "  - name: other\n    build: {source: nowhere}")
    (repo / "deploy.yaml").write_text(text + f"environments:\n  prod: {{functions: {{other: {{build: {{source: fn}}}}}}}}\n{declared}")
    with pytest.raises(InvalidSpecError) as raised:
        load_each([repo], env={})
    [problem] = raised.value.diagnostics
    assert problem.summary.endswith("(in environment e00, e01, e02, e03, e04, e05, e06, e07, e08, e09 and 20 more)")


def test_a_problem_of_the_merge_names_the_environment_that_made_it(repo: Path) -> None:
    # defaults.tags is valid alone; prod's tags added make it too many: the place is defaults.tags, the cause prod.
    own = ", ".join(f"a{i}: x" for i in range(40))
    added = ", ".join(f"b{i}: x" for i in range(20))
    (repo / "deploy.yaml").write_text(BASE.replace("  memory: 256\n", f"  memory: 256\n  tags: {{{own}}}\n")
                                      + f"environments:\n  prod: {{tags: {{{added}}}}}\n  staging: {{}}\n")
    for run in (lambda: load([repo], env={}, environment="prod"), lambda: load_each([repo], env={})):
        with pytest.raises(InvalidSpecError) as raised:
            run()
        assert [str(p).replace(f"{repo}/", "") for p in raised.value.diagnostics] == [
            "deploy.yaml:6:9: defaults.tags: expected at most 50 entries; found a mapping (in environment prod, with its "
            "settings merged)"]


ALLOWED = BASE.replace("defaults:\n", "defaults:\n  allowed_accounts: ['111111111111']\n") + """\
environments:
  staging: {}
  prod: {allowed_accounts: ['222222222222', '333333333333']}
"""


def test_allowed_accounts_are_the_files_or_the_environments_with_where_they_are_written(repo: Path) -> None:
    (repo / "deploy.yaml").write_text(ALLOWED)
    staging, prod = (load([repo], env={}, environment=name) for name in ("staging", "prod"))
    [(file, allowed)] = staging.allowed_accounts.items()
    assert (file, allowed.accounts, (allowed.location.line, allowed.location.column)) == (repo / "deploy.yaml", ("111111111111",), (3, 21))
    assert prod.allowed_accounts[file].accounts == ("222222222222", "333333333333")
    assert (prod.allowed_accounts[file].location.line, prod.allowed_accounts[file].location.column) == (18, 28)
    assert staging.account_refused("111111111111") is None and prod.account_refused("333333333333") is None
    assert str(prod.account_refused("111111111111")).endswith(
        "deploy.yaml:18:28: the credentials are of AWS account 111111111111, which allowed_accounts (prod) does not list "
        "(222222222222, 333333333333); run with the credentials of an allowed account")


def test_a_file_without_allowed_accounts_allows_any(repo: Path) -> None:
    (repo / "deploy.yaml").write_text(BASE)
    spec = load([repo], env={})
    assert spec.allowed_accounts == {} and spec.account_refused("999999999999") is None


@pytest.mark.parametrize("text, message", [
    (BASE.replace("    timeout: 10\n", "    timeout: 10\n    allowed_accounts: ['111111111111']\n"), "allowed_accounts"),
    (BASE.replace("defaults:\n", "defaults:\n  allowed_accounts: []\n"), "allowed_accounts"),
    (BASE.replace("defaults:\n", "defaults:\n  allowed_accounts: ['1111']\n"), "allowed_accounts"),
], ids=["not a function's setting", "empty", "not an account"])
def test_allowed_accounts_that_cannot_be_are_refused_where_they_are_written(repo: Path, text: str, message: str) -> None:
    (repo / "deploy.yaml").write_text(text)
    with pytest.raises(InvalidSpecError) as raised:
        load([repo], env={})
    assert any(message in str(d) for d in raised.value.diagnostics), raised.value.diagnostics
