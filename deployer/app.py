"""The use cases the CLI offers, wired from the stages: validate, plan, save a plan, prepare an apply.

`cli.py` parses arguments, renders and maps errors to exit codes; what happens in between is here,
so that it can be called (and tested) without a command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from deployer import binding, planfile
from deployer.errors import BuildContextError, DeployerError, Diagnostic, PlanError
from deployer.layout import GoBuild, inputs, lay_out, reading_errors
from deployer.module_graph import unresolved_requires
from deployer.load import find_spec_files, load, load_each
from deployer.outcome import Outcome
from deployer.paths import display, inside, shown
from deployer.plan import Plan, make_plan
from deployer.spec import SPEC_FILE_NAMES, FunctionSpec, Spec

if TYPE_CHECKING:  # boto3 and the docker SDK are imported only by the use cases that need them
    from deployer.history import HistoryEntry, ImageRollback, Rollback
    from deployer.state import FunctionState
    from deployer.apply import ApplyOptions
    from deployer.aws import Clients
    from deployer.docker_gateway import DockerGateway
    from deployer.go_build import CacheDir, Netrc
    from deployer.local_build import LocalBuildOptions, LocalImage
    from deployer.local_invoke import InvokeResult
    from deployer.ports import Reporter
    from deployer.shard import Selection, Shard


@dataclass(frozen=True)
class Validated:
    """deploy.yaml files that load, and what laying out their build contexts found: a diagnostic
    per problem, in the order of the functions. No problems: plan would accept the files.
    `spec` is the files as the first of `environments` has them (checked: every one of them)."""

    spec: Spec
    problems: tuple[Diagnostic, ...]
    environments: tuple[str, ...] = ()


def validate(paths: Sequence[Path], environment: str | None = None) -> Validated:
    """Load deploy.yaml files (InvalidSpecError lists every problem in them), then lay out each
    function's build context, which reads the tree and writes nothing: what plan would refuse
    (go.mod files, replace targets, build args, symlinks, unreadable files) is found here too.
    Of a context laid out, the require lines its build cannot satisfy are problems as well
    (module_graph.unresolved_requires): plan does not look for them, the build would fail on them."""
    # Without an environment, every one the files declare: what plan --env would refuse, said now.
    specs = load_each(paths) if environment is None else (load(paths, environment=environment),)
    problems: list[Diagnostic] = []
    unresolved: set[Diagnostic] = set()  # a go.mod line is one problem, whoever shares its module
    laid: dict[str, list[tuple[object, ...]]] = {}  # a function built alike in several environments is laid out once
    for fn in (fn for spec in specs for fn in spec.functions):
        built_as = (fn.build, fn.platform, fn.root)
        if built_as in laid.setdefault(fn.name, []):
            continue
        laid[fn.name].append(built_as)
        try:
            with reading_errors(fn):  # layout(fn), keeping the module graph it is made from
                found = inputs(fn)
                laid_out = lay_out(fn, found)
        except BuildContextError as exc:  # every function is laid out: all problems at once
            problems.extend(p for p in exc.diagnostics if p not in problems)  # the same in each environment: once
            continue
        if isinstance(laid_out.recipe, GoBuild):  # what the compile would refuse (deployer.go_build), said now
            from deployer.go_build import refused_settings

            where = fn.location
            refused = [Diagnostic.at(where.file, where.line, where.column, f"function '{fn.name}': {problem}")
                       for problem in refused_settings(laid_out.recipe)]
            problems.extend(p for p in refused if p not in problems)
        # GOPROXY=off (or a list starting with off: Go tries its entries in order) downloads
        # nothing, so no require may be left to a proxy. A Dockerfile build's Go environment is
        # the Dockerfile's, unknown here: only placeholder versions are sure to fail there.
        proxies = fn.build.go_environment().get("GOPROXY", "").replace("|", ",").split(",")
        goproxy_off = fn.build.compiles_go and proxies[0].strip() == "off"
        for problem in unresolved_requires(found.graph, goproxy_off=goproxy_off):
            if problem not in unresolved:
                unresolved.add(problem)
                problems.append(problem)
    return Validated(specs[0], tuple(problems), tuple(s.environment for s in specs if s.environment))


@dataclass(frozen=True)
class Planned:
    """A plan and the spec it was made from."""

    spec: Spec
    plan: Plan


def plan(paths: Sequence[Path], clients: Clients, out: Path | None = None, environment: str | None = None,
         registry_endpoint: str | None = None) -> Planned:
    """Load deploy.yaml files, observe AWS, decide. The plan's sources are recorded relative to
    the checkout of the working directory; files it cannot name (outside the checkout, or with a
    path a plan does not allow) are left out, and such a plan cannot be saved. With `out` (where
    the plan will be saved) the plan's files and that path are checked before AWS is asked. Each
    changing function's image is explained from the labels of the image it runs (read from
    `registry_endpoint`, host[:port], instead of the ECR host when given: a local emulator)."""
    spec = load_allowed(paths, clients, environment)
    base = binding.checkout_root(Path.cwd())
    recorded = [f for f in spec.files if binding.nameable(f, base)]
    if out is not None:
        for file in spec.files:
            if file not in recorded:
                binding.record_sources([file], base)  # raises, saying why the plan cannot name it
        check_out_path(out, spec)
    from deployer.observe import observe

    from deployer.provenance import explain_plan

    salt = os.urandom(32)  # a new key per plan for its secrets' hashes
    observed = observe(spec, clients)
    made = explain_plan(make_plan(observed, secrets_key(salt, os.environ), salt), observed, clients, registry_endpoint)
    sources = binding.record_sources(recorded, base)
    # Under an environment, the account its functions land in, which only the credentials decide: shown, and bound.
    account = clients.account(spec.functions[0].region) if spec.environment is not None and spec.functions else None
    return Planned(spec, dataclasses.replace(made, sources=sources, environment=spec.environment, account=account))


def load_allowed(paths: Iterable[Path], clients: Clients, environment: str | None) -> Spec:
    """The files loaded, once the credentials are known to be of an account they allow
    (allowed_accounts): refused before anything else is read from AWS or changed there."""
    spec = load(paths, environment=environment)
    if spec.allowed_accounts and spec.functions:
        refused = spec.account_refused(clients.account(spec.functions[0].region))
        if refused is not None:
            raise DeployerError(refused)
    return spec


# A secret of the CI (set for plan and apply alike) that keys the hashes of from_env values, so
# that a plan file or JSON output in a public log does not let a weak secret be guessed offline.
PLAN_KEY_ENV = "DEPLOYER_PLAN_KEY"


def secrets_key(salt: bytes, env: Mapping[str, str]) -> bytes:
    """The HMAC key of a plan's secrets' hashes: its random salt, keyed by DEPLOYER_PLAN_KEY when set."""
    secret = env.get(PLAN_KEY_ENV, "")
    return hmac.new(secret.encode(), salt, hashlib.sha256).digest() if secret else salt


def save(planned: Planned, out: Path) -> None:
    """Write the plan to `out`, checked again: it may have appeared while AWS was asked."""
    check_out_path(out, planned.spec)
    planfile.write(planned.plan, out)


def check_out_path(out: Path, spec: Spec) -> None:
    """PlanError if writing a plan to `out` could destroy or change anything the user owns, or
    if apply would not take the file for a plan."""
    target = Path(os.path.abspath(out))
    try:
        target = target.parent.resolve() / target.name  # the file itself may be a link: not followed
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
        if not target.parent.is_dir():
            raise PlanError(f"--out {out}: directory {display(target.parent)} does not exist; create it or "
                            "choose another path") from None
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
    if info is not None:
        _check_existing(out, target, info)
    if out.suffix != ".json" or out.name in SPEC_FILE_NAMES:
        raise PlanError(f"--out {out}: a plan file's name ends in .json (that is how apply tells it from a "
                        "deploy.yaml); choose a name such as plan.json")


def _check_existing(out: Path, target: Path, info: os.stat_result) -> None:
    """An existing file is replaced only if it is a previous plan file."""
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise PlanError(f"--out {out}: is {kind}; plan --out writes only a new file or a previous plan file")
    if not _is_plan_file(target):
        raise PlanError(f"--out {out}: exists and is not a deployer plan; plan --out overwrites only a previous plan "
                        "file: choose a new file name")


def _module_dirs(fn: FunctionSpec) -> Iterable[Path]:
    from deployer.module_graph import discover

    try:
        return tuple(discover(fn).modules)
    except BuildContextError:  # checked before the tree is laid out: a broken graph still has its source dir
        return (fn.build.source,)


def _is_plan_file(path: Path) -> bool:
    try:
        data = json.loads(planfile.read_bounded(path))
    except (PlanError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "format_version" in data and "functions" in data


@dataclass(frozen=True)
class Work:
    """What an apply is to do: the plan to run, the functions a saved plan refuses, and the specs
    of the functions to run (what apply builds from)."""

    plan: Plan
    refusals: list[binding.Refusal]
    specs: dict[str, FunctionSpec]
    shard: Selection | None = None  # `apply PLAN --shard K/N`: the saved plan's functions of this shard


def prepare_live(paths: Sequence[Path], clients: Clients, environment: str | None = None,
                 registry_endpoint: str | None = None) -> Work:
    """`apply PATH...`: plan now, to be shown and confirmed before it runs."""
    planned = plan(paths, clients, environment=environment, registry_endpoint=registry_endpoint)
    return Work(planned.plan, [], {fn.name: fn for fn in planned.spec.functions})


def prepare_saved(plan_file: Path, scope: Sequence[Path], clients: Clients, shard: Shard | None = None,
                  environment: str | None = None) -> Work:
    """Read a saved plan, check it against the deploy.yaml files it names and against AWS now.

    `scope` is what the operator gives apply (as plan was given, default the working directory):
    the deploy.yaml files found there must be exactly the plan's sources. The plan file may not
    choose them: an edited plan could otherwise name any YAML file of the checkout (a sample, a
    file of vendor/) as the one to deploy from.

    With `shard`, only that shard of the saved plan's functions (deployer.shard) is run. The files
    and the set of functions are checked for the whole plan: the partition is cut from it, so every
    job must hold the same one. AWS is read and compared for the shard's functions only: the other
    shards' jobs change theirs meanwhile (a comparison would refuse them as changed since plan),
    and each function is still compared, by the one job that runs it, before it is changed."""
    saved = planfile.read(plan_file)
    base = binding.checkout_root(Path.cwd())
    binding.check_environment(saved, environment, str(plan_file))
    spec = load_allowed(binding.bind_sources(saved, find_spec_files(scope), base, str(plan_file)), clients, environment)
    binding.check_functions(saved, (fn.name for fn in spec.functions), str(plan_file))
    if saved.account is not None and spec.functions:
        binding.check_account(saved, clients.account(spec.functions[0].region), str(plan_file))
    from deployer.observe import observe
    from deployer.shard import select

    selection = None if shard is None else select(saved, shard)
    if selection is not None:
        saved = selection.plan
        spec = dataclasses.replace(spec, functions=tuple(fn for fn in spec.functions if fn.name in selection.names))
    salt = bytes.fromhex(saved.hash_key)  # the saved plan's key: hashes comparable
    fresh = make_plan(observe(spec, clients), secrets_key(salt, os.environ), salt)
    to_run, refusals = binding.compare(saved, fresh, str(plan_file))
    return Work(to_run, refusals, {fn.name: fn for fn in spec.functions}, selection)


@dataclass(frozen=True)
class Applied:
    outcomes: list[Outcome]  # every function of the plan and every refused one, by name
    interrupted: bool  # Ctrl-C: the CLI exits 130


def apply(work: Work, clients: Clients, options: ApplyOptions, reporter: Reporter, cache_dir: Path | None = None) -> Applied:
    """Run the work's plan through the gateways: AWS through `clients`, the Docker engine from
    the environment (DOCKER_HOST). Refused functions are failed outcomes; nothing ran for them.
    `cache_dir` keeps the engine's Go caches between runs (deployer.go_build.CacheDir)."""
    from deployer.apply import Executor
    from deployer.ecr_gateway import EcrGateway
    from deployer.lambda_gateway import LambdaGateway
    from deployer.docker_gateway import DockerGateway  # the docker SDK only when there is work
    from deployer.plan import BuildImage

    building = [work.specs[fp.name] for fp in work.plan.functions
                if fp.name in work.specs and any(isinstance(s, BuildImage) for s in fp.steps)]
    options = dataclasses.replace(options, netrcs=credentials(building, os.environ))  # a bad one stops before anything runs
    docker = _docker(cache_dir, reporter.notice)
    executor = Executor(lambda region: LambdaGateway(clients, region), lambda region: EcrGateway(clients, region),
                        docker, options, reporter)
    refused = [Outcome.refused(r.name, r.message) for r in work.refusals]
    outcomes = sorted([*executor.run(work.plan, work.specs), *refused], key=lambda o: o.name)
    _save_cache(docker, building, reporter)
    return Applied(outcomes, executor.interrupted)


