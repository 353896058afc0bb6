"""A saved plan against a fresh one made from the same deploy.yaml files: what runs, what is refused."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from deployer import binding
from deployer.errors import PlanError
from deployer.function_config import EnvValue, FunctionConfig, ObservedConfig
from deployer.plan import Action, Plan, SourceFile, make_plan
from deployer.spec import EcrRepository
from deployer.state import Desired, FunctionState, ImageState, Observed

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn-repo"
SOURCE = "sha256:" + "a" * 64
OLD, NEW, OTHER = "b" * 64, "c" * 64, "e" * 64
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
REPOSITORY = EcrRepository("123456789012", "us-east-1", "fn-repo")
DESIRED = Desired(name="fn", region="us-east-1", repository=REPOSITORY, content_tag="src-" + "a" * 40, source_digest=SOURCE,
                  architecture="arm64", platform="linux/arm64", spec_file="deploy.yaml")


def observed(running: str, ecr: str | None, arch: str = "arm64", revision: str | None = "r1") -> Observed:
    return Observed(FunctionState(exists=True, package_type="Image", code_sha256=running, architectures=(arch,), revision_id=revision),
                    ImageState(True, f"sha256:{ecr}" if ecr else None, DOCKER_V2 if ecr else None))


KEY = bytes(range(32))  # the saved plan's key: apply makes the fresh plan with it


def plan_of(desired: Desired, seen: Observed) -> Plan:
    return make_plan([(desired, seen)], KEY)


def declaring(memory: int | None = None, **environment: EnvValue) -> Desired:
    """DESIRED with configuration keys declared (resolved, as at plan and apply time)."""
    return replace(DESIRED, config=FunctionConfig(memory=memory, environment=MappingProxyType(environment) if environment else None))


def secret(value: str) -> EnvValue:
    return EnvValue(value=value, from_env="CI_API_KEY")


def holding(seen: Observed, **config: object) -> Observed:
    """`seen`, the function holding this configuration."""
    return replace(seen, function=replace(seen.function, config=ObservedConfig(**config)))  # type: ignore[arg-type]


UPDATE = plan_of(DESIRED, observed(OLD, NEW))
BUILD = plan_of(DESIRED, observed(OLD, None))
NOOP = plan_of(DESIRED, observed(NEW, NEW))

# name: (saved plan, fresh plan, the refusal's message, or None when the fresh decision runs)
CASES: dict[str, tuple[Plan, Plan, str | None]] = {
    "nothing moved: the update runs": (UPDATE, UPDATE, None),
    "nothing moved: the build runs": (BUILD, BUILD, None),
    "the image of a planned build appeared (or an UPDATE was edited into a BUILD)": (
        BUILD, UPDATE, "ECR tag src-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa of fn now holds sha256:cccccccccccc, pushed since the "
                       "plan, which builds it; run plan again"),
    "the function was deployed outside": (UPDATE, plan_of(DESIRED, observed(OTHER, NEW)),
                                          "function fn changed since plan (digest sha256:bbbbbbbbbbbb -> sha256:eeeeeeeeeeee); run plan again"),
    "only the revision moved (a configuration change)": (UPDATE, plan_of(DESIRED, observed(OLD, NEW, revision="r2")),
                                                         "function fn changed since plan (revision r1 -> r2); run plan again"),
    "the architecture moved": (UPDATE, plan_of(DESIRED, observed(OLD, NEW, arch="x86_64")),
                               "function fn changed since plan (architectures arm64 -> x86_64); run plan again"),
    "the content tag was re-pushed": (UPDATE, plan_of(DESIRED, observed(OLD, OTHER)),
                                      "ECR tag src-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa of fn now resolves to sha256:eeeeeeeeeeee, "
                                      "the plan deploys sha256:cccccccccccc; run plan again"),
    "the source changed": (BUILD, plan_of(replace(DESIRED, source_digest="sha256:" + "f" * 64), observed(OLD, None)),
                           "source of fn changed since plan (sha256:aaaaaaaaaaaa -> sha256:ffffffffffff); run plan again"),
    "a no-change plan now needs a change": (NOOP, plan_of(DESIRED, observed(NEW, OTHER)),
                                            "function fn changed since plan (the plan found nothing to do, now it needs: update); "
                                            "run plan again"),
    # Configuration: Lambda's side is bound by the RevisionId; the desired side by the values
    # (a secret by its keyed hash).
    "nothing moved: the configuration update runs": (
        plan_of(declaring(512), observed(NEW, NEW)), plan_of(declaring(512), observed(NEW, NEW)), None),
    "nothing moved: a secret's update runs": (
        plan_of(declaring(API_KEY=secret("s3cret-1")), observed(OLD, NEW)),
        plan_of(declaring(API_KEY=secret("s3cret-1")), observed(OLD, NEW)), None),
    "the CI secret changed since plan": (
        plan_of(declaring(API_KEY=secret("s3cret-1")), observed(NEW, NEW)),
        plan_of(declaring(API_KEY=secret("s3cret-2")), observed(NEW, NEW)),
        "configuration of fn changed since plan (the plan changes environment.API_KEY, now environment.API_KEY, or to other "
        "values); run plan again"),
    "the CI secret changed since a build plan": (
        plan_of(declaring(API_KEY=secret("s3cret-1")), observed(OLD, None)),
        plan_of(declaring(API_KEY=secret("s3cret-2")), observed(OLD, None)),
        "configuration of fn changed since plan (the plan changes environment.API_KEY, now environment.API_KEY, or to other "
        "values); run plan again"),
    "the CI secret is now what Lambda has": (
        plan_of(declaring(API_KEY=secret("s3cret-1")), holding(observed(OLD, NEW), environment={"API_KEY": "s3cret-2"})),
        plan_of(declaring(API_KEY=secret("s3cret-2")), holding(observed(OLD, NEW), environment={"API_KEY": "s3cret-2"})),
        "configuration of fn changed since plan (the plan changes environment.API_KEY, now nothing, or to other values); "
        "run plan again"),
    "a configuration changed outside since plan moves the revision": (
        plan_of(declaring(512), observed(NEW, NEW)), plan_of(declaring(512), holding(observed(NEW, NEW, revision="r2"), memory=256)),
        "function fn changed since plan (revision r1 -> r2); run plan again"),
    "a no-change plan now needs a configuration change": (
        NOOP, plan_of(declaring(512), observed(NEW, NEW)),
        "configuration of fn changed since plan (the plan changes nothing, now memory, or to other values); run plan again"),
}


# -- creating missing repositories and functions ---------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/fn-role"
CREATABLE = replace(DESIRED, config=FunctionConfig(role=ROLE))  # deploy.yaml gives a role: a missing function is created


def absent(ecr: str | None, repository: bool = True) -> Observed:
    """No function; ECR holds `ecr` under the content tag (in a repository that exists, or not)."""
    return Observed(FunctionState(exists=False),
                    ImageState(repository, f"sha256:{ecr}" if ecr else None, DOCKER_V2 if ecr else None))


def without_repository(seen: Observed) -> Observed:
    return replace(seen, image=ImageState(repository_exists=False))


CREATE = plan_of(CREATABLE, absent(NEW))
CREATE_BUILDING = plan_of(CREATABLE, absent(None))
CREATE_WITH_REPOSITORY = plan_of(CREATABLE, absent(None, repository=False))

CREATION_CASES: dict[str, tuple[Plan, Plan, str | None]] = {
    "nothing moved: the creation runs": (CREATE, CREATE, None),
    "nothing moved: the creation with its repository runs": (CREATE_WITH_REPOSITORY, CREATE_WITH_REPOSITORY, None),
    "the repository was made since the plan (another apply): the creation runs without making it": (
        CREATE_WITH_REPOSITORY, CREATE_BUILDING, None),
    "the repository was deleted since a build plan that did not create it": (
        plan_of(CREATABLE, observed(OLD, None)), plan_of(CREATABLE, without_repository(observed(OLD, None))),
        "repository fn-repo of fn was deleted since the plan, which did not create it; run plan again"),
    "the repository was deleted since an update plan": (
        plan_of(CREATABLE, observed(OLD, NEW)), plan_of(CREATABLE, without_repository(observed(OLD, NEW))),
        "repository fn-repo of fn was deleted since the plan, which did not create it; run plan again"),
    "the repository was deleted since a creation from its image": (
        CREATE, CREATE_WITH_REPOSITORY,
        "repository fn-repo of fn was deleted since the plan, which did not create it; run plan again"),
    "the repository was deleted, and deploy.yaml says not to create it": (
        plan_of(replace(CREATABLE, create_repository=False), observed(OLD, None)),
        plan_of(replace(CREATABLE, create_repository=False), without_repository(observed(OLD, None))),
        f"function fn cannot be deployed now: ECR repository {REPO} does not exist, and deploy.yaml says not to create it "
        "(repository.create: false); create it, or remove `create: false` to let deployer create it"),
    "the function was created since the plan (by another apply or by hand)": (
        CREATE, plan_of(CREATABLE, observed(OLD, NEW)),
        "function fn changed since plan (digest - -> sha256:bbbbbbbbbbbb; architectures  -> arm64; revision None -> r1); "
        "run plan again"),
    "the function reads the same but is missing now: a plan that does not create it": (
        plan_of(CREATABLE, Observed(FunctionState(exists=True, package_type="Image"), ImageState(True))),
        CREATE_BUILDING,
        "function fn changed since plan (the plan would build, push and update it, now it needs: create); run plan again"),
    "the CI secret changed since a creation plan": (
        plan_of(replace(CREATABLE, config=FunctionConfig(role=ROLE, environment=MappingProxyType({"K": secret("s3cret-1")}))),
                absent(NEW)),
        plan_of(replace(CREATABLE, config=FunctionConfig(role=ROLE, environment=MappingProxyType({"K": secret("s3cret-2")}))),
                absent(NEW)),
        "configuration of fn changed since plan (the plan changes role, environment.K, now role, environment.K, or to other "
        "values); run plan again"),
}
CASES.update(CREATION_CASES)


# A creation runs the image the plan approved: the digest ECR had, or the one apply builds.
CREATION_CASES_OF_THE_IMAGE: dict[str, tuple[Plan, Plan, str | None]] = {
    "the content tag re-pushed since a creation from its image": (
        CREATE, plan_of(CREATABLE, absent(OTHER)),
        "ECR tag src-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa of fn now holds sha256:eeeeeeeeeeee, the plan creates the function "
        "from sha256:cccccccccccc; run plan again"),
    "the image pushed since a creation that builds it": (
        CREATE_BUILDING, CREATE,
        "ECR tag src-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa of fn now holds sha256:cccccccccccc, the plan creates the function "
        "from an image it builds; run plan again"),
    "the image deleted since a creation from it": (
        CREATE, CREATE_BUILDING,
        "ECR tag src-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa of fn now holds -, the plan creates the function from "
        "sha256:cccccccccccc; run plan again"),
}
CASES.update(CREATION_CASES_OF_THE_IMAGE)


@pytest.mark.parametrize("case", CASES)
def test_saved_plan_against_a_fresh_one(case: str) -> None:
    saved, fresh, refusal = CASES[case]
    to_run, refusals = binding.compare(saved, fresh, "plan.json")
    if refusal is None:
        assert refusals == [] and to_run.functions == fresh.functions
    else:
        assert [(r.name, r.message) for r in refusals] == [("fn", refusal)]
        assert to_run.functions == ()


def test_the_fresh_decision_that_runs_holds_the_resolved_configuration() -> None:
    saved = plan_of(declaring(API_KEY=secret("s3cret-1")), observed(NEW, NEW))
    fresh = plan_of(declaring(API_KEY=secret("s3cret-1")), observed(NEW, NEW))
    saved = replace(saved, functions=tuple(replace(fp, desired=replace(fp.desired, config=FunctionConfig())) for fp in saved.functions))
    to_run, refusals = binding.compare(saved, fresh, "plan.json")  # a saved plan's Desired holds no configuration
    assert refusals == []
    [fp] = to_run.functions
    assert fp.action is Action.CONFIGURE and fp.desired.config.environment == {"API_KEY": secret("s3cret-1")}


def test_a_plan_whose_hashes_were_made_with_another_key_is_refused() -> None:
    """What apply would see if it did not make the fresh plan with the saved plan's key."""
    saved = make_plan([(declaring(API_KEY=secret("s3cret-1")), observed(NEW, NEW))], KEY)
    fresh = make_plan([(declaring(API_KEY=secret("s3cret-1")), observed(NEW, NEW))], b"another key of 32 bytes........")
    _, refusals = binding.compare(saved, fresh, "plan.json")
    assert [r.message.split(" (")[0] for r in refusals] == ["configuration of fn changed since plan"]


