"""Lambda's Invoke of an Image function in the local cloud runs the deployed image for real
(moto_main.py, point 7): deployer deploys examples/functions/finalize-with-error for linux/amd64
(the engine's platform) from the stand-in images, and boto3's `invoke` gets what the function
answers, its errors and its log as Lambda gives them; a published version keeps its own image and
configuration after $LATEST moved (point 6). No container of the runs may be left behind.

The module deploys one function twice (one build each): version 1 and the alias `live` are the
first build with STATE_BUCKET=bucket-one; $LATEST is then a build whose default key prefix is
`released/`, with STATE_BUCKET=bucket-two. Tests that need no Go build push tiny images instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import botocore.exceptions
import docker
import pytest
import requests
from ruamel.yaml import YAML

from deployer.local_invoke import FUNCTION_LABEL, LABEL
from tests.conftest import LAMBDA_TRUST_POLICY, ImageFunction, unique_name
from tests.integration.conftest import REPO, Monorepo, remove_references
from tests.integration.test_apply_cli import EXAMPLE_SOURCE, Cli, output
from tests.integration.test_local_invoke import build_fixture
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.image_invoke import LOG_TAIL_BYTES, log_result
from tests.localcloud.images import PushedImage

pytestmark = pytest.mark.integration

EVENT = {"executionId": "exec-1", "error": {"Error": "States.TaskFailed", "Cause": "upstream timed out"}}
# What an asynchronous run may take on a loaded machine (a container to start and remove).
QUICK_SECONDS = 30.0
# Run against a local cloud of its own by `python -m tests.localcloud run`: deploys IMAGE (argv 1)
# as function NAME (argv 2), starts an invocation that hangs, and exits once its container runs,
# so that the cloud is stopped under the invocation.
HANG_UNDER_STOP = """\
import base64, json, os, sys, threading, time
import boto3, docker
image, name = sys.argv[1], sys.argv[2]
aws = dict(region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL"])
ecr, lam = boto3.client("ecr", **aws), boto3.client("lambda", **aws)
registry = os.environ["DEPLOYER_REGISTRY_ENDPOINT"]
token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
user, _, password = base64.b64decode(token).decode().partition(":")
engine = docker.from_env()
engine.login(username=user, password=password, registry=registry, reauth=True)
ecr.create_repository(repositoryName=name)
engine.images.get(image).tag(f"{registry}/{name}", "hang")
digest = [line["aux"]["Digest"] for line in engine.images.push(f"{registry}/{name}", tag="hang", stream=True, decode=True)
          if "aux" in line][-1]
account = boto3.client("sts", **aws).get_caller_identity()["Account"]
role = boto3.client("iam", **aws).create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
lam.create_function(FunctionName=name, PackageType="Image", Role=role, Timeout=300, Architectures=["x86_64"],
                    Code={"ImageUri": f"{account}.dkr.ecr.us-east-1.amazonaws.com/{name}@{digest}"})
threading.Thread(target=lambda: lam.invoke(FunctionName=name, Payload=json.dumps({"mode": "hang"}).encode()),
                 daemon=True).start()
deadline = time.monotonic() + 60
while not engine.containers.list(filters={"label": f"dev.deployer.function={name}"}) and time.monotonic() < deadline:
    time.sleep(0.1)
print("running" if engine.containers.list(filters={"label": f"dev.deployer.function={name}"}) else "never ran")
"""


@dataclass(frozen=True)
class Deployed:
    name: str
    repository: str
    first_sha256: str  # version 1 and `live`
    latest_sha256: str  # $LATEST after the second apply


def write_spec(root: Path, env: dict[str, str], name: str, repository: str, role: str, bucket: str) -> None:
    function = {"name": name, "repository": repository, "platform": "linux/amd64", "role": role, "memory": 256,
                "timeout": 10, "environment": {"STATE_BUCKET": bucket},
                "build": {"source": EXAMPLE_SOURCE, "runtime_image": env["DEPLOYER_STANDIN_RUNTIME_AMD64"]}}
    data = {"version": 1,
            "defaults": {"region": "us-east-1",
                         "build": {"builder_image": env["DEPLOYER_STANDIN_BUILDER"], "go_env": {"GOPROXY": "off"}}},
            "functions": [function]}
    with (root / "deploy.yaml").open("w") as out:
        YAML().dump(data, out)


def code_sha256(lambda_client: Any, name: str, qualifier: str = "$LATEST") -> str:
    return str(lambda_client.get_function(FunctionName=name, Qualifier=qualifier)["Configuration"]["CodeSha256"])


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, local_cloud: LocalCloud) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("localcloud-invoke")
    root = base / "repo"
    shutil.copytree(REPO / "examples", root)
    (root / ".git").mkdir()  # marks the repository root, as a checkout would
    env = dict(local_cloud.env)
    cli = Cli(Monorepo(root, env), base / "tmpdir")
    lambda_client = local_cloud.client("lambda")
    role = local_cloud.client("iam").create_role(RoleName=unique_name("deployer-invoke-role"),
                                                 AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]
    name, repository = unique_name("deployer-invoke-fn"), unique_name("deployer-invoke")
    write_spec(root, env, name, repository, role, "bucket-one")
    first = cli("apply", "--yes")
    assert first.returncode == 0, output(first)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    main_go = root / EXAMPLE_SOURCE / "main.go"
    main_go.write_text(main_go.read_text().replace('cfg.keyPrefix = "executions/"', 'cfg.keyPrefix = "released/"'))
    write_spec(root, env, name, repository, role, "bucket-two")
    second = cli("apply", "--yes")
    assert second.returncode == 0, output(second)
    deployed = Deployed(name, repository, code_sha256(lambda_client, name, "1"), code_sha256(lambda_client, name))
    assert deployed.first_sha256 != deployed.latest_sha256, "the second apply deployed a new image"
    try:
        yield deployed
    finally:
        engine = local_cloud.docker()
        try:
            remove_images(local_cloud, engine, repository)
        finally:
            engine.close()


@pytest.fixture(scope="module")
def engine(local_cloud: LocalCloud) -> Iterator[docker.DockerClient]:
    client = local_cloud.docker()
    yield client
    client.close()


def remove_images(cloud: LocalCloud, engine: docker.DockerClient, repository: str) -> None:
    """The images of `repository` the engine holds (built, pushed or pulled by an Invoke)."""
    remove_references(engine, f"{cloud.registry_endpoint}/{repository}")


def containers_of(engine: docker.DockerClient, function_name: str) -> list[Any]:
    """The containers invoke_local made for `function_name` that still exist."""
    return list(engine.containers.list(all=True, filters={"label": [f"{LABEL}=1", f"{FUNCTION_LABEL}={function_name}"]}))


def invoke(lambda_client: Any, name: str, event: Any = EVENT, **kwargs: Any) -> dict[str, Any]:
    """boto3's invoke, with the payload read and, when it is JSON, decoded (`Answer`)."""
    response = dict(lambda_client.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kwargs))
    raw = response["Payload"].read()
    response["Raw"] = raw
    response["Answer"] = json.loads(raw) if raw else None
    return response