def credentials(specs: Iterable[FunctionSpec], env: Mapping[str, str]) -> dict[str, Netrc]:
    """The netrc credentials the Go builds of `specs` name, by variable (deployer.go_build)."""
    from deployer.go_build import netrc_from_env

    found: dict[str, Netrc] = {}
    for fn in specs:
        variable = fn.build.netrc_env
        if fn.build.compiles_go and variable not in found:
            netrc = netrc_from_env(variable, env)
            if netrc is not None:
                found[variable] = netrc
    return found


def _docker(cache_dir: Path | None, notice: Callable[[str], None]) -> DockerGateway:
    """The engine of DOCKER_HOST, with the Go caches' volume and cache dir."""
    from deployer.docker_gateway import DockerGateway
    from deployer.go_build import cache_volume_from_env

    return DockerGateway(_cache(cache_dir), cache_volume_from_env(os.environ), notice)


def _cache(cache_dir: Path | None) -> CacheDir | None:
    from deployer.go_build import CacheDir

    if cache_dir is None:
        return None
    if cache_dir.exists() and not cache_dir.is_dir():
        raise DeployerError(f"--cache-dir {display(cache_dir)}: not a directory; give a directory (it is created if missing)")
    return CacheDir(cache_dir)


def _save_cache(docker: DockerGateway, built: Sequence[FunctionSpec], reporter: Reporter) -> None:
    """After the builds: the engine's Go caches to the cache dir. A failure is said, and costs
    the next run time only: the deploy itself went as reported."""
    compiled = [fn for fn in built if fn.build.compiles_go]
    if compiled:
        try:
            docker.save_go_cache(compiled[0].build.builder_image, reporter.notice)
        except DeployerError as exc:
            reporter.notice(str(exc))


