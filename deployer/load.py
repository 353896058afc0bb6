"""load: deploy.yaml files -> Spec.

Finds the files, parses them, checks them against the schema and then for meaning (unique names,
directories that exist, regions that agree), collecting every problem of every file before it
fails. Only the repository on disk is read; no AWS or Docker call happens here. A file that
declares `environments` is read as the selected one has it (deployer.environments): the file with
that environment's overrides applied, checked against the schema again, then read as any other.

The repository root of a file bounds everything read for its functions (deployer.paths): it is
the file's `root` key, else the nearest ancestor directory holding `.git`, else the file's own
directory. A deploy.yaml is always inside its root: `root` must be the file's directory or one of
its parents, and within a git checkout it may not reach above the directory holding `.git`.
A deploy.yaml that is a symlink, or found through a symlinked directory, is read only when it
resolves inside the root its place gives (the nearest ancestor holding `.git`, else its
directory; a symlinked directory is never that root).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable

from deployer import environments, schema
from deployer.errors import DeployerError, Diagnostic, InvalidSpecError
from deployer.paths import clip, display, git_root, inside, kind, resolve, shown
from deployer.function_config import EnvValue, FunctionConfig
from deployer.function_settings import declared_settings
from deployer.release_settings import declared_release
from deployer.repository_config import RepositoryConfig
from deployer.spec import (
    REPOSITORY_URI,
    SPEC_FILE_NAMES,
    DEFAULT_BUILDER_IMAGE,
    DEFAULT_GO_BUILD_FLAGS,
    DEFAULT_NETRC_ENV,
    DEFAULT_RUNTIME_IMAGES,
    AllowedAccounts,
    BuildSettings,
    FunctionSpec,
    Location,
    RepositoryRef,
    Spec,
    ecr_domain,
)
from deployer.yamldoc import YamlDocument, YamlPath, read_yaml

# Directories never searched for deploy.yaml files: tools' caches, vendored code, Go test data.
SKIPPED_DIRS = {".git", ".hg", ".svn", "node_modules", "vendor", "testdata", "__pycache__", ".venv", ".terraform"}
# Said of a problem of what an environment's overrides make of a file (it names the environment).
MERGED = "in environment {}, with its settings merged"
ALLOWED_ACCOUNTS = "allowed_accounts"  # a defaults key: per file, not per function (credentials are per run)
# What the operating system refuses in a path (a NUL byte, a name too long, a symlink loop...):
# reported as a problem of the value, never a crash.
PATH_ERRORS = (OSError, ValueError)


def find_spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand PATH arguments: a file stands for itself, a directory for every deploy.yaml below it."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            below = sorted(_walk(path))
            if not below:
                raise DeployerError(f"{given}: no {' or '.join(SPEC_FILE_NAMES)} found in this directory or below it; pass a file or another directory")
            found.extend(below)
        elif path.exists():
            found.append(path)
        else:
            raise DeployerError(f"{given}: no such file or directory; pass a deploy.yaml or a directory that holds one")
    unique: dict[Path, Path] = {}
    for path in found:
        try:
            key = resolve(path)
        except OSError:  # a symlink loop: kept, and reported when read
            key = Path(os.path.abspath(path))
        unique.setdefault(key, path)
    return list(unique.values())


def _walk(top: Path) -> Iterable[Path]:
    """Every deploy.yaml below `top`, not following symlinked directories. Iterative: a tree a
    thousand directories deep (a pull request can commit one) must not exhaust the stack, as
    os.walk's recursion does before Python 3.12."""
    pending = [str(top)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                children = list(entries)
        except OSError:  # unreadable: what os.walk skips too
            continue
        for entry in children:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIPPED_DIRS:
                        pending.append(entry.path)
                elif entry.name in SPEC_FILE_NAMES:
                    yield Path(entry.path)
            except OSError:
                continue


def load(paths: Iterable[str | Path], env: dict[str, str] | None = None, environment: str | None = None) -> Spec:
    """Parse and validate the files as `environment` (None: none) has them (deployer.environments);
    raise InvalidSpecError listing every problem found."""
    files = find_spec_files(paths)
    problems: list[Diagnostic] = []
    docs = list(_checked(files, problems))
    return _load_as(files, docs, problems, env, environment)


def _load_as(files: list[Path], docs: list[tuple[Path, YamlDocument]], problems: list[Diagnostic],
             env: dict[str, str] | None, environment: str | None) -> Spec:
    """`load` of files already read and checked (`docs`; `problems`, those of the others)."""
    env = dict(os.environ) if env is None else env
    functions: list[FunctionSpec] = []
    names: list[tuple[str, Location]] = []
    allowed: dict[Path, AllowedAccounts] = {}
    for file, parsed in docs:
        chosen = environments.select(parsed, environment)
        if isinstance(chosen, list):
            problems.extend(chosen)
            continue
        if chosen is not parsed:  # what the overrides make of the file passes the schema too
            # Such a problem may point at a value written outside the environment (defaults.tags
            # holding too many tags once the environment's are added): it says which one made it.
            merged_problems = [dataclasses.replace(p, summary=f"{p.summary} ({MERGED.format(environment)})")
                               for p in schema.check(chosen)]
            merged_problems = [p for p in merged_problems if p not in problems]
            problems.extend(merged_problems)
            if merged_problems:
                continue
        functions.extend(_functions(chosen, file.resolve(), env, problems))
        accounts = (chosen.data.get("defaults") or {}).get(ALLOWED_ACCOUNTS)
        if accounts:  # as the environment has it, written where its position says (the overlay keeps positions)
            allowed[file] = AllowedAccounts(tuple(accounts), Location(chosen.file, *chosen.position(("defaults", ALLOWED_ACCOUNTS))))
        names.extend((entry["name"], Location(chosen.file, *chosen.position(("functions", index))))
                     for index, entry in enumerate(chosen.data["functions"]))
    problems.extend(_duplicate_names(names))
    problems.extend(_repository_conflicts(functions))
    if problems:
        raise InvalidSpecError(problems)
    return Spec(tuple(sorted(functions, key=lambda f: f.name)), tuple(files), environment,
                {file: environments.copy_sources(parsed, environment) for file, parsed in docs}, allowed)


def load_each(paths: Iterable[str | Path], env: dict[str, str] | None = None) -> tuple[Spec, ...]:
    """The files as every environment they declare has them (one Spec each, in name order), or
    as they are when they declare none: what `validate` without --env checks. InvalidSpecError
    lists the problems of all, each once. Each file is read and checked once, whatever the
    number of environments: up to 50 of them must not mean reading a large file 50 times."""
    files = find_spec_files(paths)
    read: list[Diagnostic] = []
    docs = list(_checked(files, read))
    names = {name for _file, parsed in docs for name in environments.declared(parsed)}
    specs: list[Spec] = []
    found: dict[Diagnostic, list[str]] = {}  # each problem once, with the environments it shows in
    chosen: list[str | None] = [*sorted(names)] or [None]
    for name in chosen:
        try:
            specs.append(_load_as(files, docs, list(read), env, name))
        except InvalidSpecError as exc:
            for problem in exc.diagnostics:
                found.setdefault(problem, []).append(name or "")
    if found:
        # A problem of some environments only is said to be theirs: its place may be a setting they share.
        raise InvalidSpecError([problem if len(where) == len(chosen) or problem.summary.endswith(f"({MERGED.format(where[0])})") else
                                dataclasses.replace(problem, summary=f"{problem.summary} (in environment {_some(where)})")
                                for problem, where in found.items()])
    return tuple(specs)


def _some(names: list[str]) -> str:
    """Environment names for a message: the first ten, then how many more (up to 50 are declared)."""
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _checked(files: Iterable[Path], problems: list[Diagnostic]) -> Iterable[tuple[Path, YamlDocument]]:
    """Each file read and passing the schema; the problems of the others added to `problems`."""
    for file in files:
        parsed = read_yaml(file, Path(display(file)), _link_root(file))
        if isinstance(parsed, Diagnostic):
            problems.append(parsed)
            continue
        foreign = _not_a_deploy_yaml(parsed.data)
        if foreign:
            problems.append(Diagnostic.at(parsed.file, 0, 0, f"not a deploy.yaml: {foreign}"))
            continue
        schema_problems = schema.check(parsed)
        problems.extend(schema_problems)
        if not schema_problems:
            yield file, parsed


def _not_a_deploy_yaml(data: Any) -> str | None:
    """Why `data` is not meant as a deploy.yaml at all, or None. Such a file is reported once, not
    with one "unknown key" per key, and nothing of its content is quoted: it may be any YAML file
    that happens to be named deploy.yaml. A mapping with `version` or `functions` is taken for a
    deploy.yaml (with mistakes), whatever else it holds."""
    if isinstance(data, dict):
        if "version" in data or "functions" in data:
            return None
        return (f"a mapping of {len(data)} key(s), none of them 'version' or 'functions'; "
                "a deploy.yaml starts with 'version: 1' and lists its 'functions'")
    what = "a list" if isinstance(data, list) else "nothing (null)" if data is None else "a single value"
    return f"the top level is {what}, not a mapping with 'version' and 'functions' keys"


def _functions(doc: YamlDocument, file: Path, env: dict[str, str], problems: list[Diagnostic]) -> list[FunctionSpec]:
    base = file.parent
    data: dict[str, Any] = doc.data
    defaults: dict[str, Any] = data.get("defaults", {})
    root = _root(doc, file, problems)
    if root is None:
        return []
    result = []
    for index, entry in enumerate(data["functions"]):
        fn = _function(doc, ("functions", index), entry, defaults, base, root, env, problems)
        if fn is not None:
            result.append(fn)
    return result


def _os_reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _kind(base: Path, rel: str) -> tuple[Path, str]:
    """`rel` resolved against `base`, and what is there: "dir", "file" (a regular file), "missing",
    or what else it is ("a FIFO", "a socket"...). Nothing is opened. Raises one of PATH_ERRORS when
    the operating system refuses the path."""
    path = resolve(base / rel)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return path, "a dangling symlink" if os.path.lexists(path) else "missing"
    return path, "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else kind(mode)


def _module_at(base: Path, rel: str) -> tuple[Path, str, str]:
    """`_kind`, and what its go.mod is (see `_kind`; "file" when usable): what a Go module
    directory needs."""
    path, found = _kind(base, rel)
    return path, found, _kind(path, "go.mod")[1] if found == "dir" else "missing"


def _link_root(file: Path) -> Path:
    """Where a deploy.yaml found at `file` (as given: links not followed) may be read from: the
    nearest ancestor of its place that holds `.git`, else its own directory. A directory that is
    a symlink is never that root, since it may point anywhere: `sub -> /elsewhere` given as a
    path to search must not make /elsewhere/deploy.yaml readable."""
    lexical = Path(os.path.abspath(file)).parent
    candidates = [d for d in (lexical, *lexical.parents) if not os.path.islink(d)]
    return git_root(candidates) or (candidates[0] if candidates else lexical)


def _root(doc: YamlDocument, file: Path, problems: list[Diagnostic]) -> Path | None:
    """The repository root of the resolved deploy.yaml `file` (see the module's docstring)."""
    base = file.parent
    checkout = git_root((base, *base.parents))
    if "root" not in doc.data:
        # Outside any git checkout: the file's own directory bounds what a build may read.
        return checkout or base
    given = str(doc.data["root"])
    try:
        root, found = _kind(base, given)
    except PATH_ERRORS as exc:
        problems.append(doc.diagnostic(("root",), f"root: {shown(given)} cannot be used as a directory: {_os_reason(exc)}"))
        return None
    if found != "dir":
        problems.append(doc.diagnostic(("root",), f"root: directory {shown(given)} does not exist (resolved to {root})"))
    elif not inside(file, root):
        problems.append(doc.diagnostic(("root",), f"root: {shown(given)} (resolved to {root}) does not hold this file; "
                                                  "set root to this file's directory or one of its parents"))
    elif checkout is not None and not inside(root, checkout):
        problems.append(doc.diagnostic(("root",), f"root: {shown(given)} (resolved to {root}) lies above the git checkout "
                                                  f"{checkout} that holds this file; nothing outside it is read, "
                                                  "so set root to that directory or below it"))
    else:
        return root
    return None


def _function(doc: YamlDocument, at: tuple[str, int], entry: dict[str, Any], defaults: dict[str, Any],
              base: Path, root: Path, env: dict[str, str], problems: list[Diagnostic]) -> FunctionSpec | None:
    before = len(problems)
    name: str = entry["name"]
    line, col = doc.position(at)
    shared_build = defaults.get("build", {})
    build = {**shared_build, **entry.get("build", {})}
    platform = entry.get("platform", defaults.get("platform", "linux/arm64"))

    repository = _repository(doc, at, entry, defaults, env, problems)

    source_at = at + ("build", "source") if "source" in entry.get("build", {}) else at
    source = _source(doc, source_at, name, base, str(build.get("source", ".")), root, problems)
    dockerfile = _dockerfile(doc, at + ("build", "dockerfile"), name, base, build["dockerfile"], root, problems) if "dockerfile" in build else None
    shared = None
    if isinstance(entry.get("shared_modules"), list):
        shared = [_shared_module(doc, at + ("shared_modules", index), name, base, str(rel), root, problems)
                  for index, rel in enumerate(entry["shared_modules"])]

    _strategy_settings(doc, at, name, entry, defaults, dockerfile is not None or "dockerfile" in build, problems)
    if len(problems) > before or repository is None or source is None:
        return None
    return FunctionSpec(
        name=name,
        region=repository.region,
        repository=repository,
        platform=platform,
        build=BuildSettings(
            source=source,
            dockerfile=dockerfile,
            builder_image=build.get("builder_image", DEFAULT_BUILDER_IMAGE),
            runtime_image=build.get("runtime_image", DEFAULT_RUNTIME_IMAGES[platform]),
            go_build_flags=tuple(build.get("go_build_flags", DEFAULT_GO_BUILD_FLAGS)),
            build_args=dict(sorted(build.get("build_args", {}).items())),
            go_env=dict(sorted(build.get("go_env", {}).items())),
            netrc_env=build.get("netrc_env", DEFAULT_NETRC_ENV),
            shared_modules=tuple(m for m in shared if m is not None) if shared is not None else None,
        ),
        root=root,
        location=Location(doc.file, line, col),
        config=_config(doc, at, entry, defaults, problems),
        release=declared_release(doc, at, entry, defaults, base, root, problems),
    )


# The environment variables Lambda reserves (its documented list): a function may not set them.
# Other AWS_* names (AWS_MAX_ATTEMPTS...) and TZ are the function's to set.
RESERVED_ENVIRONMENT = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})
# Lambda's limit on a function's environment: 4 KB of names and values (UTF-8).
MAX_ENVIRONMENT_BYTES = 4096
# AWS's limit on the tags of a resource (the schema bounds each mapping; merged, they may exceed it).
MAX_TAGS = 50


