"""sharing: one build per image, within an apply and between applies on one machine.

Functions of one apply with the same inputs and repository have the same content tag:
`SharedImages` keeps one future per image (ko's build.Caching). The first function needing the
image gets the claim: it builds, pushes and verifies it and publishes its digest to the future;
the others wait on the future and deploy that digest. Building twice would push two digests under
one tag, and untag an image a function runs.

Applies running at the same time on one machine take turns through `ImageLock`, a lock file per
image in the temp dir (deployer.locks), which the claim holds from its build until ECR lists the
pushed image: the second apply, once the first has pushed, finds the image in ECR and deploys it
instead of building and pushing the tag again (which would leave the first image untagged in ECR,
and could remove the local tag under the first's push).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Callable

from deployer import locks
from deployer.context import context_root
from deployer.errors import DeployerError, PlanError, first_line
from deployer.images import PushedImage
from deployer.interrupts import WAIT_SLICE_SECONDS, Cancelled

# Lock files of images in the temp dir: IMAGE_LOCK_PREFIX<hash of the image reference>.lock
IMAGE_LOCK_PREFIX = "deployer-image-"


class SharedBuildFailed(DeployerError):
    """The build of an image failed for the function that claimed it: its waiters fail too, at
    once, with its reason, instead of repeating it."""


class SharedImages:
    """One future per image (repository_uri:content_tag) in an apply.

    A future ends in the image's digest, or in the failure of its build, or is cancelled: its
    claimant stopped for a reason that says nothing about the image (Ctrl-C, a stale plan); it is
    then forgotten, and the next function needing the image claims it anew."""

    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._guard = threading.Lock()
        self._futures: dict[str, Future[PushedImage]] = {}

    def claim(self, image: str, function: str) -> PushedImage | ImageClaim:
        """The image, once another function of this apply has made it; else the claim to make it,
        for `function`. Waits interruptibly: raises Cancelled as soon as Ctrl-C is pressed."""
        while True:
            with self._guard:
                future = self._futures.get(image)
                if future is None and not self._cancel.is_set():
                    future = self._futures[image] = Future()
                    return ImageClaim(self, image, future, function)
            if future is None:
                raise Cancelled("cancelled before building")
            try:
                return self._wait(future)
            except concurrent.futures.CancelledError:
                continue  # its claimant gave up without a verdict on the image: claim it anew

    def _wait(self, future: Future[PushedImage]) -> PushedImage:
        while True:
            try:
                failure = future.exception(timeout=WAIT_SLICE_SECONDS)
            except concurrent.futures.TimeoutError:
                if self._cancel.is_set():
                    raise Cancelled("cancelled while another function built the same image") from None
                continue
            if self._cancel.is_set():
                raise Cancelled("cancelled before building")
            if failure is not None:  # a new error per waiter: they raise it in threads of their own
                raise SharedBuildFailed(str(failure))
            return future.result()

    def _forget(self, image: str, future: Future[PushedImage]) -> None:
        with self._guard:
            if self._futures.get(image) is future:
                del self._futures[image]
            future.cancel()


class ImageClaim:
    """The duty to make one image for this apply, held by the first function needing it: it ends
    in `publish`, or, when the claimant's run leaves the `with` block without publishing, in the
    failure of the build (its reason goes to the waiters) or, for Ctrl-C or a stale plan, in
    giving the claim up. It also holds this machine's `ImageLock` of the image, from `lock` until
    `publish` or the end, whichever comes first. Used by one thread, the claimant's."""

    def __init__(self, images: SharedImages, image: str, future: Future[PushedImage], function: str) -> None:
        self.image = image
        self._images = images
        self._future = future
        self._function = function
        self._lock: ImageLock | None = None

    def lock(self, what: str, sleep: Callable[[float], None], log: Callable[[str], None]) -> None:
        """Take this machine's lock of the image (waiting for another apply building it)."""
        lock = ImageLock(self.image, sleep, log)
        if lock.acquire(what):
            self._lock = lock

    def publish(self, image: PushedImage) -> None:
        """The image is in ECR: functions of this apply waiting for it, and applies on this
        machine waiting for its lock, deploy it instead of building it again."""
        self._future.set_result(image)
        self._unlock()

    def __enter__(self) -> ImageClaim:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None) -> None:
        try:
            if self._future.done():
                return
            # A failure of the build itself would fail the others too; a cancel or a stale plan
            # says nothing about the image.
            if error is not None and not isinstance(error, (Cancelled, PlanError)):
                reason = first_line(error)
                self._future.set_exception(SharedBuildFailed(f"the same image failed to build for {self._function}: {reason}"))
            else:
                self._images._forget(self.image, self._future)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()


class ImageLock:
    """This machine's lock of one image (repository_uri:content_tag), held from before the build
    until ECR lists the pushed image. `sleep` waits between attempts and raises Cancelled on
    Ctrl-C; `log` says once who is being waited for."""

    def __init__(self, image: str, sleep: Callable[[float], None], log: Callable[[str], None]) -> None:
        self.path = context_root() / f"{IMAGE_LOCK_PREFIX}{hashlib.sha256(image.encode()).hexdigest()[:32]}.lock"
        self._sleep = sleep
        self._log = log
        self._fd: int | None = None

    def acquire(self, what: str) -> bool:
        """Hold the lock; False (and said) when it cannot be taken at all, e.g. a file of that
        name owned by another user: then the ECR check alone guards against a second build."""
        said = False

        def wait(seconds: float) -> None:
            nonlocal said
            if not said:
                holder = locks.holder_note(self.path) or "another process"
                self._log(f"another apply on this machine ({holder}) is building {what}; waiting for it")
                said = True
            self._sleep(seconds)

        try:
            self._fd = locks.acquire(self.path, wait, note=f"pid {os.getpid()}")
        except OSError as exc:
            self._log(f"cannot take the image lock {self.path} ({exc.strerror or exc}); going on without it")
            return False
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            locks.release(fd, self.path)


class OncePerApply:
    """Work that one apply does once per key however many functions step on it, such as setting a
    shared repository's settings: N functions writing one repository policy at once would race
    (each reads, then writes) and throttle. The first caller does it; the others wait for it and
    share its outcome, its error included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, Future[None]] = {}

    def run(self, key: str, work: Callable[[], None]) -> bool:
        """True when this call did the work, False when another had (or had failed: raised again)."""
        with self._lock:
            future = self._done.get(key)
            mine = future is None
            if future is None:
                future = self._done[key] = Future()
        if not mine:
            future.result()
            return False
        try:
            work()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(None)
        return True
