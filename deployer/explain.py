"""explain: a function's plan in words. The planner decides with typed reasons (plan.Reason);
this is the one place that turns them into sentences, for every output format.

The sentences quote values from AWS (`Reason.detail`) as they are: each renderer makes them inert
for its medium (deployer.render).
"""

from __future__ import annotations

from deployer import repository_config
from deployer.function_config import FieldChange, changed_keys
from deployer.image_inputs import FileChange, display_name
from deployer.plan import Action, FunctionPlan, ReasonCode, ReleasePlan, short


def reason(fp: FunctionPlan) -> str:
    """Why `fp` gets its action, with the values that justify it."""
    d, why = fp.desired, fp.reason
    match why.code:
        case ReasonCode.FUNCTION_MISSING if fp.action is Action.BLOCKED:
            return (f"function {d.name} does not exist in {d.region}, and deploy.yaml gives no role to create it with; "
                    "add `role: <ARN of its execution role>` to the function (or to defaults)")
        case ReasonCode.FUNCTION_MISSING:
            source = (copied(fp) if fp.copy_from is not None else f"ECR's image {short(fp.desired_digest)}" if fp.desired_digest
                      else f"the image of source {short(d.source_digest)}, built first")
            text = f"function {d.name} does not exist in {d.region}: created from {source}"
        case ReasonCode.NOT_AN_IMAGE_FUNCTION:
            return (f"function {d.name} is a {why.detail} package; only Image functions can run a container image; "
                    "recreate it with PackageType Image")
        case ReasonCode.REPOSITORY_MISSING:
            return (f"ECR repository {d.repository_uri} does not exist, and deploy.yaml says not to create it "
                    "(repository.create: false); create it, or remove `create: false` to let deployer create it")
        case ReasonCode.REPOSITORY_ENCRYPTION_DIFFERS:
            return (f"ECR repository {d.repository_uri} is encrypted otherwise than deploy.yaml says ({why.detail}), and ECR "
                    "cannot change a repository's encryption; declare what it has, or recreate the repository (a new "
                    "name, or delete it: its images go with it)")
        case ReasonCode.NOT_SINGLE_PLATFORM:
            return (f"ECR tag {d.content_tag} is a {why.detail or 'unknown media type'}; Lambda accepts only single-platform "
                    "image manifests; delete the tag and push a single-platform image (no provenance/SBOM attestations)")
        case ReasonCode.IMAGE_ELSEWHERE:
            text = f"no image in ECR for source {short(d.source_digest)} here (tag {d.content_tag}): {copied(fp)}"
        case ReasonCode.NO_IMAGE:
            text = f"no image in ECR for source {short(d.source_digest)} (tag {d.content_tag})"
        case ReasonCode.UP_TO_DATE:
            text = f"runs {short(fp.current_digest)}, the image of source {short(d.source_digest)}"
        case ReasonCode.ALIAS_MISSING:
            text = (f"runs {short(fp.current_digest)}, the image of source {short(d.source_digest)}; alias "
                    f"{fp.release.alias if fp.release else '?'} does not exist: created on a new version")
        case ReasonCode.ALIAS_BEHIND:
            release = fp.release
            text = (f"runs {short(fp.current_digest)}, the image of source {short(d.source_digest)}; alias "
                    f"{release.alias if release else '?'} is on version {release.current_version if release else '?'}, "
                    "which runs another image or configuration")
        case ReasonCode.ROLLED_BACK if d.release is None:
            text = (f"runs {short(fp.current_digest)}: deployer rollback took it back from {short(why.detail)}, the image of "
                    f"source {short(d.source_digest)}, which stays undeployed until the source changes (fix or revert it and apply)")
        case ReasonCode.ROLLED_BACK:
            text = (f"runs {short(fp.current_digest)}, the image of source {short(d.source_digest)}; alias "
                    f"{fp.desired.release.alias if fp.desired.release else '?'} was rolled back and stays where it is until "
                    "the function changes (fix or revert the change and apply: the new version is smoke-tested)")
        case ReasonCode.CONFIGURATION_DIFFERS:
            text = f"runs {short(fp.current_digest)}, the image of source {short(d.source_digest)}"
            if fp.configuration:
                text += f"; configuration differs: {configuration_keys(fp)}"
        case ReasonCode.LAST_UPDATE_FAILED:
            text = (f"the function's last update failed ({why.detail or 'no reason given'}); "
                    f"updating it again to {short(fp.desired_digest)}")
        case ReasonCode.ARCHITECTURE_ONLY:
            text = "architecture change only"
        case ReasonCode.OTHER_IMAGE:
            text = f"runs {short(fp.current_digest)}, ECR has {short(fp.desired_digest)} for the current source"
    if fp.create_repository:
        text += f"; repository {d.repository_name} does not exist: created first"
    elif fp.repository_changes:
        text += f"; repository settings differ: {', '.join(repository_config.changed_keys(fp.repository_changes))}"
    if architecture_changes(fp) and fp.action is not Action.CREATE:
        text += f"; architectures {','.join(fp.current_architectures) or 'none'} -> {d.architecture}"
    if why.update_in_progress:
        text += "; an update is in progress" + (" (apply retries until it ends)" if fp.changes else "")
    return text


def copied(fp: FunctionPlan) -> str:
    """Where a copied image comes from: `image of this source copied from production's repository ...`."""
    source = fp.copy_from
    if source is None:
        return f"the image of source {short(fp.desired.source_digest)}"
    return (f"the image of this source copied from {source.environment}'s repository {source.repository.uri} "
            f"({short(source.digest)}, same digest, not built again)")


