"""--shard K/N: a stable partition of a plan's functions, decided from the plan alone.

Plans here are made by the real planner from (Desired, Observed) pairs: random ones (seeded),
where functions share repositories and sources, so that some share an image."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from deployer import shard
from deployer.function_config import FunctionConfig
from deployer.plan import Action, FunctionPlan, Plan, make_plan
from deployer.render import render
from deployer.spec import EcrRepository
from deployer.state import Desired, FunctionState, ImageState, Observed
from tests.cli_harness import InProcessCli

ACCOUNT = "123456789012"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
SHARD_COUNTS = range(1, 13)
SEEDS = range(25)


def digest(seed: str) -> str:
    return "sha256:" + (seed * 64)[:64]


def desired(name: str, repository: str, source: str) -> Desired:
    return Desired(name=name, region="us-east-1", repository=EcrRepository(ACCOUNT, "us-east-1", repository),
                   content_tag=f"src-{(source * 40)[:40]}", source_digest=digest(source), architecture="arm64",
                   platform="linux/arm64", spec_file="deploy.yaml", config=FunctionConfig())


def random_plan(rng: random.Random, size: int) -> Plan:
    """`size` functions over a few repositories and sources; each image (repository, source) is
    in ECR or not, consistently for every function using it; each function runs that image, an
    older one, or is a Zip package (blocked)."""
    repositories = [f"repo-{i}" for i in range(rng.randint(1, 4))]
    sources = "0123456789abcdef"[:rng.randint(1, 10)]
    in_ecr: dict[tuple[str, str], bool] = {}
    pairs = []
    for i in range(size):
        repository, source = rng.choice(repositories), rng.choice(sources)
        present = in_ecr.setdefault((repository, source), rng.random() < 0.5)
        image = ImageState(True, digest(f"{source}e") if present else None, DOCKER_V2 if present else None)
        runs = rng.choice(["same", "older", "older", "zip"])
        code = image.digest if runs == "same" and image.digest else digest("0f")
        function = FunctionState(True, "Zip" if runs == "zip" else "Image", code.removeprefix("sha256:"), ("arm64",))
        pairs.append((desired(f"fn-{i:03d}", repository, source), Observed(function, image)))
    return make_plan(pairs)


def loads(shards: list[tuple[FunctionPlan, ...]]) -> list[int]:
    return [sum(shard.weight(group) for group in shard.groups(members)) for members in shards]


@pytest.mark.parametrize("seed", SEEDS)
def test_shards_partition_the_functions_keep_images_whole_and_balance_the_work(seed: int) -> None:
    rng = random.Random(seed)
    plan = random_plan(rng, rng.randint(0, 60))
    image_of = {fp.name: shard.image_key(fp) for fp in plan.functions}
    heaviest = max((shard.weight(group) for group in shard.groups(plan.functions)), default=0)
    for count in SHARD_COUNTS:
        shards = shard.partition(plan.functions, count)

        assert len(shards) == count
        names = [fp.name for members in shards for fp in members]
        assert Counter(names) == Counter(fp.name for fp in plan.functions)  # disjoint, and the union is all
        shard_of_image: dict[tuple[str, str], int] = {}
        for index, members in enumerate(shards):
            assert [fp.name for fp in members] == sorted(fp.name for fp in members)
            for fp in members:
                assert shard_of_image.setdefault(image_of[fp.name], index) == index, f"image of {fp.name} split"
        weights = loads(shards)
        assert max(weights) <= min(weights) + heaviest

        shuffled = list(plan.functions)
        rng.shuffle(shuffled)
        assert shard.partition(shuffled, count) == shards  # decided from the plan, not from its order


def test_the_partition_is_pinned_for_a_known_plan() -> None:
    """Same plan, same N: the same shards on every machine. Three images to build (one used by two
    functions), one update, two functions with nothing to do, over 2 shards: the builds go heaviest
    first to the lightest shard, then the rest fills the lighter one."""
    built, present = ImageState(True), ImageState(True, digest("e"), DOCKER_V2)
    stale, current = FunctionState(True, "Image", "f" * 64, ("arm64",)), FunctionState(True, "Image", "e" * 64, ("arm64",))
    plan = make_plan([
        (desired("api", "repo", "1"), Observed(stale, built)), (desired("api-worker", "repo", "1"), Observed(stale, built)),
        (desired("billing", "repo", "2"), Observed(stale, built)), (desired("cron", "other", "3"), Observed(stale, built)),
        (desired("mailer", "repo", "e"), Observed(stale, present)),
        (desired("quiet-a", "other", "e"), Observed(current, present)), (desired("quiet-b", "other", "f"), Observed(current, present)),
    ])
    assert [fp.action for fp in plan.functions].count(Action.BUILD) == 4

    names = [[fp.name for fp in members] for members in shard.partition(plan.functions, 2)]

    # api+api-worker (one build, two updates) -> 1; cron -> 2, then billing -> 2 (equal weights: by image, "other" before
    # "repo"); the update of mailer -> 1, the lighter; then quiet-a and quiet-b (nearly weightless) -> 1, still the lighter.
    assert names == [["api", "api-worker", "mailer", "quiet-a", "quiet-b"], ["billing", "cron"]]


def test_builds_spread_over_the_shards_before_anything_else() -> None:
    plan = make_plan([(desired(f"fn-{i}", f"repo-{i}", "a"), Observed(FunctionState(True, "Image", "f" * 64, ("arm64",)), ImageState(True)))
                      for i in range(6)])
    for count in (2, 3, 6):
        assert [len(members) for members in shard.partition(plan.functions, count)] == [6 // count] * count


def test_more_shards_than_images_leaves_shards_empty() -> None:
    plan = make_plan([(desired("one", "repo", "a"), Observed(FunctionState(False), ImageState(True)))])
    shards = shard.partition(plan.functions, 3)
    assert [len(members) for members in shards] == [1, 0, 0]
    selected = shard.select(plan, shard.Shard(3, 3))
    assert selected.plan.functions == () and selected.label() == "shard 3 of 3: 0 of 1 functions"


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 12 / 12 ", (12, 12)), ("1000/1000", (1000, 1000))])
def test_shard_values_are_parsed(text: str, expected: tuple[int, int]) -> None:
    parsed = shard.parse(text)
    assert (parsed.index, parsed.count) == expected and str(parsed) == f"{expected[0]}/{expected[1]}"


@pytest.mark.parametrize("text, message", [
    ("0/3", "'0/3': the shard K must be between 1 and N (3)"),
    ("4/3", "'4/3': the shard K must be between 1 and N (3)"),
    ("1/0", "'1/0': the number of shards N must be between 1 and 1000"),
    ("1/1001", "'1/1001': the number of shards N must be between 1 and 1000"),
    ("a/b", "'a/b' is not K/N: give this job's shard K and the number of shards N, such as 2/3"),
    ("2", "'2' is not K/N"),
    ("-1/3", "'-1/3' is not K/N"),
    ("\u0662/3", "'\u0662/3' is not K/N"),  # an Arabic-Indic two is a digit to int(), not here
    ("\x1b]0;owned\x07 1/2", r"'\x1b]0;owned\x07 1/2' is not K/N"),  # a control character is shown as its escape
])
def test_bad_shard_values_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        shard.parse(text)
    assert str(raised.value).startswith(message)


def test_a_selection_renders_only_its_functions_and_says_which_shard_it_is() -> None:
    plan = random_plan(random.Random(7), 14)
    selected = shard.select(plan, shard.Shard(2, 3))
    count = len(selected.plan.functions)
    assert 0 < count < 14
    label = f"shard 2 of 3: {count} of 14 functions"
    assert selected.label() == label

    text = shard.annotate(render(selected.plan, "text"), "text", selected)
    assert text.endswith(f"\nThis is {label} (the other {14 - count} are in the other shards; the summary counts this shard only).\n")
    assert sum(f"{fp.name}:" in text for fp in plan.functions) == count

    markdown = shard.annotate(render(selected.plan, "markdown"), "markdown", selected)
    first, second, third = markdown.splitlines()[:3]
    assert first.startswith("### Plan: ") and second == "" and third == f"_Shard 2 of 3: {count} of 14 functions; the summary counts this shard only._"

    data = json.loads(shard.annotate(render(selected.plan, "json"), "json", selected))
    assert data["shard"] == {"index": 2, "count": 3, "functions": count, "total_functions": 14}
    assert [fp["name"] for fp in data["functions"]] == [fp.name for fp in selected.plan.functions]
    assert sum(v for k, v in data["summary"].items() if k != "changes") == count  # the summary counts the shard only


def test_the_shard_line_keeps_a_big_markdown_plan_under_githubs_comment_limit() -> None:
    plan = random_plan(random.Random(3), 500)
    selected = shard.select(plan, shard.Shard(1, 1))
    assert len(shard.annotate(render(selected.plan, "markdown"), "markdown", selected)) <= 65_536


# -- the command line: a bad value is a usage error, said before anything is read -----------------

@pytest.mark.parametrize("args", [["plan", "--shard", "0/3"], ["plan", "--shard", "4/3"], ["apply", "plan.json", "--shard", "a/b"],
                                  ["apply", "plan.json", "--shard", "1/0"]])
def test_a_bad_shard_option_is_a_usage_error(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = InProcessCli(monkeypatch, capsys)(*args, cwd=tmp_path)
    assert result.exit_code == 1  # deployer's usage errors exit 1: 2 only means "changes" (plan --detailed-exitcode)
    assert f"Error: Invalid value for '--shard' (env var: 'DEPLOYER_SHARD'): '{args[-1]}'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_deployer_shard_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = InProcessCli(monkeypatch, capsys)("plan", cwd=tmp_path, env={"DEPLOYER_SHARD": "5/4"})
    assert result.exit_code == 1
    assert "'5/4': the shard K must be between 1 and N (4)" in result.stderr


def test_apply_with_a_shard_needs_a_saved_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """N jobs planning on their own would each see the others' changes, and cut differently."""
    result = InProcessCli(monkeypatch, capsys)("apply", "--shard", "1/2", "--yes", cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr == ("error: --shard (or DEPLOYER_SHARD) applies part of a saved plan, which every shard's job must share: "
                             "save it once with 'deployer plan --out plan.json', then run 'deployer apply plan.json --shard K/N' in "
                             "each job\n")


def test_a_shard_from_the_environment_in_a_live_apply_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A CI job's DEPLOYER_SHARD with `apply` and no plan file: the message names the variable, not only the flag."""
    result = InProcessCli(monkeypatch, capsys)("apply", "--yes", cwd=tmp_path, env={"DEPLOYER_SHARD": "1/2"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --shard (or DEPLOYER_SHARD) applies part of a saved plan")