def _config(doc: YamlDocument, at: tuple[str, int], entry: dict[str, Any], defaults: dict[str, Any],
            problems: list[Diagnostic]) -> FunctionConfig:
    """The declared configuration keys: the function's own, else the defaults'; environments
    merged (the function's value wins). A problem of a default is reported once, where it is
    written, whatever the number of functions sharing it."""
    name = entry["name"]
    values = {key: entry.get(key, defaults.get(key))
              for key in ("role", "memory", "timeout", "ephemeral_storage", "description", "tracing", "reserved_concurrency")}
    environment = None
    if "environment" in entry or "environment" in defaults:
        own, shared = entry.get("environment", {}), defaults.get("environment", {})
        merged = {**shared, **own}
        environment = {key: EnvValue(from_env=value["from_env"]) if isinstance(value, dict) else EnvValue(value=str(value))
                       for key, value in sorted(merged.items())}
        for key in sorted(k for k in merged if k in RESERVED_ENVIRONMENT):
            where = at + ("environment", key) if key in own else ("defaults", "environment", key)
            _once(problems, doc.diagnostic(where, f"environment {shown(key)}: Lambda sets this variable itself; remove it"))
        size = sum(len(k.encode()) + len((v.value or "").encode("utf-8", "surrogateescape")) for k, v in environment.items())
        if size > MAX_ENVIRONMENT_BYTES:
            problems.append(doc.diagnostic(at + ("environment",) if own else ("defaults", "environment"), f"function '{name}': environment holds {size} bytes of names and values; "
                                                  f"Lambda allows {MAX_ENVIRONMENT_BYTES}: move large values elsewhere (S3, SSM)"))
    tags = None
    if "tags" in entry or "tags" in defaults:
        own_tags, shared_tags = entry.get("tags", {}), defaults.get("tags", {})
        tags = {str(key): str(value) for key, value in sorted({**shared_tags, **own_tags}.items())}
        if len(tags) > MAX_TAGS:
            problems.append(doc.diagnostic(at + ("tags",) if own_tags else ("defaults", "tags"),
                                           f"function '{name}': {len(tags)} tags with defaults.tags merged; Lambda allows "
                                           f"{MAX_TAGS} on a function: remove some"))
    image_config, logs, vpc = declared_settings(doc, at, entry, defaults, problems)
    return FunctionConfig(environment=MappingProxyType(environment) if environment is not None else None,
                          tags=MappingProxyType(tags) if tags is not None else None,
                          image_config=image_config, logging=logs, vpc=vpc, **values)


