"""The apply reporter while steps run: "still running" lines without a terminal, a live area on one,
bytes of a push, parallel functions, and its one thread.

The clock is a fake one and rounds are driven by `tick()`; the tests of the thread itself wait on
events (what the console receives), never on the interval.
"""

from __future__ import annotations

import io
import re
import threading
import time
from typing import Any

import pytest
from rich.console import Console

from deployer.errors import DeployerError
from deployer.outcome import Outcome, OutcomeStatus
from deployer.progress import INTERVAL_VARIABLE, ConsoleReporter, interval_from_environment

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What rich's live area writes to move over the lines it drew: cursor up, erase line, hide/show cursor.
CURSOR = re.compile(r"\r|\x1b\[\d*A|\x1b\[2K|\x1b\[\?25[lh]")
BUILD = "build image for linux/arm64"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line_reporter(interval: float = 10) -> tuple[ConsoleReporter, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, highlight=False, soft_wrap=True, emoji=False, force_terminal=False, width=200)
    return ConsoleReporter(console, interval=interval, clock=clock), out, clock


def live_reporter(monkeypatch: pytest.MonkeyPatch) -> tuple[ConsoleReporter, io.StringIO, Clock]:
    monkeypatch.setenv("TERM", "xterm")  # a dumb terminal gets lines
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, highlight=False, soft_wrap=True, emoji=False, force_terminal=True, color_system=None, width=100)
    return ConsoleReporter(console, clock=clock), out, clock