@dataclass(frozen=True)
class Built:
    functions: list[FunctionSpec]
    images: list[LocalImage]  # of every function, in the same order
    interrupted: bool


def build(paths: Sequence[Path], names: Sequence[str], options: LocalBuildOptions, reporter: Reporter,
          cache_dir: Path | None = None, environment: str | None = None) -> Built:
    """`deployer build`: the images of the named functions (default: all) into the local engine."""
    from deployer.docker_gateway import DockerGateway
    from deployer.local_build import LocalBuilder

    spec = load(paths, environment=environment)
    functions = [spec.function(name) for name in dict.fromkeys(names)] or list(spec.functions)
    options = dataclasses.replace(options, netrcs=credentials(functions, os.environ))
    docker = _docker(cache_dir, reporter.notice)
    builder = LocalBuilder(docker, reporter, options)
    images = builder.build(functions)
    _save_cache(docker, [fn for fn, image in zip(functions, images) if not image.error], reporter)
    return Built(functions, images, builder.interrupted)


# Lambda's default timeout, for a function whose deploy.yaml sets none.
DEFAULT_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Invoked:
    """A local invocation's result: the response (`payload`) or what went wrong (`failure`, one
    line safe on a terminal)."""

    result: InvokeResult

    @property
    def succeeded(self) -> bool:
        return self.result.succeeded

    @property
    def payload(self) -> bytes:
        return self.result.payload

    @property
    def failure(self) -> str:
        from deployer.local_invoke import describe

        return describe(self.result)