# A configuration-only plan approved no code change: the digest it saw is the one it may run.
CONFIGURE_ONLY = plan_of(declaring(512), observed(NEW, NEW))


@pytest.mark.parametrize(("fresh", "message"), [
    (plan_of(declaring(512), observed(NEW, OTHER)), "tag re-pushed since the plan: the fresh plan updates the code to it"),
    (plan_of(declaring(512), observed(NEW, None)), "tag deleted since the plan: the fresh plan builds and pushes"),
], ids=["update", "build"])
def test_a_configuration_plan_never_runs_as_a_code_change(fresh: Plan, message: str) -> None:
    to_run, refusals = binding.compare(CONFIGURE_ONLY, fresh, "plan.json")
    assert [fp.action for fp in to_run.functions] == [], message
    assert [r.name for r in refusals] == ["fn"]


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda d: replace(d, repository=replace(d.repository, name="other")), f"function fn: the plan says repository '{REPO.replace('fn-repo', 'other')}', deploy.yaml says '{REPO}'"),
    (lambda d: replace(d, region="eu-west-1"), "function fn: the plan says region 'eu-west-1', deploy.yaml says 'us-east-1'"),
    (lambda d: replace(d, name="not-declared"), "function not-declared is in the plan but no deploy.yaml of the plan declares it"),
])
def test_a_plan_not_made_from_these_files_is_refused_whole(edit: object, problem: str) -> None:
    saved = plan_of(edit(DESIRED), observed(OLD, NEW))  # type: ignore[operator]
    with pytest.raises(PlanError) as caught:
        binding.compare(saved, UPDATE, "plan.json")
    assert problem in str(caught.value)
    assert str(caught.value).startswith("plan.json: the plan was not made from these deploy.yaml files")