def test_invoke_runs_the_deployed_image_and_returns_its_response(
        deployed: Deployed, lambda_client: Any, engine: docker.DockerClient) -> None:
    response = invoke(lambda_client, deployed.name)

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Raw"]
    assert response["ExecutedVersion"] == "$LATEST"
    # $LATEST's image (the key prefix of the second build) and configuration (its bucket).
    assert response["Answer"] == {"executionId": "exec-1", "status": "FAILED", "category": "Dependency",
                                  "retryable": True, "stateUri": "s3://bucket-two/released/exec-1/final-state.json"}
    assert "LogResult" not in response, "the log comes only with LogType=Tail"
    assert containers_of(engine, deployed.name) == []


def test_a_function_error_comes_back_unhandled_with_the_functions_error_document(
        deployed: Deployed, lambda_client: Any, engine: docker.DockerClient) -> None:
    response = invoke(lambda_client, deployed.name, {"executionId": "exec-2"})  # no `error`: the event is refused

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["Answer"]["errorType"] == "ValidationError"
    assert "error: required" in response["Answer"]["errorMessage"], response["Answer"]
    assert containers_of(engine, deployed.name) == []


def test_log_type_tail_returns_the_execution_log_with_the_functions_lines(
        deployed: Deployed, lambda_client: Any, engine: docker.DockerClient) -> None:
    response = invoke(lambda_client, deployed.name, LogType="Tail")

    assert response["StatusCode"] == 200 and "FunctionError" not in response
    log = base64.b64decode(response["LogResult"]).decode()
    lines = log.splitlines()
    assert lines[0].startswith("START RequestId: ") and lines[0].endswith(" Version: $LATEST"), log
    request_id = lines[0].split()[2]
    assert f"END RequestId: {request_id}" in lines, log
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: "), log
    assert "\tMemory Size: 256 MB\t" in lines[-1]
    # The function's own JSON log lines for this request, in between.
    own = [json.loads(line) for line in lines[1:-2]]
    assert [(entry["msg"], entry["requestId"]) for entry in own] == \
        [("workflow failed", request_id), ("final state recorded", request_id)], log
    assert len(base64.b64decode(response["LogResult"])) <= LOG_TAIL_BYTES
    assert containers_of(engine, deployed.name) == []


