"""The project's error types.

Every error a user can cause or meet derives from `DeployerError`. The CLI prints its message and
exits 1 without a traceback; anything else is a bug and is reported as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a user's file. `line` and `column` are 1-based; 0 means "not known"."""

    file: Path
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{self.file}: {self.message}"


class DeployerError(Exception):
    """Root of every error the user is meant to see: the message says what, where and what to do."""


class InvalidSpecError(DeployerError):
    """deploy.yaml files (or go.mod files they lead to) have problems; all of them are collected."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class BuildContextError(DeployerError):
    """The build context could not be assembled (bad go.mod, replace target, unreadable file)."""


class AwsError(DeployerError):
    """An AWS API call failed; the message names the call, the resource and the AWS error code."""

    def __init__(self, message: str, code: str = "") -> None:
        self.code = code
        super().__init__(message)


class DockerError(DeployerError):
    """The Docker engine or the registry refused or failed an operation."""


class PlanError(DeployerError):
    """The plan cannot be made or applied (stale plan, unreadable plan file, blocked function)."""