def release_line(release: ReleasePlan) -> str:
    """A release in one line: `publish a version, smoke test with smoke.json, move alias live: 7 -> new version`."""
    parts = ["publish a version"]
    if release.smoke_event_file:
        parts.append(f"smoke test with {release.smoke_event_file}" + (f" ({release.smoke_expect})" if release.smoke_expect else ""))
    if release.alias:
        parts.append(f"move alias {release.alias}: {release.current_version or '(new)'} -> new version")
    return ", ".join(parts)


def configuration_keys(fp: FunctionPlan) -> str:
    """The keys a plan changes, environment variables as one key."""
    return ", ".join(changed_keys(fp.configuration))


def change_line(change: FieldChange) -> str:
    """One configuration change as `~ memory: 128 -> 512` (`+` added, `-` removed). Its values
    are shown forms already (secrets masked), still foreign: the renderers make them inert."""
    if change.before is None:
        return f"+ {change.field}: {change.after}"
    if change.after is None:
        return f"- {change.field}: {change.before}"
    return f"~ {change.field}: {change.before} -> {change.after}"


def architecture_changes(fp: FunctionPlan) -> bool:
    return fp.action is not Action.BLOCKED and fp.current_architectures != (fp.desired.architecture,)


# -- why the image changes (deployer.provenance) ----------------------------------------------------

def why_line(fp: FunctionPlan) -> str | None:
    """Which inputs of the image changed since the one Lambda runs, in one line: `shared/errors
    changed; function code unchanged; running image built from commit 1a2b3c4`. None when the
    plan did not explain the function (no image change)."""
    why = fp.explanation
    if why is None:
        return None
    if why.unreadable:
        return ("the labels of the running image could not be read (registry refused or too slow, or the image is gone): "
                "only its source digest is known to differ")
    if not why.labelled:
        return ("the running image records no inputs (built by another tool, or by a deployer from before they were "
                "recorded): only its source digest is known to differ")
    parts = [f"{display_name(c.name)} {c.change}" for c in why.changed] or ["no recorded input differs"]
    if why.unchanged:
        parts.append(f"{', '.join(display_name(name) for name in why.unchanged)} unchanged")
    if why.commit:
        dirty = {True: " with uncommitted changes", None: " (whether with uncommitted changes is unknown)"}.get(why.dirty, "")
        parts.append(f"running image built from commit {why.commit[:7]}{dirty}")
    return "; ".join(parts)


def changed_file_lines(fp: FunctionPlan) -> list[str]:
    """The files changed in the function's inputs since the running image's commit, as `git diff
    --stat` shows them, ending with its summary line; or why they cannot be listed."""
    why = fp.explanation
    if why is None or not why.labelled or why.commit is None:
        return []
    if why.files is None:
        return [f"commit {why.commit[:7]} is not in the local git history: fetch it (a full clone) to list the changed files"]
    files = why.files
    if files.total == 0:
        return ["no file of the function's inputs changed since that commit (the build settings or base images did)"]
    shown = [_renamed(f.renamed_from, f.path) if f.renamed_from else f.path for f in files.files]
    width = max(map(len, shown))
    lines = [f"{name.ljust(width)} | {_stat(f)}" for name, f in zip(shown, files.files)]
    if files.total > len(files.files):
        lines.append(f"... and {files.total - len(files.files)} more files")
    added, deleted = sum(f.added for f in files.files), sum(f.deleted for f in files.files)
    lines.append(f"{files.total} file{'s' if files.total != 1 else ''} changed, {added} insertion{'s' if added != 1 else ''}(+), "
                 f"{deleted} deletion{'s' if deleted != 1 else ''}(-)" + (" (in the files listed)" if files.total > len(files.files) else ""))
    return lines


def _renamed(old: str, new: str) -> str:
    """A rename as git's --stat writes it (diff.c's pprint_rename): the directories both paths
    share before and after the change outside braces, `shared/errors/{errors.go => errs.go}`;
    the shared suffix may reuse the prefix's last slash, `d/{ => g}/f.go`."""
    prefix = 0
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            break
        if a == "/":
            prefix = i + 1
    suffix = 0
    ended_old, ended_new = old + "\0", new + "\0"  # both ends match, as C's terminators do
    i, j, floor = len(old), len(new), prefix - (1 if prefix else 0)
    while i >= floor and j >= floor and ended_old[i] == ended_new[j]:
        if ended_old[i] == "/":
            suffix = len(old) - i
        i, j = i - 1, j - 1
    if not prefix + suffix:
        return f"{old} => {new}"
    middle_old, middle_new = max(len(old) - prefix - suffix, 0), max(len(new) - prefix - suffix, 0)
    return f"{old[:prefix]}{{{old[prefix:prefix + middle_old]} => {new[prefix:prefix + middle_new]}}}{old[len(old) - suffix:]}"


def _stat(change: FileChange) -> str:
    if change.binary and change.renamed_from:
        return "Bin"  # as git writes a binary file's exact rename
    if change.binary:
        return f"Bin {change.old_size or 0} -> {change.new_size or 0} bytes"
    total = change.added + change.deleted
    scale = max(1, -(-total // 40))  # git scales the bar to fit; 40 marks at most here
    return f"{total} {'+' * -(-change.added // scale)}{'-' * -(-change.deleted // scale)}".rstrip()