def _once(problems: list[Diagnostic], problem: Diagnostic) -> None:
    if problem not in problems:
        problems.append(problem)


def _strategy_settings(doc: YamlDocument, at: tuple[str, int], name: str, entry: dict[str, Any], defaults: dict[str, Any],
                       has_dockerfile: bool, problems: list[Diagnostic]) -> None:
    """build_args belong to a Dockerfile build, go_env to the built-in Go build: a setting the
    chosen way of building would ignore is a mistake to point at, not to drop silently."""
    own, shared = entry.get("build", {}), defaults.get("build", {})

    def where(key: str) -> YamlPath:  # the function's own setting wins over the default
        return at + ("build", key) if key in own else ("defaults", "build", key)

    misplaced = "build_args" if not has_dockerfile else "go_env"
    if own.get(misplaced) or (misplaced not in own and shared.get(misplaced)):
        todo = ("applies to build.dockerfile only; set the Go environment in go_env (GOPROXY, GOFLAGS...), or set "
                "build.dockerfile to build with a Dockerfile" if misplaced == "build_args"
                else "applies to the built-in Go build only; pass Go settings to a Dockerfile as build_args")
        problems.append(doc.diagnostic(where(misplaced), f"function '{name}': build.{misplaced} {todo}"))
    go_env = own.get("go_env", shared.get("go_env", {}))
    for flag in str(go_env.get("GOFLAGS", "")).split():
        if not flag.startswith("-"):
            problem = f"{shown(flag)} is not a flag; every word of GOFLAGS starts with '-'"
        elif flag.lstrip("-") == "mod=mod":
            problem = ("-mod=mod lets the go command rewrite go.mod and go.sum during the build, so go.sum would not "
                       "be verified; run `go mod tidy`, commit go.sum and remove the flag")
        else:
            continue
        problems.append(doc.diagnostic(where("go_env") + ("GOFLAGS",), f"function '{name}': GOFLAGS: {problem}"))


