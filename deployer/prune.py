"""prune: which Lambda versions and ECR images `deployer prune` deletes, and its words. PURE:
decided from what Lambda and ECR reported (an Inventory); no boto3, no disk.

Never deleted:
- $LATEST; a version an alias points at or routes traffic to; one of the `keep` newest versions
  of a function (by number); any version of a function without release settings, or not in the
  deploy.yaml files given;
- an image whose digest $LATEST, a version or an alias of ANY Image function of the region uses
  (functions of other deploy.yaml files, or made by hand, included), whatever its repository:
  Lambda's CodeSha256 of an image version is its image's manifest digest. Deleting an image a
  function uses puts that function in Failed;
- an image with a tag other than a content tag (`src-...`); anything that is not a single-platform
  container image (an index, a signature, another artifact), and no untagged image in a repository
  holding something else (it may be part of an index);
- an image pushed less than the minimum age ago (`--min-age`, or whose push time ECR does not
  say): an apply running now may have pushed it and not yet pointed its function at it;
- any image of a repository whose users prune cannot all see: one of another account, one whose
  deploy.yaml lets other accounts pull (`lambda_pull_accounts`), one in a region whose functions
  could not all be listed, or one that a function that could not be read may use.
Images are judged after the planned version deletions: an image only deleted versions used goes
with them. The executor (deployer.app) deletes the versions first and, before the images, reads
everything again and deletes only what this module still finds unused (`decide(...,
prune_versions=False)`).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Iterable

from deployer.errors import Diagnostic
from deployer.plan import short
from deployer.render import rich_text, terminal_text
from deployer.spec import EcrRepository
from deployer.state import SINGLE_PLATFORM_MEDIA_TYPES, AliasTarget, StoredImage, VersionImage

LATEST = "$LATEST"
SOURCE_TAG_PREFIX = "src-"  # deployer's content tags (deployer.digest.content_tag)
# The config media types of a container image; any other artifact type (a signature, an SBOM) is
# not an image a function could run, and is never pruned.
IMAGE_CONFIG_TYPES = frozenset({"application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"})
_AGE = re.compile(r"(\d{1,6})([smhd])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_MIN_AGE = timedelta(days=3650)


def parse_age(text: str) -> timedelta:
    """`--min-age`: `0`, or a whole number of seconds, minutes, hours or days (`90s`, `30m`, `1h`,
    `7d`). ValueError saying what is expected (the text is shown inert)."""
    if text.strip() == "0":
        return timedelta(0)
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{terminal_text(repr(text[:40]))} is not an age: give a whole number with s, m, h or d "
                         "(such as 30m, 1h or 7d), or 0 to keep no image for its age")
    age = timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})
    if age > MAX_MIN_AGE:
        raise ValueError(f"{terminal_text(repr(text[:40]))}: the minimum age is at most 3650d")
    return age


# -- what was read ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A function of the deploy.yaml files given: prune deletes its versions (when it has release
    settings: `keep` the number kept, else None) and images of its repository."""

    name: str
    region: str
    repository: EcrRepository
    keep: int | None
    pull_accounts: tuple[str, ...] = ()  # its repository's lambda_pull_accounts, as declared


@dataclass(frozen=True)
class FunctionRead:
    """A function as Lambda reports it: every version with its image ($LATEST included) and, for
    a target, its aliases. `exists` False: no such function; `problem`: it could not be read."""

    name: str
    region: str
    versions: tuple[VersionImage, ...] = ()
    aliases: tuple[AliasTarget, ...] = ()
    exists: bool = True
    problem: Diagnostic | None = None

    def unreadable(self) -> Diagnostic | None:
        """Why the images this function uses are not known: its read failed, or an image version
        reports no digest."""
        if self.problem is not None:
            return self.problem
        blind = [v.version for v in self.versions if v.image and v.digest is None]
        if blind:
            return Diagnostic(f"Lambda reports no image digest (CodeSha256) for version {blind[0]}", function=self.name)
        return None

    @property
    def published(self) -> tuple[VersionImage, ...]:
        """Its published versions, newest first."""
        return tuple(sorted((v for v in self.versions if v.version != LATEST), key=lambda v: -int(v.version)))


@dataclass(frozen=True)
class RegionRead:
    """Every Image function of a region (and every target there). `problem`: ListFunctions
    failed, so functions may be missing and no image of the region is pruned."""

    region: str
    functions: tuple[FunctionRead, ...]
    problem: Diagnostic | None = None


@dataclass(frozen=True)
class RepositoryRead:
    repository: EcrRepository
    images: tuple[StoredImage, ...] = ()
    exists: bool = True
    problem: Diagnostic | None = None


@dataclass(frozen=True)
class Inventory:
    """Everything prune decides from. `account`: the caller's, whose functions are the ones seen."""

    account: str
    targets: tuple[Target, ...]
    regions: tuple[RegionRead, ...]
    repositories: tuple[RepositoryRead, ...]


