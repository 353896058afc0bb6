"""The project's error types and the one shape every problem takes: a Diagnostic.

Every error a user can cause or meet derives from `DeployerError`, which carries the problems as
values (terraform's tfdiags): each says what failed and what to do (`summary`), and where: a
position in a file, a function, or an AWS or engine operation on a resource. Stages collect them
and raise once; the CLI prints them with one printer and exits 1 without a traceback. Anything
else is a bug and is reported as one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One problem. Where it is, at most one of: `file` (with 1-based `line` and `column`, 0 when
    not known), `operation` on `resource` (an AWS call such as lambda:GetFunction, with the
    service's error `code`), or `function`; none for a problem of the run as a whole. `detail`
    holds further lines (a build's last output)."""

    summary: str
    file: Path | None = None
    line: int = 0
    column: int = 0
    operation: str | None = None
    resource: str | None = None
    code: str | None = None
    function: str | None = None
    detail: str = ""
    severity: Severity = Severity.ERROR

    @classmethod
    def at(cls, file: Path, line: int, column: int, summary: str) -> Diagnostic:
        """A problem at a position in a file (line 0: the file as a whole)."""
        return cls(summary, file=file, line=line, column=column)

    @property
    def where(self) -> str:
        if self.file is not None:
            position = f":{self.line}:{self.column}" if self.column else f":{self.line}" if self.line else ""
            return f"{self.file}{position}"
        if self.operation is not None:
            return f"{self.operation} on {self.resource}" if self.resource else self.operation
        return f"function {self.function}" if self.function else ""

    @property
    def group(self) -> tuple[str | None, str | None, str]:
        """What makes repeats of one problem the same (the same failed call for many functions):
        the operation and the service's code; without a code, the summary too."""
        return self.operation, self.code, "" if self.code else self.summary

    def sort_key(self) -> tuple[tuple[str, ...], int, int, str]:
        return self.file.parts if self.file else (), self.line, self.column, str(self)

    def __str__(self) -> str:
        text = f"{self.where}: {self.summary}" if self.where else self.summary
        return f"{text}\n{self.detail}" if self.detail else text


def as_diagnostics(problems: Iterable[str | Diagnostic]) -> tuple[Diagnostic, ...]:
    return tuple(p if isinstance(p, Diagnostic) else Diagnostic(p) for p in problems)


class DeployerError(Exception):
    """Root of every error the user is meant to see: one or more diagnostics, each saying what,
    where and what to do. A plain message is a diagnostic without a place."""

    def __init__(self, *problems: str | Diagnostic) -> None:
        self.diagnostics = as_diagnostics(problems)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class InvalidSpecError(DeployerError):
    """deploy.yaml files (or go.mod files they lead to) have problems; all of them are collected."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        super().__init__(*sorted(diagnostics, key=Diagnostic.sort_key))


class BuildContextError(DeployerError):
    """The build context could not be assembled (bad go.mod, replace target, unreadable file);
    one diagnostic per problem found."""


class AwsError(DeployerError):
    """An AWS API call failed: a diagnostic naming the operation, the resource and the AWS error
    code (`code`, also for a missing answer: see deployer.aws)."""

    def __init__(self, problem: str | Diagnostic, code: str = "") -> None:
        if isinstance(problem, str):
            problem = Diagnostic(problem, code=code or None)
        super().__init__(problem)

    @property
    def diagnostic(self) -> Diagnostic:
        return self.diagnostics[0]

    @property
    def code(self) -> str:
        return self.diagnostic.code or ""


class DockerError(DeployerError):
    """The Docker engine or the registry refused or failed an operation."""


class PlanError(DeployerError):
    """The plan cannot be made or applied (stale plan, unreadable plan file, blocked function)."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, for a log line about it; its type's name when it says nothing."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