def invoke_local(paths: Sequence[Path], function: str, event: bytes, timeout: float | None, reporter: Reporter,
                 log: Callable[[str], None], verbose: bool = False, cache_dir: Path | None = None,
                 environment: str | None = None) -> Invoked:
    """`deployer invoke --local`: build the function's image into the local engine (a no-op when
    its content tag is there already) and run it once against a Runtime API that deployer serves
    (deployer.local_invoke). `log` gets the function's output lines. Raises Cancelled on Ctrl-C
    (the container removed), DeployerError when the build fails."""
    import docker

    from deployer.interrupts import Cancelled
    from deployer.local_build import LocalBuildOptions
    from deployer.local_invoke import engine_platform, invoke_local as run

    built = build(paths, [function], LocalBuildOptions(1, verbose), reporter, cache_dir, environment)
    fn, image = built.functions[0], built.images[0]
    if built.interrupted:
        raise Cancelled(f"invoke of {function} stopped during its build: interrupted")
    if image.error:
        raise DeployerError(f"cannot run {function}: its build failed: {image.error}")
    client = docker.from_env()
    try:
        engine = engine_platform(client)
        if engine != fn.platform:
            reporter.notice(f"the Docker engine runs {engine}, the function is built for {fn.platform}: the engine needs "
                            "emulation (QEMU binfmt) for it; without it the run fails with an exec format error")
        return Invoked(run(client, image.tag, event, function_name=fn.name, env={}, region=fn.region, memory_mb=128,
                           timeout_seconds=timeout or DEFAULT_TIMEOUT_SECONDS, log=log))
    finally:
        client.close()


