"""plan: (Desired, Observed) per function -> Plan. PURE: no boto3, no docker, no disk.

A Plan is data: per function one Action, the values that justify it, and the ordered Steps that
apply will execute. Each step type is its own frozen class so the executor can match on them
exhaustively; each says in words what it will do.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Union, get_args

from deployer.errors import PlanError
from deployer import repository_config
from deployer.image_inputs import Explanation
from deployer.function_config import SEPARATE_KEYS, FieldChange, changed_keys, changes, creation_fields
from deployer.state import Desired, ImageElsewhere, Observed

# 2: plans record the deploy.yaml files they were made from (`sources`), which apply re-checks.
# 3: configuration changes per function, and the key of their secrets' hashes.
# 4: repository settings changes per function.
# 5: releases (a version published, smoke-tested, an alias moved).
# 6: the deploy.yaml environment a plan is for (`environment`, null without one).
# 7: an explanation's changed file may be a rename (`renamed_from`); `dirty` may be null (unknown).
FORMAT_VERSION = 7


# Without versions, apply records on the function (tags deployer owns; deploy.yaml may not declare
# them) the image an update replaced, which `deployer rollback` redeploys, and a rollback the image
# it rolled back from, which the plan then does not deploy again until the source changes.
PREVIOUS_IMAGE_TAG = "deployer:previous-image"
ROLLED_BACK_TAG = "deployer:rolled-back-from"


class Action(enum.Enum):
    """What happens to a function. The value is how the action is shown."""

    NOOP = "no change"
    CONFIGURE = "update configuration"  # the code is up to date, the configuration is not
    UPDATE = "update"
    BUILD = "build, push and update"
    CREATE = "create"  # the function is missing: created from the image (built first when ECR has none)
    RELEASE = "release"  # $LATEST is up to date, its alias is not: a version published and the alias moved
    BLOCKED = "blocked"

    @property
    def symbol(self) -> str:
        return {"NOOP": " ", "CONFIGURE": "~", "UPDATE": "~", "BUILD": "+", "CREATE": "+", "RELEASE": "~", "BLOCKED": "!"}[self.name]


class ReasonCode(enum.Enum):
    """Why a function gets its action. The value is the code in JSON plans."""

    UP_TO_DATE = "up_to_date"  # NOOP: Lambda runs the content image with the wanted architecture
    CONFIGURATION_DIFFERS = "configuration_differs"  # CONFIGURE: the code is up to date, declared keys differ
    ALIAS_BEHIND = "alias_behind"  # RELEASE: the alias's version runs another image or configuration than $LATEST
    ALIAS_MISSING = "alias_missing"  # RELEASE: the declared alias does not exist yet
    ROLLED_BACK = "rolled_back"  # NOOP: rolled back (the alias, or $LATEST from this source's image); held until a change
    NO_IMAGE = "no_image_for_source"  # BUILD: ECR has no image under the content tag
    IMAGE_ELSEWHERE = "image_in_other_environment"  # UPDATE: not here, in another environment's repository: copied
    OTHER_IMAGE = "runs_other_image"  # UPDATE: Lambda runs another digest
    ARCHITECTURE_ONLY = "architecture_only"  # UPDATE: the right digest, the wrong architecture
    LAST_UPDATE_FAILED = "last_update_failed"  # UPDATE: Lambda says its last update failed
    FUNCTION_MISSING = "function_missing"  # CREATE, or BLOCKED when deploy.yaml gives no role
    NOT_AN_IMAGE_FUNCTION = "not_an_image_function"  # BLOCKED: a Zip package
    REPOSITORY_MISSING = "repository_missing"  # BLOCKED
    REPOSITORY_ENCRYPTION_DIFFERS = "repository_encryption_differs"  # BLOCKED: ECR cannot change it
    NOT_SINGLE_PLATFORM = "not_single_platform"  # BLOCKED: the tag holds an index / manifest list


@dataclass(frozen=True)
class Reason:
    """Why a function gets its action: a code and the facts that are not already in its
    FunctionPlan. For display only (deployer.explain words it): apply never decides anything
    from a reason, as terraform's ActionReason. `detail` is AWS's own value where the code needs
    one (the failed update's LastUpdateStatusReason, the package type, the media type), foreign
    text to be shown inert; `update_in_progress` notes a LastUpdateStatus of InProgress."""

    code: ReasonCode
    detail: str | None = None
    update_in_progress: bool = False


@dataclass(frozen=True)
class ImageRef:
    """An image in a repository, by digest ("sha256:...") or, before it is built, by tag.
    Invariant: exactly one of `digest` and `tag` is set."""

    repository_uri: str
    digest: str | None = None
    tag: str | None = None

    def __post_init__(self) -> None:
        if (self.digest is None) == (self.tag is None):
            raise ValueError("an image reference has either a digest or a tag")

    def __str__(self) -> str:
        return f"{self.repository_uri}@{self.digest}" if self.digest else f"{self.repository_uri}:{self.tag}"


@dataclass(frozen=True)
class CreateRepository:
    repository: str  # the URI
    settings: tuple[str, ...]  # `setting: value`, every one (the defaults fill what deploy.yaml does not declare)

    def describe(self) -> str:
        return f"create ECR repository {self.repository} ({', '.join(self.settings)})"


@dataclass(frozen=True)
class ConfigureRepository:
    repository: str  # the URI
    keys: tuple[str, ...]  # the changed settings, deploy.yaml's names

    def describe(self) -> str:
        return f"update the settings of ECR repository {self.repository} ({', '.join(self.keys)})"


@dataclass(frozen=True)
class PublishVersion:
    function: str
    alias: str | None  # the alias the version is released to (recorded on it), if any
    previous: str | None  # that alias's version before (recorded on it: what a rollback returns to)

    def describe(self) -> str:
        return f"publish a version of {self.function}"


@dataclass(frozen=True)
class SmokeTest:
    function: str
    event_file: str  # as deploy.yaml names it
    event_sha256: str  # hex of the event's bytes: apply invokes with these, re-read and checked
    expect: str | None  # `field == value`, or None: only a function error fails it

    def describe(self) -> str:
        check = f", expecting {self.expect}" if self.expect else ""
        return f"smoke test the new version with {self.event_file}{check}"


@dataclass(frozen=True)
class MoveAlias:
    function: str
    alias: str
    previous: str | None  # the version it is on now; None: created

    def describe(self) -> str:
        return f"move alias {self.alias}: {self.previous or '(new)'} -> the new version"


@dataclass(frozen=True)
class EcrLogin:
    registry: str

    def describe(self) -> str:
        return f"log in to ECR registry {self.registry}"


@dataclass(frozen=True)
class AssembleContext:
    source_digest: str

    def describe(self) -> str:
        return f"assemble build context (source {short(self.source_digest)})"


@dataclass(frozen=True)
class BuildImage:
    platform: str

    def describe(self) -> str:
        return f"build image for {self.platform}"


@dataclass(frozen=True)
class PushImage:
    image: ImageRef  # by content tag

    def describe(self) -> str:
        return f"push {self.image}"


@dataclass(frozen=True)
class VerifyImage:
    image: ImageRef  # by content tag

    def describe(self) -> str:
        return f"verify {self.image} is a single-platform image in ECR"


@dataclass(frozen=True)
class CopyImage:
    """The image of this source, found in another environment's repository, copied by digest
    under the content tag here: the same manifest bytes, so the same digest, and no build."""

    source: ImageRef  # by digest, in the other environment's repository
    image: ImageRef  # by content tag, here

    def describe(self) -> str:
        return f"copy {self.source} to {self.image} (same digest, no build)"


@dataclass(frozen=True)
class UpdateFunctionCode:
    function: str
    image: ImageRef  # by digest when known at plan time, else by the content tag (apply pins the pushed digest)
    architecture: str

    def describe(self) -> str:
        return f"update function {self.function} to {self.image} ({self.architecture})"


@dataclass(frozen=True)
class UpdateFunctionConfiguration:
    function: str
    keys: tuple[str, ...]  # the changed keys, deploy.yaml's names (environment as one key)

    def describe(self) -> str:
        return f"update the configuration of {self.function} ({', '.join(self.keys)})"


@dataclass(frozen=True)
class CreateFunction:
    function: str
    image: ImageRef  # by digest when known at plan time, else by the content tag (apply pins the pushed digest)
    architecture: str

    def describe(self) -> str:
        return f"create function {self.function} from {self.image} ({self.architecture})"


@dataclass(frozen=True)
class WaitForActive:
    function: str

    def describe(self) -> str:
        return f"wait until {self.function} is Active"


@dataclass(frozen=True)
class WaitForUpdate:
    function: str

    def describe(self) -> str:
        return f"wait until {self.function} reports LastUpdateStatus Successful"


@dataclass(frozen=True)
class Cleanup:
    def describe(self) -> str:
        return "remove the temporary build context"


Step = Union[CreateRepository, ConfigureRepository, EcrLogin, AssembleContext, BuildImage, PushImage, CopyImage, VerifyImage,
             UpdateFunctionConfiguration, UpdateFunctionCode, WaitForUpdate, CreateFunction, WaitForActive, PublishVersion, SmokeTest,
             MoveAlias, Cleanup]
STEP_TYPES: tuple[type, ...] = get_args(Step)


@dataclass(frozen=True)
class ReleasePlan:
    """A release after the function's changes: a version published, smoke-tested when `smoke_*`
    is set, and `alias` (when set) moved to it from `current_version`, the alias's version now
    (None: the alias is created), whose RevisionId `alias_revision` guards the move."""

    alias: str | None
    current_version: str | None
    alias_revision: str | None
    smoke_event_file: str | None = None
    smoke_event_sha256: str | None = None
    smoke_expect: str | None = None


@dataclass(frozen=True)
class FunctionPlan:
    """The decision for one function. `current_*` is what AWS reports now (apply re-reads and
    compares them to refuse a stale plan); `desired_digest` is None when the image is yet to be
    built; `configuration` lists the declared keys Lambda does not have, `repository_changes` the
    repository's declared settings ECR does not have (both for any action but BLOCKED)."""

    desired: Desired
    action: Action
    reason: Reason
    current_digest: str | None
    desired_digest: str | None
    current_architectures: tuple[str, ...]
    revision_id: str | None
    steps: tuple[Step, ...]
    configuration: tuple[FieldChange, ...] = ()  # for CREATE: every declared key, as additions
    create_repository: bool = False  # the repository is missing: the steps create it first
    repository_changes: tuple[FieldChange, ...] = ()  # for a repository created: every setting, as additions
    release: ReleasePlan | None = None  # the release the steps end with (deploy.yaml's release settings)
    # Why the image changes, from the labels of the image Lambda runs now (deployer.provenance);
    # None: not asked (no image change, or no running image). For reviewers only: apply ignores it.
    explanation: Explanation | None = None
    # An UPDATE or CREATE whose image is copied from another environment's repository (its digest
    # is `desired_digest`) instead of built: the steps start with the copy.
    copy_from: ImageElsewhere | None = None

    @property
    def name(self) -> str:
        return self.desired.name

    @property
    def changes(self) -> bool:
        return self.action in (Action.CONFIGURE, Action.UPDATE, Action.BUILD, Action.CREATE, Action.RELEASE)


@dataclass(frozen=True)
class SourceFile:
    """A deploy.yaml a plan was made from: `path` is POSIX, relative to the checkout the plan was
    made in (the nearest directory holding .git); `sha256` is the hex digest of its bytes."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Plan:
    functions: tuple[FunctionPlan, ...]  # sorted by function name
    format_version: int = FORMAT_VERSION
    sources: tuple[SourceFile, ...] = ()  # sorted by path; what a saved plan is bound to
    # hex: the HMAC key of the secrets' hashes in `configuration` changes, or with DEPLOYER_PLAN_KEY
    # its random part (deployer.app.secrets_key)
    hash_key: str = ""
    environment: str | None = None  # the deploy.yaml environment it is for (--env); a saved plan applies only there
    # Under an environment: the AWS account of the credentials it was made with, where its functions
    # are (a saved plan applies only with that account's credentials).
    account: str | None = None

    @property
    def has_changes(self) -> bool:
        return any(fp.changes for fp in self.functions)

    @property
    def blocked(self) -> tuple[FunctionPlan, ...]:
        return tuple(fp for fp in self.functions if fp.action is Action.BLOCKED)

    def refuse_blocked(self) -> None:
        """PlanError naming the blocked functions, if any; each one's reason is in the plan."""
        if self.blocked:
            names = ", ".join(fp.name for fp in self.blocked)
            raise PlanError(f"{len(self.blocked)} function(s) cannot be deployed: {names}; see the reasons above")

    def counts(self) -> dict[Action, int]:
        return {action: sum(fp.action is action for fp in self.functions) for action in Action}


def short(digest: str | None) -> str:
    """sha256:0123456789ab: enough of a digest to recognise it in a review."""
    if not digest:
        return "-"
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:12]


