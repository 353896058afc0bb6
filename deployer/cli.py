"""Command line: parses arguments, calls the use cases (deployer.app), renders, maps errors to exit codes.

Exit codes: 0 success, 1 any error (invalid input included), 2 only for `plan --detailed-exitcode`
when there are changes, 130 on Ctrl-C. Click's own usage errors (normally 2) are mapped to 1 so
that 2 keeps its one meaning.
"""

from __future__ import annotations

import enum
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional, Sequence

import typer
from typer.exceptions import TyperException
from rich.console import Console

from deployer import __version__
from deployer.errors import DeployerError, Diagnostic, InvalidSpecError

app = typer.Typer(
    name="deployer",
    help="Build Go AWS Lambda functions as container images and deploy them from deploy.yaml files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

PathsArg = typer.Argument(None, help="deploy.yaml files, or directories searched recursively for deploy.yaml. Default: the current directory.", show_default=False)

CacheDirOption = typer.Option(None, "--cache-dir", envvar="DEPLOYER_CACHE_DIR", help="Directory that keeps the engine's Go module and build caches between runs (for CI caches): restored into an engine that has none, saved after a build.", show_default=False)


def _check_env(value: Optional[str]) -> Optional[str]:
    """A --env (or DEPLOYER_ENV) no deploy.yaml could declare is a usage error, said before
    anything is read (the files' messages would suggest declaring it). Empty: none selected."""
    from deployer.environments import NAME
    from deployer.render import terminal_text

    if value and not NAME.fullmatch(value):
        raise typer.BadParameter(f"{terminal_text(repr(value[:40]))} is not an environment name: 1 to 32 lowercase letters, "
                                 "digits, '-' or '_', starting with a letter, as deploy.yaml's `environments` declare them")
    return value


EnvOption = typer.Option(None, "--env", envvar="DEPLOYER_ENV", callback=_check_env, metavar="NAME", help="The environment of deploy.yaml to use (its `environments`); required when the files declare environments.", show_default=False)


def _check_shard(value: Optional[str]) -> Optional[str]:
    """A bad --shard (or DEPLOYER_SHARD) is a usage error, said before anything is read."""
    from deployer.shard import parse

    if value is not None:
        try:
            parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


# prune keeps images younger than this: longer than an apply takes from its push to its update.
DEFAULT_MIN_AGE = "1h"


def _check_age(value: str) -> str:
    """A bad --min-age is a usage error, said before anything is read."""
    from deployer.prune import parse_age

    try:
        parse_age(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


ShardOption = typer.Option(None, "--shard", envvar="DEPLOYER_SHARD", callback=_check_shard, metavar="K/N", help="Only shard K of N of the plan's functions (a stable partition decided from the plan: functions sharing an image together, builds spread evenly), for N CI jobs applying one saved plan.", show_default=False)

# emoji=False: a value holding ":smile:" is shown as written.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def report(diagnostics: Sequence[Diagnostic]) -> None:
    """Problems of the user's files, every one, then how many: the printer of validate and of
    any InvalidSpecError. (Other errors are one `error: ...` message, printed by main.)"""
    for diagnostic in diagnostics:
        say(diagnostic)
    say(f"{len(diagnostics)} problem(s) found")


def say(message: object) -> None:
    """A message to stderr that may quote foreign values (paths, AWS and engine errors): shown
    without control characters or escape sequences, and without anything shaped like a
    credential."""
    from deployer.redact import redact
    from deployer.render import terminal_lines

    for line in terminal_lines(redact(str(message))):
        err.print(line, markup=False)


def _version(value: bool) -> None:
    if value:
        print(f"deployer {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """Build Go AWS Lambda functions as container images and deploy them from deploy.yaml files."""


@app.command()
def validate(paths: Optional[List[Path]] = PathsArg, env: Optional[str] = typer.Option(None, "--env", envvar="DEPLOYER_ENV", callback=_check_env, metavar="NAME", help="Check only this environment of deploy.yaml. Default: every environment the files declare.", show_default=False)) -> int:
    """Check deploy.yaml files against the schema and for meaning; print every problem found."""
    from deployer import app as use_cases

    validated = use_cases.validate(paths or [Path(".")], env or None)
    if validated.problems:
        report(validated.problems)
        return 1
    spec = validated.spec
    names = ", ".join(fn.name for fn in spec.functions)
    checked = f" in environment(s) {', '.join(validated.environments)}" if validated.environments else ""
    out.print(f"{len(spec.files)} file(s) valid{checked}: {len(spec.functions)} function(s): {names}")
    return 0


@app.command("schema")
def print_schema() -> None:
    """Print the JSON Schema of deploy.yaml."""
    from deployer.schema import schema_text

    sys.stdout.write(schema_text())


@app.command("context")
def write_context(
    paths: Optional[List[Path]] = PathsArg,
    function: str = typer.Option(..., "--function", help="The function whose build context to write."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the context to; must not exist or be empty."),
    env: Optional[str] = EnvOption,
) -> None:
    """Write a function's assembled build context to a directory and print its source digest."""
    from deployer.context import assemble
    from deployer.layout import DockerfileBuild
    from deployer.load import load

    spec = load(paths or [Path(".")], environment=env or None)
    ctx = assemble(spec.function(function), out_dir)
    how = f"Dockerfile: {ctx.recipe.dockerfile}" if isinstance(ctx.recipe, DockerfileBuild) else "built-in Go build"
    say(f"context of {function} written to {ctx.path} ({how}, shared modules: {', '.join(ctx.shared_modules) or 'none'})")
    out.print(ctx.digest, markup=False)


class OutputFormat(str, enum.Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


@app.command()
def plan(
    paths: Optional[List[Path]] = PathsArg,
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text for terminals, markdown for pull requests, json for machines."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also save the plan as JSON, for 'deployer apply FILE'."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 0 when nothing changes, 2 when something would, 1 on error."),
    shard: Optional[str] = ShardOption,
    registry_endpoint: Optional[str] = typer.Option(None, "--registry-endpoint", envvar="DEPLOYER_REGISTRY_ENDPOINT", help="Read the labels of the images functions run from this registry host[:port] instead of the ECR host; for local ECR emulators."),
    env: Optional[str] = EnvOption,
) -> int:
    """Compare deploy.yaml with what runs in AWS and print what apply would do. Builds nothing."""
    from deployer import app as use_cases
    from deployer.aws import Clients
    from deployer.render import render
    from deployer.shard import annotate, parse, select

    planned = use_cases.plan(paths or [Path(".")], Clients(), out_file, registry_endpoint=registry_endpoint, environment=env or None)
    the_plan = planned.plan
    # --shard shows (and counts) one shard's functions; --out still saves them all, for every shard's apply.
    selection = None if shard is None else select(the_plan, parse(shard))
    shown = the_plan if selection is None else selection.plan
    # The markdown's truncation notes name the saved plan; a blocked plan is never saved.
    saved = str(out_file) if out_file is not None and not the_plan.blocked else None
    rendered = render(shown, fmt.value, saved)
    if selection is not None:
        rendered = annotate(rendered, fmt.value, selection)
    if fmt is OutputFormat.text:
        out.print(rendered, end="")
    else:
        sys.stdout.write(rendered)
    shown.refuse_blocked()
    if out_file is not None:
        the_plan.refuse_blocked()  # every shard's functions are saved
        use_cases.save(planned, out_file)
        say(f"plan saved to {out_file}; apply it with: deployer apply {out_file}" + (f" --shard K/{selection.shard.count}" if selection else ""))
    return 2 if detailed_exitcode and shown.has_changes else 0


@app.command()
def apply(
    paths: Optional[List[Path]] = typer.Argument(None, help="deploy.yaml files or directories (planned now); or a plan file saved by 'plan --out' (*.json), followed by the paths that plan was given (default: the current directory).", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking for confirmation."),
    parallelism: int = typer.Option(2, "--parallelism", "-j", min=1, max=32, help="Functions built and deployed at once."),
    keep_context: bool = typer.Option(False, "--keep-context", help="Keep the temporary build contexts and print where they are."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show docker build output."),
    registry_endpoint: Optional[str] = typer.Option(None, "--registry-endpoint", envvar="DEPLOYER_REGISTRY_ENDPOINT", help="Push to this registry host[:port] instead of the ECR host; for local ECR emulators. Lambda is still given the ECR image URI."),
    cache_dir: Optional[Path] = CacheDirOption,
    shard: Optional[str] = ShardOption,
    env: Optional[str] = EnvOption,
) -> int:
    """Build, push and deploy what the plan says, skipping everything that is already true."""
    from deployer import app as use_cases
    from deployer.apply import ApplyOptions
    from deployer.aws import Clients
    from deployer.progress import ConsoleReporter, interval_from_environment
    from deployer.render import render
    from deployer.shard import parse, text_line

    reporter = ConsoleReporter(out, interval=interval_from_environment())  # a bad interval is refused before AWS is asked
    clients = Clients()
    saved = paths is not None and len(paths) > 0 and paths[0].suffix == ".json"
    if shard is not None and not saved:
        # N jobs planning on their own would each see the others' changes and cut the plan differently.
        raise DeployerError("--shard (or DEPLOYER_SHARD) applies part of a saved plan, which every shard's job must share: save it once with "
                            "'deployer plan --out plan.json', then run 'deployer apply plan.json --shard K/N' in each job")
    if saved:
        assert paths is not None
        work = use_cases.prepare_saved(paths[0], paths[1:] or [Path(".")], clients, parse(shard) if shard is not None else None,
                                       environment=env or None)
    else:
        work = use_cases.prepare_live(paths or [Path(".")], clients, environment=env or None, registry_endpoint=registry_endpoint)
    out.print(render(work.plan, "text"), end="")
    if work.shard is not None:
        out.print(text_line(work.shard), markup=False)
    for refusal in work.refusals:
        say(f"refused: {refusal.message}")
    work.plan.refuse_blocked()
    if not work.plan.has_changes and not work.refusals:
        out.print("No changes: every function already runs the image of its current source.")
        return 0
    if work.plan.has_changes and not (yes or saved):
        if not sys.stdin.isatty():
            raise DeployerError("apply needs confirmation but stdin is not a terminal; pass --yes to apply without asking")
        if not typer.confirm("Apply this plan?", default=False):
            err.print("nothing applied")
            return 1
    with reporter:  # the live area and the ticker thread end with the apply, before the summary
        applied = use_cases.apply(work, clients, ApplyOptions(parallelism, keep_context, verbose, registry_endpoint or None), reporter,
                                  cache_dir)
    reporter.summary(applied.outcomes)
    if applied.interrupted:
        return 130
    return 1 if any(o.failed for o in applied.outcomes) else 0


@app.command()
def build(
    paths: Optional[List[Path]] = typer.Option(None, "--path", "-p", help="deploy.yaml files or directories (repeatable). Default: the current directory.", show_default=False),
    functions: Optional[List[str]] = typer.Argument(None, help="Functions to build. Default: all.", show_default=False),
    parallelism: int = typer.Option(2, "--parallelism", "-j", min=1, max=32, help="Functions built at once."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the build output."),
    cache_dir: Optional[Path] = CacheDirOption,
    env: Optional[str] = EnvOption,
) -> int:
    """Build images into the local Docker engine, without AWS: no login, no push. Prints each
    image's tag, deployer/<function>:<content tag>."""
    from deployer import app as use_cases
    from deployer.local_build import LocalBuildOptions
    from deployer.progress import ConsoleReporter, interval_from_environment

    reporter = ConsoleReporter(err, interval=interval_from_environment())
    with reporter:
        built = use_cases.build(paths or [Path(".")], functions or [], LocalBuildOptions(parallelism, verbose), reporter, cache_dir,
                                env or None)
    for image in built.images:
        if image.error:
            say(f"{image.function}: failed: {image.error}")
        else:
            out.print(image.tag, markup=False)
    if built.interrupted:
        return 130
    return 1 if any(image.error for image in built.images) else 0


@app.command()
def invoke(
    function: str = typer.Argument(..., help="The function to run."),
    local: bool = typer.Option(False, "--local", help="Run the function's image on the local Docker engine (the only mode for now)."),
    event: Optional[str] = typer.Option(None, "--event", "-e", help="File holding the event (JSON), or - for stdin. Default: {}.", show_default=False),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, max=900, help="Seconds the invocation may run. Default: 3, Lambda's.", show_default=False),
    paths: Optional[List[Path]] = typer.Option(None, "--path", "-p", help="deploy.yaml files or directories (repeatable). Default: the current directory.", show_default=False),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the build output."),
    cache_dir: Optional[Path] = CacheDirOption,
    env: Optional[str] = EnvOption,
) -> int:
    """Build a function's image if needed and run it locally against a Lambda Runtime API that
    deployer serves: the response goes to stdout (as it is, unless stdout is a terminal), the
    function's logs to stderr. Exit 1 when the function fails (function error, init error,
    timeout, exit without an answer), 130 on Ctrl-C."""
    from deployer import app as use_cases
    from deployer.interrupts import Cancelled
    from deployer.progress import ConsoleReporter, interval_from_environment
    from deployer.render import terminal_lines
    from deployer.runtime_api import read_event

    if not local:
        raise DeployerError("invoke runs functions locally only for now: pass --local")
    payload = read_event(event, sys.stdin.buffer)  # before the build: a bad event costs nothing
    reporter = ConsoleReporter(err, interval=interval_from_environment())
    try:
        with reporter:
            invoked = use_cases.invoke_local(paths or [Path(".")], function, payload, timeout, reporter, say, verbose, cache_dir,
                                             env or None)
    except Cancelled:
        return 130  # what the run made is removed; main says "interrupted"
    if not invoked.succeeded:
        say(f"error: {invoked.failure}")
        return 1
    if sys.stdout.isatty():  # the response is foreign: on a terminal it must not drive it
        for line in terminal_lines(invoked.payload.decode("utf-8", "replace")):
            out.print(line, markup=False)
    else:  # a pipe or a file gets the response exactly as the function gave it
        sys.stdout.buffer.write(invoked.payload)
        sys.stdout.flush()
    return 0


@app.command()
def history(
    function: str = typer.Argument(..., help="The function (as deploy.yaml names it).", show_default=False),
    paths: Optional[List[Path]] = typer.Option(None, "--path", "-p", help="deploy.yaml files or directories (repeatable). Default: the current directory.", show_default=False),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
    registry_endpoint: Optional[str] = typer.Option(None, "--registry-endpoint", envvar="DEPLOYER_REGISTRY_ENDPOINT", help="Read image labels from this registry host[:port] instead of the ECR host; for local ECR emulators."),
    env: Optional[str] = EnvOption,
) -> int:
    """A function's published versions, newest first: image, source digest and commit it was built from, date, aliases."""
    import json

    from deployer import app as use_cases
    from deployer.aws import Clients
    from deployer.render import history_text

    found = use_cases.history(paths or [Path(".")], function, Clients(), registry_endpoint or None, env or None)
    if fmt is OutputFormat.json:
        data = [{"version": e.version, "image": e.image, "date": e.date, "aliases": list(e.aliases), "source_digest": e.source_digest,
                 "commit": e.commit, "description": e.note} for e in found.entries]
        sys.stdout.write(json.dumps({"function": found.function.name, "region": found.function.region, "environment": found.environment,
                                     "versions": data}, indent=2)
                         .replace("##[", "##\\u005b") + "\n")
    else:
        out.print(history_text(found.function.name, found.entries, found.environment), end="", markup=False)
    return 0


@app.command()
def rollback(
    function: str = typer.Argument(..., help="The function (as deploy.yaml names it).", show_default=False),
    to: Optional[str] = typer.Option(None, "--to", help="The version to move the alias to. Default: the one it was on before the last release.", show_default=False),
    paths: Optional[List[Path]] = typer.Option(None, "--path", "-p", help="deploy.yaml files or directories (repeatable). Default: the current directory.", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Roll back without asking for confirmation."),
    env: Optional[str] = EnvOption,
) -> int:
    """Move the function's release alias back (to the version it was on before the last release, or --to VERSION); without a release alias, redeploy $LATEST to the image its last update replaced."""
    from deployer import app as use_cases
    from deployer.aws import Clients
    from deployer.render import terminal_text

    clients = Clients()
    planned = use_cases.plan_rollback(paths or [Path(".")], function, to, clients, env or None)
    out.print(terminal_text(planned.describe()), markup=False)
    if not yes:
        if not sys.stdin.isatty():
            raise DeployerError("rollback needs confirmation but stdin is not a terminal; pass --yes to roll back without asking")
        if not typer.confirm("Roll back?", default=False):
            err.print("nothing changed")
            return 1
    use_cases.do_rollback(planned, clients)
    out.print(terminal_text(planned.done()), markup=False)
    return 0


@app.command("import")
def import_(
    names: List[str] = typer.Argument(..., help="Names of the Lambda functions to import.", show_default=False),
    region: Optional[str] = typer.Option(None, "--region", help="Their region. Default: AWS_REGION, AWS_DEFAULT_REGION or the profile's.", show_default=False),
    source: str = typer.Option("{name}", "--source", help="Each function's Go source directory, relative to the deploy.yaml; {name} is the function's name."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write a new deploy.yaml there (never replaced) instead of printing it.", show_default=False),
) -> int:
    """Write deploy.yaml entries for functions that exist (and their ECR repositories): what a plan right after finds equal. Environment values are never copied: each becomes a from_env reference."""
    from deployer import app as use_cases
    from deployer.aws import Clients, default_region

    where = region or default_region()
    if not where:
        raise DeployerError("no region; pass --region, or set AWS_REGION")
    imported = use_cases.import_functions(names, Clients(), where, source, out_file)
    if imported.out is None:
        sys.stdout.write(imported.text)
    else:
        say(f"wrote {imported.out} ({len(set(names))} function(s)); review it, set the variables its comments name, then run: deployer plan")
    return 0


class PruneFormat(str, enum.Enum):
    text = "text"
    json = "json"


@app.command()
def prune(
    paths: Optional[List[Path]] = PathsArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete what the plan lists. Without it nothing is deleted."),
    keep: Optional[int] = typer.Option(None, "--keep", min=2, max=1000, help="Versions to keep per function with release settings, newest first (overrides release.keep).", show_default=False),
    fmt: PruneFormat = typer.Option(PruneFormat.text, "--format", "-f", help="text or json."),
    min_age: str = typer.Option(DEFAULT_MIN_AGE, "--min-age", callback=_check_age, metavar="AGE", help="Keep images pushed less than AGE ago (30m, 1h, 7d; 0 keeps none for its age): an apply running now may not have deployed its image yet."),
    env: Optional[str] = EnvOption,
) -> int:
    """Delete old versions (beyond release.keep, never an aliased one) of the functions of deploy.yaml, then the src- images of their repositories that no version, alias or $LATEST of any function of the region uses. Without --yes, only shows what it would delete."""
    from deployer import app as use_cases
    from deployer.aws import Clients
    from deployer.prune import outcome_text, parse_age, text, to_json
    from deployer.render import terminal_text

    clients = Clients()
    pruning = use_cases.plan_prune(paths or [Path(".")], clients, keep, env or None, parse_age(min_age))
    if fmt is PruneFormat.text:
        out.print(text(pruning.plan), end="")
    versions, images = pruning.plan.counts
    if not yes or not versions + images:
        if fmt is PruneFormat.json:
            sys.stdout.write(to_json(pruning.plan))
        elif versions + images:
            out.print("Nothing deleted: run again with --yes to delete.", markup=False)
        return 1 if pruning.plan.failed else 0

    def progress(line: str) -> None:
        (out if fmt is PruneFormat.text else err).print(terminal_text(line), markup=False)

    pruned = use_cases.apply_prune(pruning, clients, progress)
    if fmt is PruneFormat.json:
        sys.stdout.write(to_json(pruning.plan, pruned))
    else:
        out.print(outcome_text(pruned), end="")
    return 1 if pruning.plan.failed or pruned.problems else 0


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="deployer", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except InvalidSpecError as exc:
        report(exc.diagnostics)
        code = 1
    except DeployerError as exc:
        if debug:
            say(traceback.format_exc())
        say(f"error: {exc}")
        code = 1
    except TyperException as exc:  # usage errors: typer's vendored click shows them itself
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        code = 1
    except Exception as exc:  # a bug: say so briefly, the traceback only on request
        if debug:
            say(traceback.format_exc())
        say(f"internal error: {type(exc).__name__}: {exc}")
        say("this is a bug in deployer; rerun with --debug and report the output")
        code = 1
    if code == 130:  # typer may report Ctrl-C as a result, an Exit or an Abort
        err.print("interrupted", markup=False)
        # Ctrl-C: what had to be cleaned up was (apply waits for its workers before it returns).
        # Threads still blocked in read-only AWS calls of observe would hold the exit for their
        # retries; don't wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