# Lambda's function names (an ARN or a partial one is not taken: the name is what deploy.yaml holds).
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Imported:
    """The deploy.yaml `import` wrote (`out`), or printed (None), and its text."""

    text: str
    out: Path | None


def import_functions(names: Sequence[str], clients: Clients, region: str, source: str, out: Path | None) -> Imported:
    """Read the named functions and their repositories, and write a deploy.yaml for them that a
    plan right after finds equal (deployer.adopt). It is checked as `validate` would check it
    before anything is written (its sources must exist: `source` says where, {name} standing for
    each function's name). `out` must not exist: nothing the user owns is replaced."""
    from deployer import adopt
    from deployer.ecr_gateway import EcrGateway
    from deployer.lambda_gateway import LambdaGateway
    from deployer.errors import AwsError
    from deployer.repository_config import RepositoryConfig

    bad = [name for name in names if not _FUNCTION_NAME.fullmatch(name)]
    if bad:
        raise DeployerError(f"{shown(bad[0])} is not a Lambda function name (letters, digits, - and _, at most 64); "
                            "give the names of the functions to import")
    target = _new_file(out) if out is not None else Path.cwd() / "deploy.yaml"
    lam, ecr = LambdaGateway(clients, region), EcrGateway(clients, region)
    every_setting = RepositoryConfig(scan_on_push=True, tag_mutability="IMMUTABLE", encryption="AES256", untagged_expiry_days=1,
                                     lambda_pull_accounts=(), tags={})  # declared only to be read, all of them
    adopted, problems = [], []
    for name in dict.fromkeys(names):
        state = lam.get_function(name)
        repository = adopt.image_repository(state.image_uri)
        if not state.exists:
            problems.append(f"function {name} does not exist in {region}")
        elif state.package_type != "Image":
            problems.append(f"function {name} is a {state.package_type or 'unknown'} package; deployer deploys Image functions only")
        elif repository is None:
            problems.append(f"function {name} runs an image that is not in an ECR repository ({shown(state.image_uri or 'none')})")
        else:
            try:
                settings: Any = ecr.observe_repository(repository, every_setting)
            except AwsError as exc:
                if exc.code not in ("RepositoryNotFoundException", "AccessDeniedException"):
                    raise
                settings = None  # written by name only: its settings stay unmanaged
            adopted.append(adopt.Adopted(name, state, repository, settings))
    if problems:
        raise DeployerError("cannot import:\n  " + "\n  ".join(problems))
    text = _yaml_text(adopt.document(adopted, region, clients.account(region), source))
    _check_imported(text, target, source)
    if out is not None:
        _write_new(target, text)
    return Imported(text, out)


def _yaml_text(doc: Any) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096  # one value per line: a long role ARN or description is not folded
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()


def _new_file(out: Path) -> Path:
    target = Path(os.path.abspath(out))
    if os.path.lexists(target):
        raise DeployerError(f"--out {out}: exists; import writes a new file only: choose another path, or move the file away")
    if not target.parent.is_dir():
        raise DeployerError(f"--out {out}: directory {display(target.parent)} does not exist; create it or choose another path")
    if target.name not in SPEC_FILE_NAMES:
        raise DeployerError(f"--out {out}: name it {' or '.join(SPEC_FILE_NAMES)}, so that plan and apply find it")
    return target