# -- what is decided -------------------------------------------------------------------------

class Hold(enum.Enum):
    """Why a function's versions or a repository's images are not pruned."""

    NO_RELEASE = "no_release"  # versions: the function has no release settings
    MISSING = "missing"  # the function or the repository does not exist
    UNREADABLE = "unreadable"  # it could not be read (an error: exit 1)
    OTHER_ACCOUNT = "other_account"  # images: the repository is another account's
    PULL_ACCOUNTS = "lambda_pull_accounts"  # images: functions of other accounts may pull them
    USES_UNKNOWN = "uses_unknown"  # images: a function that may use them could not be read (an error)


@dataclass(frozen=True)
class Held:
    """A hold and its facts: accounts (OTHER_ACCOUNT, PULL_ACCOUNTS), the functions not read
    (USES_UNKNOWN), and the problems met. With problems it is a failure (exit 1)."""

    why: Hold
    facts: tuple[str, ...] = ()
    problems: tuple[Diagnostic, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True)
class VersionPrune:
    """A target's versions: those to delete (newest first), those kept as the `keep` newest, and
    those kept beyond them because an alias points at them."""

    function: str
    region: str
    keep: int | None = None
    delete: tuple[VersionImage, ...] = ()
    newest: tuple[str, ...] = ()
    aliased: tuple[str, ...] = ()
    held: Held | None = None


@dataclass(frozen=True)
class ImagePrune:
    """A repository's images: those to delete, and how many are kept, by reason."""

    repository: EcrRepository
    delete: tuple[StoredImage, ...] = ()
    in_use: int = 0  # a function of the region uses its digest
    tagged: int = 0  # a tag other than a content tag
    other: int = 0  # not a single-platform container image, or untagged beside one that is not
    recent: int = 0  # pushed after the plan's `pushed_since`, or at a time ECR does not say (JSON: kept.recent)
    held: Held | None = None


@dataclass(frozen=True)
class PrunePlan:
    """`pushed_since`: images pushed after it are kept (None: none is kept for its age)."""

    versions: tuple[VersionPrune, ...]
    images: tuple[ImagePrune, ...]
    pushed_since: datetime | None = None

    @property
    def stopped(self) -> int:
        """How many functions and repositories could not be read: their prune stopped."""
        holds: list[Held | None] = [p.held for p in self.versions] + [p.held for p in self.images]
        return sum(held is not None and held.failed for held in holds)

    @property
    def failed(self) -> bool:
        """Something could not be read (exit 1)."""
        return self.stopped > 0

    @property
    def counts(self) -> tuple[int, int]:
        return sum(len(p.delete) for p in self.versions), sum(len(p.delete) for p in self.images)


@dataclass(frozen=True)
class Pruned:
    """What `--yes` did: the versions and images deleted, the images spared because a new read
    found them in use (or their prune stopped), and every problem met."""

    versions: tuple[tuple[str, str], ...] = ()  # (function, version)
    images: tuple[tuple[EcrRepository, StoredImage], ...] = ()
    spared: tuple[tuple[EcrRepository, StoredImage], ...] = ()
    problems: tuple[Diagnostic, ...] = ()


def decide(inventory: Inventory, prune_versions: bool = True, pushed_since: datetime | None = None) -> PrunePlan:
    """The prune plan of `inventory`. Without `prune_versions`, no version is deleted and every
    version that exists counts as used (the executor's second read, after the deletions). Images
    pushed after `pushed_since` (or at an unknown time) are kept, when it is given."""
    reads = {(f.region, f.name): f for region in inventory.regions for f in region.functions}
    versions = tuple(_versions(t, reads.get((t.region, t.name)), prune_versions) for t in inventory.targets)
    gone = {(p.region, p.function, v.version) for p in versions for v in p.delete}
    in_use = {v.digest for f in reads.values() for v in f.versions if v.digest and (f.region, f.name, v.version) not in gone}
    targets = {(t.region, t.name) for t in inventory.targets}
    by_region = {region.region: region for region in inventory.regions}
    images = []
    for read in inventory.repositories:
        users = [t for t in inventory.targets if t.repository == read.repository]
        held = _repository_hold(inventory, read, users, by_region.get(read.repository.region), targets)
        images.append(ImagePrune(read.repository, held=held) if held else _images(read, in_use, pushed_since))
    return PrunePlan(versions, tuple(images), pushed_since)


