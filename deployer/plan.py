"""plan: (Desired, Observed) per function -> Plan. PURE: no boto3, no docker, no disk.

A Plan is data: per function one Action, the values that justify it, and the ordered Steps that
apply will execute. Each step type is its own frozen class so the executor can match on them
exhaustively; each says in words what it will do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Union, get_args

from deployer.errors import PlanError
from deployer.observed import Desired, Observed

# 2: plans record the deploy.yaml files they were made from (`sources`), which apply re-checks.
FORMAT_VERSION = 2


class Action(enum.Enum):
    """What happens to a function. The value is how the action is shown."""

    NOOP = "no change"
    UPDATE = "update"
    BUILD = "build, push and update"
    BLOCKED = "blocked"

    @property
    def symbol(self) -> str:
        return {"NOOP": " ", "UPDATE": "~", "BUILD": "+", "BLOCKED": "!"}[self.name]


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
    image: str  # repository_uri:content_tag

    def describe(self) -> str:
        return f"push {self.image}"


@dataclass(frozen=True)
class VerifyImage:
    image: str

    def describe(self) -> str:
        return f"verify {self.image} is a single-platform image in ECR"


@dataclass(frozen=True)
class UpdateFunctionCode:
    function: str
    image: str  # repository_uri@sha256:... when known at plan time, else repository_uri:tag
    architecture: str

    def describe(self) -> str:
        return f"update function {self.function} to {self.image} ({self.architecture})"


@dataclass(frozen=True)
class WaitForUpdate:
    function: str

    def describe(self) -> str:
        return f"wait until {self.function} reports LastUpdateStatus Successful"


@dataclass(frozen=True)
class Cleanup:
    def describe(self) -> str:
        return "remove the temporary build context"


Step = Union[EcrLogin, AssembleContext, BuildImage, PushImage, VerifyImage, UpdateFunctionCode, WaitForUpdate, Cleanup]
STEP_TYPES: tuple[type, ...] = get_args(Step)


@dataclass(frozen=True)
class FunctionPlan:
    """The decision for one function. `current_*` is what AWS reports now (apply re-reads and
    compares them to refuse a stale plan); `desired_digest` is None when the image is yet to be built."""

    desired: Desired
    action: Action
    reason: str
    current_digest: str | None
    desired_digest: str | None
    current_architectures: tuple[str, ...]
    revision_id: str | None
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return self.desired.name

    @property
    def changes(self) -> bool:
        return self.action in (Action.UPDATE, Action.BUILD)


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


def make_plan(pairs: Iterable[tuple[Desired, Observed]]) -> Plan:
    return Plan(tuple(sorted((plan_function(d, o) for d, o in pairs), key=lambda fp: fp.name)))


def plan_function(desired: Desired, observed: Observed) -> FunctionPlan:
    fn, image = observed.function, observed.image
    current = fn.running_digest

    def decide(action: Action, reason: str, steps: tuple[Step, ...] = ()) -> FunctionPlan:
        return FunctionPlan(desired, action, reason, current, image.digest, fn.architectures, fn.revision_id, steps)

    blocked = _blocker(desired, observed)
    if blocked:
        return decide(Action.BLOCKED, blocked)

    wanted_arch = (desired.architecture,)
    arch_change = tuple(fn.architectures) != wanted_arch
    arch_note = f"; architectures {','.join(fn.architectures) or 'none'} -> {desired.architecture}" if arch_change else ""
    failed = fn.last_update_status == "Failed" or fn.state == "Failed"
    notes = arch_note + ("; an update is in progress (apply retries until it ends)" if fn.last_update_status == "InProgress" else "")

    if image.digest is None:
        reason = f"no image in ECR for source {short(desired.source_digest)} (tag {desired.content_tag}){notes}"
        return decide(Action.BUILD, reason, steps_for(Action.BUILD, desired, None))
    if current == image.digest and not arch_change and not failed:
        return decide(Action.NOOP, f"runs {short(current)}, the image of source {short(desired.source_digest)}{notes}")
    if failed:
        why = fn.last_update_reason or "no reason given"
        reason = f"the function's last update failed ({why}); updating it again to {short(image.digest)}{notes}"
    elif current == image.digest:
        reason = f"architecture change only{notes}"
    else:
        reason = f"runs {short(current)}, ECR has {short(image.digest)} for the current source{notes}"
    return decide(Action.UPDATE, reason, steps_for(Action.UPDATE, desired, image.digest))


def steps_for(action: Action, desired: Desired, desired_digest: str | None) -> tuple[Step, ...]:
    """The steps of an action: the one place that says what apply does for it (a saved plan
    is checked against this too)."""
    if action is Action.UPDATE:
        pinned = f"{desired.repository_uri}@{desired_digest}"
        return (UpdateFunctionCode(desired.name, pinned, desired.architecture), WaitForUpdate(desired.name))
    if action is Action.BUILD:
        tagged = f"{desired.repository_uri}:{desired.content_tag}"
        return (
            EcrLogin(desired.registry),
            AssembleContext(desired.source_digest),
            BuildImage(desired.platform),
            PushImage(tagged),
            VerifyImage(tagged),
            UpdateFunctionCode(desired.name, tagged, desired.architecture),
            WaitForUpdate(desired.name),
            Cleanup(),
        )
    return ()


def _blocker(desired: Desired, observed: Observed) -> str | None:
    """Why the function cannot be deployed at all; the message says what to do."""
    fn, image = observed.function, observed.image
    if not fn.exists:
        return (f"function {desired.name} does not exist in {desired.region}; create it (as an Image package) "
                "first: deployer updates code, it does not create functions")
    if fn.package_type and fn.package_type != "Image":
        return f"function {desired.name} is a {fn.package_type} package; only Image functions can run a container image; recreate it with PackageType Image"
    if not image.repository_exists:
        return f"ECR repository {desired.repository_uri} does not exist; create it (aws ecr create-repository) first"
    if image.digest is not None and not image.single_platform:
        return (f"ECR tag {desired.content_tag} is a {image.media_type or 'unknown media type'}; Lambda accepts only "
                "single-platform image manifests; delete the tag and push a single-platform image (no provenance/SBOM attestations)")
    return None