def _check_imported(text: str, target: Path, source: str) -> None:
    """Load `text` as it would be at `target` (from a temporary file beside it, removed after):
    DeployerError with every problem when it would not validate."""
    from deployer.errors import InvalidSpecError

    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.import.", suffix=".yaml")
    except OSError as exc:
        raise DeployerError(f"{display(target.parent)}: cannot write there ({exc.strerror}); run import in a directory "
                            "you can write to, or pass --out") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load([Path(tmp)])
    except InvalidSpecError as exc:
        found = [str(d).replace(display(Path(tmp)), display(target)) for d in exc.diagnostics]
        hint = ("\neach function's source is " + shown(source) + " ({name}: the function's name) relative to it; "
                "pass --source with where the sources are") if any("source" in line for line in found) else ""
        raise DeployerError(f"the deploy.yaml written for these functions would not be valid at {display(target)}:\n  "
                            + "\n  ".join(found) + hint) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_new(target: Path, text: str) -> None:
    """Write `text` to `target`, created here (O_EXCL: a file made there meanwhile, or a link, is
    never written through), with the permissions the umask gives a new file."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except FileExistsError:
        raise DeployerError(f"{display(target)}: appeared while importing; nothing was written: move it away and run again") from None
    except OSError as exc:
        raise DeployerError(f"{display(target)}: cannot write: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        target.unlink(missing_ok=True)  # ours: made by the open above
        raise DeployerError(f"{display(target)}: cannot write: {exc.strerror}; nothing was kept") from exc


@dataclass(frozen=True)
class History:
    function: FunctionSpec
    entries: list[HistoryEntry]
    environment: str | None = None  # the deploy.yaml environment the function was read for


def history(paths: Sequence[Path], name: str, clients: Clients, registry_endpoint: str | None = None,
            environment: str | None = None) -> History:
    """The released versions of `name` (declared in `paths`), newest first, with the source digest
    and commit each image was built from (its labels, read through the registry API)."""
    from deployer.ecr_gateway import EcrGateway
    from deployer.lambda_gateway import LambdaGateway
    from deployer.history import entries
    from deployer.registry import image_labels

    fn = load_allowed(paths, clients, environment).function(name)
    lam = LambdaGateway(clients, fn.region)
    if not lam.get_function(fn.name).exists:
        raise DeployerError(f"function {fn.name} does not exist in {fn.region}: it has no history; apply creates it")
    versions, aliases = lam.list_versions(fn.name), lam.list_aliases(fn.name)
    repository = fn.repository.resolved(fn.repository.account or clients.account(fn.region))
    labels: dict[str, Mapping[str, str] | None] = {}
    digests = sorted({f"sha256:{v.code_sha256}" for v in versions if v.code_sha256})
    if digests:
        login = EcrGateway(clients, fn.region).login()
        for digest in digests:  # one read per image, however many versions share it
            labels[digest] = image_labels(repository.registry, repository.name, digest, login, registry_endpoint)
    return History(fn, entries(versions, aliases, labels), environment)


def plan_rollback(paths: Sequence[Path], name: str, to: str | None, clients: Clients,
                  environment: str | None = None) -> Rollback | ImageRollback:
    """The rollback of `name`'s release alias: to `to`, else to the version recorded before the last
    release; without a release alias, of $LATEST to the image its last update replaced. Refused
    when the target's image is gone from ECR (Lambda would fail to run it)."""
    from deployer.adopt import image_repository
    from deployer.ecr_gateway import EcrGateway
    from deployer.history import rollback
    from deployer.lambda_gateway import LambdaGateway

    fn = load_allowed(paths, clients, environment).function(name)
    lam = LambdaGateway(clients, fn.region)
    now = lam.get_function(fn.name)
    if not now.exists:
        raise DeployerError(f"function {fn.name} does not exist in {fn.region}: nothing to roll back")
    if fn.release is None or fn.release.alias is None:
        return _image_rollback(fn, now, to, clients)
    planned = rollback(fn.name, fn.region, fn.release.alias, lam.list_versions(fn.name), lam.list_aliases(fn.name), to)
    # The repository the version's own image is in (deploy.yaml may name another one since).
    target = lam.get_function(fn.name, planned.target)
    repository = image_repository(target.image_uri) or fn.repository.resolved(fn.repository.account or clients.account(fn.region))
    if planned.image is None or not EcrGateway(clients, fn.region).has_image(repository, planned.image):
        raise DeployerError(f"version {planned.target} of {fn.name} runs {planned.image or 'an unknown image'}, which ECR no "
                            f"longer holds in {repository.uri}: Lambda could not run it; roll back to another version (--to)")
    return planned


def _image_rollback(fn: FunctionSpec, now: FunctionState, to: str | None, clients: Clients) -> ImageRollback:
    from deployer.adopt import image_repository
    from deployer.ecr_gateway import EcrGateway
    from deployer.history import ImageRollback
    from deployer.plan import PREVIOUS_IMAGE_TAG

    if to is not None:
        raise DeployerError(f"--to names a version, and {fn.name} has no release alias: without one, rollback redeploys the "
                            "image its last update replaced")
    previous = now.config.tags.get(PREVIOUS_IMAGE_TAG, "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", previous) or now.running_digest is None or now.arn is None:
        raise DeployerError(f"function {fn.name} records no image its last update replaced (not updated by deployer since it "
                            "records them); revert the change in git and apply, or add `release: {alias: live}` for versions")
    repository = image_repository(now.image_uri) or fn.repository.resolved(fn.repository.account or clients.account(fn.region))
    if not EcrGateway(clients, fn.region).has_image(repository, previous):
        raise DeployerError(f"the image {fn.name} ran before, {previous}, is no longer in {repository.uri}: Lambda could not run "
                            "it; revert the change in git and apply")
    architecture = now.architectures[0] if len(now.architectures) == 1 else fn.architecture
    return ImageRollback(fn.name, fn.region, now.running_digest, previous, repository.uri, architecture, now.revision_id, now.arn)


