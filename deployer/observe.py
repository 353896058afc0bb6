"""observe: Spec -> (Desired, Observed) per function. Read-only.

For each function: compute the source digest from the build context's layout (files are hashed
where they are; nothing is copied) to learn the content tag, then ask Lambda what runs and ECR
whether that tag exists, and, when deploy.yaml declares any of its repository's settings, what ECR
has of them (read once per repository). Functions are observed in parallel in a bounded pool; the
per-region boto3 clients are shared.

When the content tag is missing here and the function's file lets this environment copy images
from others (`copy_images_from`), their repositories of the same function are asked for it too
(deployer.state.ImageElsewhere): the image of a source built for staging is then copied for
production, not built again. Only those listed: whoever can push to a repository could put an image
under the tag a public source's digest names.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Generic, Mapping, Sequence, TypeVar

from deployer.aws import Clients
from deployer.ecr_gateway import EcrGateway
from deployer.lambda_gateway import LambdaGateway
from deployer.digest import content_tag
from deployer.errors import AwsError, DeployerError
from deployer.layout import layout
from deployer.load import load_each
from deployer.paths import display
from deployer.repository_config import ObservedRepository, RepositoryConfig
from deployer.spec import EcrRepository, FunctionSpec, Spec
from deployer.state import Desired, ImageElsewhere, Observed

MAX_WORKERS = 16  # enough to hide AWS latency; small enough to stay under API rate limits


def desired_state(fn: FunctionSpec, clients: Clients) -> Desired:
    """What deploy.yaml asks for `fn`, with the content tag of its current source."""
    listed = layout(fn)
    digest, inputs = listed.digests()  # no copy: plan needs only digests; apply re-checks it
    tag = content_tag(digest)
    account = fn.repository.account or clients.account(fn.region)
    return Desired(
        name=fn.name,
        region=fn.region,
        repository=fn.repository.resolved(account),
        content_tag=tag,
        source_digest=digest,
        architecture=fn.architecture,
        platform=fn.platform,
        spec_file=str(fn.location.file),
        config=fn.config.resolve(os.environ),  # from_env values: read now, at plan time
        create_repository=fn.repository.create,
        repository_config=fn.repository.config,
        release=fn.release,
        inputs=inputs,
        layout=listed,
    )


K = TypeVar("K")
V = TypeVar("V")


class OncePerKey(Generic[K, V]):
    """One computation per key, however many threads ask for it: the first computes (outside the
    lock), the others wait for its result, or its exception."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[K, Future[V]] = {}

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            future = self._results.get(key)
            mine = future is None
            if future is None:
                future = self._results[key] = Future()
        if mine:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()


class RepositoryReads:
    """What ECR has of each repository's managed settings, read once however many functions of
    the plan use it (they declare the same settings: deployer.load refuses otherwise)."""

    def __init__(self) -> None:
        self._reads: OncePerKey[object, ObservedRepository] = OncePerKey()

    def read(self, ecr: EcrGateway, repository: EcrRepository, config: RepositoryConfig) -> ObservedRepository:
        return self._reads.get((repository, config.declared), lambda: ecr.observe_repository(repository, config))


class OtherEnvironments:
    """The other environments of the files of a plan made for `current`: each file loaded as
    every environment it declares has it, once per plan however many of its functions ask."""

    def __init__(self, files: Sequence[Path], current: str, allowed: Mapping[Path, tuple[str, ...]]) -> None:
        self.current = current
        self._files = {Path(display(file)): file for file in files}  # how a function's location names its file
        self._allowed = allowed  # by file: the environments `current` may copy from (copy_images_from)
        self._loaded: OncePerKey[Path, tuple[Spec, ...]] = OncePerKey()

    def specs(self, fn: FunctionSpec) -> tuple[Spec, ...]:
        """The file of `fn` as each of its environments has it; none when it cannot be loaded so
        (an environment that does not validate is not one to copy from: the image is built)."""
        file = self._files.get(fn.location.file)
        if file is None:
            return ()
        return self._loaded.get(file, lambda: _each_environment(file))

    def find(self, fn: FunctionSpec, desired: Desired, clients: Clients) -> ImageElsewhere | None:
        """The first other environment (by name) whose repository of `fn` holds the content tag as
        a single-platform image. Denied, missing or unreachable there means not there: a build is
        always a safe answer, so nothing of another environment can fail this plan."""
        allowed = self._allowed.get(self._files.get(fn.location.file, fn.location.file), ())
        if not allowed:
            return None  # the default: trust no other environment's repository, build
        for spec in self.specs(fn):
            other = next((f for f in spec.functions if f.name == fn.name), None)
            if spec.environment in (None, self.current) or spec.environment not in allowed or other is None:
                continue
            try:
                repository = other.repository.resolved(other.repository.account or clients.account(other.region))
                if repository == desired.repository:
                    continue
                image = EcrGateway(clients, repository.region).describe_image(repository, desired.content_tag)
            except AwsError:
                continue
            if image.digest is not None and image.single_platform:
                return ImageElsewhere(str(spec.environment), repository, image.digest)
        return None


