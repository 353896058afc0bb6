"""Declared function configuration through the real CLI, against the local cloud: a change that
builds nothing, drift made outside shown and fixed, a key left out of deploy.yaml never touched,
Lambda's defaults filled so that a plan settles, and a secret from the CI environment that shows
up in no output and no plan file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable

import botocore.exceptions
import pytest
from ruamel.yaml import YAML

from tests.conftest import ImageFunction
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, lambda_config, outcomes, output
from tests.integration.test_create_cli import outcomes as creation_outcomes

pytestmark = pytest.mark.integration

Setup = Callable[..., ImageFunction]


def write_spec(monorepo: Monorepo, fn: ImageFunction, **config: Any) -> Path:
    """root/deploy.yaml declaring `fn` (finalize-with-error, arm64) with the configuration keys given."""
    entry = {"name": fn.name, "repository": fn.repository, "platform": "linux/arm64",
             "build": {"source": EXAMPLE_SOURCE, "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"]}, **config}
    data = {"version": 1, "defaults": {"region": "us-east-1",
                                       "build": {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"],
                                                 "go_env": {"GOPROXY": "off"}}},
            "functions": [entry]}
    path = monorepo.root / "deploy.yaml"
    with path.open("w") as out:
        YAML().dump(data, out)
    return path


@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path) -> Cli:
    return Cli(monorepo, tmp_path)


@pytest.fixture
def deployed(cli: Cli, monorepo: Monorepo, make_image_function: Setup) -> ImageFunction:
    """A function that runs the image of its current source (one apply), nothing declared yet."""
    fn = make_image_function("arm64")
    write_spec(monorepo, fn)
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    return fn


def json_plan(cli: Cli) -> dict[str, Any]:
    planned = cli("plan", "--format", "json")
    assert planned.returncode == 0, output(planned)
    (fp,) = json.loads(planned.stdout)["functions"]
    return dict(fp)


def test_a_configuration_change_updates_lambda_and_builds_nothing(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    write_spec(monorepo, deployed, memory=512, timeout=30, description="finalizes failed workflows")
    fp = json_plan(cli)
    assert (fp["action"], fp["reason"]["code"]) == ("configure", "configuration_differs")
    assert [c["field"] for c in fp["configuration"]] == ["memory", "timeout", "description"]
    assert [s["type"] for s in fp["steps"]] == ["UpdateFunctionConfiguration", "WaitForUpdate"]
    text = cli("plan")
    assert "~ memory: 128 -> 512" in text.stdout and "~ timeout: 3 -> 30" in text.stdout, output(text)

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {deployed.name: "updated"}
    assert "build image" not in applied.stdout and "configuration updated (memory, timeout, description)" in applied.stdout
    config = lambda_config(lambda_client, deployed.name)
    assert (config["MemorySize"], config["Timeout"], config["Description"]) == (512, 30, "finalizes failed workflows")
    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, output(again)


def test_drift_made_outside_is_shown_and_fixed_and_undeclared_keys_are_left_alone(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    write_spec(monorepo, deployed, memory=256, ephemeral_storage=1024)
    assert cli("apply", "--yes").returncode == 0
    lambda_client.update_function_configuration(FunctionName=deployed.name, MemorySize=1024, Description="set in the console",
                                                Timeout=77)

    fp = json_plan(cli)

    # memory is declared: drift; description and timeout are not: nobody's business here
    assert fp["configuration"] == [{"field": "memory", "before": "1024", "after": "256", "after_hash": None}]
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    config = lambda_config(lambda_client, deployed.name)
    assert (config["MemorySize"], config["EphemeralStorage"]["Size"]) == (256, 1024)
    assert (config["Description"], config["Timeout"]) == ("set in the console", 77)
    assert cli("plan", "--detailed-exitcode").returncode == 0


def test_keys_declared_at_lambdas_defaults_need_no_change(cli: Cli, monorepo: Monorepo, deployed: ImageFunction) -> None:
    write_spec(monorepo, deployed, memory=128, timeout=3, ephemeral_storage=512, description="", environment={})
    result = cli("plan", "--detailed-exitcode")
    assert result.returncode == 0, output(result)


def test_a_secret_from_the_environment_is_in_no_output_and_no_plan_file_and_a_changed_one_is_refused(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    write_spec(monorepo, deployed, environment={"LOG_LEVEL": "info", "API_KEY": {"from_env": "FINALIZE_API_KEY"}})
    env = {"FINALIZE_API_KEY": canary}

    planned = cli("plan", "--out", "plan.json", env=env)
    assert planned.returncode == 0, output(planned)
    assert "+ environment.API_KEY: (sensitive value 1)" in planned.stdout and "+ environment.LOG_LEVEL: info" in planned.stdout
    refused = cli("apply", "plan.json", env={"FINALIZE_API_KEY": canary + "-rotated"})
    assert refused.returncode == 1 and f"configuration of {deployed.name} changed since plan" in refused.stdout, output(refused)
    assert lambda_config(lambda_client, deployed.name).get("Environment") is None  # nothing applied
    applied = cli("--debug", "apply", "--verbose", "plan.json", env=env)

    assert applied.returncode == 0, output(applied)
    plan_file = (monorepo.root / "plan.json").read_text()
    for text in (planned.stdout, planned.stderr, refused.stdout, refused.stderr, applied.stdout, applied.stderr, plan_file):
        assert canary not in text
    assert lambda_config(lambda_client, deployed.name)["Environment"]["Variables"] == {"LOG_LEVEL": "info", "API_KEY": canary}
    assert cli("plan", "--detailed-exitcode", env=env).returncode == 0
    missing = cli("plan")
    assert missing.returncode == 1 and "FINALIZE_API_KEY, which is not set" in missing.stderr, output(missing)


def test_reserved_concurrency_is_put_shown_when_changed_outside_and_set_back(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    write_spec(monorepo, deployed, reserved_concurrency=5)
    fp = json_plan(cli)
    assert fp["configuration"] == [{"field": "reserved_concurrency", "before": None, "after": "5", "after_hash": None}]

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert "configuration updated (reserved_concurrency)" in applied.stdout, output(applied)
    assert lambda_client.get_function(FunctionName=deployed.name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, output(again)

    lambda_client.put_function_concurrency(FunctionName=deployed.name, ReservedConcurrentExecutions=40)
    drifted = cli("plan")
    assert "~ reserved_concurrency: 40 -> 5" in drifted.stdout, output(drifted)
    fixed = cli("apply", "--yes")
    assert fixed.returncode == 0, output(fixed)
    assert lambda_client.get_function(FunctionName=deployed.name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    assert cli("plan", "--detailed-exitcode").returncode == 0


def users_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags, without apply's own records for rollback (deployer:previous-image...)."""
    return {k: v for k, v in tags.items() if not k.startswith("deployer:")}