def do_rollback(planned: Rollback | ImageRollback, clients: Clients) -> None:
    """Move the alias, or redeploy $LATEST, refused by Lambda if it changed since it was read (RevisionId)."""
    from deployer.history import ImageRollback

    if isinstance(planned, ImageRollback):
        _redeploy_previous(planned, clients)
        return
    from deployer.lambda_gateway import LambdaGateway
    from deployer.errors import AwsError
    from deployer.run_release import alias_move_landed

    if planned.revision_id is None:
        raise DeployerError(f"alias {planned.alias} of {planned.function} has no readable RevisionId: it is not moved unguarded")
    lam = LambdaGateway(clients, planned.region)
    try:
        lam.update_alias(planned.function, planned.alias, planned.target, planned.revision_id,
                         f"deployer rollback; {planned.alias} was {planned.current}")
    except AwsError as exc:
        if exc.code != "PreconditionFailedException":
            raise
        # Where the rollback was asked to go, whoever moved it there (our call, or a rollback run twice).
        landed, unread = alias_move_landed(lambda: lam.list_alias_targets(planned.function), planned.alias, planned.target)
        if landed:
            return
        raise DeployerError(f"alias {planned.alias} of {planned.function} moved since it was read (another release or "
                            f"rollback); nothing changed: run rollback again{unread}") from exc


# -- prune ---------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from deployer.lambda_gateway import LambdaGateway
    from deployer.prune import FunctionRead, Inventory, PrunePlan, Pruned, RegionRead, Target


@dataclass(frozen=True)
class Pruning:
    """A prune plan and the functions of deploy.yaml it was decided for (read again by --yes)."""

    targets: tuple[Target, ...]
    plan: PrunePlan


def plan_prune(paths: Sequence[Path], clients: Clients, keep: int | None = None, environment: str | None = None,
               min_age: timedelta = timedelta(0)) -> Pruning:
    """`deployer prune`: what would be deleted (deployer.prune) for the functions of `paths`;
    `keep` overrides release.keep of the functions that have release settings. Images pushed
    less than `min_age` ago are kept (measured from now, on this machine's clock)."""
    from deployer.prune import Target, decide

    targets = []
    for fn in load_allowed(paths, clients, environment).functions:
        repository = fn.repository.resolved(fn.repository.account or clients.account(fn.region))
        kept = None if fn.release is None else keep if keep is not None else fn.release.keep
        targets.append(Target(fn.name, fn.region, repository, kept, fn.repository.config.lambda_pull_accounts or ()))
    pushed_since = datetime.now(timezone.utc) - min_age if min_age else None
    return Pruning(tuple(targets), decide(_inventory(tuple(targets), clients), pushed_since=pushed_since))


def apply_prune(pruning: Pruning, clients: Clients, progress: Callable[[str], None]) -> Pruned:
    """Delete what the plan lists: the versions first; then everything is read again, and of the
    planned images only those still found unused (with every version that now exists counted)
    are deleted. A failed deletion is a problem; the others go on."""
    from deployer.ecr_gateway import EcrGateway
    from deployer.lambda_gateway import LambdaGateway
    from deployer.errors import AwsError
    from deployer.prune import Pruned, decide

    problems: list[Diagnostic] = []
    versions: list[tuple[str, str]] = []
    for vp in pruning.plan.versions:
        lam = LambdaGateway(clients, vp.region)
        for version in vp.delete:
            try:
                lam.delete_version(vp.function, version.version)
            except AwsError as exc:
                problems.append(exc.diagnostic)
                continue
            versions.append((vp.function, version.version))
            progress(f"deleted version {version.version} of {vp.function}")
    planned = [ip for ip in pruning.plan.images if ip.delete]
    if not planned:
        return Pruned(tuple(versions), problems=tuple(problems))
    read_again = decide(_inventory(pruning.targets, clients), prune_versions=False, pushed_since=pruning.plan.pushed_since)
    again = {ip.repository: ip for ip in read_again.images}
    images, spared = [], []
    for ip in planned:
        now = again[ip.repository]
        if now.held is not None:
            problems.extend(now.held.problems)
        unused = {image.digest for image in now.delete}
        doomed = [image for image in ip.delete if image.digest in unused]
        spared += [(ip.repository, image) for image in ip.delete if image.digest not in unused]
        if not doomed:
            continue
        try:
            gone, failures = EcrGateway(clients, ip.repository.region).batch_delete_image(ip.repository, [i.digest for i in doomed])
        except AwsError as exc:
            problems.append(exc.diagnostic)
            continue
        problems.extend(failures)
        for image in doomed:
            if image.digest in gone:
                images.append((ip.repository, image))
                progress(f"deleted image {image.digest} {','.join(image.tags) or '(untagged)'} from {ip.repository.uri}")
    return Pruned(tuple(versions), tuple(images), tuple(spared), tuple(problems))