def _source(doc: YamlDocument, at: YamlPath, name: str, base: Path, rel: str, root: Path,
            problems: list[Diagnostic]) -> Path | None:
    try:
        source, found, go_mod = _module_at(base, rel)
    except PATH_ERRORS as exc:
        problems.append(doc.diagnostic(at, f"function '{name}': build.source {shown(rel)} cannot be used as a directory: {_os_reason(exc)}"))
        return None
    if not inside(source, root):
        problems.append(doc.diagnostic(at, f"function '{name}': source {clip(display(source))} lies outside the repository root {root}; set 'root' in this file"))
    elif found != "dir":
        problems.append(doc.diagnostic(at, f"function '{name}': source directory {shown(display(source))} does not exist; set build.source to the function's Go module directory"))
    elif go_mod == "missing":
        problems.append(doc.diagnostic(at, f"function '{name}': {shown(display(source))} holds no go.mod; build.source must be the function's Go module directory"))
    elif go_mod != "file":
        problems.append(doc.diagnostic(at, f"function '{name}': {shown(display(source / 'go.mod'))} is {go_mod}, not a regular file; "
                                           "replace it with the module's go.mod"))
    else:
        return source
    return None


def _dockerfile(doc: YamlDocument, at: YamlPath, name: str, base: Path, rel: str, root: Path,
                problems: list[Diagnostic]) -> Path | None:
    try:
        dockerfile, found = _kind(base, rel)
    except PATH_ERRORS as exc:
        problems.append(doc.diagnostic(at, f"function '{name}': build.dockerfile {shown(rel)} cannot be used as a file: {_os_reason(exc)}"))
        return None
    if not inside(dockerfile, root):
        # Checked first: whether a file exists outside the root is not this tool's to tell.
        via = f" (resolved to {dockerfile})" if dockerfile != Path(os.path.abspath(base / rel)) else ""
        problems.append(doc.diagnostic(at, f"function '{name}': build.dockerfile {shown(rel)}{via} lies outside the repository root "
                                           f"{root}; deployer reads nothing outside it: move the Dockerfile into the repository"))
    elif found == "missing" or found == "a dangling symlink":
        problems.append(doc.diagnostic(at, f"function '{name}': Dockerfile {shown(display(dockerfile))} does not exist; fix the path or remove 'dockerfile' to use the built-in template"))
    elif found != "file":
        what = "a directory" if found == "dir" else found
        problems.append(doc.diagnostic(at, f"function '{name}': Dockerfile {shown(display(dockerfile))} is {what}, not a regular file; "
                                           "point build.dockerfile at a Dockerfile"))
    else:
        return dockerfile
    return None