def test_spec_file_shown_differently_is_no_difference() -> None:
    saved = plan_of(replace(DESIRED, spec_file="../repo/deploy.yaml"), observed(OLD, NEW))
    to_run, refusals = binding.compare(saved, UPDATE, "plan.json")
    assert refusals == [] and to_run.functions == UPDATE.functions


def test_sources_are_recorded_relative_to_the_checkout_and_bound(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    team = tmp_path / "team"
    team.mkdir()
    spec = team / "deploy.yaml"
    spec.write_bytes(b"version: 1\n")
    assert binding.checkout_root(team) == tmp_path
    sources = binding.record_sources([spec], tmp_path)
    assert sources == (SourceFile("team/deploy.yaml", hashlib.sha256(b"version: 1\n").hexdigest()),)
    plan = replace(UPDATE, sources=sources)
    assert binding.bind_sources(plan, [spec], tmp_path, "plan.json") == [spec]

    spec.write_bytes(b"version: 1\n# edited\n")
    with pytest.raises(PlanError, match=r"'team/deploy.yaml' changed since the plan was made \(sha256 [0-9a-f]{12} -> [0-9a-f]{12}\)"):
        binding.bind_sources(plan, [spec], tmp_path, "plan.json")


def test_found_files_that_resolve_out_of_the_checkout_or_loop_are_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    secret = tmp_path.parent / f"{tmp_path.name}-secret.yaml"
    secret.write_text("password: hunter2\n")
    (tmp_path / "linked.yaml").symlink_to(secret)
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    plan = replace(UPDATE, sources=(SourceFile("linked.yaml", "0" * 64),))
    with pytest.raises(PlanError) as caught:
        binding.bind_sources(plan, [tmp_path / "linked.yaml", tmp_path / "loop.yaml"], tmp_path, "plan.json")
    message = str(caught.value)
    assert "linked.yaml: resolves to " in message and f"outside the checkout {tmp_path}" in message
    assert "loop.yaml: cannot be resolved" in message
    assert "'linked.yaml': in the plan, not among the deploy.yaml files apply was given" in message
    assert "hunter2" not in message
    with pytest.raises(PlanError, match="lies outside the checkout"):
        binding.record_sources([secret], tmp_path)


def test_execution_plan_keeps_the_saved_order_and_sources() -> None:
    first, second = (replace(DESIRED, name=n) for n in ("a", "b"))
    sources = (SourceFile("deploy.yaml", "0" * 64),)
    saved = replace(make_plan([(first, observed(OLD, NEW)), (second, observed(OLD, None))]), sources=sources)
    fresh = make_plan([(first, observed(OLD, NEW)), (second, observed(OLD, None))])
    to_run, refusals = binding.compare(saved, fresh, "plan.json")
    assert refusals == [] and [fp.name for fp in to_run.functions] == ["a", "b"]
    assert [fp.action for fp in to_run.functions] == [Action.UPDATE, Action.BUILD]
    assert to_run.sources == sources


def test_a_plan_under_an_environment_applies_only_with_the_credentials_of_its_account() -> None:
    saved = Plan((), environment="production", account="222222222222")
    binding.check_account(saved, "222222222222", "plan.json")
    with pytest.raises(PlanError) as refused:
        binding.check_account(saved, "111111111111", "plan.json")
    assert str(refused.value) == ("plan.json: the plan for environment 'production' was made with the credentials of AWS "
                                  "account 222222222222, this apply runs as account '111111111111'; apply it with that "
                                  "account's credentials, or make a plan with these")
    binding.check_account(Plan(()), "111111111111", "plan.json")  # no environment, no account recorded


@pytest.mark.parametrize(("environment", "account", "accepted"), [
    ("production", "222222222222", True),
    ("production", None, True),
    (None, None, True),
    ("production", "2222", False),
    ("production", 222222222222, False),
    (None, "222222222222", False),  # recorded only under an environment
])
def test_a_plan_file_s_account_is_twelve_digits_under_an_environment(environment: str | None, account: object,
                                                                     accepted: bool) -> None:
    from deployer import planfile

    data = planfile.to_dict(Plan((), hash_key="0" * 64, environment=environment, account=None))
    data["account"] = account
    if accepted:
        assert planfile.from_dict(data).account == account
    else:
        with pytest.raises(PlanError, match="account"):
            planfile.from_dict(data)