def screen(written: str) -> list[str]:
    """What a terminal shows after `written`: lines, carriage returns, cursor up, erase line."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\d*A|\x1b\[2K|\x1b\[\?25[lh]|\x1b\[[0-9;]*m|\r|\n|[^\x1b\r\n]", written):
        if token == "\n":
            row, col = row + 1, 0
            lines.extend([""] * (row + 1 - len(lines)))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token.startswith("\x1b[") and token.endswith("A"):
            row -= int(token[2:-1] or 1)
        elif not token.startswith("\x1b"):
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + 1:]
            col += 1
    shown = [line.rstrip() for line in lines]
    while shown and not shown[-1]:
        shown.pop()
    return shown


def progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "deployer-progress"]


@pytest.fixture(autouse=True)
def no_thread_is_left() -> Any:
    yield
    assert progress_threads() == [], "a reporter's ticker outlived its test"


# -- without a terminal ----------------------------------------------------------------------

def test_a_long_step_says_it_is_still_running_every_interval_then_stops_when_done() -> None:
    reporter, out, clock = line_reporter()
    with reporter:
        reporter.step("fn", 3, 8, BUILD)
        for _ in range(4):
            clock.now += 5
            reporter.tick()
        reporter.step_done("fn", 3, 8, BUILD, 21.0)
        clock.now += 30
        reporter.tick()
    assert out.getvalue().splitlines() == [
        f"fn [3/8] {BUILD} ...",
        f"fn [3/8] {BUILD} ... still running [10s elapsed]",
        f"fn [3/8] {BUILD} ... still running [20s elapsed]",
        "fn [3/8] done in 21.0s",
    ]


def test_a_late_round_says_it_once_with_the_real_elapsed_time_and_keeps_the_rhythm() -> None:
    reporter, out, clock = line_reporter()
    with reporter:
        reporter.step("fn", 1, 2, "push image")
        clock.now += 75
        assert reporter.tick() == pytest.approx(5)  # the next line is due at 80 s
        clock.now += 5
        reporter.tick()
    assert out.getvalue().splitlines()[1:] == ["fn [1/2] push image ... still running [1m15s elapsed]",
                                               "fn [1/2] push image ... still running [1m20s elapsed]"]


def test_parallel_functions_each_get_their_own_lines_prefixed_with_their_name() -> None:
    reporter, out, clock = line_reporter()
    with reporter:
        reporter.step("fn-a", 3, 8, BUILD)
        clock.now += 4
        reporter.step("fn-b", 4, 8, "push image")
        reporter.transfer("fn-b", 12_300_000, 45_600_000)
        clock.now += 6
        reporter.tick()
        clock.now += 4
        reporter.tick()
    assert out.getvalue().splitlines()[2:] == [
        f"fn-a [3/8] {BUILD} ... still running [10s elapsed]",
        "fn-b [4/8] push image ... still running [10s elapsed, 12.3 MB of 45.6 MB pushed]",
    ]


def test_the_interval_is_the_reporters() -> None:
    reporter, out, clock = line_reporter(interval=1)
    with reporter:
        reporter.step("fn", 1, 1, "wait")
        for _ in range(3):
            clock.now += 1
            reporter.tick()
    assert [line.rsplit("[", 1)[1] for line in out.getvalue().splitlines()[1:]] == ["1s elapsed]", "2s elapsed]", "3s elapsed]"]


def test_byte_counts_that_are_not_sane_are_ignored_and_a_finished_step_takes_none() -> None:
    reporter, out, clock = line_reporter()
    odd: Any
    with reporter:
        reporter.step("fn", 1, 1, "push image")
        reporter.transfer("fn", 2_000_000, 4_000_000)
        for odd in ((-1, 10), (True, 10), (5, 1 << 60), ("5", 10), (5.5, 10), (None, None)):
            reporter.transfer("fn", *odd)
        reporter.transfer("other", 1, 2)  # no step running: nothing to attach it to
        clock.now += 10
        reporter.tick()
        reporter.step_done("fn", 1, 1, "push image", 10.0)
        reporter.transfer("fn", 3, 4)
    assert out.getvalue().splitlines()[1] == "fn [1/1] push image ... still running [10s elapsed, 2.0 MB of 4.0 MB pushed]"


def test_still_running_lines_show_outside_values_as_plain_text() -> None:
    reporter, out, clock = line_reporter()
    with reporter:
        reporter.step("fn\x1b[2J[bold]", 1, 1, "push \x1b]0;owned\x07 :smile: [red]x[/red]")
        clock.now += 10
        reporter.tick()
    [_, still] = out.getvalue().splitlines()
    assert still == "fn[bold] [1/1] push  :smile: [red]x[/red] ... still running [10s elapsed]"


# -- on a terminal ---------------------------------------------------------------------------

def test_the_live_area_shows_each_running_step_its_time_and_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, out, clock = live_reporter(monkeypatch)
    with reporter:
        reporter.step("fn-a", 3, 8, BUILD)
        clock.now += 4
        reporter.step("fn-b", 4, 8, "push image")
        reporter.transfer("fn-b", 12_300_000, 45_600_000)
        clock.now += 8
        reporter.tick()
        shown = screen(out.getvalue())
        assert shown[:2] == [f"fn-a [3/8] {BUILD} ...", "fn-b [4/8] push image ..."]
        [a, b] = shown[2:]
        assert re.fullmatch(rf"fn-a \[3/8\] {BUILD} +12s", a), shown
        assert re.fullmatch(r"fn-b \[4/8\] push image +8s +12\.3 MB / 45\.6 MB", b), shown
        assert "still running" not in out.getvalue()


def test_lines_go_above_the_live_area_and_the_area_is_gone_before_the_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, out, clock = live_reporter(monkeypatch)
    with reporter:
        reporter.step("fn-a", 3, 8, BUILD)
        reporter.step("fn-b", 3, 8, BUILD)
        clock.now += 2
        reporter.log("fn-a", "Step 2/9 : RUN go build")
        reporter.step_done("fn-a", 3, 8, BUILD, 2.0)
        reporter.notice("stopping")
        assert screen(out.getvalue())[-1].startswith("fn-b [3/8]"), "the live area stays below the lines"
    reporter.summary([Outcome("fn-a", OutcomeStatus.BUILT, "now runs sha256:c", 2.0)])
    assert screen(out.getvalue()) == [
        f"fn-a [3/8] {BUILD} ...",
        f"fn-b [3/8] {BUILD} ...",
        "fn-a | Step 2/9 : RUN go build",
        "fn-a [3/8] done in 2.0s",
        "stopping",
        "",
        "Apply summary:",
        "  fn-a  built        2.0s  now runs sha256:c",
        "1 function(s): 1 changed, 0 unchanged, 0 failed",
    ]


def test_the_live_area_shows_outside_values_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, out, _ = live_reporter(monkeypatch)
    with reporter:
        reporter.step("fn\x1b[2J[bold]", 1, 2, "push \x1b]0;owned\x07 :smile: [red]x[/red] \u202eevil")
        reporter.tick()
        written = CURSOR.sub("", out.getvalue())
    assert not CONTROL.search(written.replace("\n", "")), repr(written)
    assert screen(out.getvalue()) == ["fn[bold] [1/2] push  :smile: [red]x[/red] evil ..."]
    assert "fn[bold] [1/2] push  :smile: [red]x[/red] evil  " in written, "the live row, as written"


def test_workers_reporting_at_once_leave_every_line_whole_and_no_live_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    out = io.StringIO()
    console = Console(file=out, highlight=False, soft_wrap=True, emoji=False, force_terminal=True, color_system=None, width=100)
    reporter = ConsoleReporter(console, refresh=0.001)  # the ticker redraws the area all the while
    go = threading.Barrier(4)

    def worker(name: str) -> None:
        go.wait()
        for number in range(1, 21):
            reporter.step(name, number, 20, "push image")
            reporter.transfer(name, number, 20)
            reporter.log(name, f"line {number}")
            reporter.step_done(name, number, 20, "push image", 0.1)

    with reporter:
        workers = [threading.Thread(target=worker, args=(f"fn-{n}",)) for n in range(4)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    shown = screen(out.getvalue())
    expected = {f"fn-{n} [{number}/20] {text}" for n in range(4) for number in range(1, 21)
                for text in ("push image ...", "done in 0.1s")} | {f"fn-{n} | line {number}" for n in range(4) for number in range(1, 21)}
    assert len(shown) == len(expected) and set(shown) == expected


def test_a_dumb_terminal_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert not ConsoleReporter(Console(file=io.StringIO(), force_terminal=True)).live
    monkeypatch.setenv("TERM", "xterm")
    assert ConsoleReporter(Console(file=io.StringIO(), force_terminal=True)).live
    assert not ConsoleReporter(Console(file=io.StringIO(), force_terminal=False)).live


# -- the ticker thread -----------------------------------------------------------------------

class Signalling(io.StringIO):
    """A console file that sets `seen` once `wanted` has been written `count` times."""

    def __init__(self, wanted: str, count: int) -> None:
        super().__init__()
        self.wanted, self.count = wanted, count
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.getvalue().count(self.wanted) >= self.count:
            self.seen.set()
        return written


def test_the_ticker_prints_by_itself_and_stops_on_close() -> None:
    out = Signalling("still running", 3)
    reporter = ConsoleReporter(Console(file=out, soft_wrap=True, force_terminal=False), interval=0.01)
    assert progress_threads() == [], "no thread before the first step"
    reporter.step("fn", 3, 8, BUILD)
    assert len(progress_threads()) == 1
    assert out.seen.wait(10), out.getvalue()
    reporter.close()
    assert progress_threads() == []
    count = out.getvalue().count("still running")
    reporter.close()  # again: nothing happens
    assert out.getvalue().count("still running") == count


def test_close_ends_a_ticker_waiting_for_a_long_interval_at_once() -> None:
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=False), interval=3600)
    reporter.step("fn", 1, 1, "push image")
    started = time.monotonic()
    reporter.close()
    assert time.monotonic() - started < 5 and progress_threads() == []


def test_the_live_area_is_refreshed_by_the_ticker_and_removed_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    out = Signalling("\x1b[2K", 4)  # the area redrawn a few times, with no step change
    reporter = ConsoleReporter(Console(file=out, soft_wrap=True, force_terminal=True, color_system=None, width=80), refresh=0.01)
    with reporter:
        reporter.step("fn", 3, 8, BUILD)
        assert out.seen.wait(10), repr(out.getvalue())
    assert progress_threads() == []
    assert screen(out.getvalue()) == [f"fn [3/8] {BUILD} ..."]
    assert out.getvalue().count("\x1b[?25l") == out.getvalue().count("\x1b[?25h") == 1, "the cursor is shown again"


def test_a_closed_reporter_prints_lines_and_starts_no_thread() -> None:
    reporter, out, _ = line_reporter()
    reporter.close()
    reporter.step("fn", 1, 1, "push image")
    assert progress_threads() == []
    assert out.getvalue() == "fn [1/1] push image ...\n"


# -- DEPLOYER_PROGRESS_INTERVAL --------------------------------------------------------------

@pytest.mark.parametrize("raw, seconds", [(None, 10.0), ("", 10.0), ("1", 1.0), (" 2.5 ", 2.5), ("0.1", 0.1), ("3600", 3600.0)])
def test_the_interval_comes_from_the_environment_or_is_ten_seconds(raw: str | None, seconds: float) -> None:
    assert interval_from_environment({} if raw is None else {INTERVAL_VARIABLE: raw}) == seconds


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "0.01", "nan", "inf", "1e9", "10s", "\x1b[2J"])
def test_an_interval_that_is_not_a_sane_number_of_seconds_is_refused(raw: str) -> None:
    with pytest.raises(DeployerError, match=f"^{INTERVAL_VARIABLE}=.*a number from 0.1 to 3600") as raised:
        interval_from_environment({INTERVAL_VARIABLE: raw})
    assert not CONTROL.search(str(raised.value))