def _shared_module(doc: YamlDocument, at: YamlPath, name: str, base: Path, rel: str, root: Path,
                   problems: list[Diagnostic]) -> Path | None:
    """A listed shared module; the rules about what it may contain are deployer.module_graph'."""
    try:
        module, found, go_mod = _module_at(base, rel)
    except PATH_ERRORS as exc:
        problems.append(doc.diagnostic(at, f"function '{name}': shared module {shown(rel)} cannot be used as a directory: {_os_reason(exc)}"))
        return None
    if not inside(module, root):
        problems.append(doc.diagnostic(at, f"function '{name}': shared module {shown(rel)} lies outside the repository root {root}; "
                                           "list only modules inside the repository"))
        return None
    if go_mod != "file":
        what = ("does not exist" if found != "dir" else "holds no go.mod" if go_mod == "missing"
                else f"has a go.mod that is {go_mod}, not a regular file")
        problems.append(doc.diagnostic(at, f"function '{name}': shared module {shown(rel)} {what} (resolved to {shown(display(module))})"))
        return None
    return module


def _repository(doc: YamlDocument, at: tuple[str, int], entry: dict[str, Any], defaults: dict[str, Any],
                env: dict[str, str], problems: list[Diagnostic]) -> RepositoryRef | None:
    """Resolve region, account and repository together: a URI carries its own region and account,
    which must agree with any region or account also given."""
    name = entry["name"]
    repo_at: YamlPath = at + ("repository",) if "repository" in entry else (("defaults", "repository") if "repository" in defaults else at)
    declared = entry.get("repository", defaults.get("repository"))
    create = bool(declared.get("create", True)) if isinstance(declared, dict) else True
    repository = declared.get("name") if isinstance(declared, dict) else declared
    if isinstance(declared, dict):
        repo_at = repo_at + ("name",)
    if repository is None:
        problems.append(doc.diagnostic(at, f"function '{name}': no ECR repository; set 'repository' on the function or in 'defaults'"))
        return None
    region_at = at + ("region",) if "region" in entry else ("defaults", "region")
    region = entry.get("region", defaults.get("region"))
    account_at = at + ("account",) if "account" in entry else ("defaults", "account")
    account = entry.get("account", defaults.get("account"))
    uri = REPOSITORY_URI.match(repository)
    if uri:
        if region is not None and region != uri["region"]:
            problems.append(doc.diagnostic(region_at, f"function '{name}': region {region} disagrees with repository {repository} in {uri['region']}; Lambda pulls images only from its own region's ECR"))
            return None
        if account is not None and account != uri["account"]:
            problems.append(doc.diagnostic(account_at, f"function '{name}': account {account} disagrees with repository {repository} of account {uri['account']}"))
            return None
        if uri["domain"] != ecr_domain(uri["region"]):
            problems.append(doc.diagnostic(repo_at, f"function '{name}': repository {repository}: ECR in {uri['region']} is at "
                                                    f"*.{ecr_domain(uri['region'])}, not *.{uri['domain']}; fix the URI"))
            return None
        settings = _repository_config(doc, repo_at[:-1], name, declared, uri["region"], problems)
        return RepositoryRef(uri["name"], uri["region"], uri["account"], create, settings) if settings else None
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or _profile_region()
    if not region:
        problems.append(doc.diagnostic(repo_at, f"function '{name}': no region; set 'region' (on the function or in 'defaults'), AWS_REGION, or a repository URI"))
        return None
    settings = _repository_config(doc, repo_at[:-1], name, declared, region, problems)
    return RepositoryRef(repository, region, account, create, settings) if settings else None