def make_plan(pairs: Iterable[tuple[Desired, Observed]], hash_key: bytes = b"", recorded_key: bytes | None = None) -> Plan:
    """`hash_key`: the key of the secrets' hashes (a saved plan's, when a plan is made again to
    be compared with it; a new random one otherwise, chosen by the caller). The plan records
    `recorded_key` instead when given: the random part of a key that also depends on a secret."""
    functions = tuple(sorted((plan_function(d, o, hash_key) for d, o in pairs), key=lambda fp: fp.name))
    return Plan(functions, hash_key=(hash_key if recorded_key is None else recorded_key).hex())


def plan_function(desired: Desired, observed: Observed, hash_key: bytes = b"") -> FunctionPlan:
    fn, image = observed.function, observed.image
    in_progress = fn.last_update_status == "InProgress"
    configuration = changes(desired.config, fn.config, hash_key) if fn.exists else ()
    create_repository = not image.repository_exists
    if create_repository:
        settings = repository_config.creation_fields(desired.repository_config)
    elif observed.repository is not None:
        settings = repository_config.changes(desired.repository_config, observed.repository)
    else:
        settings = ()

    # Not in this repository, in another environment's: copied (same digest), never built again.
    copy = observed.elsewhere if image.digest is None else None
    desired_digest = image.digest or (copy.digest if copy is not None else None)

    def decide(action: Action, code: ReasonCode, detail: str | None = None) -> FunctionPlan:
        blocked = action is Action.BLOCKED
        config, repository = ((), ()) if blocked else (configuration, settings)
        if action is Action.NOOP and (config or repository):
            action, code = Action.CONFIGURE, ReasonCode.CONFIGURATION_DIFFERS
        if action is Action.NOOP and behind is ReasonCode.ROLLED_BACK:
            code = behind
        elif action is Action.NOOP and behind is not None:
            action, code = Action.RELEASE, behind
        if action is Action.CREATE:
            config = creation_fields(desired.config, hash_key)
        creates = create_repository and not blocked
        reason = Reason(code, detail, in_progress)
        # A version is published when what a version holds changes (the code, a versioned key), or
        # for the alias: tags, reserved concurrency and repository settings alone publish nothing.
        publishes = action in (Action.BUILD, Action.UPDATE, Action.CREATE, Action.RELEASE) or (
            action is Action.CONFIGURE and (versioned(config) or behind not in (None, ReasonCode.ROLLED_BACK)))
        released = release if publishes else None
        copied = copy if action in (Action.UPDATE, Action.CREATE) else None
        digest = desired_digest if copied is not None else image.digest
        steps = steps_for(action, desired, digest, config, creates, repository, released, copied)
        return FunctionPlan(desired, action, reason, fn.running_digest, digest, fn.architectures, fn.revision_id, steps,
                            config, creates, repository, released, copy_from=copied)

    release = release_plan(desired, observed)
    behind = alias_behind(desired, observed)

    if create_repository and not desired.create_repository:
        return decide(Action.BLOCKED, ReasonCode.REPOSITORY_MISSING)
    fixed = repository_config.fixed_at_creation(settings)
    if fixed and not create_repository:
        return decide(Action.BLOCKED, ReasonCode.REPOSITORY_ENCRYPTION_DIFFERS,
                      "; ".join(f"{c.field.removeprefix(repository_config.FIELD_PREFIX)} {c.before or '(none)'} -> {c.after or '(none)'}"
                                for c in fixed))
    if image.digest is not None and not image.single_platform:
        return decide(Action.BLOCKED, ReasonCode.NOT_SINGLE_PLATFORM, image.media_type)
    if not fn.exists:
        return decide(Action.CREATE if desired.config.role else Action.BLOCKED, ReasonCode.FUNCTION_MISSING)
    if fn.package_type and fn.package_type != "Image":
        return decide(Action.BLOCKED, ReasonCode.NOT_AN_IMAGE_FUNCTION, fn.package_type)
    if image.digest is None and copy is None:
        return decide(Action.BUILD, ReasonCode.NO_IMAGE)
    if image.digest is None:
        return decide(Action.UPDATE, ReasonCode.IMAGE_ELSEWHERE)
    arch_change = tuple(fn.architectures) != (desired.architecture,)
    if fn.last_update_status == "Failed" or fn.state == "Failed":
        return decide(Action.UPDATE, ReasonCode.LAST_UPDATE_FAILED, fn.last_update_reason)
    if fn.running_digest != image.digest and desired.release is None and fn.config.tags.get(ROLLED_BACK_TAG) == image.digest:
        return decide(Action.NOOP, ReasonCode.ROLLED_BACK, image.digest)
    if fn.running_digest != image.digest:
        return decide(Action.UPDATE, ReasonCode.OTHER_IMAGE)
    if arch_change:
        return decide(Action.UPDATE, ReasonCode.ARCHITECTURE_ONLY)
    return decide(Action.NOOP, ReasonCode.UP_TO_DATE)


