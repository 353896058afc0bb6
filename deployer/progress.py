"""Progress of apply: one line per step start and end, prefixed by the function name, and signs of
life while a step runs.

Lines, because functions run in parallel and CI logs must stay readable; rich adds colour only on
a terminal (and never with NO_COLOR). While steps run:

- On an interactive terminal a live area below the lines shows each running function: its step,
  how long that step has run and, during a push, the bytes pushed of the total. Every line
  printed meanwhile (step ends, `log` lines such as --verbose build output, notices) goes above
  it, so the scrollback keeps the same record as without a terminal; the area is gone once the
  reporter is closed, before the summary.
- Elsewhere (CI logs, pipes, TERM=dumb) a line per running function every `interval` seconds of
  its step, as Terraform's "Still creating... [10s elapsed]":

      fn-name [3/8] build image for linux/arm64 ... still running [10s elapsed]
      fn-name [4/8] push <repository>:src-9f2c... ... still running [20s elapsed, 12.3 MB of 45.6 MB pushed]

One background thread, the ticker, does both: the first step starts it, `close()` stops it (the
reporter is a context manager; the CLI's apply runs inside it). It waits on an Event, so close()
ends it at once, and a closed reporter starts no thread again. `tick()` is one round of it, for
tests with a fake clock.

DEPLOYER_PROGRESS_INTERVAL (hidden, for tests): seconds between "still running" lines, a number
from 0.1 to 3600 (default 10); `interval_from_environment` reads and checks it.

Every value shown comes from outside (function names, step descriptions, build output, AWS and
Docker messages and byte counts): each is stripped of control characters and escape sequences and
escaped for rich markup (`render.rich_text`); lines are printed without rich's emoji codes, so
`:name:` stays as written; byte counts shown are integers in a sane range. Build output and
outcome details also lose whatever has the shape of a credential (`redact`): the gateways take
out the secrets they know of, this is the net behind them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Callable, Mapping

from rich.console import Console, RenderableType
from rich.filesize import decimal
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from deployer.errors import DeployerError
from deployer.outcome import Outcome, OutcomeStatus
from deployer.redact import redact
from deployer.render import rich_text, terminal_lines, terminal_text

INTERVAL_SECONDS = 10.0  # between "still running" lines without a terminal
INTERVAL_VARIABLE = "DEPLOYER_PROGRESS_INTERVAL"
INTERVAL_RANGE = (0.1, 3600.0)
REFRESH_SECONDS = 0.25  # of the live area on a terminal
# Larger byte counts are not believed: no image layer Lambda takes comes near (10 GB an image).
MAX_BYTES = 1 << 40


def interval_from_environment(environ: Mapping[str, str] = os.environ) -> float:
    """The interval of "still running" lines: DEPLOYER_PROGRESS_INTERVAL, or 10 s."""
    raw = environ.get(INTERVAL_VARIABLE)
    if raw is None or not raw.strip():
        return INTERVAL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low, high = INTERVAL_RANGE
    if not low <= value <= high:  # NaN too
        raise DeployerError(f"{INTERVAL_VARIABLE}={terminal_text(raw)[:40]!r}: seconds between progress lines, "
                            f"a number from {low:g} to {high:g}; unset it for the default of {INTERVAL_SECONDS:g}")
    return value


def _bytes(value: object) -> int | None:
    """A byte count, or None for anything else (a bool, a float, a negative or absurd number)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BYTES:
        return value
    return None


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60:02d}s"


@dataclass
class _Running:
    """A function's step in progress. `due`: when its next "still running" line is (line mode)."""

    number: int
    total: int
    text: str
    started: float
    due: float
    done: int | None = None  # bytes pushed, of `size`
    size: int | None = None

    def head(self, function: str) -> str:
        return f"[bold]{rich_text(function)}[/bold] [{self.number}/{self.total}] {rich_text(self.text)}"

    def transferred(self, separator: str) -> str:
        if self.done is None:
            return ""
        if self.size:
            return f"{decimal(min(self.done, self.size))}{separator}{decimal(self.size)}"
        return decimal(self.done)