def _each_environment(file: Path) -> tuple[Spec, ...]:
    try:
        return load_each([file])
    except DeployerError:
        return ()


def observe_function(fn: FunctionSpec, clients: Clients, repositories: RepositoryReads | None = None,
                     others: OtherEnvironments | None = None) -> tuple[Desired, Observed]:
    desired = desired_state(fn, clients)
    lam = LambdaGateway(clients, fn.region)
    function = lam.get_function(fn.name)
    alias = fn.release.alias if fn.release is not None else None
    aliased = lam.get_alias(fn.name, alias) if alias is not None and function.exists else None
    ecr = EcrGateway(clients, fn.region)
    image = ecr.describe_image(desired.repository, desired.content_tag)
    repository = None
    if image.repository_exists and desired.repository_config.declared:
        repository = (repositories or RepositoryReads()).read(ecr, desired.repository, desired.repository_config)
    elsewhere = others.find(fn, desired, clients) if others is not None and image.digest is None else None
    return desired, Observed(function, image, repository, aliased, elsewhere)


def observe(spec: Spec, clients: Clients, workers: int = MAX_WORKERS) -> list[tuple[Desired, Observed]]:
    """Observe every function; if any fail, report all failures together, each problem once."""
    functions: Sequence[FunctionSpec] = spec.functions
    if not functions:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(functions))))
    try:
        repositories = RepositoryReads()
        others = (OtherEnvironments(spec.files, spec.environment, spec.copy_images_from)
                  if spec.environment is not None and any(spec.copy_images_from.values()) else None)
        futures = [(fn, pool.submit(observe_function, fn, clients, repositories, others)) for fn in functions]
        results: list[tuple[Desired, Observed]] = []
        failures: list[tuple[str, DeployerError]] = []
        for fn, future in futures:
            try:
                results.append(future.result())
            except DeployerError as exc:
                failures.append((fn.name, exc))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # read-only work: nothing to wait for
        raise
    pool.shutdown(wait=True)
    if failures:
        raise DeployerError("cannot plan:\n  " + "\n  ".join(grouped(failures)))
    return results


def grouped(failures: list[tuple[str, DeployerError]]) -> list[str]:
    """One line per problem, naming the functions it hit. The same failed call for many functions
    (no credentials, an endpoint down, access denied) is one problem: AWS errors are grouped by
    operation and AWS error code, others by their message."""
    groups: dict[object, tuple[DeployerError, list[str]]] = {}
    for name, exc in failures:
        key = exc.diagnostic.group if isinstance(exc, AwsError) else str(exc)
        groups.setdefault(key, (exc, []))[1].append(name)
    return [_problem(exc, names) for exc, names in groups.values()]


def _problem(exc: DeployerError, names: list[str]) -> str:
    """One line per problem: the functions it hit, then the problem. Said for several functions,
    an AWS call is named without the one function's resource."""
    if isinstance(exc, AwsError) and len(names) > 1 and exc.diagnostic.operation:
        text = f"{exc.diagnostic.operation}: {exc.diagnostic.summary}"
    else:
        text = str(exc)
    return f"{_names(names)}: " + "\n    ".join(text.splitlines())


def _names(names: list[str], shown: int = 8) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