def release_plan(desired: Desired, observed: Observed) -> ReleasePlan | None:
    """The release deploy.yaml asks for after a change (None: no release settings)."""
    settings = desired.release
    if settings is None:
        return None
    alias = observed.alias if observed.alias is not None and observed.alias.exists else None
    smoke = settings.smoke_test
    expect = f"{smoke.expect_field} == {json.dumps(smoke.expect_value)}" if smoke and smoke.expect_field else None
    return ReleasePlan(settings.alias, alias.version if alias else None, alias.revision_id if alias else None,
                       smoke.event_file.name if smoke else None,
                       hashlib.sha256(smoke.event).hexdigest() if smoke else None, expect)


# Keys a version does not hold as declared: reserved concurrency and tags are the function's, and a
# version's description is the record its release wrote (the declared one is $LATEST's).
UNVERSIONED_KEYS = (*SEPARATE_KEYS, "description")


def alias_behind(desired: Desired, observed: Observed) -> ReasonCode | None:
    """Why the declared alias is not on what $LATEST holds (None: it is, or there is none): it is
    missing, or its version runs another image, or has another value of a declared key that a
    version holds. An alias `deployer rollback` moved stays (ROLLED_BACK) until the next change of
    the function: releasing $LATEST again would undo the rollback on the next apply."""
    if desired.release is None or desired.release.alias is None or not observed.function.exists:
        return None
    alias = observed.alias
    if alias is None or not alias.exists:
        return ReasonCode.ALIAS_MISSING
    if alias.version == "$LATEST":  # it follows $LATEST: no version was released to it
        return ReasonCode.ALIAS_BEHIND
    differs = [c for c in changes(desired.config, alias.config, b"") if c.field.partition(".")[0] not in UNVERSIONED_KEYS]
    if alias.code_sha256 != observed.function.code_sha256 or differs:
        return ReasonCode.ROLLED_BACK if alias.rolled_back else ReasonCode.ALIAS_BEHIND
    return None


