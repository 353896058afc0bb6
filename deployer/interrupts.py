"""Ctrl-C during apply: counted, never raised.

A KeyboardInterrupt raised in the main thread while apply's workers run would leave the main
thread before the workers have stopped the build and removed their contexts, however many times
Ctrl-C is pressed (and the CLI then exits at once). While `CtrlC.counting` is active SIGINT only
increments `presses`; the executor polls it and cancels the workers, which stop at a safe point
(raising `Cancelled`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

# How often a wait looks at Ctrl-C: the main thread at its workers and presses, a function at
# another's build. A Ctrl-C is answered within about this.
WAIT_SLICE_SECONDS = 0.1

from deployer.errors import DeployerError


class CtrlC:
    def __init__(self) -> None:
        self.presses = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count SIGINT instead of raising; only the main thread can set a signal handler, so
        elsewhere (tests running apply in a thread) this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._count)
        try:
            yield
        finally:
            # Once Ctrl-C was pressed the process is on its way out and has the summary to print:
            # later presses are still only counted. Otherwise the previous handler is back.
            if not self.presses:
                signal.signal(signal.SIGINT, previous)

    def _count(self, _signum: int, _frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread: no lock (the main thread may hold it).
        self.presses += 1


class Cancelled(DeployerError):
    """Ctrl-C: workers stop at their next step, output line, retry or poll, and clean up."""