def _versions(target: Target, read: FunctionRead | None, prune_versions: bool) -> VersionPrune:
    base = VersionPrune(target.name, target.region, target.keep)
    problem = read.unreadable() if read is not None else Diagnostic("not read", function=target.name)
    if read is None or problem is not None:
        return replace(base, held=Held(Hold.UNREADABLE, problems=(problem,) if problem else ()))
    if not read.exists:
        return replace(base, held=Held(Hold.MISSING))
    published = read.published
    if target.keep is None or not prune_versions:
        return replace(base, newest=tuple(v.version for v in published), held=Held(Hold.NO_RELEASE) if target.keep is None else None)
    aliased = {version for alias in read.aliases for version in alias.versions}
    older = published[target.keep:]
    return replace(base, newest=tuple(v.version for v in published[:target.keep]),
                   aliased=tuple(v.version for v in older if v.version in aliased),
                   delete=tuple(v for v in older if v.version not in aliased))


def _repository_hold(inventory: Inventory, read: RepositoryRead, users: list[Target], region: RegionRead | None,
                     targets: set[tuple[str, str]]) -> Held | None:
    """Why no image of the repository may be deleted, if there is a reason: the first of those
    that would stop it whatever else is true, then what could not be read."""
    repository = read.repository
    if repository.account != inventory.account:
        return Held(Hold.OTHER_ACCOUNT, (repository.account,))
    pulling = tuple(sorted({a for t in users for a in t.pull_accounts}))
    if pulling:
        return Held(Hold.PULL_ACCOUNTS, pulling)
    if read.problem is not None:
        return Held(Hold.UNREADABLE, problems=(read.problem,))
    if not read.exists:
        return Held(Hold.MISSING)
    if region is None:
        return Held(Hold.USES_UNKNOWN, (f"every function of {repository.region}",),
                    (Diagnostic(f"the functions of {repository.region} were not read"),))
    if region.problem is not None:
        return Held(Hold.USES_UNKNOWN, (f"every function of {region.region}",), (region.problem,))
    # A target that could not be read may use this repository (its own); any other function
    # that could not be read may use any repository of its region.
    mine = {t.name for t in users}
    blind = [(f.name, problem) for f in region.functions
             for problem in [f.unreadable()] if problem is not None and (f.name in mine or (f.region, f.name) not in targets)]
    if blind:
        return Held(Hold.USES_UNKNOWN, tuple(name for name, _ in blind), tuple(problem for _, problem in blind))
    return None


def _images(read: RepositoryRead, in_use_digests: set[str], pushed_since: datetime | None) -> ImagePrune:
    # An untagged image may be part of an index (a manifest list, an image with attestations):
    # where the repository holds a manifest that is not a single-platform image's, untagged ones stay.
    mixed = any(image.media_type not in SINGLE_PLATFORM_MEDIA_TYPES for image in read.images)
    delete: list[StoredImage] = []
    in_use = tagged = other = recent = 0
    for image in read.images:
        if image.digest in in_use_digests:
            in_use += 1
        elif any(not tag.startswith(SOURCE_TAG_PREFIX) for tag in image.tags):
            tagged += 1
        elif not _single_image(image) or (mixed and not image.tags):
            other += 1
        elif pushed_since is not None and (image.pushed_at is None or image.pushed_at > pushed_since):
            recent += 1
        else:
            delete.append(image)
    return ImagePrune(read.repository, tuple(sorted(delete, key=lambda i: (i.tags, i.digest))), in_use, tagged, other, recent)


def _single_image(image: StoredImage) -> bool:
    return image.media_type in SINGLE_PLATFORM_MEDIA_TYPES and image.artifact_type in (None, *IMAGE_CONFIG_TYPES)


# -- words -----------------------------------------------------------------------------------
# Every value read from AWS (names, versions, digests, tags, AWS's messages) is foreign: shown
# through render's rich_text (text) or json.dumps with ASCII escapes (json).

def held_words(held: Held) -> str:
    facts = ", ".join(held.facts)
    return {
        Hold.NO_RELEASE: "versions not pruned: no release settings in deploy.yaml",
        Hold.MISSING: "does not exist: nothing to prune",
        Hold.UNREADABLE: "could not be read: nothing of it is pruned",
        Hold.OTHER_ACCOUNT: (f"images not pruned: the repository belongs to account {facts}, whose functions may use its "
                             "images and cannot be seen from this account"),
        Hold.PULL_ACCOUNTS: (f"images not pruned: lambda_pull_accounts lets functions of account(s) {facts} use its images, "
                             "which this account cannot see (versions are still pruned)"),
        Hold.USES_UNKNOWN: f"images not pruned: what {facts} use{'s' if len(held.facts) == 1 else ''} could not be read",
    }[held.why]


def _image_line(image: StoredImage) -> str:
    return f"{short(image.digest)} {','.join(image.tags) or '(untagged)'}"


