"""Progress of apply, one line per step start and end, prefixed by the function name.

Lines rather than live widgets because functions run in parallel and CI logs must stay readable;
rich adds colour only on a terminal (and never with NO_COLOR).

Every value shown comes from outside (function names, step descriptions, build output, AWS and
Docker messages): each is stripped of control characters and escape sequences and escaped for
rich markup (`render.rich_text`); lines are printed without rich's emoji codes, so `:name:` stays as written.
Build output and outcome details also lose whatever has the shape of a credential (`redact`): the
gateways take out the secrets they know of, this is the net behind them.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.markup import escape

from deployer.outcome import Outcome, OutcomeStatus
from deployer.redact import redact
from deployer.render import rich_text, terminal_lines, terminal_text


class ConsoleReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            self.console.print(text, emoji=False)

    def step(self, function: str, number: int, total: int, text: str) -> None:
        self._print(f"[bold]{rich_text(function)}[/bold] [{number}/{total}] {rich_text(text)} ...")

    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None:
        self._print(f"[bold]{rich_text(function)}[/bold] [{number}/{total}] [green]done[/green] in {seconds:.1f}s")

    def log(self, function: str, line: str) -> None:
        self._print(f"[dim]{rich_text(function)} | {rich_text(redact(line))}[/dim]")

    def notice(self, text: str) -> None:
        self._print(f"[yellow]{rich_text(text)}[/yellow]")

    def summary(self, outcomes: list[Outcome]) -> None:
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
