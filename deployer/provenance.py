"""provenance: why each changing function's image changes, for the plan's reviewers.

For each function whose image changes, read the labels of the image Lambda runs now (through ECR's
token and the registry API: no Docker engine), compare the digests of its inputs with the
source's (deployer.image_inputs), and, when the commit that image was built from is in the local
git history, list the files of the function's inputs changed since (deployer.gitdiff).

Everything here is for display: a label that cannot be read, a commit not fetched, a registry that
refuses, make the explanation say so and never fail the plan. Reads run in a small pool, one per
running image however many functions run it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

from dulwich.repo import Repo

from deployer import gitdiff
from deployer.adopt import image_repository
from deployer.aws import Clients
from deployer.ecr_gateway import EcrGateway
from deployer.errors import DeployerError
from deployer.image_inputs import Explanation, FileChanges, commit_of, explain
from deployer.layout import Layout
from deployer.paths import git_root
from deployer.plan import Action, FunctionPlan, Plan
from deployer.registry import REVISION_LABEL, RegistryLogin, RegistryUnanswered, image_labels
from deployer.spec import EcrRepository
from deployer.state import Desired, Observed

WORKERS = 8
READ_TIMEOUT = 10.0  # seconds one read of a registry waits for an answer; one image's reads, twice that
# Seconds all label reads of one plan may take: a registry answering each read just in time would
# otherwise hold a plan of hundreds of images for many minutes. Images not read by then are told
# as unreadable.
READ_BUDGET = 60.0
# A registry that did not answer this many reads is not asked again in the same plan: it would
# otherwise cost its timeout for every function. Refusals and missing images do not count.
MAX_FAILURES = 3


def explain_plan(plan: Plan, observed: Sequence[tuple[Desired, Observed]], clients: Clients,
                 registry_endpoint: str | None = None, timeout: float = READ_TIMEOUT, budget: float = READ_BUDGET) -> Plan:
    """`plan` with an explanation on every function whose image changes from one Lambda runs;
    `timeout`: how long one read of a registry waits for it to answer; `budget`: all of them."""
    targets = [fp for fp in plan.functions if _image_changes(fp)]
    if not targets:
        return plan
    reader = _Reader(clients, registry_endpoint, {d.name: o for d, o in observed},
                     timeout, time.monotonic() + budget)
    try:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(targets))) as pool:
            explained = dict(zip((fp.name for fp in targets), pool.map(reader.explanation, targets)))
    finally:
        reader.close()
    return dataclasses.replace(plan, functions=tuple(
        dataclasses.replace(fp, explanation=explained[fp.name]) if fp.name in explained else fp for fp in plan.functions))


def _image_changes(fp: FunctionPlan) -> bool:
    return (fp.action in (Action.BUILD, Action.UPDATE) and fp.current_digest is not None
            and fp.desired_digest != fp.current_digest)


class _Reader:
    """Reads shared by the functions of one plan: a registry login per region, the labels of each
    running image, an opened git checkout."""

    def __init__(self, clients: Clients, endpoint: str | None, observed: Mapping[str, Observed],
                 timeout: float, deadline: float) -> None:
        self.clients, self.endpoint, self.observed = clients, endpoint, observed
        self.timeout, self.deadline = timeout, deadline
        self._lock = threading.Lock()
        self._logins: dict[str, RegistryLogin | None] = {}
        self._labels: dict[tuple[EcrRepository, str], Mapping[str, str] | None] = {}
        self._reading: dict[tuple[EcrRepository, str], threading.Lock] = {}
        self._checkouts: dict[Path, tuple[Repo, gitdiff.Memo] | None] = {}
        self._failures: dict[str, int] = {}  # registry host -> reads it did not answer
        self._git = threading.Lock()  # dulwich's object store reads packs through shared file handles

    def explanation(self, fp: FunctionPlan) -> Explanation:
        digest = fp.current_digest
        assert digest is not None
        running = self.observed.get(fp.name)
        repository = _repository(running, fp.desired)
        found = self._image_labels(repository.region, repository, digest)  # its registry's token
        if found is None:
            return Explanation(labelled=False, unreadable=True)
        commit = commit_of(found, REVISION_LABEL)
        # The layout observe listed (none in a saved plan): which files the build context holds.
        layout = fp.desired.layout
        files = self._files(layout, commit) if commit is not None and layout is not None else None
        return explain(fp.desired.inputs, found, REVISION_LABEL, files)

    def _login(self, region: str) -> RegistryLogin | None:
        with self._lock:
            if region not in self._logins:
                try:
                    self._logins[region] = EcrGateway(self.clients, region).login()
                except DeployerError:  # no ecr:GetAuthorizationToken: the plan goes on without labels
                    self._logins[region] = None
            return self._logins[region]

    def _image_labels(self, region: str, repository: EcrRepository, digest: str) -> Mapping[str, str] | None:
        key = (repository, digest)
        with self._lock:
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:  # functions that run the same image wait for its one read
            with self._lock:
                if key in self._labels:
                    return self._labels[key]
            login = self._login(region)
            with self._lock:
                given_up = self._failures.get(repository.registry, 0) >= MAX_FAILURES
            found = None
            left = self.deadline - time.monotonic()
            if login is not None and not given_up and left > 0:
                try:
                    found = image_labels(repository.registry, repository.name, digest, login, self.endpoint,
                                         timeout=min(self.timeout, left), total=min(2 * self.timeout, left),
                                         raise_unanswered=True)
                except RegistryUnanswered:  # only silence counts: a missing image says nothing of the others
                    with self._lock:
                        self._failures[repository.registry] = self._failures.get(repository.registry, 0) + 1
            with self._lock:
                self._labels[key] = found
            return found

    def _files(self, lay: Layout, commit: str) -> FileChanges | None:
        root = git_root([lay.fn.root, *lay.fn.root.parents])
        if root is None:
            return None
        with self._lock:
            if root not in self._checkouts:
                repo = gitdiff.open_checkout(root)
                self._checkouts[root] = (repo, gitdiff.Memo()) if repo is not None else None
            checkout = self._checkouts[root]
        if checkout is None:
            return None
        with self._git:  # one at a time, sharing the comparisons of the files of shared modules
            return gitdiff.changed_files(checkout[0], root, commit, lay.input_dirs, lay.entries, checkout[1], lay.would_hold)

    def close(self) -> None:
        for checkout in self._checkouts.values():
            if checkout is not None:
                checkout[0].close()


def _repository(running: Observed | None, desired: Desired) -> EcrRepository:
    """The repository of the image the function runs (deploy.yaml may name another one since)."""
    try:
        found = image_repository(running.function.image_uri) if running is not None else None
    except (ValueError, DeployerError):
        found = None
    return found or desired.repository
