"""binding: what ties a saved plan to the deploy.yaml files and the AWS state it was made from.

A plan file is what a reviewer approves, but it is also a file anyone with write access to a CI
artifact can edit. Apply therefore trusts nothing in it that it can check:

1. `record_sources` / `bind_sources`: the plan names its deploy.yaml files (relative to the
   checkout) with a SHA-256 of each. Apply finds deploy.yaml files where it is told to look (the
   paths plan was given), and refuses the whole plan unless they are exactly the plan's, by path
   first, then by digest: the plan cannot choose which files count.
2. `compare`: apply loads those files again and plans afresh. What deploy.yaml alone decides
   (the set of functions; each one's region, repository, platform) must be identical, else the
   whole plan is refused as not made from these files. What can legitimately move between plan
   and apply (the source tree, the function in AWS, the image a content tag resolves to) refuses
   only that function, with "changed since plan", as apply's own re-check before an update does.

So an edited plan can never deploy anything the checkout's deploy.yaml files and the current
AWS state would not: the plan's only power is to say *no* (a function it does not change is not
changed). That is why no signature is needed: a plan carries no authority a signature would protect.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from deployer import explain, planfile
from deployer.errors import PlanError
from deployer.paths import display, git_root, inside, read_inside, resolve, shown
from deployer.plan import Action, FunctionPlan, Plan, SourceFile, short

# A deploy.yaml is a few kilobytes (load refuses more than 1 MB); the same bound applies here.
MAX_SOURCE_BYTES = 1_000_000
# Problems listed by name in one message; the rest are counted.
MAX_LISTED = 20


def checkout_root(start: Path) -> Path:
    """The checkout a plan's paths are relative to: the nearest directory from `start` upwards
    that holds `.git` (a directory, or a file in a worktree), else `start` itself."""
    start = start.resolve()
    return git_root((start, *start.parents)) or start


def _within(base: Path, path: Path) -> Path:
    """`path` resolved, if it lies inside `base` (symlinks followed); else PlanError."""
    real = path.resolve()
    if not inside(real, base):
        raise PlanError(f"{display(path)} lies outside the checkout {base}; a saved plan can only name files "
                        "inside it: run plan from inside the repository that holds the deploy.yaml files")
    return real


def nameable(file: Path, base: Path) -> bool:
    """Whether a plan can name `file`: inside the checkout, on a path a plan allows."""
    real = file.resolve()
    return inside(real, base) and planfile.is_relative_posix(real.relative_to(base).as_posix())


def record_sources(files: Iterable[Path], base: Path) -> tuple[SourceFile, ...]:
    """The deploy.yaml files of a plan, relative to `base`, each with the digest of its bytes."""
    sources = {}
    for file in files:
        real = _within(base, file)
        try:
            data = read_inside(real, base, limit=MAX_SOURCE_BYTES)
        except OSError as exc:
            raise PlanError(f"{display(file)}: cannot read it to record it in the plan ({exc.strerror or exc})") from exc
        path = real.relative_to(base).as_posix()
        if not planfile.is_relative_posix(path):
            raise PlanError(f"{display(file)}: a plan cannot name this file (its path holds characters a plan does not "
                            "allow, or is too long); rename it")
        sources[path] = hashlib.sha256(data).hexdigest()
    return tuple(SourceFile(path, digest) for path, digest in sorted(sources.items()))


def bind_sources(plan: Plan, found: Sequence[Path], base: Path, plan_file: str) -> list[Path]:
    """The deploy.yaml files `found` where apply was told to look, once they are shown to be the
    plan's sources, unchanged. PlanError otherwise, naming every difference.

    First the paths alone: each found file, resolved, must lie inside the checkout, and the set
    of their checkout-relative paths must be the plan's; nothing the plan names is read before
    that (an edited plan cannot choose which file is "the" deploy.yaml, nor learn the digest of
    another). Then each file's bytes must hash to the plan's digest. The files returned are the
    found ones, as found: load reads them as plan did (a link out of the checkout is refused the
    same way)."""
    by_path: dict[str, Path] = {}
    problems = []
    for file in found:
        try:
            real = resolve(file)
        except OSError as exc:  # a symlink loop: load reports it as plan did
            problems.append(f"{display(file)}: cannot be resolved ({exc.strerror or exc})")
            continue
        if not inside(real, base):
            problems.append(f"{display(file)}: resolves to {shown(str(real))}, outside the checkout {base}")
            continue
        by_path[real.relative_to(base).as_posix()] = file
    recorded = {source.path for source in plan.sources}
    problems += [f"{shown(path)}: in the plan, not among the deploy.yaml files apply was given" for path in sorted(recorded - set(by_path))]
    problems += [f"{shown(path)}: given to apply, not in the plan" for path in sorted(set(by_path) - recorded)]
    if problems:
        raise PlanError(f"{plan_file}: the plan was made from other deploy.yaml files than apply was given:\n  "
                        + _listed(problems) + "\ngive apply the paths plan was given (deployer apply PLAN.json PATH...), "
                        "or run plan again")
    for source in plan.sources:
        try:
            digest = hashlib.sha256(read_inside(by_path[source.path], base, limit=MAX_SOURCE_BYTES)).hexdigest()
        except OSError as exc:
            problems.append(f"{shown(source.path)}: cannot read it ({exc.strerror or exc})")
            continue
        if digest != source.sha256:
            problems.append(f"{shown(source.path)} changed since the plan was made (sha256 {source.sha256[:12]} -> {digest[:12]})")
    if problems:
        raise PlanError(f"{plan_file}: the plan does not match the deploy.yaml files in {base}:\n  " + _listed(problems)
                        + "\nrun plan again (and apply in the checkout the plan was made in)")
    return list(found)


def _listed(problems: list[str]) -> str:
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return "\n  ".join(problems[:MAX_LISTED]) + more


@dataclass(frozen=True)
class Refusal:
    """A function of a saved plan that apply will not run: the world moved since the plan."""

    name: str
    message: str


# Fields of Desired that deploy.yaml alone decides; `spec_file` is only how the path was shown.
_DECLARED = ("region", "repository", "platform", "architecture")


def compare(saved: Plan, fresh: Plan, plan_file: str) -> tuple[Plan, list[Refusal]]:
    """The plan to execute and the functions refused. PlanError if `saved` was not made from
    the deploy.yaml files `fresh` was (an edited or foreign plan)."""
    fresh_by_name = {fp.name: fp for fp in fresh.functions}
    problems = _missing_or_extra(saved, set(fresh_by_name))
    for fp in saved.functions:
        now = fresh_by_name.get(fp.name)
        if now is None:
            continue
        for field in _DECLARED:
            planned, declared = getattr(fp.desired, field), getattr(now.desired, field)
            if planned != declared:
                shown = (planned.uri, declared.uri) if field == "repository" else (planned, declared)
                problems.append(f"function {fp.name}: the plan says {field} {shown[0]!r}, deploy.yaml says {shown[1]!r}")
    if problems:
        raise PlanError(_not_made_from(plan_file, problems))
    run: list[FunctionPlan] = []
    refusals: list[Refusal] = []
    for fp in saved.functions:
        outcome = _decide(fp, fresh_by_name[fp.name])
        if isinstance(outcome, Refusal):
            refusals.append(outcome)
        else:
            run.append(outcome)
    return dataclasses.replace(saved, functions=tuple(run)), refusals


def check_environment(saved: Plan, selected: str | None, plan_file: str) -> None:
    """PlanError unless the plan was made for the environment this apply selects (--env or
    DEPLOYER_ENV; none for none). The operator's choice decides which settings are loaded, never
    the plan's field: an edited field can only make apply refuse."""
    if saved.environment == selected:
        return
    made = f"environment {shown(saved.environment)}" if saved.environment else "no environment"
    now = f"environment {shown(selected)}" if selected else "no environment"
    # The plan's name passed the form check of planfile: it can be written into a command.
    todo = f"apply it with --env {saved.environment}" if saved.environment else "apply it without --env and DEPLOYER_ENV"
    again = f"make a plan for {shown(selected)} with --env" if selected else "make a plan without --env"
    raise PlanError(f"{plan_file}: the plan was made for {made}, this apply is for {now}; {todo}, or {again}")


