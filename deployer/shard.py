"""shard: a stable, disjoint part of a plan's functions, for N CI jobs that apply one saved plan.

`deployer apply plan.json --shard K/N` runs only shard K of N; the N jobs of a CI matrix each run
one and never talk to each other. They agree because the partition is decided from the plan alone
(the same file in every job), by a pure, deterministic function of it:

- Functions that share an image (the same repository and content tag, i.e. the same source digest:
  apply builds it once, through one future, deployer.sharing) form one group, never split: split,
  two jobs would build and push the same tag, and the second push would untag the first image.
- Each group weighs the work its shard will do: an image to build and push weighs far more than an
  AWS call and its wait; a function with nothing to do weighs almost nothing (it is read again).
- Groups are taken heaviest first (ties by repository and tag: plain string order, the same on every
  machine and whatever order the plan lists them in), each to the lightest shard so far (ties to
  the lowest index). The heaviest shard then outweighs the lightest by at most one group.

Functions that only share a repository may land in different shards: creating a repository that
another job just created counts as done (ecr_gateway.create_repository takes
RepositoryAlreadyExistsException), and a saved plan that created it accepts finding it made, with
its settings among those approved (binding._approved_settings). Their settings are the same in
every job (deployer.load refuses functions of one repository declaring different ones).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rich.markup import escape

from deployer import planfile
from deployer.plan import AssembleContext, BuildImage, Cleanup, EcrLogin, FunctionPlan, Plan, PushImage, VerifyImage
from deployer.render import terminal_text

# An image built and pushed: minutes of compile and upload, once per group however many functions use it.
BUILD_WEIGHT = 1000
# One AWS change and its wait (a code or configuration update, a creation, a version published): seconds.
STEP_WEIGHT = 10
# A function with nothing to do: apply only reads it again. Not zero, so that such groups still spread.
BASE_WEIGHT = 1
# The steps of making the image, counted in BUILD_WEIGHT once per group.
_IMAGE_STEPS = (EcrLogin, AssembleContext, BuildImage, PushImage, VerifyImage, Cleanup)
# A CI matrix has at most a few hundred jobs (GitHub's: 256); far more is a typo.
MAX_SHARDS = 1000

_SHAPE = re.compile(r" *([0-9]{1,9}) */ *([0-9]{1,9}) *")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`. Invariant: 1 <= index <= count <= MAX_SHARDS."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count <= MAX_SHARDS:
            raise ValueError(f"not a shard: {self.index}/{self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """`K/N` as a Shard; ValueError saying what is wrong and what is expected (the text is foreign:
    it may come from DEPLOYER_SHARD, and is shown inert)."""
    match = _SHAPE.fullmatch(text)
    shown = terminal_text(repr(text[:40]))  # repr: a control character is shown as its escape, not acted on
    if match is None:
        raise ValueError(f"{shown} is not K/N: give this job's shard K and the number of shards N, such as 2/3")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"{shown}: the number of shards N must be between 1 and {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise ValueError(f"{shown}: the shard K must be between 1 and N ({count})")
    return Shard(index, count)


def image_key(fp: FunctionPlan) -> tuple[str, str]:
    """What apply shares one build by (deployer.sharing: repository_uri:content_tag)."""
    return (fp.desired.repository_uri, fp.desired.content_tag)


def weight(group: Sequence[FunctionPlan]) -> int:
    """The expected work of a group of functions sharing an image, in one shard."""
    builds = any(isinstance(step, BuildImage) for fp in group for step in fp.steps)
    calls = sum(not isinstance(step, _IMAGE_STEPS) for fp in group for step in fp.steps)
    return (BUILD_WEIGHT if builds else 0) + STEP_WEIGHT * calls + BASE_WEIGHT * len(group)


def groups(functions: Iterable[FunctionPlan]) -> list[tuple[FunctionPlan, ...]]:
    """The functions by image, heaviest group first, then by image (a total, machine-independent
    order); each group's functions by name."""
    by_image: dict[tuple[str, str], list[FunctionPlan]] = {}
    for fp in functions:
        by_image.setdefault(image_key(fp), []).append(fp)
    made = [tuple(sorted(members, key=lambda fp: fp.name)) for members in by_image.values()]
    return sorted(made, key=lambda group: (-weight(group), image_key(group[0])))


def partition(functions: Iterable[FunctionPlan], count: int) -> list[tuple[FunctionPlan, ...]]:
    """The `count` shards of `functions` (index 0 is shard 1/count), each sorted by name: every
    function in exactly one, groups sharing an image whole, each group to the lightest shard."""
    if count < 1:
        raise ValueError("a partition has at least one shard")
    shards: list[list[FunctionPlan]] = [[] for _ in range(count)]
    lightest = [(0, index) for index in range(count)]  # (load, index): a heap, ties to the lowest index
    for group in groups(functions):
        load, index = heapq.heappop(lightest)
        shards[index].extend(group)
        heapq.heappush(lightest, (load + weight(group), index))
    return [tuple(sorted(members, key=lambda fp: fp.name)) for members in shards]


@dataclass(frozen=True)
class Selection:
    """Shard `shard` of a plan of `total` functions: `plan` holds only its functions (its summary
    counts only them); `names` are the functions of the shard."""

    shard: Shard
    plan: Plan
    total: int

    @property
    def names(self) -> frozenset[str]:
        return frozenset(fp.name for fp in self.plan.functions)

    def label(self) -> str:
        """`shard 2 of 3: 5 of 14 functions`."""
        return f"shard {self.shard.index} of {self.shard.count}: {len(self.plan.functions)} of {self.total} functions"


def select(plan: Plan, shard: Shard) -> Selection:
    """The plan reduced to shard `shard` of its functions (sources and hash key kept)."""
    chosen = partition(plan.functions, shard.count)[shard.index - 1]
    return Selection(shard, dataclasses.replace(plan, functions=chosen), len(plan.functions))


# -- how plan shows a shard ------------------------------------------------------------------------

def annotate(rendered: str, fmt: str, selection: Selection) -> str:
    """The shard's plan as rendered in `fmt`, saying which shard it is: text and markdown get a
    line, JSON a `shard` field."""
    if fmt == "json":
        return to_json(selection)
    if fmt == "markdown":
        return markdown(rendered, selection)
    return rendered + escape(text_line(selection)) + "\n"


def text_line(selection: Selection) -> str:
    """After the text plan's summary line."""
    others = selection.total - len(selection.plan.functions)
    return f"This is {selection.label()} (the other {others} are in the other shards; the summary counts this shard only)."


def markdown(rendered: str, selection: Selection) -> str:
    """The markdown plan with the shard said right below its first line (the one-line summary
    stays first: it is what a reader and a sticky comment's title see)."""
    first, _, rest = rendered.partition("\n")
    return f"{first}\n\n_{selection.label().capitalize()}; the summary counts this shard only._\n{rest}"


def to_json(selection: Selection) -> str:
    """The JSON plan of the shard's functions, with a `shard` field saying which shard it is."""
    data = planfile.to_dict(selection.plan)
    shard: dict[str, Any] = {"index": selection.shard.index, "count": selection.shard.count,
                             "functions": len(selection.plan.functions), "total_functions": selection.total}
    ordered = {"format_version": data.pop("format_version"), "shard": shard, **data}
    # As planfile.to_json: "##[" inside a JSON string is written "##\u005b" (no CI log command).
    return json.dumps(ordered, indent=2).replace("##[", "##\\u005b") + "\n"
