"""The use cases the CLI offers, wired from the stages: validate, plan, save a plan, prepare an apply.

`cli.py` parses arguments, renders and maps errors to exit codes; what happens in between is here,
so that it can be called (and tested) without a command line.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from deployer import binding, planfile
from deployer.errors import BuildContextError, PlanError
from deployer.layout import layout
from deployer.load import load
from deployer.paths import display, inside
from deployer.plan import Plan, make_plan
from deployer.spec import FunctionSpec, Spec

if TYPE_CHECKING:  # boto3 is imported only by the use cases that ask AWS
    from deployer.aws import Clients


@dataclass(frozen=True)
class Validated:
    """deploy.yaml files that load, and what laying out their build contexts found: one line per
    problem, in the order of the functions. No problems: plan would accept the files."""

    spec: Spec
    problems: tuple[str, ...]


def validate(paths: Sequence[Path]) -> Validated:
    """Load deploy.yaml files (InvalidSpecError lists every problem in them), then lay out each
    function's build context, which reads the tree and writes nothing: what plan would refuse
    (go.mod files, replace targets, build args, symlinks, unreadable files) is found here too."""
    spec = load(paths)
    problems: list[str] = []
    for fn in spec.functions:
        try:
            layout(fn)
        except BuildContextError as exc:  # one problem a line; every function is laid out
            problems.extend(str(exc).splitlines())
    return Validated(spec, tuple(problems))


@dataclass(frozen=True)
class Planned:
    """A plan and the spec it was made from."""

    spec: Spec
    plan: Plan


def plan(paths: Sequence[Path], clients: Clients, out: Path | None = None) -> Planned:
    """Load deploy.yaml files, observe AWS, decide. The plan's sources are recorded relative to
    the checkout of the working directory; files outside it are left out, and such a plan cannot
    be saved. With `out` (where the plan will be saved) that path is checked before AWS is asked."""
    spec = load(paths)
    base = binding.checkout_root(Path.cwd())
    recorded = [f for f in spec.files if inside(f.resolve(), base)]
    unrecorded = tuple(f for f in spec.files if f not in recorded)
    if out is not None:
        if unrecorded:
            raise PlanError(f"--out: {display(unrecorded[0])} lies outside the checkout {base}; a saved plan names its "
                            "deploy.yaml files relative to the checkout: run plan from inside the repository that holds them")
        check_out_path(out, spec)
    from deployer.observe import observe

    made = make_plan(observe(spec, clients))
    sources = binding.record_sources(recorded, base)
    return Planned(spec, Plan(made.functions, made.format_version, sources))


def save(planned: Planned, out: Path) -> None:
    """Write the plan to `out`, checked again: it may have appeared while AWS was asked."""
    check_out_path(out, planned.spec)
    planfile.write(planned.plan, out)


def check_out_path(out: Path, spec: Spec) -> None:
    """PlanError if writing a plan to `out` could destroy or change anything the user owns."""
    target = Path(os.path.abspath(out))
    try:
        target = target.parent.resolve() / target.name  # the file itself may be a link: not followed
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise PlanError(f"--out {out}: cannot use this path ({exc.strerror or exc}); choose another file") from exc
    for file in spec.files:
        if file.resolve() == target or (info is not None and os.path.samefile(file, target)):
            raise PlanError(f"--out {out}: is {display(file)}, a deploy.yaml this plan reads; write the plan to another file")
    for fn in spec.functions:
        for module_dir in _module_dirs(fn):
            if inside(target, module_dir):
                raise PlanError(f"--out {out}: lies inside {display(module_dir)}, part of the build context of {fn.name}; "
                                "the plan would change the next plan's source digest: write it outside the function's modules")
    if info is None:
        return
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise PlanError(f"--out {out}: is {kind}; plan --out writes only a new file or a previous plan file")
    if not _is_plan_file(target):
        raise PlanError(f"--out {out}: exists and is not a deployer plan; plan --out overwrites only a previous plan "
                        "file: choose a new file name")


def _module_dirs(fn: FunctionSpec) -> Iterable[Path]:
    from deployer.modules import discover

    try:
        return tuple(discover(fn).modules)
    except BuildContextError:  # plan made it this far, so this does not happen; the source dir at least
        return (fn.build.source,)


def _is_plan_file(path: Path) -> bool:
    try:
        data = json.loads(planfile.read_bounded(path))
    except (PlanError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "format_version" in data and "functions" in data


@dataclass(frozen=True)
class SavedApply:
    """A saved plan checked against its sources: what to run, what is refused, and the specs of
    the functions to run (what apply builds from)."""

    plan: Plan
    refusals: list[binding.Refusal]
    specs: dict[str, FunctionSpec]


def prepare_saved(plan_file: Path, clients: Clients) -> SavedApply:
    """Read a saved plan, check it against the deploy.yaml files it names and against AWS now."""
    saved = planfile.read(plan_file)
    if not saved.functions:
        return SavedApply(saved, [], {})
    base = binding.checkout_root(Path.cwd())
    files = binding.verify_sources(saved, base, str(plan_file))
    spec = load(files)
    from deployer.observe import observe

    fresh = make_plan(observe(spec, clients))
    to_run, refusals = binding.compare(saved, fresh, str(plan_file))
    return SavedApply(to_run, refusals, {fn.name: fn for fn in spec.functions})