def check_account(saved: Plan, caller: str, plan_file: str) -> None:
    """PlanError unless this apply's credentials are of the account the plan (under an
    environment) was made in: production's plan run with staging's credentials would change
    staging's functions."""
    if saved.account is not None and saved.account != caller:
        raise PlanError(f"{plan_file}: the plan for environment {shown(saved.environment or '')} was made with the credentials of "
                        f"AWS account {saved.account}, this apply runs as account {shown(caller)}; apply it with that "
                        "account's credentials, or make a plan with these")


def check_functions(saved: Plan, declared: Iterable[str], plan_file: str) -> None:
    """PlanError unless the plan holds exactly the functions its deploy.yaml files declare: said
    before AWS is asked (compare says it again, with everything else)."""
    problems = _missing_or_extra(saved, set(declared))
    if problems:
        raise PlanError(_not_made_from(plan_file, problems))


def _missing_or_extra(saved: Plan, declared: set[str]) -> list[str]:
    planned = {fp.name for fp in saved.functions}
    return ([f"function {name} is in the plan but no deploy.yaml of the plan declares it" for name in sorted(planned - declared)]
            + [f"function {name} is declared but missing from the plan" for name in sorted(declared - planned)])


def _not_made_from(plan_file: str, problems: list[str]) -> str:
    return (f"{plan_file}: the plan was not made from these deploy.yaml files (edited after it was saved?):\n  "
            + _listed(problems) + "\nrun plan again")