def _repository_config(doc: YamlDocument, at: YamlPath, name: str, declared: Any, region: str,
                       problems: list[Diagnostic]) -> RepositoryConfig | None:
    """The settings of a repository mapping (the schema checked each value's form), or None
    after a problem. A KMS key must be in the repository's region: ECR refuses any other."""
    if not isinstance(declared, dict):
        return RepositoryConfig()
    key = declared.get("kms_key")
    if key is not None and declared.get("encryption") != "KMS":
        problems.append(doc.diagnostic(at + ("kms_key",), f"function '{name}': repository kms_key is given without "
                                                          "`encryption: KMS`; add it, or remove the key"))
        return None
    if key is not None and key.split(":")[3] != region:
        problems.append(doc.diagnostic(at + ("kms_key",), f"function '{name}': repository kms_key is in {key.split(':')[3]}, the "
                                                          f"repository in {region}; ECR encrypts only with a key of its own region"))
        return None
    accounts = declared.get("lambda_pull_accounts")
    tags = declared.get("tags")
    return RepositoryConfig(
        scan_on_push=declared.get("scan_on_push"),
        tag_mutability=declared.get("tag_mutability"),
        encryption=declared.get("encryption"),
        kms_key=key,
        untagged_expiry_days=None if declared.get("untagged_expiry_days") is None else int(declared["untagged_expiry_days"]),
        lambda_pull_accounts=None if accounts is None else tuple(sorted(str(a) for a in accounts)),
        tags=None if tags is None else MappingProxyType({str(k): str(v) for k, v in tags.items()}),
    )