def test_declared_tags_are_set_shown_when_changed_outside_and_set_back_and_other_tags_are_left_alone(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    arn = lambda_config(lambda_client, deployed.name)["FunctionArn"]
    lambda_client.tag_resource(Resource=arn, Tags={"owner": "terraform"})
    write_spec(monorepo, deployed, tags={"team": "payments", "cost center": "4:2"})
    fp = json_plan(cli)
    assert [(c["field"], c["before"], c["after"]) for c in fp["configuration"]] == [
        ("tags.cost center", None, "4:2"), ("tags.team", None, "payments")]

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert "configuration updated (tags.cost center, tags.team)" in applied.stdout, output(applied)
    tags = users_tags(lambda_client.list_tags(Resource=arn)["Tags"])
    assert tags == {"team": "payments", "cost center": "4:2", "owner": "terraform"}
    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, output(again)

    lambda_client.tag_resource(Resource=arn, Tags={"team": "ops", "owner": "console"})
    drifted = cli("plan")
    assert "~ tags.team: ops -> payments" in drifted.stdout and "owner" not in drifted.stdout, output(drifted)
    fixed = cli("apply", "--yes")
    assert fixed.returncode == 0, output(fixed)
    assert users_tags(lambda_client.list_tags(Resource=arn)["Tags"]) == {"team": "payments", "cost center": "4:2", "owner": "console"}
    assert cli("plan", "--detailed-exitcode").returncode == 0


def test_a_function_is_created_with_its_tags_and_reserved_concurrency(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, lambda_client: Any, lambda_role_arn: str) -> None:
    fn = make_image_function("arm64")  # its repository and image; the function itself is deleted
    lambda_client.delete_function(FunctionName=fn.name)
    write_spec(monorepo, fn, role=lambda_role_arn, tags={"team": "payments"}, reserved_concurrency=3)

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert creation_outcomes(applied) == {fn.name: "created"}
    function = lambda_client.get_function(FunctionName=fn.name)
    assert (function["Tags"], function["Concurrency"]) == ({"team": "payments"}, {"ReservedConcurrentExecutions": 3})
    assert cli("plan", "--detailed-exitcode").returncode == 0


def test_tracing_is_set_and_its_drift_fixed(cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    write_spec(monorepo, deployed, tracing="Active")
    assert json_plan(cli)["configuration"] == [{"field": "tracing", "before": "PassThrough", "after": "Active", "after_hash": None}]
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, output(applied)
    assert lambda_config(lambda_client, deployed.name)["TracingConfig"] == {"Mode": "Active"}
    assert cli("plan", "--detailed-exitcode").returncode == 0
    lambda_client.update_function_configuration(FunctionName=deployed.name, TracingConfig={"Mode": "PassThrough"})
    drift = cli("plan")
    assert "~ tracing: PassThrough -> Active" in drift.stdout, output(drift)
    assert cli("apply", "--yes").returncode == 0
    assert lambda_config(lambda_client, deployed.name)["TracingConfig"] == {"Mode": "Active"}


SUBNETS = ["subnet-0bbbbbbbbbbbbbbbb", "subnet-aaaaaaaa"]  # as Lambda sorts them: plans show sets in one order
GROUP, OTHER_GROUP = "sg-0123abcd", "sg-99999999"


def shown_list(values: list[str]) -> str:
    return json.dumps(values)


def test_image_config_logging_and_vpc_are_set_settle_and_their_drift_is_fixed_keeping_what_is_not_declared(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    write_spec(monorepo, deployed, image_config={"command": ["serve", "--port=8080"]},
               logging={"format": "JSON", "application_log_level": "DEBUG"},
               vpc={"subnet_ids": list(reversed(SUBNETS)), "security_group_ids": [GROUP]})
    fp = json_plan(cli)
    assert [(c["field"], c["before"], c["after"]) for c in fp["configuration"]] == [
        ("image_config.command", "[]", '["serve", "--port=8080"]'),
        ("logging.format", "Text", "JSON"),
        ("logging.application_log_level", None, "DEBUG"),  # no level applies under Text
        ("vpc.subnet_ids", "[]", shown_list(SUBNETS)),
        ("vpc.security_group_ids", "[]", shown_list([GROUP]))]
    assert [s["type"] for s in fp["steps"]] == ["UpdateFunctionConfiguration", "WaitForUpdate"]

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    config = lambda_config(lambda_client, deployed.name)
    assert config["ImageConfigResponse"]["ImageConfig"] == {"Command": ["serve", "--port=8080"], "EntryPoint": []}
    assert config["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": f"/aws/lambda/{deployed.name}",
                                       "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"}  # Lambda's defaults filled
    assert (sorted(config["VpcConfig"]["SubnetIds"]), config["VpcConfig"]["SecurityGroupIds"]) == (SUBNETS, [GROUP])
    settled = cli("plan", "--detailed-exitcode")
    assert settled.returncode == 0, output(settled)

    # Sub-keys deploy.yaml does not declare, changed outside: not managed, no change.
    lambda_client.update_function_configuration(
        FunctionName=deployed.name, ImageConfig={"Command": ["serve", "--port=8080"], "WorkingDirectory": "/srv"},
        LoggingConfig={"LogFormat": "JSON", "LogGroup": "/shared/functions", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN"},
        VpcConfig={"SubnetIds": SUBNETS, "SecurityGroupIds": [GROUP], "Ipv6AllowedForDualStack": True})
    untouched = cli("plan", "--detailed-exitcode")
    assert untouched.returncode == 0, output(untouched)

    # Declared sub-keys changed outside: drift, shown and set back; the others are kept as they are.
    lambda_client.update_function_configuration(
        FunctionName=deployed.name, ImageConfig={"Command": ["serve"], "WorkingDirectory": "/srv"},
        LoggingConfig={"LogFormat": "Text", "LogGroup": "/shared/functions"},
        VpcConfig={"SubnetIds": SUBNETS[:1], "SecurityGroupIds": [OTHER_GROUP], "Ipv6AllowedForDualStack": True})
    drift = cli("plan", "--out", "plan.json")
    assert drift.returncode == 0, output(drift)
    for line in ('~ image_config.command: ["serve"] -> ["serve", "--port=8080"]', "~ logging.format: Text -> JSON",
                 "+ logging.application_log_level: DEBUG", f"~ vpc.subnet_ids: {shown_list(SUBNETS[:1])} -> {shown_list(SUBNETS)}",
                 f"~ vpc.security_group_ids: {shown_list([OTHER_GROUP])} -> {shown_list([GROUP])}"):
        assert line in drift.stdout, output(drift)
    assert "working_directory" not in drift.stdout and "log_group" not in drift.stdout and "ipv6" not in drift.stdout

    fixed = cli("apply", "plan.json")

    assert fixed.returncode == 0, output(fixed)
    config = lambda_config(lambda_client, deployed.name)
    assert config["ImageConfigResponse"]["ImageConfig"] == {"Command": ["serve", "--port=8080"], "EntryPoint": [],
                                                            "WorkingDirectory": "/srv"}
    assert config["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": "/shared/functions",
                                       "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"}
    assert (sorted(config["VpcConfig"]["SubnetIds"]), config["VpcConfig"]["SecurityGroupIds"]) == (SUBNETS, [GROUP])
    assert config["VpcConfig"]["Ipv6AllowedForDualStack"] is True
    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, output(again)


def test_image_config_logging_and_vpc_declared_at_lambdas_defaults_need_no_change(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction) -> None:
    write_spec(monorepo, deployed, image_config={"entry_point": [], "command": [], "working_directory": ""},
               logging={"format": "Text", "log_group": f"/aws/lambda/{deployed.name}"},
               vpc={"subnet_ids": [], "security_group_ids": [], "ipv6_allowed_for_dual_stack": False})
    result = cli("plan", "--detailed-exitcode")
    assert result.returncode == 0, output(result)


def test_leaving_json_logs_and_the_vpc_sets_lambdas_defaults_back(
        cli: Cli, monorepo: Monorepo, deployed: ImageFunction, lambda_client: Any) -> None:
    lambda_client.update_function_configuration(
        FunctionName=deployed.name, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "ERROR"},
        VpcConfig={"SubnetIds": SUBNETS, "SecurityGroupIds": [GROUP]}, ImageConfig={"EntryPoint": ["/bootstrap"]})
    write_spec(monorepo, deployed, image_config={"entry_point": []}, logging={"format": "Text"},
               vpc={"subnet_ids": [], "security_group_ids": []})

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    config = lambda_config(lambda_client, deployed.name)
    assert config["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{deployed.name}"}
    assert (config["VpcConfig"]["SubnetIds"], config["VpcConfig"]["SecurityGroupIds"]) == ([], [])
    assert config["ImageConfigResponse"]["ImageConfig"] == {"Command": [], "EntryPoint": []}
    assert cli("plan", "--detailed-exitcode").returncode == 0


def test_a_function_is_created_with_its_image_config_logging_and_vpc(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, lambda_client: Any, lambda_role_arn: str) -> None:
    fn = make_image_function("arm64")
    lambda_client.delete_function(FunctionName=fn.name)
    write_spec(monorepo, fn, role=lambda_role_arn, image_config={"command": ["serve"]},
               logging={"format": "JSON", "system_log_level": "WARN", "log_group": "/team/functions"},
               vpc={"subnet_ids": SUBNETS, "security_group_ids": [GROUP]})

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert creation_outcomes(applied) == {fn.name: "created"}
    config = lambda_config(lambda_client, fn.name)
    assert config["ImageConfigResponse"]["ImageConfig"]["Command"] == ["serve"]
    assert config["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": "/team/functions",
                                       "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"}
    assert (sorted(config["VpcConfig"]["SubnetIds"]), config["VpcConfig"]["SecurityGroupIds"]) == (SUBNETS, [GROUP])
    assert cli("plan", "--detailed-exitcode").returncode == 0


def test_the_local_clouds_lambda_refuses_a_log_level_under_text_and_changes_nothing(
        deployed: ImageFunction, lambda_client: Any) -> None:
    # As real Lambda does (tests/localcloud/moto_main.py, point 5): what deployer's validate refuses first.
    for logging in ({"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"}, {"SystemLogLevel": "WARN"}):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            lambda_client.update_function_configuration(FunctionName=deployed.name, LoggingConfig=logging, Description="x")
        assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    config = lambda_config(lambda_client, deployed.name)
    assert (config["LoggingConfig"], config["Description"]) == ({"LogFormat": "Text", "LogGroup": f"/aws/lambda/{deployed.name}"}, "")