def _decide(saved: FunctionPlan, now: FunctionPlan) -> FunctionPlan | Refusal:
    """What to run for one function: the fresh decision when it is the one that was approved."""
    name = saved.name
    if saved.desired.source_digest != now.desired.source_digest:
        return Refusal(name, f"source of {name} changed since plan ({short(saved.desired.source_digest)} -> "
                             f"{short(now.desired.source_digest)}); run plan again")
    changes = _state_changes(saved, now)
    if changes:
        return Refusal(name, f"function {name} changed since plan ({'; '.join(changes)}); run plan again")
    if now.action is Action.BLOCKED:
        return Refusal(name, f"function {name} cannot be deployed now: {explain.reason(now)}")
    if now.configuration != saved.configuration:
        # Lambda's side is guarded by the RevisionId above: what moved is a desired value, such as
        # a secret the CI environment gives (compared by its keyed hash).
        return Refusal(name, f"configuration of {name} changed since plan (the plan changes {_keys(saved)}, now "
                             f"{_keys(now)}, or to other values); run plan again")
    if not saved.changes:
        if now.changes:  # the reviewer approved no change here
            return Refusal(name, f"function {name} changed since plan (the plan found nothing to do, now it needs: "
                                 f"{now.action.value}); run plan again")
        return now
    if now.create_repository and not saved.create_repository:
        return Refusal(name, f"repository {now.desired.repository_name} of {name} was deleted since the plan, which did not "
                             "create it; run plan again")
    if now.release != saved.release:
        return Refusal(name, f"the release of {name} changed since plan ({_release(saved)} -> {_release(now)}); run plan again")
    if not _approved_settings(saved, now):
        return Refusal(name, f"repository settings of {name} changed since plan (the plan changes {_keys(saved, True)}, now "
                             f"{_keys(now, True)}, or to other values); run plan again")
    if (saved.action is Action.CREATE) != (now.action is Action.CREATE):
        return Refusal(name, f"function {name} changed since plan (the plan would {saved.action.value} it, now it needs: "
                             f"{now.action.value}); run plan again")
    if saved.action is Action.CONFIGURE and now.action is not Action.CONFIGURE:
        # The reviewer approved a configuration change; the code now needs a change too (a tag
        # pushed or deleted since the plan): that digest was never approved.
        return Refusal(name, f"function {name} changed since plan (the plan only updates its configuration, now it needs: "
                             f"{now.action.value}); run plan again")
    if saved.copy_from is not None and now.desired_digest != saved.desired_digest:
        # The source image the plan copies is gone (or another one holds the tag now): building
        # or deploying another digest instead was never approved.
        source = saved.copy_from
        return Refusal(name, f"the image {name}'s plan copies, {short(source.digest)} from {source.environment}'s repository "
                             f"{source.repository.uri}, is no longer there (now: {_image_now(now)}); run plan again")
    if now.copy_from is not None and saved.copy_from is None and saved.action in (Action.BUILD, Action.CREATE):
        # An image of this source appeared in another environment since the plan, which builds it.
        return Refusal(name, f"{now.copy_from.environment}'s repository got the image of {name}'s source since the plan, "
                             f"which builds it ({short(now.desired_digest)} would be copied instead); run plan again")
    if saved.action is Action.UPDATE and now.desired_digest != saved.desired_digest:
        return Refusal(name, f"ECR tag {saved.desired.content_tag} of {name} now resolves to {short(now.desired_digest)}, "
                             f"the plan deploys {short(saved.desired_digest)}; run plan again")
    if saved.action is Action.CREATE and now.desired_digest != saved.desired_digest:
        # A creation runs the image the plan approved: the one ECR had, or the one it builds.
        approved = short(saved.desired_digest) if saved.desired_digest else "an image it builds"
        return Refusal(name, f"ECR tag {saved.desired.content_tag} of {name} now holds {short(now.desired_digest)}, the plan "
                             f"creates the function from {approved}; run plan again")
    if saved.action is Action.BUILD and now.action is not Action.BUILD:
        # An image under the content tag since the plan: a concurrent apply of the same source, or
        # a plan edited from UPDATE to BUILD to skip the digest check above. Either way the plan
        # did not approve that digest.
        return Refusal(name, f"ECR tag {saved.desired.content_tag} of {name} now holds {short(now.desired_digest)}, "
                             "pushed since the plan, which builds it; run plan again")
    return now


