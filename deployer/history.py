"""history: a released function's versions as `deployer history` and `deployer rollback` see them.
PURE: what Lambda, ECR and the registry reported in, entries and a rollback decision out.

A release records, in the new version's description, the version its alias was on before
(`deployer release; live was 7`, deployer.run_release): a rollback returns there, never to a
version guessed from numbers (lambroll's PR #366: "the previous version" may be another alias's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from deployer.errors import DeployerError
from deployer.registry import REVISION_LABEL, SOURCE_DIGEST_LABEL
from deployer.state import VersionState

# Exactly what a release writes on the version it publishes (deployer.run_release.Releasing.publish).
_RECORDED = re.compile(r"deployer release; (?P<alias>[A-Za-z0-9_-]{1,128}) was (?P<version>[1-9][0-9]{0,9}|none)")


@dataclass(frozen=True)
class HistoryEntry:
    """One version: its image ("sha256:..."), date, aliases on it, and, read from the image's labels
    (None: not built by deployer, or unreadable), the source digest and commit it was built from."""

    version: str
    image: str | None
    date: str | None
    aliases: tuple[str, ...]
    source_digest: str | None
    commit: str | None
    note: str  # the version's description


def entries(versions: Sequence[VersionState], aliases: Mapping[str, tuple[str, str | None]],
            labels: Mapping[str, Mapping[str, str] | None]) -> list[HistoryEntry]:
    """Newest first. `labels`: by image digest ("sha256:..."), what the registry holds."""
    out = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        image = f"sha256:{v.code_sha256}" if v.code_sha256 else None
        found = labels.get(image or "") or {}
        on = tuple(sorted(name for name, (version, _) in aliases.items() if version == v.version))
        out.append(HistoryEntry(v.version, image, v.last_modified, on, found.get(SOURCE_DIGEST_LABEL), found.get(REVISION_LABEL),
                                v.description))
    return out


def recorded_previous(description: str, alias: str) -> str | None:
    """The version `alias` was on before the release that made this version (None: not recorded,
    or there was none)."""
    match = _RECORDED.fullmatch(description)
    if match is None or match["alias"] != alias or match["version"] == "none":
        return None
    return match["version"]


@dataclass(frozen=True)
class Rollback:
    """Move `alias` from `current` to `target` (whose image is `image`), guarded by the alias's
    RevisionId as it was read."""

    function: str
    region: str
    alias: str
    current: str
    target: str
    image: str | None
    revision_id: str | None

    def describe(self) -> str:
        return f"~ {self.function}: move alias {self.alias}: {self.current} -> {self.target} (version {self.target} runs {self.image})"

    def done(self) -> str:
        return f"{self.function}: alias {self.alias} now on version {self.target} (was {self.current})"


@dataclass(frozen=True)
class ImageRollback:
    """Without versions: redeploy $LATEST from `current` (an image digest) to `target`, the image
    apply recorded as the one its last update replaced, guarded by $LATEST's RevisionId."""

    function: str
    region: str
    current: str
    target: str
    repository_uri: str
    architecture: str
    revision_id: str | None
    arn: str

    def describe(self) -> str:
        return (f"~ {self.function}: redeploy $LATEST from {self.current} to {self.target}, the image its last update "
                "replaced; plans then leave it until the source changes")

    def done(self) -> str:
        return f"{self.function}: $LATEST runs {self.target} again (was {self.current})"


def rollback(function: str, region: str, alias: str, versions: Sequence[VersionState], aliases: Mapping[str, tuple[str, str | None]],
             to: str | None) -> Rollback:
    """The rollback of `alias`: to `to`, or to the version recorded on the one it is on now.
    DeployerError saying what to do when there is no alias, nothing recorded, or no such version."""
    if to is not None and not re.fullmatch(r"[1-9][0-9]{0,9}", to):
        raise DeployerError(f"--to {to!r} is not a version number (see deployer history)")
    if alias not in aliases:
        raise DeployerError(f"function {function} has no alias {alias}: nothing to roll back; apply releases it first")
    current, revision = aliases[alias]
    by_number = {v.version: v for v in versions}
    if to is None:
        on = by_number.get(current)
        to = recorded_previous(on.description, alias) if on is not None else None
        if to is None or int(to) >= int(current):  # a release records an earlier version: anything else was not written by one
            raise DeployerError(f"version {current} of {function} records no version of {alias} before it (the first release, "
                                "or one not made by deployer); name one with --to VERSION (see deployer history)")
    if to not in by_number:
        raise DeployerError(f"function {function} has no version {to}; see deployer history for its versions")
    if to == current:
        raise DeployerError(f"alias {alias} of {function} is on version {to} already")
    code = by_number[to].code_sha256
    return Rollback(function, region, alias, current, to, f"sha256:{code}" if code else None, revision)
