"""deployer.prune decides from in-memory data what `deployer prune` deletes: versions beyond keep
that no alias points at, then the src- images nothing of the region still uses; and when it must
stop (a repository other accounts may pull from, a function it could not read)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from deployer.errors import Diagnostic
from deployer.prune import (
    FunctionRead,
    Hold,
    ImagePrune,
    Inventory,
    PrunePlan,
    Pruned,
    RegionRead,
    RepositoryRead,
    Target,
    VersionPrune,
    decide,
    outcome_text,
    parse_age,
    text,
    to_json,
)
from deployer.spec import EcrRepository
from deployer.state import AliasTarget, StoredImage, VersionImage

ACCOUNT = "123456789012"
REGION = "us-east-1"
REPO = EcrRepository(ACCOUNT, REGION, "greet")
OTHER_REPO = EcrRepository(ACCOUNT, REGION, "billing")
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DENIED = Diagnostic("AccessDeniedException: no", operation="lambda:ListVersionsByFunction", resource="function x (us-east-1)",
                    code="AccessDeniedException")


def hexd(n: int) -> str:
    return f"{n:064x}"


def digest(n: int) -> str:
    return f"sha256:{hexd(n)}"


def image(n: int, *tags: str, media_type: str = DOCKER_MANIFEST, artifact: str | None = None) -> StoredImage:
    return StoredImage(digest(n), tags or (f"src-{n:040x}",), media_type, artifact)


def function(name: str, latest: int, versions: dict[int, int], aliases: dict[str, str] | None = None,
             routes: tuple[str, ...] = ()) -> FunctionRead:
    """A function running image `latest` on $LATEST; `versions`: number -> image."""
    listed = (VersionImage("$LATEST", hexd(latest)), *(VersionImage(str(v), hexd(i)) for v, i in versions.items()))
    alias_targets = tuple(AliasTarget(a, (v, *routes)) for a, v in (aliases or {}).items())
    return FunctionRead(name, REGION, listed, alias_targets)


def target(name: str, keep: int | None = 3, repository: EcrRepository = REPO, pull: tuple[str, ...] = ()) -> Target:
    return Target(name, REGION, repository, keep, pull)


def inventory(targets: list[Target], functions: list[FunctionRead], images: dict[EcrRepository, list[StoredImage]],
              region_problem: Diagnostic | None = None) -> Inventory:
    return Inventory(ACCOUNT, tuple(targets), (RegionRead(REGION, tuple(functions), region_problem),),
                     tuple(RepositoryRead(repo, tuple(found)) for repo, found in images.items()))


def deleted_versions(plan: PrunePlan, name: str) -> list[str]:
    return [v.version for vp in plan.versions if vp.function == name for v in vp.delete]


def deleted_images(plan: PrunePlan, repository: EcrRepository = REPO) -> list[str]:
    return [i.digest for ip in plan.images if ip.repository == repository for i in ip.delete]


def images_of(plan: PrunePlan, repository: EcrRepository = REPO) -> ImagePrune:
    [found] = [ip for ip in plan.images if ip.repository == repository]
    return found


def versions_of(plan: PrunePlan, name: str) -> VersionPrune:
    [found] = [vp for vp in plan.versions if vp.function == name]
    return found


# -- versions ---------------------------------------------------------------------------------

def test_versions_beyond_keep_are_deleted_newest_first_and_their_images_with_them() -> None:
    fn = function("greet", latest=5, versions={1: 1, 2: 2, 3: 3, 4: 4, 5: 5})
    plan = decide(inventory([target("greet", keep=3)], [fn], {REPO: [image(n) for n in range(1, 6)]}))
    assert deleted_versions(plan, "greet") == ["2", "1"]
    assert versions_of(plan, "greet").newest == ("5", "4", "3")
    assert deleted_images(plan) == [digest(1), digest(2)]
    assert images_of(plan).in_use == 3
    assert not plan.failed and plan.counts == (2, 2)


def test_versions_are_ordered_by_number_not_as_text() -> None:
    fn = function("greet", latest=10, versions={n: n for n in range(1, 11)})
    plan = decide(inventory([target("greet", keep=2)], [fn], {REPO: []}))
    assert versions_of(plan, "greet").newest == ("10", "9")
    assert deleted_versions(plan, "greet") == ["8", "7", "6", "5", "4", "3", "2", "1"]


def test_an_aliased_version_is_never_deleted_nor_its_image() -> None:
    fn = function("greet", latest=4, versions={1: 1, 2: 2, 3: 3, 4: 4}, aliases={"live": "1"})
    plan = decide(inventory([target("greet", keep=2)], [fn], {REPO: [image(n) for n in range(1, 5)]}))
    assert deleted_versions(plan, "greet") == ["2"]
    assert versions_of(plan, "greet").aliased == ("1",)
    assert deleted_images(plan) == [digest(2)]


def test_a_version_an_alias_routes_traffic_to_is_kept() -> None:
    fn = function("greet", latest=4, versions={1: 1, 2: 2, 3: 3, 4: 4}, aliases={"live": "4"}, routes=("1",))
    plan = decide(inventory([target("greet", keep=2)], [fn], {REPO: [image(n) for n in range(1, 5)]}))
    assert deleted_versions(plan, "greet") == ["2"]
    assert versions_of(plan, "greet").aliased == ("1",)


def test_latest_keeps_its_image_even_when_every_version_of_it_goes() -> None:
    # $LATEST was rolled back by hand to image 1, which only deleted versions published.
    fn = function("greet", latest=1, versions={1: 1, 2: 2, 3: 3, 4: 4})
    plan = decide(inventory([target("greet", keep=2)], [fn], {REPO: [image(n) for n in range(1, 5)]}))
    assert deleted_versions(plan, "greet") == ["2", "1"]
    assert deleted_images(plan) == [digest(2)]


def test_a_function_without_release_settings_keeps_its_versions() -> None:
    fn = function("greet", latest=3, versions={1: 1, 2: 2, 3: 3})
    plan = decide(inventory([target("greet", keep=None)], [fn], {REPO: [image(n) for n in range(1, 5)]}))
    held = versions_of(plan, "greet").held
    assert held is not None and held.why is Hold.NO_RELEASE and not held.failed
    assert deleted_versions(plan, "greet") == [] and deleted_images(plan) == [digest(4)]


def test_a_missing_function_has_nothing_to_prune() -> None:
    plan = decide(inventory([target("greet")], [FunctionRead("greet", REGION, exists=False)], {REPO: [image(1)]}))
    held = versions_of(plan, "greet").held
    assert held is not None and held.why is Hold.MISSING and not plan.failed
    assert deleted_images(plan) == [digest(1)]


# -- images: what uses them -------------------------------------------------------------------

def test_an_image_a_function_outside_deploy_yaml_uses_is_kept() -> None:
    mine = function("greet", latest=3, versions={1: 1, 2: 2, 3: 3})
    by_hand = function("made-by-hand", latest=9, versions={1: 1})  # its version 1 runs our image 1
    plan = decide(inventory([target("greet", keep=2)], [mine, by_hand], {REPO: [image(1), image(2), image(3)]}))
    assert deleted_versions(plan, "greet") == ["1"]
    assert deleted_images(plan) == [], "image 1 is still used by made-by-hand's version 1"
    assert images_of(plan).in_use == 3


def test_functions_sharing_a_repository_never_lose_each_others_images() -> None:
    a = function("a", latest=3, versions={1: 1, 2: 2, 3: 3})
    b = function("b", latest=1, versions={1: 1})  # b still runs the image a's version 1 ran
    plan = decide(inventory([target("a", keep=2), target("b", keep=2)], [a, b], {REPO: [image(1), image(2), image(3), image(4)]}))
    assert deleted_versions(plan, "a") == ["1"] and deleted_versions(plan, "b") == []
    assert deleted_images(plan) == [digest(4)]
    assert len(plan.images) == 1, "one repository, judged once"


def test_an_image_used_only_by_versions_being_deleted_goes_with_them() -> None:
    a = function("a", latest=3, versions={1: 1, 2: 1, 3: 3})
    plan = decide(inventory([target("a", keep=1)], [a], {REPO: [image(1), image(3)]}))
    assert deleted_versions(plan, "a") == ["2", "1"] and deleted_images(plan) == [digest(1)]


def test_only_content_tagged_or_untagged_single_images_are_deleted() -> None:
    fn = function("greet", latest=1, versions={})
    stored = [image(1), image(2, "latest"), image(3, "src-3", "v1.2"), StoredImage(digest(4), (), DOCKER_MANIFEST),
              image(5, media_type="application/vnd.oci.image.manifest.v1+json", artifact="application/vnd.cncf.notary.signature"),
              image(6)]
    plan = decide(inventory([target("greet")], [fn], {REPO: stored}))
    assert deleted_images(plan) == [digest(4), digest(6)]
    found = images_of(plan)
    assert (found.in_use, found.tagged, found.other) == (1, 2, 1)


def test_untagged_images_stay_where_the_repository_holds_an_index() -> None:
    fn = function("greet", latest=1, versions={})
    stored = [image(1), image(2, "multi", media_type=INDEX), StoredImage(digest(3), (), DOCKER_MANIFEST), image(4)]
    plan = decide(inventory([target("greet")], [fn], {REPO: stored}))
    assert deleted_images(plan) == [digest(4)], "the untagged image may be the index's"


# -- images pushed lately: an apply running now may not have deployed them yet -----------------

SINCE = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


def pushed(n: int, at: datetime | None) -> StoredImage:
    return replace(image(n), pushed_at=at)


def test_images_pushed_after_the_cutoff_or_at_an_unknown_time_are_kept_as_recent() -> None:
    fn = function("greet", latest=1, versions={})
    stored = [pushed(1, SINCE - timedelta(days=9)), pushed(2, SINCE - timedelta(seconds=1)), pushed(3, SINCE + timedelta(minutes=5)),
              pushed(4, None)]
    plan = decide(inventory([target("greet")], [fn], {REPO: stored}), pushed_since=SINCE)
    assert deleted_images(plan) == [digest(2)]
    assert (images_of(plan).in_use, images_of(plan).recent) == (1, 2)
    assert "kept: 1 in use, 0 with other tags than src-, 0 indexes or other artifacts, 2 pushed since 2026-11-27 06:00:00 UTC or at a " \
        "time ECR does not say" \
        in plain(text(plan))
    doc = json.loads(to_json(plan))
    assert doc["pushed_since"] == "2026-11-27T06:00:00+00:00" and doc["repositories"][0]["kept"]["recent"] == 2


def test_without_a_cutoff_no_image_is_kept_for_its_age() -> None:
    fn = function("greet", latest=1, versions={})
    plan = decide(inventory([target("greet")], [fn], {REPO: [pushed(2, datetime.now(timezone.utc)), pushed(3, None)]}))
    assert deleted_images(plan) == [digest(2), digest(3)] and images_of(plan).recent == 0
    assert "pushed since" not in plain(text(plan)) and json.loads(to_json(plan))["pushed_since"] is None


@pytest.mark.parametrize(("given", "age"), [("0", timedelta(0)), ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)),
                                            ("1h", timedelta(hours=1)), (" 7d ", timedelta(days=7)), ("3650d", timedelta(days=3650))])
def test_an_age_is_a_whole_number_of_a_unit(given: str, age: timedelta) -> None:
    assert parse_age(given) == age


@pytest.mark.parametrize(("given", "words"), [("1", "is not an age"), ("1.5h", "is not an age"), ("-1h", "is not an age"),
                                              ("1w", "is not an age"), ("", "is not an age"), ("3651d", "at most 3650d"),
                                              ("1h\x1b[2J", "is not an age")])
def test_a_bad_age_says_what_is_expected_and_shows_the_value_inert(given: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as raised:
        parse_age(given)
    assert "\x1b" not in str(raised.value)


def test_versions_are_not_deleted_on_the_second_read() -> None:
    fn = function("greet", latest=5, versions={1: 1, 2: 2, 3: 3, 4: 4, 5: 5})
    plan = decide(inventory([target("greet", keep=3)], [fn], {REPO: [image(n) for n in range(1, 7)]}), prune_versions=False)
    assert deleted_versions(plan, "greet") == [] and deleted_images(plan) == [digest(6)]


# -- when prune stops -------------------------------------------------------------------------

def test_a_repository_with_lambda_pull_accounts_keeps_its_images_but_versions_are_pruned() -> None:
    fn = function("greet", latest=3, versions={1: 1, 2: 2, 3: 3})
    plan = decide(inventory([target("greet", keep=2, pull=("111122223333",))], [fn], {REPO: [image(1), image(9)]}))
    held = images_of(plan).held
    assert held is not None and held.why is Hold.PULL_ACCOUNTS and held.facts == ("111122223333",)
    assert deleted_images(plan) == [] and deleted_versions(plan, "greet") == ["1"]
    assert not plan.failed
    assert "lambda_pull_accounts lets functions of account(s) 111122223333 use its images" in text(plan)


def test_a_repository_of_another_account_keeps_its_images() -> None:
    theirs = EcrRepository("444455556666", REGION, "shared")
    fn = function("greet", latest=1, versions={})
    plan = decide(inventory([target("greet", repository=theirs)], [fn], {theirs: [image(9)]}))
    held = images_of(plan, theirs).held
    assert held is not None and held.why is Hold.OTHER_ACCOUNT and deleted_images(plan, theirs) == []


def test_an_unreadable_function_stops_its_repository_and_the_others_go_on() -> None:
    broken = FunctionRead("greet", REGION, problem=DENIED)
    fine = function("billing", latest=2, versions={1: 1, 2: 2})
    plan = decide(inventory([target("greet"), target("billing", keep=2, repository=OTHER_REPO)], [broken, fine],
                            {REPO: [image(7)], OTHER_REPO: [image(1), image(2), image(8)]}))
    assert plan.failed
    held = versions_of(plan, "greet").held
    assert held is not None and held.why is Hold.UNREADABLE and held.problems == (DENIED,)
    repo_held = images_of(plan).held
    assert repo_held is not None and repo_held.why is Hold.USES_UNKNOWN and repo_held.facts == ("greet",)
    assert deleted_images(plan) == [] and deleted_images(plan, OTHER_REPO) == [digest(8)]
    rendered = text(plan)
    assert "! greet (us-east-1): could not be read: nothing of it is pruned" in rendered
    assert "lambda:ListVersionsByFunction on function x (us-east-1): AccessDeniedException: no" in rendered
    assert "1 image(s) to delete; 2 stopped: could not be read" in rendered


def test_an_unreadable_function_outside_deploy_yaml_stops_every_repository_of_its_region() -> None:
    fn = function("greet", latest=1, versions={})
    plan = decide(inventory([target("greet"), target("billing", repository=OTHER_REPO)],
                            [fn, function("billing", 1, {}), FunctionRead("by-hand", REGION, problem=DENIED)],
                            {REPO: [image(7)], OTHER_REPO: [image(8)]}))
    assert plan.failed and deleted_images(plan) == [] and deleted_images(plan, OTHER_REPO) == []
    held = images_of(plan).held
    assert held is not None and held.facts == ("by-hand",)


def test_a_version_without_an_image_digest_counts_as_unreadable() -> None:
    blind = FunctionRead("greet", REGION, (VersionImage("$LATEST", hexd(1)), VersionImage("1", None)))
    plan = decide(inventory([target("greet")], [blind], {REPO: [image(5)]}))
    assert plan.failed and deleted_images(plan) == []
    held = versions_of(plan, "greet").held
    assert held is not None and "no image digest (CodeSha256) for version 1" in str(held.problems[0])


def test_a_region_whose_functions_cannot_be_listed_keeps_its_images() -> None:
    listing = Diagnostic("AccessDeniedException: no", operation="lambda:ListFunctions", code="AccessDeniedException")
    fn = function("greet", latest=3, versions={1: 1, 2: 2, 3: 3})
    plan = decide(inventory([target("greet", keep=2)], [fn], {REPO: [image(1), image(9)]}, region_problem=listing))
    assert plan.failed and deleted_images(plan) == [] and deleted_versions(plan, "greet") == ["1"]


def test_a_repository_that_cannot_be_read_or_does_not_exist() -> None:
    fn = function("greet", latest=1, versions={})
    inv = Inventory(ACCOUNT, (target("greet"), target("billing", repository=OTHER_REPO)), (RegionRead(REGION, (fn, function("billing", 1, {}))),),
                    (RepositoryRead(REPO, problem=Diagnostic("ThrottlingException", operation="ecr:DescribeImages")),
                     RepositoryRead(OTHER_REPO, exists=False)))
    plan = decide(inv)
    assert [ip.held.why for ip in plan.images if ip.held] == [Hold.UNREADABLE, Hold.MISSING]
    assert plan.failed


# -- words ------------------------------------------------------------------------------------

def plain(markup: str) -> str:
    console = Console(highlight=False, soft_wrap=True, emoji=False, no_color=True, width=200)
    with console.capture() as captured:
        console.print(markup, end="")
    return captured.get()


def test_text_lists_what_goes_and_what_stays_and_why() -> None:
    fn = function("greet", latest=4, versions={1: 1, 2: 2, 3: 3, 4: 4}, aliases={"live": "1"})
    shown = plain(text(decide(inventory([target("greet", keep=2)], [fn], {REPO: [image(n) for n in range(1, 6)]}))))
    assert shown.splitlines() == [
        "- greet (us-east-1): 1 version(s) to delete",
        f"    - version 2  sha256:{hexd(2)[:12]}",
        "    kept: 2 newest (keep 2): 4, 3; 1 aliased: 1; and $LATEST",
        "- repository 123456789012.dkr.ecr.us-east-1.amazonaws.com/greet: 2 image(s) to delete",
        f"    - sha256:{hexd(2)[:12]} src-{2:040x}",
        f"    - sha256:{hexd(5)[:12]} src-{5:040x}",
        "    kept: 3 in use, 0 with other tags than src-, 0 indexes or other artifacts",
        "Prune: 1 version(s) and 2 image(s) to delete",
    ]


def test_foreign_values_are_inert_in_text_and_json() -> None:
    hostile = StoredImage(digest(3), ("src-[bold]x\x1b]0;title\x07", "src-##[error]x"), DOCKER_MANIFEST)
    fn = function("greet", latest=1, versions={})
    plan = decide(inventory([target("greet")], [fn], {REPO: [hostile]}))
    shown = plain(text(plan))
    assert "src-[bold]x" in shown and "\x1b" not in shown and "##[" not in shown
    document = to_json(plan)
    assert "##[" not in document and "\x1b" not in document
    assert json.loads(document)["repositories"][0]["delete"][0]["tags"][1] == "src-##[error]x"


def test_json_holds_the_plan_and_what_was_done() -> None:
    fn = function("greet", latest=3, versions={1: 1, 2: 2, 3: 3})
    plan = decide(inventory([target("greet", keep=2, pull=("111122223333",))], [fn], {REPO: [image(1)]}))
    pruned = Pruned(versions=(("greet", "1"),))
    document = json.loads(to_json(plan, pruned))
    assert document["functions"] == [{"name": "greet", "region": "us-east-1", "keep": 2,
                                      "delete": [{"version": "1", "digest": digest(1)}],
                                      "kept": {"newest": ["3", "2"], "aliased": []}, "held": None}]
    assert document["repositories"][0]["held"]["reason"] == "lambda_pull_accounts"
    assert document["applied"]["versions"] == [{"function": "greet", "version": "1"}]
    assert document["failed"] is False


def test_the_outcome_says_what_was_spared_and_what_failed() -> None:
    pruned = Pruned(versions=(("greet", "1"),), spared=((REPO, image(1)),),
                    problems=(Diagnostic("ResourceConflictException: in use", operation="lambda:DeleteFunction"),))
    shown = plain(outcome_text(pruned))
    assert f"kept image sha256:{hexd(1)[:12]} src-{1:040x} of 123456789012.dkr.ecr.us-east-1.amazonaws.com/greet: found in use" in shown
    assert "failed: lambda:DeleteFunction: ResourceConflictException: in use" in shown
    assert shown.splitlines()[-1] == "Pruned: 1 version(s), 0 image(s) deleted; 1 problem(s)"
