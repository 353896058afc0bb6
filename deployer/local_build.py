"""local_build: images into the local Docker engine, without AWS (`deployer build`, and the build
half of `invoke --local`): the seed's "build image only". No login, no push, no AWS call.

Each function's context is assembled in a temporary directory and built exactly as apply builds
it (deployer.images.build_image), then tagged `deployer/<function>:<content tag>` (the function's
name in lower case: Docker repository names have no capitals). Functions build in parallel; one
failing does not stop the others. Ctrl-C stops the builds on the engine and removes the contexts.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from deployer.context import temporary_context
from deployer.errors import DeployerError
from deployer.go_build import Netrc
from deployer.images import build_image
from deployer.interrupts import WAIT_SLICE_SECONDS, CtrlC
from deployer.ports import DockerApi, Reporter
from deployer.spec import FunctionSpec

LOCAL_REPOSITORY = "deployer"


# A path component of an image reference (distribution/reference): Lambda's names may start or
# end with `-` or `_`, or hold `___` or `_-`, which Docker refuses ("invalid reference format").
_REFERENCE_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")


def local_tag(function: str, content_tag: str) -> str:
    """Where `deployer build` puts a function's image in the engine: the function's name in lower
    case, or, for a name Docker would refuse, its letters and digits joined by `-` and a hash of
    the name (so that no two functions share a repository)."""
    name = function.lower()
    if not _REFERENCE_COMPONENT.fullmatch(name):
        words = re.findall(r"[a-z0-9]+", name)
        name = "-".join([*words, hashlib.sha256(function.encode()).hexdigest()[:8]])
    return f"{LOCAL_REPOSITORY}/{name}:{content_tag}"


@dataclass(frozen=True)
class LocalImage:
    """A function's image in the local engine: `tag`, or the `error` that stopped its build."""

    function: str
    tag: str = ""
    image_id: str = ""
    seconds: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class LocalBuildOptions:
    parallelism: int = 2
    verbose: bool = False
    netrcs: Mapping[str, Netrc] = field(default_factory=dict)  # credentials for Go builds, by variable name


class LocalBuilder:
    def __init__(self, docker: DockerApi, reporter: Reporter, options: LocalBuildOptions) -> None:
        self.docker = docker
        self.reporter = reporter
        self.options = options
        self.cancel = threading.Event()
        self.ctrl_c = CtrlC()

    @property
    def interrupted(self) -> bool:
        return self.cancel.is_set()

    def build(self, functions: Sequence[FunctionSpec]) -> list[LocalImage]:
        """Every function's image, in the order given; failures are in the results, not raised."""
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.options.parallelism, len(functions))))
        futures = [pool.submit(self._one, fn) for fn in functions]
        try:
            with self.ctrl_c.counting():
                pending: set[Future[LocalImage]] = set(futures)
                while pending:
                    _, pending = wait(pending, timeout=WAIT_SLICE_SECONDS, return_when=FIRST_COMPLETED)
                    if self.ctrl_c.presses and not self.cancel.is_set():
                        self.cancel.set()
                        self.reporter.notice("stopping: the builds are being stopped on the engine")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [LocalImage(fn.name, error="interrupted before it started") if f.cancelled() else f.result()
                for fn, f in zip(functions, futures)]

    def _one(self, fn: FunctionSpec) -> LocalImage:
        started = time.monotonic()
        try:
            self.reporter.step(fn.name, 1, 2, "assemble build context")
            with temporary_context(fn) as context:
                self.reporter.step_done(fn.name, 1, 2, "assemble build context", time.monotonic() - started)
                tag = local_tag(fn.name, context.content_tag)
                existing = self.docker.local_image(tag)
                if existing is not None:  # the tag names every input: that image is this build's result
                    self.reporter.log(fn.name, f"{tag} is in the engine already: nothing to build")
                    return LocalImage(fn.name, tag, existing, time.monotonic() - started)
                self.reporter.step(fn.name, 2, 2, f"build image for {fn.platform}")
                step_started = time.monotonic()
                labels = {"dev.deployer.source-digest": context.digest, "dev.deployer.function": fn.name}
                image_id = build_image(self.docker, context, tag, labels, function=fn.name,
                                       netrc=self.options.netrcs.get(fn.build.netrc_env) if fn.build.compiles_go else None,
                                       log=(lambda line: self.reporter.log(fn.name, line)) if self.options.verbose else None,
                                       cancel=self.cancel, netrc_env=fn.build.netrc_env)
                self.reporter.step_done(fn.name, 2, 2, f"build image for {fn.platform}", time.monotonic() - step_started)
        except DeployerError as exc:
            return LocalImage(fn.name, error=str(exc), seconds=time.monotonic() - started)
        return LocalImage(fn.name, tag, image_id, time.monotonic() - started)