def _image_now(fp: FunctionPlan) -> str:
    """Where the image of `fp`'s source is now, in words."""
    if fp.copy_from is not None:
        return f"{short(fp.copy_from.digest)} in {fp.copy_from.environment}'s repository"
    return f"{short(fp.desired_digest)} here" if fp.desired_digest else "nowhere: it would be built"


def _release(fp: FunctionPlan) -> str:
    """What differs in a release between two plans, in words: the alias's place and revision, the event."""
    r = fp.release
    if r is None:
        return "none"
    moved = f"alias {r.alias} on {r.current_version or '(none)'} at revision {r.alias_revision or '-'}" if r.alias else "no alias"
    return moved + (f", smoke event sha256:{r.smoke_event_sha256[:12]}" if r.smoke_event_sha256 else "")


def _approved_settings(saved: FunctionPlan, now: FunctionPlan) -> bool:
    """Whether the repository settings apply would set now are the ones the plan approved. A plan
    that creates the repository approved all of its settings' values: when another apply made it
    since (from the same deploy.yaml), what is left to set is among them."""
    if saved.create_repository and not now.create_repository:
        return {(c.field, c.after) for c in now.repository_changes} <= {(c.field, c.after) for c in saved.repository_changes}
    return now.repository_changes == saved.repository_changes


def _keys(fp: FunctionPlan, repository: bool = False) -> str:
    return ", ".join(change.field for change in (fp.repository_changes if repository else fp.configuration)) or "nothing"


def _state_changes(saved: FunctionPlan, now: FunctionPlan) -> list[str]:
    changes = []
    if now.current_digest != saved.current_digest:
        changes.append(f"digest {short(saved.current_digest)} -> {short(now.current_digest)}")
    if now.current_architectures != saved.current_architectures:
        changes.append(f"architectures {','.join(saved.current_architectures)} -> {','.join(now.current_architectures)}")
    if now.revision_id != saved.revision_id:
        changes.append(f"revision {saved.revision_id} -> {now.revision_id}")
    return changes
