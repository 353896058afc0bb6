"""Progress of apply, one line per step start and end, prefixed by the function name.

Lines rather than live widgets because functions run in parallel and CI logs must stay readable;
rich adds colour only on a terminal (and never with NO_COLOR).
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.markup import escape

from deployer.apply import Outcome


class ConsoleReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            self.console.print(text)

    def step(self, function: str, number: int, total: int, text: str) -> None:
        self._print(f"[bold]{escape(function)}[/bold] [{number}/{total}] {escape(text)} ...")

    def step_done(self, function: str, number: int, total: int, text: str, seconds: float) -> None:
        self._print(f"[bold]{escape(function)}[/bold] [{number}/{total}] [green]done[/green] in {seconds:.1f}s")

    def log(self, function: str, line: str) -> None:
        self._print(f"[dim]{escape(function)} | {escape(line)}[/dim]")

    def notice(self, text: str) -> None:
        self._print(f"[yellow]{escape(text)}[/yellow]")

    def summary(self, outcomes: list[Outcome]) -> None:
        width = max((len(o.name) for o in outcomes), default=0)
        self._print("")
        self._print("Apply summary:")
        for o in outcomes:
            style = "red" if o.failed else ("dim" if o.status == "unchanged" else "green")
            detail = o.detail.replace("\n", "\n    ")
            self._print(f"  {escape(o.name.ljust(width))}  [{style}]{o.status:<9}[/{style}] {o.seconds:6.1f}s  {escape(detail)}")
        failed = sum(o.failed for o in outcomes)
        changed = sum(o.status in ("built", "updated") for o in outcomes)
        self._print(f"{len(outcomes)} function(s): {changed} changed, {len(outcomes) - changed - failed} unchanged, {failed} failed")