class ConsoleReporter:
    """The Reporter of the CLI (deployer.ports). Thread-safe: every worker reports through it.

    `live`: the live area (None: when the console is an interactive terminal), redrawn every
    `refresh` seconds; `interval`: seconds between "still running" lines otherwise; `clock`:
    monotonic seconds (tests pass a fake one)."""

    def __init__(self, console: Console, *, live: bool | None = None, interval: float = INTERVAL_SECONDS,
                 refresh: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.live = (console.is_terminal and console.is_interactive and not console.is_dumb_terminal) if live is None else live
        self.interval = interval
        self.refresh = refresh
        self._clock = clock
        self._lock = threading.RLock()  # the console, the live area and `_running`
        self._running: dict[str, _Running] = {}
        self._area: Live | None = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    def __enter__(self) -> ConsoleReporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _print(self, text: str) -> None:
        with self._lock:
            self.console.print(text, emoji=False)

    def step(self, function: str, number: int, total: int, text: str) -> None:
        now = self._clock()
        running = _Running(number, total, text, now, now + self.interval)
        with self._lock:
            self._print(f"{running.head(function)} ...")
            self._running[function] = running
            self._start()
            self._refresh()

    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None:
        with self._lock:
            self._running.pop(function, None)
            self._refresh()
            self._print(f"[bold]{rich_text(function)}[/bold] [{number}/{total}] [green]done[/green] in {seconds:.1f}s")

    def transfer(self, function: str, done: int, total: int) -> None:
        """Bytes of the running step's push: shown by the next refresh or "still running" line."""
        done_bytes, size = _bytes(done), _bytes(total)
        with self._lock:
            running = self._running.get(function)
            if running is not None and done_bytes is not None and size is not None:
                running.done, running.size = done_bytes, size

    def log(self, function: str, line: str) -> None:
        self._print(f"[dim]{rich_text(function)} | {rich_text(redact(line))}[/dim]")

    def notice(self, text: str) -> None:
        self._print(f"[yellow]{rich_text(text)}[/yellow]")

    def summary(self, outcomes: list[Outcome]) -> None:
        self.close()  # the live area is gone before the summary, whoever forgot to close
        width = max((len(terminal_text(o.name)) for o in outcomes), default=0)
        self._print("")
        self._print("Apply summary:")
        for o in outcomes:
            style = "red" if o.failed else ("dim" if o.status == OutcomeStatus.UNCHANGED else "green")
            detail = "\n    ".join(escape(line) for line in terminal_lines(redact(o.detail)))
            self._print(f"  {rich_text(terminal_text(o.name).ljust(width))}  [{style}]{str(o.status):<9}[/{style}] {o.seconds:6.1f}s  {detail}")
        failed = sum(o.failed for o in outcomes)
        changed = sum(o.changed for o in outcomes)
        self._print(f"{len(outcomes)} function(s): {changed} changed, {len(outcomes) - changed - failed} unchanged, {failed} failed")

    # -- while steps run -----------------------------------------------------------------------

    def _start(self) -> None:
        """The ticker and the live area, at the first step of an open reporter (lock held)."""
        if self._closed or self._ticker is not None:
            return
        if self.live:
            self._area = Live(console=self.console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._area.start()
        self._ticker = threading.Thread(target=self._tick_until_closed, name="deployer-progress", daemon=True)
        self._ticker.start()

    def _tick_until_closed(self) -> None:
        wait = self.refresh if self.live else self.interval
        try:
            while not self._stop.wait(wait):
                wait = self.tick()
        except (OSError, ValueError):  # the output went away (a closed pipe): progress is not worth a traceback
            pass

    def tick(self) -> float:
        """One round of the ticker at the clock's time: refresh the live area, or print the
        "still running" lines that are due. Returns the seconds until the next round."""
        with self._lock:
            if self.live:
                self._refresh()
                return self.refresh
            now = self._clock()
            for function, running in sorted(self._running.items()):
                if now >= running.due:
                    pushed = running.transferred(" of ")
                    pushed = f", {pushed} pushed" if pushed else ""
                    self._print(f"{running.head(function)} ... still running [{_duration(now - running.started)} elapsed{pushed}]")
                    # A late round says it once, then keeps the rhythm: the next due time after now.
                    running.due += self.interval * (math.floor((now - running.due) / self.interval) + 1)
            upcoming = min((r.due for r in self._running.values()), default=now + self.interval)
            return min(self.interval, max(0.01, upcoming - now))

    def _refresh(self) -> None:
        if self._area is not None:
            self._area.update(self._view(), refresh=True)

    def _view(self) -> RenderableType:
        """The live area: a row per running function (lock held)."""
        now = self._clock()
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)  # what is cut when the terminal is narrow
        table.add_column(no_wrap=True, justify="right")
        table.add_column(no_wrap=True, justify="right")
        for function, running in sorted(self._running.items()):
            pushed = running.transferred(" / ")
            table.add_row(Text.from_markup(running.head(function), emoji=False, overflow="ellipsis"),
                          Text(_duration(now - running.started), style="cyan"), Text(pushed, style="dim"))
        return table

    def close(self) -> None:
        """Stop the ticker (at once: it waits on an Event) and remove the live area. Idempotent;
        a closed reporter still prints lines, and starts no thread again."""
        with self._lock:
            self._closed = True
            self._stop.set()
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.join()  # outside the lock: its round takes the lock
        with self._lock:
            area, self._area = self._area, None
            if area is not None:
                area.stop()