def test_the_log_result_is_the_last_4_kb_of_the_log() -> None:
    lines = tuple(f"line {i:05d} " + "x" * 90 for i in range(200))
    tail = base64.b64decode(log_result(lines))
    assert len(tail) == LOG_TAIL_BYTES
    assert tail.endswith(f"{lines[-1]}\n".encode())


def test_a_published_version_and_its_alias_run_the_versions_own_image_and_configuration(
        deployed: Deployed, lambda_client: Any, engine: docker.DockerClient) -> None:
    for qualifier in ("1", "live"):
        response = invoke(lambda_client, deployed.name, Qualifier=qualifier)

        assert response["StatusCode"] == 200 and "FunctionError" not in response, response["Raw"]
        assert response["ExecutedVersion"] == "1"
        # The first build's key prefix, and version 1's bucket.
        assert response["Answer"]["stateUri"] == "s3://bucket-one/executions/exec-1/final-state.json", qualifier
    assert containers_of(engine, deployed.name) == []


def test_a_published_version_keeps_its_image_uri_and_code_sha256_after_latest_moved(
        deployed: Deployed, lambda_client: Any) -> None:
    version = lambda_client.get_function(FunctionName=deployed.name, Qualifier="1")
    latest = lambda_client.get_function(FunctionName=deployed.name)

    assert version["Configuration"]["CodeSha256"] == deployed.first_sha256
    assert version["Code"]["ImageUri"].endswith(f"/{deployed.repository}@sha256:{deployed.first_sha256}")
    assert latest["Code"]["ImageUri"].endswith(f"/{deployed.repository}@sha256:{deployed.latest_sha256}")
    assert version["Configuration"]["Environment"]["Variables"] == {"STATE_BUCKET": "bucket-one"}


def test_the_functions_image_config_is_applied_and_an_entrypoint_that_is_not_there_fails_as_in_lambda(
        deployed: Deployed, lambda_client: Any, lambda_role_arn: str, engine: docker.DockerClient) -> None:
    image_uri = lambda_client.get_function(FunctionName=deployed.name)["Code"]["ImageUri"]
    name = unique_name("deployer-invoke-entrypoint")
    lambda_client.create_function(FunctionName=name, PackageType="Image", Role=lambda_role_arn, Architectures=["x86_64"],
                                  Code={"ImageUri": image_uri}, ImageConfig={"EntryPoint": ["/no/such/bootstrap"]})

    response = invoke(lambda_client, name)

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["Answer"]["errorType"] == "Runtime.InvalidEntrypoint"
    assert "/no/such/bootstrap" in response["Answer"]["errorMessage"], response["Answer"]
    assert containers_of(engine, name) == []


def test_an_event_invocation_is_accepted_and_runs_in_the_background(
        deployed: Deployed, local_cloud: LocalCloud, lambda_client: Any, engine: docker.DockerClient) -> None:
    logs = local_cloud.client("logs")
    group = f"/aws/lambda/{deployed.name}"

    def streams() -> set[str]:
        """The group's log streams; none before the function's first run made the group (this test
        may run first of the module, on its own or on an xdist worker)."""
        try:
            return {s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]}
        except logs.exceptions.ResourceNotFoundException:
            return set()

    before = streams()

    response = lambda_client.invoke(FunctionName=deployed.name, InvocationType="Event", Payload=json.dumps(EVENT).encode())

    assert response["StatusCode"] == 202
    deadline = time.monotonic() + QUICK_SECONDS
    new: set[str] = set()
    while not new and time.monotonic() < deadline:  # the run ends by writing its log
        new = streams() - before
        time.sleep(0.2)
    assert len(new) == 1, "the event ran once"
    messages = [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=new.pop())["events"]]
    assert any(m.startswith("REPORT RequestId: ") for m in messages), messages
    assert containers_of(engine, deployed.name) == []


