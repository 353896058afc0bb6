"""History and rollback decisions, pure: newest first, labels by image, the recorded previous version."""

from __future__ import annotations

import pytest

from deployer.errors import DeployerError
from deployer.history import entries, recorded_previous, rollback
from deployer.state import VersionState

A, B = "a" * 64, "b" * 64
VERSIONS = [VersionState("1", A, "2026-11-01T10:00:00.000+0000", "deployer release; live was none"),
            VersionState("2", B, "2026-11-02T10:00:00.000+0000", "deployer release; live was 1"),
            VersionState("10", B, "2026-11-03T10:00:00.000+0000", "deployer release; live was 2")]
ALIASES = {"live": ("10", "rev-live"), "canary": ("2", "rev-canary")}


def test_entries_are_newest_first_with_aliases_and_labels() -> None:
    labels = {f"sha256:{B}": {"dev.deployer.source-digest": "sha256:" + "c" * 64, "org.opencontainers.image.revision": "d" * 40},
              f"sha256:{A}": None}
    listed = entries(VERSIONS, ALIASES, labels)
    assert [(e.version, e.aliases) for e in listed] == [("10", ("live",)), ("2", ("canary",)), ("1", ())]
    assert (listed[0].source_digest, listed[0].commit) == ("sha256:" + "c" * 64, "d" * 40)
    assert (listed[2].source_digest, listed[2].commit) == (None, None), "an image whose labels cannot be read"


def test_the_previous_version_is_the_one_recorded_for_that_alias() -> None:
    assert recorded_previous("deployer release; live was 7", "live") == "7"
    assert recorded_previous("deployer release; live was 7", "canary") is None
    assert recorded_previous("deployer release; live was none", "live") is None
    assert recorded_previous("made by hand", "live") is None
    assert recorded_previous("hacked; deployer release; live was 1", "live") is None, "only what a release writes, whole"
    assert recorded_previous("deployer rollback; live was 1", "live") is None, "never written on a version"


def test_a_recorded_version_that_is_not_earlier_is_not_a_release_record() -> None:
    forged = [*VERSIONS[:2], VersionState("10", B, None, "deployer release; live was 12"), VersionState("12", A, None, "")]
    with pytest.raises(DeployerError, match="records no version of live before it"):
        rollback("fn", "us-east-1", "live", forged, ALIASES, None)


def test_to_must_be_a_version_number() -> None:
    for bad in ("abc", "0", "$LATEST", "-1"):
        with pytest.raises(DeployerError, match="is not a version number"):
            rollback("fn", "us-east-1", "live", VERSIONS, ALIASES, bad)


def test_rollback_goes_to_the_recorded_version_or_the_named_one() -> None:
    back = rollback("fn", "us-east-1", "live", VERSIONS, ALIASES, None)
    assert (back.current, back.target, back.image, back.revision_id) == ("10", "2", f"sha256:{B}", "rev-live")
    assert rollback("fn", "us-east-1", "live", VERSIONS, ALIASES, "1").target == "1"


@pytest.mark.parametrize("alias, aliases, to, message", [
    ("live", {}, None, "function fn has no alias live"),
    ("live", {"live": ("1", None)}, None, "version 1 of fn records no version of live before it"),
    ("live", ALIASES, "9", "function fn has no version 9"),
    ("live", ALIASES, "10", "alias live of fn is on version 10 already"),
])
def test_what_cannot_be_rolled_back_says_why(alias: str, aliases: dict[str, tuple[str, str | None]], to: str | None,
                                             message: str) -> None:
    with pytest.raises(DeployerError, match=message):
        rollback("fn", "us-east-1", alias, VERSIONS, aliases, to)