def text(plan: PrunePlan) -> str:
    """Rich markup: per function the versions to delete, per repository the images, what is kept and why."""
    lines: list[str] = []
    for vp in plan.versions:
        head = f"{rich_text(vp.function)} ({rich_text(vp.region)})"
        if vp.held:
            lines += _held_lines(head, vp.held)
        else:
            lines.append(f"{'-' if vp.delete else ' '} {head}: " + (f"{len(vp.delete)} version(s) to delete" if vp.delete
                                                                   else "nothing to delete"))
        lines += [f"    - version {rich_text(v.version)}  {rich_text(short(v.digest))}" for v in vp.delete]
        if vp.held is None or vp.held.why is Hold.NO_RELEASE:
            kept = [f"{len(vp.newest)} newest" + (f" (keep {vp.keep})" if vp.keep is not None else "")
                    + (f": {rich_text(', '.join(vp.newest))}" if vp.newest else "")]
            if vp.aliased:
                kept.append(f"{len(vp.aliased)} aliased: {rich_text(', '.join(vp.aliased))}")
            lines.append(f"    kept: {'; '.join(kept)}; and $LATEST")
    for ip in plan.images:
        head = f"repository {rich_text(ip.repository.uri)}"
        if ip.held:
            lines += _held_lines(head, ip.held)
            continue
        lines.append(f"{'-' if ip.delete else ' '} {head}: " + (f"{len(ip.delete)} image(s) to delete" if ip.delete else "nothing to delete"))
        lines += [f"    - {rich_text(_image_line(image))}" for image in ip.delete]
        lines.append(f"    kept: {ip.in_use} in use, {ip.tagged} with other tags than src-, {ip.other} indexes or other artifacts"
                     + (f", {ip.recent} pushed since {_when(plan.pushed_since)} or at a time ECR does not say"
                        if plan.pushed_since is not None else ""))
    versions, images = plan.counts
    stopped = f"; {plan.stopped} stopped: could not be read" if plan.stopped else ""
    lines.append(f"Prune: {versions} version(s) and {images} image(s) to delete{stopped}")
    return "\n".join(lines) + "\n"


def _when(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _held_lines(head: str, held: Held) -> list[str]:
    style = "bold red" if held.failed else "yellow"
    return ([f"[{style}]! {head}: {rich_text(held_words(held))}[/{style}]"]
            + [f"    {rich_text(str(problem))}" for problem in held.problems])


def outcome_text(pruned: Pruned) -> str:
    """After --yes (each deletion was said as it happened): what was spared, what failed, the counts."""
    lines = [f"kept image {rich_text(_image_line(image))} of {rich_text(repository.uri)}: found in use (or its users not all "
             "readable) when read again before deleting" for repository, image in pruned.spared]
    lines += [f"[bold red]failed: {rich_text(problem)}[/bold red]" for problem in pruned.problems]
    lines.append(f"Pruned: {len(pruned.versions)} version(s), {len(pruned.images)} image(s) deleted"
                 + (f"; {len(pruned.problems)} problem(s)" if pruned.problems else ""))
    return "\n".join(lines) + "\n"


def to_json(plan: PrunePlan, pruned: Pruned | None = None) -> str:
    """The plan (and, after --yes, what was done) as one JSON document; ASCII only."""
    doc: dict[str, object] = {
        "functions": [{"name": vp.function, "region": vp.region, "keep": vp.keep,
                       "delete": [{"version": v.version, "digest": v.digest} for v in vp.delete],
                       "kept": {"newest": list(vp.newest), "aliased": list(vp.aliased)},
                       "held": _held_json(vp.held)} for vp in plan.versions],
        "repositories": [{"repository": ip.repository.uri,
                          "delete": [{"digest": image.digest, "tags": list(image.tags)} for image in ip.delete],
                          "kept": {"in_use": ip.in_use, "tagged": ip.tagged, "other": ip.other, "recent": ip.recent},
                          "held": _held_json(ip.held)} for ip in plan.images],
        "pushed_since": None if plan.pushed_since is None else plan.pushed_since.astimezone(timezone.utc).isoformat(),
        "failed": plan.failed,
        "applied": None if pruned is None else {
            "versions": [{"function": f, "version": v} for f, v in pruned.versions],
            "images": [{"repository": r.uri, "digest": i.digest, "tags": list(i.tags)} for r, i in pruned.images],
            "spared": [{"repository": r.uri, "digest": i.digest} for r, i in pruned.spared],
            "problems": _messages(pruned.problems)},
    }
    # ASCII escapes leave no control character; "##[" would be a CI log command wherever it stands.
    return json.dumps(doc, indent=2, ensure_ascii=True).replace("##[", "##\\u005b") + "\n"


def _held_json(held: Held | None) -> object:
    if held is None:
        return None
    return {"reason": held.why.value, "message": held_words(held), "facts": list(held.facts), "problems": _messages(held.problems)}


def _messages(problems: Iterable[Diagnostic]) -> list[str]:
    return [terminal_text(problem) for problem in problems]