def test_a_request_lambda_refuses_runs_nothing(deployed: Deployed, lambda_client: Any, engine: docker.DockerClient) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        lambda_client.invoke(FunctionName=deployed.name, Payload=b"{not json")
    assert refused.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    dry = lambda_client.invoke(FunctionName=deployed.name, InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204
    assert containers_of(engine, deployed.name) == []


def test_an_image_gone_from_the_registry_is_an_error_never_a_success(
        local_cloud: LocalCloud, make_image_function: Callable[..., ImageFunction], lambda_client: Any,
        engine: docker.DockerClient, request: pytest.FixtureRequest) -> None:
    function = make_image_function("x86_64")
    request.addfinalizer(lambda: remove_images(local_cloud, engine, function.repository))
    deleted = requests.delete(f"http://{local_cloud.registry_endpoint}/v2/{function.repository}/manifests/{function.image.digest}",
                              auth=(local_cloud.credentials.username, local_cloud.credentials.password), timeout=10)
    assert deleted.status_code == 202, deleted.text

    with pytest.raises(botocore.exceptions.ClientError) as failed:
        lambda_client.invoke(FunctionName=function.name, Payload=b"{}")

    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert failed.value.response["Error"]["Code"] == "ResourceNotReadyException"
    assert function.image.lambda_uri in failed.value.response["Error"]["Message"]
    assert containers_of(engine, function.name) == []


def test_an_image_of_another_architecture_fails_as_in_lambda_without_running(
        local_cloud: LocalCloud, make_repository: Callable[..., str], push_image: Callable[..., PushedImage],
        lambda_client: Any, lambda_role_arn: str, engine: docker.DockerClient, request: pytest.FixtureRequest) -> None:
    repository, name = make_repository(), unique_name("deployer-invoke-arch")
    request.addfinalizer(lambda: remove_images(local_cloud, engine, repository))
    image = push_image(repository, "arm", marker=f"arm64 for {name}", platform="linux/arm64")
    lambda_client.create_function(FunctionName=name, PackageType="Image", Role=lambda_role_arn,
                                  Code={"ImageUri": image.lambda_uri}, Architectures=["x86_64"])

    response = invoke(lambda_client, name, {}, LogType="Tail")

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["Answer"]["errorType"] == "Runtime.InvalidEntrypoint"
    assert "exec format error" in response["Answer"]["errorMessage"]
    assert "Launch error" in base64.b64decode(response["LogResult"]).decode()
    assert containers_of(engine, name) == []


def test_stopping_the_local_cloud_during_a_run_removes_its_container(
        local_cloud: LocalCloud, engine: docker.DockerClient, tmp_path: Path) -> None:
    image = build_fixture(local_cloud, engine, "linux/amd64")  # the Runtime API fixture: mode "hang" never answers
    name = unique_name("deployer-invoke-stop")
    script = tmp_path / "hang_under_stop.py"
    script.write_text(HANG_UNDER_STOP)
    try:
        run = subprocess.run([sys.executable, "-m", "tests.localcloud", "run", "--", sys.executable, str(script), image, name],
                             cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEPLOYER_"))})
    finally:
        # By reference, never by image ID: other tests' builds of the fixture make the same image.
        # The child tags and pulls it under `name` in its own cloud's registry.
        mine = [ref for found in engine.images.list() for ref in [*found.tags, *(found.attrs.get("RepoDigests") or [])]
                if f"/{name}:" in ref or f"/{name}@" in ref]
        for reference in (image, *mine):
            with contextlib.suppress(docker.errors.ImageNotFound):
                engine.images.remove(reference, force=True, noprune=True)
    assert run.returncode == 0 and run.stdout.strip() == "running", f"{run.stdout}\n{run.stderr}"
    assert containers_of(engine, name) == [], "moto cancelled the run and removed its container before exiting"
