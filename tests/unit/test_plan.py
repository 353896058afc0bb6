"""The planner as data: desired + observed -> expected action, reason and steps."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import pytest

from deployer import explain, planfile
from deployer.errors import PlanError
from deployer.function_config import EnvValue, FieldChange, FunctionConfig, ImageConfig, LoggingConfig, ObservedConfig, VpcConfig
from deployer.plan import (
    Action,
    AssembleContext,
    BuildImage,
    Cleanup,
    CreateFunction,
    ConfigureRepository,
    CreateRepository,
    MoveAlias,
    PublishVersion,
    ReleasePlan,
    EcrLogin,
    ImageRef,
    PushImage,
    Step,
    UpdateFunctionCode,
    UpdateFunctionConfiguration,
    VerifyImage,
    WaitForActive,
    WaitForUpdate,
    Plan,
    Reason,
    ReasonCode,
    SourceFile,
    make_plan,
    plan_function,
)
from deployer.render import render
from deployer.render import summary as render_summary
from deployer.repository_config import ObservedRepository, RepositoryConfig
from deployer.spec import EcrRepository, ReleaseSettings
from deployer.state import AliasState, Desired, FunctionState, ImageState, Observed

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn-repo"
SOURCE = "sha256:" + "a" * 64
TAG = "src-" + "a" * 40
OLD = "b" * 64
NEW = "c" * 64
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

REPOSITORY = EcrRepository("123456789012", "us-east-1", "fn-repo")
DESIRED = Desired(name="fn", region="us-east-1", repository=REPOSITORY, content_tag=TAG, source_digest=SOURCE,
                  architecture="arm64", platform="linux/arm64", spec_file="deploy.yaml")


def running(code: str, arch: str = "arm64", **extra: object) -> FunctionState:
    return FunctionState(exists=True, package_type="Image", code_sha256=code, architectures=(arch,), **extra)  # type: ignore[arg-type]


def image(digest: str | None, media_type: str = DOCKER_V2) -> ImageState:
    return ImageState(repository_exists=True, digest=f"sha256:{digest}" if digest else None,
                      media_type=media_type if digest else None)


UPDATE_STEPS = (UpdateFunctionCode("fn", ImageRef(REPO, digest=f"sha256:{NEW}"), "arm64"), WaitForUpdate("fn"))
BUILD_STEPS = (
    EcrLogin("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
    AssembleContext(SOURCE),
    BuildImage("linux/arm64"),
    PushImage(ImageRef(REPO, tag=TAG)),
    VerifyImage(ImageRef(REPO, tag=TAG)),
    UpdateFunctionCode("fn", ImageRef(REPO, tag=TAG), "arm64"),
    WaitForUpdate("fn"),
    Cleanup(),
)
# The key of the secrets' hashes in the tests' plans (a real plan draws a new one).
HASH_KEY = bytes(range(32))

# A creation from the image ECR has: pinned to its digest; without one, built first and created
# from the content tag (apply pins the digest it pushed).
CREATE_STEPS = (CreateFunction("fn", ImageRef(REPO, digest=f"sha256:{NEW}"), "arm64"), WaitForActive("fn"))
CREATE_BUILDING_STEPS = (*BUILD_STEPS[:5], CreateFunction("fn", ImageRef(REPO, tag=TAG), "arm64"), WaitForActive("fn"), Cleanup())

# Planner cases as data: one file per case in plan_cases/, run by test_planner_case. Adding a
# case is adding a file: `function` and `image` are what AWS reports (FunctionState and
# ImageState fields; `function.config`: ObservedConfig fields), `config` the configuration
# deploy.yaml declares (an environment value is a literal or {"from_env": NAME}, read from the
# case's `env`), `repository_create` deploy.yaml's `repository.create` (default true);
# `action`, `reason`, `configuration` (the FieldChanges, hashes under HASH_KEY) and
# `create_repository` (default false) what the planner must decide; the steps follow from the
# action, the changed keys and whether ECR has the image (expected_steps).
CASE_DIR = Path(__file__).parent / "plan_cases"
CASE_FILES = sorted(CASE_DIR.glob("*.json"))
# A repository deployer creates gets every setting (the defaults fill what deploy.yaml does not declare).
CREATED_WITH = ("scan_on_push: true", "tag_mutability: IMMUTABLE", "encryption: AES256", "untagged_expiry_days: 14")
STEPS_OF = {Action.UPDATE: UPDATE_STEPS, Action.BUILD: BUILD_STEPS, Action.CONFIGURE: (), Action.RELEASE: (), Action.NOOP: (),
            Action.BLOCKED: ()}


def expected_steps(action: Action, configuration: tuple[FieldChange, ...], create_repository: bool = False,
                   in_ecr: bool = False, repository_keys: tuple[str, ...] = (), release: ReleasePlan | None = None) -> tuple[Step, ...]:
    """expected_steps_without_release's, a release's (publish, move the alias) before the cleanup."""
    steps = expected_steps_without_release(action, configuration, create_repository, in_ecr, repository_keys)
    if release is None:
        return steps
    released = (PublishVersion("fn", release.alias, release.current_version), MoveAlias("fn", str(release.alias), release.current_version))
    cleanup = steps[-1:] if steps and isinstance(steps[-1], Cleanup) else ()
    return (*steps[:len(steps) - len(cleanup)], *released, *cleanup)


def expected_steps_without_release(action: Action, configuration: tuple[FieldChange, ...], create_repository: bool = False,
                                   in_ecr: bool = False, repository_keys: tuple[str, ...] = ()) -> tuple[Step, ...]:
    """The action's steps, with the configuration update (and its wait) before the code update:
    after the image is verified, so that a failed build changes nothing. A creation takes its
    whole configuration at once (no configuration step); a missing repository is created first,
    the changed settings of one that exists set first."""
    repository: tuple[Step, ...] = ((CreateRepository(REPO, CREATED_WITH),) if create_repository
                                    else (ConfigureRepository(REPO, repository_keys),) if repository_keys else ())
    if action is Action.CREATE:
        return (*repository, *(CREATE_STEPS if in_ecr else CREATE_BUILDING_STEPS))
    keys = tuple(dict.fromkeys(change.field.split(".")[0] for change in configuration))
    steps = (*repository, *STEPS_OF[action])
    if not keys or action is Action.BLOCKED:
        return steps
    configure = (UpdateFunctionConfiguration("fn", keys), WaitForUpdate("fn"))
    at = next((i for i, step in enumerate(steps) if isinstance(step, UpdateFunctionCode)), len(steps))
    return (*steps[:at], *configure, *steps[at:])


class Case(NamedTuple):
    desired: Desired
    observed: Observed
    action: Action
    reason: Reason
    configuration: tuple[FieldChange, ...]
    create_repository: bool
    repository_changes: tuple[FieldChange, ...]
    release: ReleasePlan | None


def declared(data: dict[str, Any], env: dict[str, str]) -> FunctionConfig:
    """A case's `config` as deploy.yaml gives it, from_env values resolved from `env`."""
    environment = data.pop("environment", None)
    values = None if environment is None else MappingProxyType({
        name: EnvValue(from_env=v["from_env"]) if isinstance(v, dict) else EnvValue(value=v) for name, v in environment.items()})
    return FunctionConfig(**config_settings(data), environment=values).resolve(env)


