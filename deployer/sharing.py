"""sharing: one build per image, within an apply and between applies on one machine.

Functions of one apply with the same inputs and repository have the same content tag:
`SharedImages` lets the first build and push it and the others wait for its digest. Applies
running at the same time on one machine take turns through `ImageLock`, a lock file per image in
the temp dir (deployer.locks): the second, once the first has pushed, finds the image in ECR and
deploys it instead of building and pushing the tag again (which would leave the first image
untagged in ECR, and could remove the local tag under the first's push).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Callable

from deployer import locks
from deployer.context import context_root
from deployer.errors import DeployerError

# Lock files of images in the temp dir: IMAGE_LOCK_PREFIX<hash of the image reference>.lock
IMAGE_LOCK_PREFIX = "deployer-image-"


class Cancelled(DeployerError):
    """Ctrl-C: workers stop at the next step boundary and clean up."""


class SharedImages:
    """One build per image in an apply. Functions with the same inputs and repository have the
    same content tag: the first builds and pushes it, the others wait and deploy its digest
    (building twice would push two digests under one tag, and untag an image a function runs).
    If that build fails, the others fail at once with its reason instead of repeating it."""

    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._digests: dict[str, str] = {}
        self._failures: dict[str, str] = {}

    def claim(self, image: str) -> str | None:
        """The digest if the image was already pushed in this apply; else None, and the caller
        holds the image until `done` or `abandon`."""
        with self._guard:
            lock = self._locks.setdefault(image, threading.Lock())
        while not lock.acquire(timeout=0.2):  # in slices: a Ctrl-C must not wait for the build
            if self._cancel.is_set():
                raise Cancelled("cancelled while another function built the same image")
        failure, digest = self._failures.get(image), self._digests.get(image)
        if self._cancel.is_set() or failure or digest:
            lock.release()
        if self._cancel.is_set():
            raise Cancelled("cancelled before building")
        if failure:
            raise DeployerError(f"the same image failed to build for {failure}")
        return digest

    def done(self, image: str, digest: str) -> None:
        self._digests[image] = digest
        self._locks[image].release()

    def abandon(self, image: str, failure: str | None) -> None:
        """The holder stops without pushing. `failure` (function: reason) is kept for the
        functions waiting; None (cancelled, stale plan) lets the next one build it instead."""
        if failure:
            self._failures[image] = failure
        self._locks[image].release()


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
