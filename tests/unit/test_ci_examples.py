"""examples/ci: the GitHub Actions workflows are valid and pinned, and the IAM policies grant each
command exactly the AWS actions its code calls (tests/unit/aws_calls.py reads them from deployer/)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from tests.unit.aws_calls import CallGraph, Calls, Operations, aws_calls, typed_build

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
WORKFLOWS = sorted((CI / "workflows").glob("*.yml"))
IAM = CI / "iam"

# AWS calls outside boto3, and the IAM actions ECR checks for them (ECR docs, "IAM permissions for
# pushing an image"; a pull reads the manifest with BatchGetImage, layers and blobs with GetDownloadUrlForLayer).
REGISTRY_CALLS = {
    "deployer.docker_gateway.DockerGateway._push_once": (
        "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
        "ecr:PutImage", "ecr:BatchGetImage"),
    "deployer.registry.image_labels": ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"),  # manifest, then config blob
    # a copy between environments' repositories: read the source, upload (or mount) to the target, tag
    "deployer.image_copy._Sockets.session": (  # the sessions _Copy.__init__ makes
        "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"),
}
# Operations whose IAM action has another name.
IAM_NAMES = {"lambda:Invoke": "lambda:InvokeFunction"}
# Operations IAM does not check: GetCallerIdentity answers any valid credentials (STS docs).
NO_PERMISSION = {"sts:GetCallerIdentity"}
_IMAGE_READ = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}
_VPC = {"ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"}  # Lambda checks a VpcConfig with the caller's
# What AWS checks beyond an operation's own action, with the caller's permissions.
IMPLIED = {
    "lambda:GetFunction": {"lambda:ListTags"},  # Tags are returned only with ListTags; plan diffs them, rollback reads them
    # Role -> PassRole; Tags -> TagResource; the image is read with the caller's rights (another
    # account's repository) and Lambda adds its pull statement to the repository policy with them.
    "lambda:CreateFunction": {"iam:PassRole", "lambda:TagResource", "ecr:GetRepositoryPolicy", "ecr:SetRepositoryPolicy",
                              *_IMAGE_READ, *_VPC},
    "lambda:UpdateFunctionConfiguration": {"iam:PassRole", *_VPC},
    "lambda:UpdateFunctionCode": _IMAGE_READ,
    # tags on creation -> TagResource; a KMS key -> ECR creates its grants with the caller's rights.
    "ecr:CreateRepository": {"ecr:TagResource", "kms:CreateGrant", "kms:DescribeKey"},
}
# The policy that must grant each command what it calls: the two roles of the workflows, and one
# policy per operator command (for the people or roles that run them). Commands not listed must
# call no AWS at all.
POLICIES = {
    "plan": "plan-role-policy.json",
    "apply": "apply-role-policy.json",
    "history": "history-policy.json",
    "rollback": "rollback-policy.json",
    "prune": "prune-policy.json",
    "import": "import-policy.json",
}
LOCAL_COMMANDS = {"validate", "schema", "context", "build", "invoke"}
OIDC_PROVIDER = "token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def graph() -> CallGraph:
    return CallGraph(typed_build(ROOT / "deployer"))


@pytest.fixture(scope="module")
def calls() -> Calls:
    return aws_calls(ROOT / "deployer", Operations(), REGISTRY_CALLS)


def iam_actions(operations: set[str]) -> set[str]:
    actions = {IAM_NAMES.get(op, op) for op in operations - NO_PERMISSION}
    return actions.union(*(IMPLIED.get(op, set()) for op in operations))


def needed(command: str, graph: CallGraph, calls: Calls) -> set[str]:
    reached = graph.reachable(graph.commands()[command])
    return iam_actions(set().union(*(calls.made.get(name, set()) for name in reached)))


def granted(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def load_json(name: str) -> Any:
    return json.loads((IAM / name).read_text(encoding="utf-8"))


# -- IAM against the code --------------------------------------------------------------------------

def test_every_aws_call_of_the_code_is_understood(calls: Calls) -> None:
    assert calls.problems == []
    assert any(calls.made.values()), "no AWS call found at all: the reading is broken"


def test_the_commands_are_the_cli_s(graph: CallGraph) -> None:
    assert set(graph.commands()) == set(POLICIES) | LOCAL_COMMANDS


@pytest.mark.parametrize("command", sorted(LOCAL_COMMANDS))
def test_local_commands_call_no_aws(command: str, graph: CallGraph, calls: Calls) -> None:
    assert needed(command, graph, calls) == set()


@pytest.mark.parametrize("command", sorted(POLICIES))
def test_each_policy_grants_exactly_what_its_command_calls(command: str, graph: CallGraph, calls: Calls) -> None:
    """Every call has its action in the policy; no action of the policy goes unused."""
    want, have = needed(command, graph, calls), granted(load_json(POLICIES[command]))
    assert sorted(want - have) == [], f"{POLICIES[command]} lacks what `deployer {command}` calls"
    assert sorted(have - want) == [], f"{POLICIES[command]} grants what `deployer {command}` never calls"


def test_the_plan_role_is_read_only() -> None:
    readers = re.compile(r"[a-z0-9]+:(Get|Describe|List|BatchGet|BatchCheck)")
    assert sorted(a for a in granted(load_json(POLICIES["plan"])) if not readers.match(a)) == []


@pytest.mark.parametrize("name", sorted(p.name for p in IAM.glob("*.json")))
def test_iam_documents_are_policies_without_wildcard_actions_or_real_accounts(name: str) -> None:
    text = (IAM / name).read_text(encoding="utf-8")
    policy = json.loads(text)
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert all("*" not in a for a in actions)
    assert not re.search(r"\d{12}", text), "an account ID: write ACCOUNT_ID"


def _subjects(name: str) -> set[str]:
    (statement,) = load_json(name)["Statement"]
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::ACCOUNT_ID:oidc-provider/{OIDC_PROVIDER}"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]["StringEquals"]
    assert condition[f"{OIDC_PROVIDER}:aud"] == "sts.amazonaws.com"
    sub = condition[f"{OIDC_PROVIDER}:sub"]
    return {sub} if isinstance(sub, str) else set(sub)


def test_trust_scopes_the_plan_role_to_pull_requests_and_main_and_the_apply_role_to_production() -> None:
    assert _subjects("plan-role-trust.json") == {"repo:OWNER/REPO:pull_request", "repo:OWNER/REPO:ref:refs/heads/main"}
    assert _subjects("apply-role-trust.json") == {"repo:OWNER/REPO:environment:production"}


# -- the workflows -----------------------------------------------------------------------------------

def workflow(name: str) -> Any:
    return YAML(typ="safe").load((CI / "workflows" / name).read_text(encoding="utf-8"))


def test_workflows_validate_against_the_github_workflow_schema_offline() -> None:
    assert len(WORKFLOWS) == 2
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _uses(text: str) -> Iterator[str]:
    return (m.group(1) for m in re.finditer(r"^\s*(?:-\s*)?uses:\s*(.*)$", text, re.MULTILINE))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version_as_a_comment(path: Path) -> None:
    used = list(_uses(path.read_text(encoding="utf-8")))
    assert used
    for line in used:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+(\.\d+)*", line), line


def test_pull_requests_plan_with_the_read_only_role_and_keep_one_comment() -> None:
    jobs = workflow("deployer-plan.yml")["jobs"]
    (job,) = jobs.values()
    assert job["permissions"] == {"id-token": "write", "contents": "read", "pull-requests": "write"}
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "deployer plan --format markdown --out" in runs
    steps = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    assert "PLAN_ROLE" in steps["aws-actions/configure-aws-credentials"]["with"]["role-to-assume"]
    assert "updateComment" in steps["actions/github-script"]["with"]["script"]
    assert steps["actions/upload-artifact"]["with"]["path"].endswith("plan.json")


def test_main_applies_the_saved_plan_in_production_shards_without_cancelling() -> None:
    flow = workflow("deployer-apply.yml")
    assert flow["on"] == {"push": {"branches": ["main"]}}
    assert flow["concurrency"]["cancel-in-progress"] is False
    apply = flow["jobs"]["apply"]
    assert apply["environment"] == "production" and apply["needs"] == "plan"
    assert apply["if"] == "needs.plan.outputs.apply == 'true'"
    assert apply["strategy"]["fail-fast"] is False
    assert apply["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.plan.outputs.shards) }}"
    runs = "\n".join(step.get("run", "") for step in apply["steps"])
    assert '--shard "${SHARD}/${SHARDS}" --yes' in runs and "GITHUB_STEP_SUMMARY" in runs
    roles = [s["with"]["role-to-assume"] for job in flow["jobs"].values() for s in job["steps"]
             if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert roles == ["${{ vars.DEPLOYER_PLAN_ROLE_ARN }}", "${{ vars.DEPLOYER_APPLY_ROLE_ARN }}"]


def _decide(tmp_path: Path, summary: dict[str, Any] | None, exit_code: int = 0) -> tuple[int, dict[str, str], str]:
    """Run the plan job's Decide step (its Python, as the runner would) on a plan's JSON output."""
    (step,) = [s for s in workflow("deployer-apply.yml")["jobs"]["plan"]["steps"] if s.get("id") == "decide"]
    script, output, notes = tmp_path / "decide.py", tmp_path / "output", tmp_path / "summary"
    script.write_text(step["run"], encoding="utf-8")
    plan = tmp_path / "plan-output.json"
    plan.write_text(json.dumps({"summary": summary}) if summary is not None else "", encoding="utf-8")
    env = {**os.environ, **flow_env(), "PLAN_EXIT": str(exit_code), "PLAN_OUTPUT": str(plan),
           "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(notes)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines()) if output.exists() else {}
    return done.returncode, outputs, notes.read_text() if notes.exists() else ""


def flow_env() -> dict[str, str]:
    return {k: str(v) for k, v in workflow("deployer-apply.yml")["env"].items()}


def _summary(changes: bool = True, build: int = 0, create: int = 0, update: int = 0, blocked: int = 0) -> dict[str, Any]:
    return {"changes": changes, "create": create, "build": build, "update": update, "configure": 0, "release": 0,
            "noop": 3, "blocked": blocked}


@pytest.mark.parametrize("builds, shards", [(0, 1), (3, 1), (8, 1), (9, 2), (20, 3), (500, 8)])
def test_the_shard_count_follows_the_builds(tmp_path: Path, builds: int, shards: int) -> None:
    code, outputs, _ = _decide(tmp_path, _summary(build=builds, update=1))
    assert code == 0 and outputs["apply"] == "true"
    assert json.loads(outputs["shards"]) == list(range(1, shards + 1)) and outputs["count"] == str(shards)


def test_creates_count_as_builds(tmp_path: Path) -> None:
    assert json.loads(_decide(tmp_path, _summary(build=5, create=5))[1]["shards"]) == [1, 2]


def test_no_changes_skip_apply_cleanly(tmp_path: Path) -> None:
    code, outputs, notes = _decide(tmp_path, _summary(changes=False))
    assert (code, outputs) == (0, {"apply": "false"}) and "No changes" in notes


def test_a_blocked_plan_applies_nothing_and_fails_the_plan_job(tmp_path: Path) -> None:
    code, outputs, notes = _decide(tmp_path, _summary(build=2, blocked=1), exit_code=1)
    assert (code, outputs) == (1, {"apply": "false"}) and "1 function(s) blocked" in notes


def test_a_plan_that_failed_before_printing_applies_nothing(tmp_path: Path) -> None:
    code, outputs, _ = _decide(tmp_path, None, exit_code=1)
    assert (code, outputs) == (1, {"apply": "false"})


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_plan_and_apply_gets_the_plan_key_from_a_secret(path: Path) -> None:
    from deployer.app import PLAN_KEY_ENV

    steps = [s for job in workflow(path.name)["jobs"].values() for s in job["steps"]
             if re.search(r"^\s*deployer (plan|apply) ", s.get("run", ""), re.MULTILINE)]
    assert steps
    assert all(s["env"][PLAN_KEY_ENV] == f"${{{{ secrets.{PLAN_KEY_ENV} }}}}" for s in steps)


# -- the reading itself, on a package made for it ----------------------------------------------------

TOY = {
    "__init__.py": "",
    "gateway.py": '''
from typing import Any, Protocol


class Clients:
    def client(self, service: str, region: str) -> Any: ...


class Reader(Protocol):
    def read(self) -> None: ...


class Gateway:
    def __init__(self, clients: Clients) -> None:
        self._client = clients.client("lambda", "r")

    def read(self) -> None:
        self._client.get_function_url_config(FunctionName="f")
        self._client.get_waiter("function_updated_v2").wait(FunctionName="f")

    def write(self) -> None:
        self._client.delete_function(FunctionName="f")


class Unrelated:
    def write(self) -> None: ...
''',
    "cli.py": '''
from typing import Any

import typer

from deployer.gateway import Clients, Gateway, Reader, Unrelated

app = typer.Typer()


def use(reader: Reader, other: Unrelated) -> None:
    reader.read()
    other.write()


@app.command()
def plan() -> None:
    use(Gateway(Clients()), Unrelated())


@app.command("local")
def local_only() -> None:
    client: Any = Clients().client("s3", "r")
    client.list_buckets()
''',
}


def test_the_reading_follows_calls_through_types_and_protocols_to_their_operations(tmp_path: Path) -> None:
    for name, text in TOY.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    graph, calls = CallGraph(typed_build(tmp_path)), aws_calls(tmp_path, Operations(), {})
    assert graph.commands() == {"plan": "deployer.cli.plan", "local": "deployer.cli.local_only"}
    reached = set().union(*(calls.made.get(n, set()) for n in graph.reachable("deployer.cli.plan")))
    # the waiter polls GetFunction; Gateway.write (a method of the same name as Unrelated's) is never reached
    assert reached == {"lambda:GetFunctionUrlConfig", "lambda:GetFunction"}
    assert [p.split(" (")[0] for p in calls.problems] == ["deployer.cli.local_only uses a s3 client this test cannot follow"]