def versioned(configuration: tuple[FieldChange, ...]) -> bool:
    """Whether `configuration` changes what a published version holds (not tags, reserved concurrency)."""
    return any(c.field.partition(".")[0] not in UNVERSIONED_KEYS for c in configuration)


def steps_for(action: Action, desired: Desired, desired_digest: str | None,
              configuration: tuple[FieldChange, ...] = (), create_repository: bool = False,
              repository_changes: tuple[FieldChange, ...] = (), release: ReleasePlan | None = None,
              copy_from: ImageElsewhere | None = None) -> tuple[Step, ...]:
    """The steps of an action: the one place that says what apply does for it (a saved plan
    is checked against this too). A missing repository is created first, and the settings of one
    that exists are set first (before anything is pushed to it). A configuration change
    comes after the image is in ECR and before the code update, each followed by its wait
    (Lambda takes one update at a time): a failed build changes nothing. A function is created
    with its whole configuration at once. A release (`release`) comes after the function's own
    steps and their waits: a version is published of $LATEST as apply left it. An image copied
    from another environment's repository (`copy_from`) is copied where a build would be made."""
    keys = changed_keys(configuration)
    configure: tuple[Step, ...] = (UpdateFunctionConfiguration(desired.name, keys), WaitForUpdate(desired.name)) if keys else ()
    repository: tuple[Step, ...] = (
        (CreateRepository(desired.repository_uri, tuple(f"{c.field.removeprefix(repository_config.FIELD_PREFIX)}: {c.after}"
                                                         for c in repository_changes)),) if create_repository
        else (ConfigureRepository(desired.repository_uri, repository_config.changed_keys(repository_changes)),)
        if repository_changes else ())
    released = _release_steps(desired.name, release) if release is not None else ()
    tagged = ImageRef(desired.repository_uri, tag=desired.content_tag)
    copied: tuple[Step, ...] = () if copy_from is None else (
        CopyImage(ImageRef(copy_from.repository.uri, digest=copy_from.digest), tagged), VerifyImage(tagged))
    if action is Action.RELEASE:
        return released
    if action is Action.CONFIGURE:
        return (*repository, *configure, *released)
    if action is Action.UPDATE:
        pinned = ImageRef(desired.repository_uri, digest=desired_digest)
        return (*repository, *copied, *configure, UpdateFunctionCode(desired.name, pinned, desired.architecture),
                WaitForUpdate(desired.name), *released)
    if action is Action.CREATE and desired_digest is not None:
        pinned = ImageRef(desired.repository_uri, digest=desired_digest)
        return (*repository, *copied, CreateFunction(desired.name, pinned, desired.architecture), WaitForActive(desired.name),
                *released)
    if action is Action.CREATE:
        return (*repository, *_build_steps(desired, tagged), CreateFunction(desired.name, tagged, desired.architecture),
                WaitForActive(desired.name), *released, Cleanup())
    if action is Action.BUILD:
        return (
            *repository,
            *_build_steps(desired, tagged),
            *configure,
            UpdateFunctionCode(desired.name, tagged, desired.architecture),
            WaitForUpdate(desired.name),
            *released,
            Cleanup(),
        )
    return ()


def _release_steps(function: str, release: ReleasePlan) -> tuple[Step, ...]:
    """Publish, then (with a smoke test) invoke the new version, then move the alias: the alias
    moves only to a version that answered as expected."""
    steps: list[Step] = [PublishVersion(function, release.alias, release.current_version)]
    if release.smoke_event_file is not None and release.smoke_event_sha256 is not None:
        steps.append(SmokeTest(function, release.smoke_event_file, release.smoke_event_sha256, release.smoke_expect))
    if release.alias is not None:
        steps.append(MoveAlias(function, release.alias, release.current_version))
    return tuple(steps)


def _build_steps(desired: Desired, tagged: ImageRef) -> tuple[Step, ...]:
    return (EcrLogin(desired.registry), AssembleContext(desired.source_digest), BuildImage(desired.platform),
            PushImage(tagged), VerifyImage(tagged))