def _inventory(targets: tuple[Target, ...], clients: Clients) -> Inventory:
    """What prune decides from: every Image function of the targets' regions with its versions
    (the targets' aliases too), and every image of their repositories. Read-only, in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    from deployer.ecr_gateway import EcrGateway
    from deployer.errors import AwsError
    from deployer.observe import MAX_WORKERS
    from deployer.prune import Inventory, RepositoryRead

    regions = sorted({t.region for t in targets})
    account = clients.account(regions[0]) if regions else ""

    def images(repository: Any) -> RepositoryRead:
        try:
            return RepositoryRead(repository, tuple(EcrGateway(clients, repository.region).list_images(repository)))
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                return RepositoryRead(repository, exists=False)
            return RepositoryRead(repository, problem=exc.diagnostic)

    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        read_regions = tuple(_read_region(region, {t.name for t in targets if t.region == region}, clients, pool)
                             for region in regions)
        repositories = tuple(pool.map(images, dict.fromkeys(t.repository for t in targets)))
    return Inventory(account, targets, read_regions, repositories)


def _read_region(region: str, names: set[str], clients: Clients, pool: Any) -> RegionRead:
    """Every function of `region` that may use an image (all but Zip packages) and the targets
    `names`. ListFunctions failing is the region's problem; the targets are still read."""
    from deployer.lambda_gateway import LambdaGateway
    from deployer.errors import AwsError
    from deployer.prune import RegionRead

    lam = LambdaGateway(clients, region)
    try:
        listed, problem = [f.name for f in lam.list_functions() if f.package_type != "Zip"], None
    except AwsError as exc:
        listed, problem = [], exc.diagnostic
    every = sorted({*listed, *names})
    reads = tuple(pool.map(lambda name: _read_function(lam, region, name, name in names), every))
    return RegionRead(region, reads, problem)


def _read_function(lam: LambdaGateway, region: str, name: str, with_aliases: bool) -> FunctionRead:
    from deployer.errors import AwsError
    from deployer.prune import FunctionRead

    try:
        versions = tuple(lam.list_version_images(name))
        aliases = tuple(lam.list_alias_targets(name)) if with_aliases else ()
    except AwsError as exc:
        if exc.code == "ResourceNotFoundException":
            return FunctionRead(name, region, exists=False)
        return FunctionRead(name, region, problem=exc.diagnostic)
    return FunctionRead(name, region, versions, aliases)


def _redeploy_previous(planned: ImageRollback, clients: Clients) -> None:
    """$LATEST back to the image its last update replaced; then the function records the image it
    was rolled back from, which plans leave undeployed until the source changes."""
    from deployer.errors import AwsError
    from deployer.lambda_gateway import LambdaGateway
    from deployer.plan import PREVIOUS_IMAGE_TAG, ROLLED_BACK_TAG

    lam = LambdaGateway(clients, planned.region)
    try:
        lam.update_function_code(planned.function, f"{planned.repository_uri}@{planned.target}", planned.architecture,
                                 planned.revision_id)
    except AwsError as exc:
        if exc.code != "PreconditionFailedException":
            raise
        raise DeployerError(f"function {planned.function} changed since it was read (another apply or rollback); nothing "
                            "changed: run rollback again") from exc
    lam.wait_updated(planned.function)
    lam.tag_resource(planned.arn, {PREVIOUS_IMAGE_TAG: planned.current, ROLLED_BACK_TAG: planned.current})
