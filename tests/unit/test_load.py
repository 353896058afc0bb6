"""load, yamldoc and paths: ECR URIs per partition, odd YAML, paths the OS refuses, path display."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ruamel.yaml.comments import CommentedSeq

from deployer.errors import Diagnostic, InvalidSpecError
from deployer.function_config import EnvValue, FunctionConfig, ImageConfig, LoggingConfig, VpcConfig
from deployer.load import load
from deployer.paths import display, inside
from deployer.spec import EcrRepository, RepositoryRef, ecr_domain
from deployer.yamldoc import MAX_DEPTH, YamlDocument, _Copier, _TooComplex, read_yaml


def test_repository_uri_in_a_commercial_region() -> None:
    assert RepositoryRef("fn", "eu-west-1", "123456789012").resolved().uri == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fn"


def test_repository_uri_in_a_china_region_uses_the_cn_domain() -> None:
    assert RepositoryRef("team/fn", "cn-north-1", None).resolved("123456789012").uri == \
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/fn"
    assert ecr_domain("cn-northwest-1") == "amazonaws.com.cn"
    assert ecr_domain("us-gov-west-1") == "amazonaws.com"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "go.mod").write_text("module example.com/fn\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(repo: Path, text: str) -> Path:
    path = repo / "deploy.yaml"
    path.write_text(text)
    return path


def test_china_repository_uri_round_trips_through_load(repo: Path) -> None:
    uri = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/fn-repo"
    spec = load([write(repo, f"version: 1\nfunctions:\n  - name: fn\n    repository: {uri}\n    build: {{source: fn}}\n")], env={})
    assert spec.functions[0].region == "cn-north-1"
    assert spec.functions[0].repository.resolved().uri == uri


def test_merged_keys_take_the_position_where_they_are_written(repo: Path) -> None:
    text = "version: 1\ndefaults: &d\n  region: us-east-1\n  repository: fn-repo\nfunctions: [{<<: *d, name: fn}]\n"
    doc = read_yaml(write(repo, text), Path("deploy.yaml"), repo)
    assert isinstance(doc, YamlDocument)
    assert doc.data["functions"][0] == {"name": "fn", "region": "us-east-1", "repository": "fn-repo"}
    assert doc.keys[("functions", 0, "region")] == (3, 3)
    assert doc.values[("functions", 0, "repository")] == (4, 15)
    assert doc.keys[("functions", 0, "name")] == (5, 22)


def test_nesting_beyond_the_limit_is_a_diagnostic(repo: Path) -> None:
    depth = MAX_DEPTH + 2
    doc = read_yaml(write(repo, "version: 1\nfunctions: " + "[" * depth + "]" * depth + "\n"), Path("deploy.yaml"), repo)
    assert isinstance(doc, Diagnostic)
    assert "nested more than" in doc.summary and doc.line == 2


def test_a_list_that_contains_itself_is_a_cycle_not_a_recursion_error() -> None:
    seq = CommentedSeq()
    seq.append(seq)
    seq.lc.data = {0: [0, 0]}  # the position ruamel would record
    with pytest.raises(_TooComplex, match="refers to a list or mapping that contains it"):
        _Copier(YamlDocument(Path("deploy.yaml"), None)).plain(seq, ())


@pytest.mark.parametrize("build, what, rest", [
    ("{source: %s}", "build.source 'x...'", "cannot be used as a directory"),
    ("{source: fn, dockerfile: %s}", "build.dockerfile 'x...'", "cannot be used as a file"),
])
def test_paths_the_os_refuses_are_diagnostics(repo: Path, build: str, what: str, rest: str) -> None:
    long_name = "x" * 300  # within the schema's 1024 characters, beyond a file name's 255 bytes
    text = f"version: 1\ndefaults: {{region: us-east-1}}\nfunctions:\n  - name: fn\n    repository: r1\n    build: {build % long_name}\n"
    with pytest.raises(InvalidSpecError) as caught:
        load([write(repo, text)], env={})
    [problem] = caught.value.diagnostics
    assert problem.summary == f"function 'fn': {what.replace('x...', 'x' * 60)}... (300 characters) {rest}: File name too long"


def test_nul_byte_in_a_path_is_caught_even_without_the_schema(repo: Path) -> None:
    from deployer import load as load_mod

    with pytest.raises(ValueError):
        os.stat("a\0b")
    with pytest.raises(ValueError):
        load_mod._kind(repo, "a\0b")  # raised as a PATH_ERROR, which every caller turns into a diagnostic
    assert issubclass(ValueError, load_mod.PATH_ERRORS)


def test_display_is_relative_below_the_working_directory(repo: Path) -> None:
    assert display(repo / "fn" / "go.mod") == "fn/go.mod"
    assert display(Path("fn/../fn")) == "fn"
    assert display(repo) == "."
    assert display(repo.parent / "elsewhere") == str(repo.parent / "elsewhere")


def test_display_shows_a_symlink_as_itself(repo: Path) -> None:
    (repo / "link").symlink_to(repo.parent)
    assert display(repo / "link") == "link"


def test_display_sees_through_a_symlinked_working_directory(repo: Path, tmp_path_factory: pytest.TempPathFactory,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    alias = tmp_path_factory.mktemp("alias") / "repo"
    alias.symlink_to(repo)
    monkeypatch.chdir(alias)
    assert display(alias / "fn" / "go.mod") == "fn/go.mod"
    assert display(repo / "fn" / "go.mod") == "fn/go.mod"


def test_inside() -> None:
    assert inside(Path("/r"), Path("/r"))
    assert inside(Path("/r/a/b"), Path("/r"))
    assert not inside(Path("/rx"), Path("/r"))


def test_ecr_repository_is_parsed_from_a_uri_once_with_its_registry() -> None:
    repository = EcrRepository.parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/fn")
    assert repository == EcrRepository("123456789012", "cn-north-1", "team/fn")
    assert repository.registry == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert EcrRepository.parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com/fn") is None  # the wrong partition
    assert EcrRepository.parse("docker.io/library/fn") is None


# -- declared configuration ------------------------------------------------------------------------

CONFIG_HEAD = "version: 1\ndefaults:\n  region: us-east-1\n  repository: fn-repo\n"


def configs(repo: Path, text: str) -> dict[str, FunctionConfig]:
    spec = load([write(repo, CONFIG_HEAD + text)], env={})
    return {fn.name: fn.config for fn in spec.functions}


def config_problems(repo: Path, text: str) -> list[str]:
    with pytest.raises(InvalidSpecError) as caught:
        load([write(repo, CONFIG_HEAD + text)], env={})
    return [f"{p.line}:{p.column}: {p.summary}" for p in caught.value.diagnostics]


def test_configuration_keys_come_from_the_function_else_the_defaults(repo: Path) -> None:
    found = configs(repo, "  memory: 256\n  timeout: 10\n  role: arn:aws:iam::123456789012:role/r\n"
                          "functions:\n  - {name: a, build: {source: fn}, memory: 1024, description: ''}\n"
                          "  - {name: b, build: {source: fn}}\n")
    assert found["a"] == FunctionConfig(role="arn:aws:iam::123456789012:role/r", memory=1024, timeout=10, description="")
    assert found["b"] == FunctionConfig(role="arn:aws:iam::123456789012:role/r", memory=256, timeout=10)


def test_no_configuration_key_written_manages_none(repo: Path) -> None:
    assert configs(repo, "functions:\n  - {name: a, build: {source: fn}}\n")["a"] == FunctionConfig()


def test_environments_are_merged_the_functions_value_winning(repo: Path) -> None:
    found = configs(repo, "  environment: {MODE: test, LOG_LEVEL: info}\n"
                          "functions:\n  - name: a\n    build: {source: fn}\n    environment:\n      MODE: live\n"
                          "      API_KEY: {from_env: CI_API_KEY}\n  - {name: b, build: {source: fn}}\n"
                          "  - {name: c, build: {source: fn}, environment: {}}\n")
    assert found["a"].environment == {"API_KEY": EnvValue(from_env="CI_API_KEY"), "LOG_LEVEL": EnvValue("info"),
                                      "MODE": EnvValue("live")}
    assert not found["a"].resolved, "from_env values are read at plan time, not by load"
    assert found["b"].environment == {"LOG_LEVEL": EnvValue("info"), "MODE": EnvValue("test")}
    assert found["c"].environment == {"LOG_LEVEL": EnvValue("info"), "MODE": EnvValue("test")}, "{} adds nothing to the defaults"
    with pytest.raises(TypeError):
        found["a"].environment["MODE"] = EnvValue("x")  # type: ignore[index]  # frozen: a Spec is shared by threads


def test_an_empty_environment_declared_manages_it_as_empty(repo: Path) -> None:
    found = configs(repo, "functions:\n  - {name: a, build: {source: fn}, environment: {}}\n")
    assert found["a"].environment == {} and found["a"].declared == ("environment",)


def test_reserved_environment_names_are_refused(repo: Path) -> None:
    problems = config_problems(repo, "functions:\n  - name: a\n    build: {source: fn}\n    environment:\n"
                                     "      AWS_REGION: x\n      LAMBDA_TASK_ROOT: y\n      OK: z\n")
    assert problems == ["9:19: environment 'AWS_REGION': Lambda sets this variable itself; remove it",
                        "10:25: environment 'LAMBDA_TASK_ROOT': Lambda sets this variable itself; remove it"]


def test_an_environment_over_four_kilobytes_is_refused(repo: Path) -> None:
    assert configs(repo, f"functions:\n  - {{name: a, build: {{source: fn}}, environment: {{AB: '{'x' * 4094}'}}}}\n")
    problems = config_problems(repo, f"functions:\n  - {{name: a, build: {{source: fn}}, environment: {{AB: '{'x' * 4095}'}}}}\n")
    assert problems == ["6:49: function 'a': environment holds 4097 bytes of names and values; Lambda allows 4096: "
                        "move large values elsewhere (S3, SSM)"]


def test_the_four_kilobytes_are_bytes(repo: Path) -> None:
    problems = config_problems(repo, f"functions:\n  - {{name: a, build: {{source: fn}}, environment: {{AB: '{'é' * 2100}'}}}}\n")
    assert "4202 bytes" in problems[0]


@pytest.mark.parametrize("name", ["TZ", "AWS_MAX_ATTEMPTS", "AWS_NODEJS_CONNECTION_REUSE_ENABLED"])
def test_names_lambda_does_not_reserve_are_accepted(repo: Path, name: str) -> None:
    found = configs(repo, f"functions:\n  - {{name: a, build: {{source: fn}}, environment: {{{name}: 'x'}}}}\n")
    assert found["a"].environment == {name: EnvValue("x")}


def test_a_one_letter_variable_name_is_refused(repo: Path) -> None:
    with pytest.raises(InvalidSpecError):
        load([write(repo, CONFIG_HEAD + "functions:\n  - {name: a, build: {source: fn}, environment: {A: x}}\n")], env={})


def test_image_config_logging_and_vpc_come_from_the_function_else_the_defaults_as_a_whole(repo: Path) -> None:
    found = configs(repo, "  logging: {format: JSON, system_log_level: WARN}\n"
                          "  vpc: {subnet_ids: [subnet-bbbbbbbb, subnet-aaaaaaaa], security_group_ids: [sg-0123abcd]}\n"
                          "functions:\n  - {name: a, build: {source: fn}, logging: {log_group: /shared}, image_config: {command: [serve]}}\n"
                          "  - {name: b, build: {source: fn}, image_config: {working_directory: ''}}\n")
    assert found["a"].logging == LoggingConfig(log_group="/shared"), "the default's sub-keys are not merged in"
    assert found["a"].image_config == ImageConfig(command=("serve",))
    assert found["b"].logging == LoggingConfig(format="JSON", system_log_level="WARN")
    assert found["b"].image_config == ImageConfig(working_directory="")
    assert found["a"].vpc == found["b"].vpc == VpcConfig(("subnet-aaaaaaaa", "subnet-bbbbbbbb"), ("sg-0123abcd",))
    assert configs(repo, "functions:\n  - {name: a, build: {source: fn}}\n")["a"].declared == ()


def test_a_log_level_of_the_defaults_without_json_is_reported_once_where_it_is_written(repo: Path) -> None:
    problems = config_problems(repo, "  logging: {system_log_level: WARN}\n"
                                     "functions:\n  - {name: a, build: {source: fn}}\n  - {name: b, build: {source: fn}}\n"
                                     "  - {name: c, build: {source: fn}, logging: {format: JSON, system_log_level: WARN}}\n")
    assert problems == ["5:31: defaults.logging.system_log_level: a log level applies to the JSON log format only, and Lambda "
                        "takes a missing format for Text; add format: JSON, or remove the level"]


def test_a_reserved_name_in_the_defaults_is_reported_once_where_it_is_written(repo: Path) -> None:
    problems = config_problems(repo, "  environment: {AWS_REGION: x}\n"
                                     "functions:\n  - {name: a, build: {source: fn}, environment: {OK: y}}\n"
                                     "  - {name: b, build: {source: fn}}\n")
    assert len(problems) == 1 and problems[0].startswith("5:")


def test_repository_create_defaults_to_true_and_a_mapping_says_otherwise(repo: Path) -> None:
    text = ("version: 1\ndefaults:\n  region: us-east-1\n  account: '123456789012'\n  repository: {name: shared, create: false}\n"
            "functions:\n"
            "  - {name: inherits, build: {source: fn}}\n"
            "  - {name: plain, repository: fn-repo, build: {source: fn}}\n"
            "  - {name: mapping, repository: {name: fn-repo}, build: {source: fn}}\n"
            "  - name: uri\n    repository: {name: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/fn, create: false}\n"
            "    build: {source: fn}\n")
    spec = load([write(repo, text)], env={})
    refs = {fn.name: fn.repository for fn in spec.functions}
    assert refs == {
        "inherits": RepositoryRef("shared", "us-east-1", "123456789012", create=False),
        "plain": RepositoryRef("fn-repo", "us-east-1", "123456789012", create=True),
        "mapping": RepositoryRef("fn-repo", "us-east-1", "123456789012", create=True),
        "uri": RepositoryRef("team/fn", "us-east-1", "123456789012", create=False),
    }