def config_settings(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its image_config, logging and vpc (mappings of their sub-keys, lists for tuples;
    null: unreadable) as function_config values."""
    kinds = {"image_config": ImageConfig, "logging": LoggingConfig, "vpc": VpcConfig}
    return {**data, **{key: kinds[key](**{k: tuple(v) if isinstance(v, list) else v for k, v in data[key].items()})
                       for key in kinds if isinstance(data.get(key), dict)}}


def load_case(path: Path) -> Case:
    case = json.loads(path.read_text())
    function = dict(case["function"])
    observed_config = ObservedConfig(**config_settings(function.pop("config", {})))
    state = FunctionState(**{**function, "architectures": tuple(function.get("architectures", ())), "config": observed_config})
    reason = case["reason"]
    settings = dict(case.get("repository_config", {}))
    if "lambda_pull_accounts" in settings:
        settings["lambda_pull_accounts"] = tuple(settings["lambda_pull_accounts"])
    desired = replace(DESIRED, config=declared(dict(case.get("config", {})), case.get("env", {})),
                      create_repository=case.get("repository_create", True), repository_config=RepositoryConfig(**settings))
    seen = dict(case["repository"]) if "repository" in case else None
    if seen is not None and "lambda_pull_accounts" in seen:
        seen["lambda_pull_accounts"] = tuple(seen["lambda_pull_accounts"])
    if "release" in case:
        desired = replace(desired, release=ReleaseSettings(alias=case["release"].get("alias")))
    alias = AliasState(**case["alias"]) if "alias" in case else None
    return Case(desired, Observed(state, ImageState(**case["image"]), None if seen is None else ObservedRepository(**seen), alias),
                Action[case["action"].upper()],
                Reason(ReasonCode(reason["code"]), reason["detail"], reason["update_in_progress"]),
                tuple(FieldChange(**change) for change in case.get("configuration", [])), case.get("create_repository", False),
                tuple(FieldChange(**change) for change in case.get("repository_changes", [])),
                ReleasePlan(**case["release_plan"]) if "release_plan" in case else None)


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_planner_case(path: Path) -> None:
    case = load_case(path)
    result = plan_function(case.desired, case.observed, HASH_KEY)
    assert (result.action, result.reason, result.configuration, result.create_repository, result.repository_changes,
            result.release) == (case.action, case.reason, case.configuration, case.create_repository, case.repository_changes,
                                case.release)
    settings = tuple(dict.fromkeys(c.field.split(".")[1] for c in case.repository_changes))
    assert result.steps == expected_steps(case.action, case.configuration, case.create_repository,
                                          case.observed.image.digest is not None, settings, case.release)
    assert result.current_digest == case.observed.function.running_digest
    assert result.desired_digest == case.observed.image.digest
    assert result.current_architectures == case.observed.function.architectures


def test_planner_cases_cover_configuration_with_every_changing_action() -> None:
    cases = [load_case(path) for path in CASE_FILES]
    with_configuration = {case.action for case in cases if case.configuration}
    assert with_configuration == {Action.CONFIGURE, Action.UPDATE, Action.BUILD, Action.CREATE}
    assert any(case.action is Action.BLOCKED and case.desired.config.declared for case in cases)
    assert any(case.action is Action.NOOP and case.desired.config.declared for case in cases)


def test_configuration_steps_sit_between_the_verified_image_and_the_code_update() -> None:
    build = load_case(CASE_DIR / "build-with-configuration.json")
    steps = [type(step).__name__ for step in plan_function(build.desired, build.observed, HASH_KEY).steps]
    assert steps == ["EcrLogin", "AssembleContext", "BuildImage", "PushImage", "VerifyImage", "UpdateFunctionConfiguration",
                     "WaitForUpdate", "UpdateFunctionCode", "WaitForUpdate", "Cleanup"]
    update = load_case(CASE_DIR / "update-with-configuration-and-a-secret.json")
    fp = plan_function(update.desired, update.observed, HASH_KEY)
    assert fp.steps[0] == UpdateFunctionConfiguration("fn", ("ephemeral_storage", "environment"))
    assert fp.steps[0].describe() == "update the configuration of fn (ephemeral_storage, environment)"


def test_planner_cases_are_there() -> None:
    assert len(CASE_FILES) >= 15


def test_plan_keeps_the_revision_id_for_apply() -> None:
    result = plan_function(DESIRED, Observed(running(OLD, revision_id="rev-7"), image(NEW)))
    assert result.revision_id == "rev-7"


def test_plan_orders_functions_by_name_and_counts_changes() -> None:
    pairs = [(replace(DESIRED, name=name), Observed(running(code), image(NEW))) for name, code in (("b", OLD), ("a", NEW))]
    plan = make_plan(pairs)
    assert [fp.name for fp in plan.functions] == ["a", "b"]
    assert plan.has_changes and not plan.blocked
    assert plan.counts()[Action.NOOP] == 1 and plan.counts()[Action.UPDATE] == 1


def test_plan_without_changes_has_no_changes() -> None:
    plan = make_plan([(DESIRED, Observed(running(NEW), image(NEW)))])
    assert not plan.has_changes


SOURCES = (SourceFile("deploy.yaml", "d" * 64), SourceFile("team/deploy.yaml", "e" * 64))


def saved(plan: Plan) -> Plan:
    """`plan` as `deployer plan --out` saves it: with the deploy.yaml files it was made from."""
    return replace(plan, sources=SOURCES)


def as_saved(plan: Plan) -> dict[str, Any]:
    """The JSON a plan file holds, read back."""
    data: dict[str, Any] = json.loads(planfile.to_json(plan))
    return data


def every_case() -> Plan:
    """Every planner case as one plan, each function named after its case."""
    cases = [(path.stem, load_case(path)) for path in CASE_FILES]
    return make_plan([(replace(case.desired, name=name), case.observed) for name, case in cases], HASH_KEY)


def test_saved_plan_round_trips_exactly() -> None:
    plan = saved(every_case())
    assert any(fp.configuration for fp in plan.functions)
    loaded = planfile.from_dict(as_saved(plan))
    assert loaded == plan
    assert loaded.hash_key == HASH_KEY.hex()
    assert [fp.configuration for fp in loaded.functions] == [fp.configuration for fp in plan.functions]


def test_to_dict_is_the_json_a_plan_file_holds() -> None:
    plan = saved(every_case())
    assert planfile.to_dict(plan) == as_saved(plan)
    assert planfile.from_dict(planfile.to_dict(plan)) == plan


def test_a_saved_plan_holds_tokens_and_hashes_of_secrets_never_their_values() -> None:
    case = load_case(CASE_DIR / "update-with-configuration-and-a-secret.json")
    plan = saved(make_plan([(case.desired, case.observed)], HASH_KEY))
    saved_json = planfile.to_json(plan)
    assert "s3cret-from-ci" not in saved_json and "CI_API_KEY" not in saved_json
    [entry] = [change for change in as_saved(plan)["functions"][0]["configuration"] if change["field"] == "environment.API_KEY"]
    assert entry == {"field": "environment.API_KEY", "before": None, "after": "(sensitive value 1)",
                     "after_hash": hmac.new(HASH_KEY, b"s3cret-from-ci", hashlib.sha256).hexdigest()}
    for fmt in ("text", "markdown", "json"):
        assert "s3cret-from-ci" not in render(plan, fmt)


def test_saved_plan_of_another_format_version_is_refused() -> None:
    data = planfile.to_dict(saved(make_plan([(DESIRED, Observed(running(NEW), image(NEW)))])))
    data["format_version"] = 99
    with pytest.raises(PlanError, match="format_version 99 is not supported"):
        planfile.from_dict(data)


def _damage(data: dict[str, Any], change: str) -> None:
    fp = data["functions"][0]
    if change == "version is true":
        data["format_version"] = True
    elif change == "action is a number":
        fp["action"] = 5
    elif change == "unknown action":
        fp["action"] = "destroy"
    elif change == "steps removed from an update":
        fp["steps"] = []
    elif change == "update pointed at another image":
        fp["steps"][0]["image"]["digest"] = "sha256:" + "f" * 64
    elif change == "unknown step":
        fp["steps"].append({"type": "DeleteFunction"})
    elif change == "desired field missing":
        del fp["desired"]["content_tag"]
    elif change == "functions not a list":
        data["functions"] = {"fn": fp}
    elif change == "architecture edited with its step":
        fp["desired"]["architecture"] = "x86_64"
        fp["steps"][0]["architecture"] = "x86_64"
    elif change == "function planned twice":
        data["functions"].append(dict(fp))
    elif change == "region edited":
        fp["desired"]["region"] = "eu-west-1"
    elif change == "content tag edited":
        fp["desired"]["content_tag"] = "latest"
    elif change == "no sources":
        data["sources"] = []
    elif change == "source outside the checkout":
        data["sources"][0]["path"] = "../elsewhere/deploy.yaml"
    elif change == "absolute source":
        data["sources"][0]["path"] = "/etc/deploy.yaml"
    elif change == "source digest not hex":
        data["sources"][0]["sha256"] = "z" * 64
    elif change == "source listed twice":
        data["sources"][1] = dict(data["sources"][0])
    elif change == "no hash key":
        del data["hash_key"]
    elif change == "hash key not hex":
        data["hash_key"] = "k" * 64


@pytest.mark.parametrize("change", ["version is true", "action is a number", "unknown action", "steps removed from an update",
                                    "update pointed at another image", "unknown step", "desired field missing",
                                    "functions not a list", "architecture edited with its step", "function planned twice",
                                    "region edited", "content tag edited", "no sources", "source outside the checkout",
                                    "absolute source", "source digest not hex", "source listed twice", "no hash key",
                                    "hash key not hex"])
def test_damaged_saved_plan_is_refused(change: str) -> None:
    data = as_saved(saved(make_plan([(DESIRED, Observed(running(OLD), image(NEW)))], HASH_KEY)))
    planfile.from_dict(copy.deepcopy(data))  # undamaged, it loads: the damage is what is refused
    _damage(data, change)
    with pytest.raises(PlanError, match="(damaged plan|is not supported).*run plan again"):
        planfile.from_dict(data, "plan.json")


def _damage_configuration(fp: dict[str, Any], change: str) -> None:
    entries = fp["configuration"]
    if change == "unknown field of an entry":
        entries[0]["shown"] = "x"
    elif change == "entry not a mapping":
        entries[0] = "memory"
    elif change == "hash not hex":
        entries[1]["after_hash"] = "Z" * 64
    elif change == "hash of the wrong length":
        entries[1]["after_hash"] = "ab" * 8
    elif change == "unknown key":
        entries[0]["field"] = "runtime"
    elif change == "unknown key under environment":
        entries[0]["field"] = "layers.X"
    elif change == "environment variable name with a control character":
        entries[1]["field"] = "environment.A\x1b[2J"  # an escape sequence
    elif change == "value not a string":
        entries[0]["after"] = 1024
    elif change == "configuration not a list":
        fp["configuration"] = {"memory": "512"}
    elif change == "a change without its step":
        entries.append({"field": "memory", "before": "128", "after": "10240", "after_hash": None})
    elif change == "a step without its change":
        del entries[0]
    elif change == "the step's keys edited":
        fp["steps"][0]["keys"] = ["environment"]
    elif change == "the step's keys not a list":
        fp["steps"][0]["keys"] = "ephemeral_storage"
    elif change == "the configuration steps removed":
        del fp["steps"][:2]


CONFIGURATION_DAMAGE = {
    "unknown field of an entry": "functions[0].configuration[0] has a key deployer does not know: 'shown'",
    "entry not a mapping": "functions[0].configuration[0] is str, not dict",
    "hash not hex": "functions[0].configuration[1].after_hash is not 64 lowercase hex digits",
    "hash of the wrong length": "functions[0].configuration[1].after_hash is not 64 lowercase hex digits",
    "unknown key": "functions[0].configuration[0].field 'runtime' is not a setting deployer manages",
    "unknown key under environment": "functions[0].configuration[0].field 'layers.X' is not a setting deployer manages",
    "environment variable name with a control character":
        "functions[0].configuration[1].field is not a printable value of at most 1024 characters",
    "value not a string": "functions[0].configuration[0].after is int, not ",  # then the types it may be
    "configuration not a list": "functions[0].configuration is dict, not list",
    "a change without its step": "functions[0].steps are not the steps of a update of fn",
    "a step without its change": "functions[0].steps are not the steps of a update of fn",
    "the step's keys edited": "functions[0].steps are not the steps of a update of fn",
    "the step's keys not a list": "functions[0].steps[0].keys is str, not list",
    "the configuration steps removed": "functions[0].steps are not the steps of a update of fn",
}


@pytest.mark.parametrize("change", CONFIGURATION_DAMAGE)
def test_damaged_configuration_of_a_saved_plan_is_refused_with_what_is_wrong(change: str) -> None:
    case = load_case(CASE_DIR / "update-with-configuration-and-a-secret.json")
    data = as_saved(saved(make_plan([(case.desired, case.observed)], HASH_KEY)))
    planfile.from_dict(copy.deepcopy(data))
    _damage_configuration(data["functions"][0], change)
    with pytest.raises(PlanError) as caught:
        planfile.from_dict(data, "plan.json")
    message = str(caught.value)
    assert message.startswith(f"plan.json: damaged plan ({CONFIGURATION_DAMAGE[change]}") and message.endswith("); run plan again")
    assert "\x1b" not in message


@pytest.mark.parametrize("change", ["blocked with changes", "no change with changes", "configuration update of nothing",
                                    "a sub-key of memory", "tags without a key", "a tag key of 129 characters",
                                    "a sub-key of reserved_concurrency", "logging without a sub-key", "a sub-key vpc has not",
                                    "a sub-key of image_config in Lambda's spelling"])
def test_planfile_refuses_configuration_the_planner_never_writes(change: str) -> None:
    case = load_case(CASE_DIR / "update-with-configuration-and-a-secret.json")
    data = as_saved(saved(make_plan([(case.desired, case.observed)], HASH_KEY)))
    fp = data["functions"][0]
    if change == "blocked with changes":
        fp["action"], fp["steps"] = "blocked", []
    elif change == "no change with changes":
        fp["action"], fp["steps"] = "noop", []
    elif change == "configuration update of nothing":
        fp["action"], fp["steps"], fp["configuration"] = "configure", [], []
    elif change == "a sub-key of memory":
        fp["configuration"][0]["field"] = "ephemeral_storage.Size"
    elif change == "tags without a key":
        fp["configuration"][0]["field"] = "tags"
    elif change == "a tag key of 129 characters":
        fp["configuration"][0]["field"] = "tags." + "k" * 129
    elif change == "a sub-key of reserved_concurrency":
        fp["configuration"][0]["field"] = "reserved_concurrency.Value"
    elif change == "logging without a sub-key":
        fp["configuration"][0]["field"] = "logging"
    elif change == "a sub-key vpc has not":
        fp["configuration"][0]["field"] = "vpc.vpc_id"
    elif change == "a sub-key of image_config in Lambda's spelling":
        fp["configuration"][0]["field"] = "image_config.Command"
    with pytest.raises(PlanError, match="damaged plan"):
        planfile.from_dict(data, "plan.json")


def test_a_saved_plan_of_image_config_logging_and_vpc_changes_round_trips() -> None:
    case = load_case(CASE_DIR / "configure-image-config-logging-and-vpc-declared-sub-keys-only.json")
    plan = saved(make_plan([(case.desired, case.observed)], HASH_KEY))
    assert planfile.from_dict(as_saved(plan)) == plan
    assert plan.functions[0].steps[0] == UpdateFunctionConfiguration("fn", ("image_config", "logging", "vpc"))
    out = render(plan, "text")
    assert '~ image_config.command: ["serve"] -> ["serve", "--port=8080"]' in out
    assert '~ vpc.security_group_ids: ["sg-99999999"] -> ["sg-0123abcd"]' in out


def test_text_render_shows_steps_and_summary() -> None:
    plan = make_plan([(DESIRED, Observed(running(OLD), image(None)))])
    out = render(plan, "text")
    assert "+ fn: build, push and update" in out
    assert "    3. build image for linux/arm64" in out
    assert out.rstrip().endswith("Plan: 1 to build, 0 unchanged")


def test_markdown_render_has_a_summary_table_and_collapsed_details() -> None:
    plan = make_plan([(DESIRED, Observed(running(OLD), image(NEW)))])
    out = render(plan, "markdown")
    assert "| `~` | `fn` | `sha256:bbbbbbbbbbbb` | `sha256:cccccccccccc` | update | runs sha256:bbbbbbbbbbbb" in out
    assert "<details>" in out and "</details>" in out


def test_json_render_has_format_version() -> None:
    out = json.loads(render(make_plan([(DESIRED, Observed(running(NEW), image(NEW)))]), "json"))
    assert out["format_version"] == 7
    assert out["functions"][0]["action"] == "noop"
    assert out["summary"]["changes"] is False


# -- creating missing repositories and functions ---------------------------------------------------

def case_plan(*names: str) -> Plan:
    """The plan of the named cases, each function named after its case, saved with its sources."""
    cases = [(name, load_case(CASE_DIR / f"{name}.json")) for name in names]
    return saved(make_plan([(replace(case.desired, name="fn" if len(names) == 1 else name), case.observed)
                            for name, case in cases], HASH_KEY))


def test_a_missing_function_without_a_role_says_to_add_one() -> None:
    plan = case_plan("blocked-function-missing")
    [fp] = plan.functions
    assert (fp.action, fp.steps, fp.create_repository) == (Action.BLOCKED, (), False)
    assert explain.reason(fp) == ("function fn does not exist in us-east-1, and deploy.yaml gives no role to create it with; "
                                  "add `role: <ARN of its execution role>` to the function (or to defaults)")
    assert plan.blocked


def test_a_repository_deploy_yaml_says_not_to_create_blocks_with_its_message() -> None:
    [fp] = case_plan("blocked-repository-missing").functions
    assert (fp.action, fp.create_repository) == (Action.BLOCKED, False)
    assert explain.reason(fp).startswith(f"ECR repository {REPO} does not exist, and deploy.yaml says not to create it "
                                         "(repository.create: false)")


def test_create_renders_its_symbol_repository_and_function_steps_and_the_declared_configuration() -> None:
    plan = case_plan("create-with-a-missing-repository")
    out = render(plan, "text")
    assert "[green]+ fn: create[/green]" in out
    assert f"    1. create ECR repository {REPO} (scan_on_push: true, tag_mutability: IMMUTABLE, encryption: AES256, untagged_expiry_days: 14)" in out
    assert f"    7. create function fn from {REPO}:{TAG} (arm64)" in out
    assert "    8. wait until fn is Active" in out
    assert "      + role: arn:aws:iam::123456789012:role/fn-role" in out
    assert out.rstrip().endswith("Plan: 1 to create, 0 unchanged")
    assert plan.has_changes and not plan.blocked


def test_a_saved_creation_round_trips_with_its_repository_and_configuration() -> None:
    plan = case_plan("create-from-the-image-in-ecr", "create-with-a-missing-repository", "build-with-a-missing-repository")
    data = as_saved(plan)
    assert [(fp["action"], fp["create_repository"]) for fp in data["functions"]] == [
        ("build", True), ("create", False), ("create", True)]
    by_name = {fp["name"]: fp for fp in data["functions"]}
    assert [s["type"] for s in by_name["create-from-the-image-in-ecr"]["steps"]] == ["CreateFunction", "WaitForActive"]
    assert by_name["create-from-the-image-in-ecr"]["steps"][0] == {
        "type": "CreateFunction", "function": "create-from-the-image-in-ecr", "architecture": "arm64",
        "description": f"create function create-from-the-image-in-ecr from {REPO}@sha256:{NEW} (arm64)",
        "image": {"repository_uri": REPO, "digest": f"sha256:{NEW}", "tag": None}}
    assert by_name["create-with-a-missing-repository"]["steps"][0]["repository"] == REPO
    assert "s3cret-from-ci" not in planfile.to_json(plan)
    loaded = planfile.from_dict(data)
    assert loaded == plan
    assert [fp.create_repository for fp in loaded.functions] == [True, False, True]


def test_deploy_yaml_s_repository_create_is_not_saved_in_a_plan() -> None:
    data = as_saved(case_plan("blocked-repository-missing"))
    assert "create_repository" not in data["functions"][0]["desired"]
    data["functions"][0]["desired"]["create_repository"] = False
    with pytest.raises(PlanError, match=r"desired has a key deployer does not know: 'create_repository'"):
        planfile.from_dict(data, "plan.json")


def _damage_creation(fp: dict[str, Any], change: str) -> None:
    if change == "create_repository missing":
        del fp["create_repository"]
    elif change == "create_repository not a boolean":
        fp["create_repository"] = "yes"
    elif change == "the repository's creation removed":
        fp["create_repository"] = False
    elif change == "the CreateRepository step removed":
        del fp["steps"][0]
    elif change == "the CreateRepository step pointed at another repository":
        fp["steps"][0]["repository"] = REPO.replace("fn-repo", "other")
    elif change == "the creation pointed at another digest":
        fp["steps"][-3]["image"] = {"repository_uri": REPO, "digest": "sha256:" + "f" * 64, "tag": None}
    elif change == "the function created under another name":
        fp["steps"][-3]["function"] = "victim"
    elif change == "the wait for Active removed":
        del fp["steps"][-2]
    elif change == "a creation edited into a build":
        fp["action"] = "build"
    elif change == "a creation edited into an update by digest":
        fp["action"], fp["create_repository"] = "update", False
        fp["desired_digest"] = "sha256:" + "c" * 64


CREATION_DAMAGE = {
    "create_repository missing": "functions[0].create_repository is NoneType, not bool",
    "create_repository not a boolean": "functions[0].create_repository is str, not bool",
    "the repository's creation removed": "functions[0].steps are not the steps of a create of fn",
    "the CreateRepository step removed": "functions[0].steps are not the steps of a create of fn",
    "the CreateRepository step pointed at another repository": "functions[0].steps are not the steps of a create of fn",
    "the creation pointed at another digest": "functions[0].steps are not the steps of a create of fn",
    "the function created under another name": "functions[0].steps are not the steps of a create of fn",
    "the wait for Active removed": "functions[0].steps are not the steps of a create of fn",
    "a creation edited into a build": "functions[0].steps are not the steps of a build, push and update of fn",
    "a creation edited into an update by digest": "functions[0].steps are not the steps of a update of fn",
}


@pytest.mark.parametrize("change", CREATION_DAMAGE)
def test_a_damaged_creation_in_a_saved_plan_is_refused_with_what_is_wrong(change: str) -> None:
    data = as_saved(case_plan("create-with-a-missing-repository"))
    planfile.from_dict(copy.deepcopy(data))
    _damage_creation(data["functions"][0], change)
    with pytest.raises(PlanError) as caught:
        planfile.from_dict(data, "plan.json")
    assert str(caught.value).startswith(f"plan.json: damaged plan ({CREATION_DAMAGE[change]}")


@pytest.mark.parametrize(("case", "action"), [("noop-lambda-runs-the-content-image", "no change"),
                                              ("update-lambda-runs-another-digest", "update"),
                                              ("configure-memory-differs-on-the-right-image", "update configuration"),
                                              ("blocked-repository-missing", "blocked")])
def test_create_repository_on_an_action_that_never_creates_one_is_refused(case: str, action: str) -> None:
    data = as_saved(case_plan(case))
    fp = data["functions"][0]
    fp["create_repository"] = True
    fp["steps"].insert(0, {"type": "CreateRepository", "repository": REPO, "settings": list(CREATED_WITH)})  # consistently: the steps agree
    with pytest.raises(PlanError) as caught:
        planfile.from_dict(data, "plan.json")
    assert str(caught.value) == (f"plan.json: damaged plan (functions[0].create_repository does not fit a {action} of fn); "
                                 "run plan again")


def test_the_summary_counts_functions_terraform_style_unchanged_always() -> None:
    plan = every_case()
    counts = plan.counts()
    assert render_summary(plan) == (
        f"Plan: {counts[Action.CREATE]} to create, {counts[Action.BUILD]} to build, {counts[Action.UPDATE]} to update, "
        f"{counts[Action.CONFIGURE]} to configure, {counts[Action.RELEASE]} to release, {counts[Action.NOOP]} unchanged, "
        f"{counts[Action.BLOCKED]} blocked")
    assert all(counts[action] for action in Action), "every action is among the cases"
    nothing = make_plan([(DESIRED, Observed(running(NEW), image(NEW)))])
    assert render_summary(nothing) == "Plan: 1 unchanged"
    assert render_summary(make_plan([])) == "Plan: no functions"
    assert render(nothing, "markdown").splitlines()[0] == "### Plan: 1 unchanged"