def _repository_conflicts(functions: list[FunctionSpec]) -> list[Diagnostic]:
    """Functions sharing a repository must declare the same settings for it: apply would
    otherwise set each one's in turn, and every plan would show a change. A repository given by
    name only may be the one another function gives by URI (its account is the caller's, known
    only when AWS is asked): the two are compared as one."""
    seen: dict[tuple[str, str], list[FunctionSpec]] = {}
    problems = []
    for fn in functions:
        repo = fn.repository
        same = seen.setdefault((repo.region, repo.name), [])
        other = next((o for o in same if None in (o.repository.account, repo.account) or o.repository.account == repo.account), None)
        if other is not None and other.repository.config != repo.config:
            loc = fn.location
            problems.append(Diagnostic.at(loc.file, loc.line, loc.column, (
                f"function '{fn.name}': repository {repo.name} is declared with other settings by function '{other.name}' "
                f"at {other.location}; functions sharing a repository must declare the same settings (put them in "
                "defaults.repository, or repeat them)")))
        same.append(fn)
    return problems


def _profile_region() -> str | None:
    import botocore.session  # only when neither the file nor the environment names a region

    try:
        region: str | None = botocore.session.Session().get_config_variable("region")
    except Exception:  # a broken ~/.aws/config: the caller reports "no region" with what to set
        return None
    return region


def _duplicate_names(names: list[tuple[str, Location]]) -> list[Diagnostic]:
    seen: dict[str, Location] = {}
    problems = []
    for name, loc in names:
        first = seen.setdefault(name, loc)
        if first is not loc:
            problems.append(Diagnostic.at(loc.file, loc.line, loc.column, f"function name '{name}' is already used at {first}; function names must be unique across all deploy.yaml files"))
    return problems
