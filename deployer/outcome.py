"""How each function's apply ended: what the summary shows and what the exit code is made of."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OutcomeStatus(str, enum.Enum):
    """The value is the word the summary shows (a str enum: it formats and compares as that word)."""

    UNCHANGED = "unchanged"  # nothing to do, or another apply did it since the plan
    UPDATED = "updated"  # deployed an image that ECR had
    BUILT = "built"  # built, pushed and deployed (or deployed what another function of this apply built)
    CREATED = "created"  # the function was created (its repository too, when missing)
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by Ctrl-C before Lambda was asked to change

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome:
    """`detail` says why, in words (foreign values in it are made inert by the printer); `digest`
    is what the function runs when the apply knows it."""

    name: str
    status: OutcomeStatus
    detail: str
    seconds: float
    digest: str | None = None

    @classmethod
    def refused(cls, name: str, message: str) -> Outcome:
        """A function a saved plan may not apply (a deployer.binding.Refusal): failed, nothing run."""
        return cls(name, OutcomeStatus.FAILED, message, 0.0)

    @property
    def failed(self) -> bool:
        return self.status in (OutcomeStatus.FAILED, OutcomeStatus.CANCELLED)

    @property
    def changed(self) -> bool:
        """Lambda was asked to change (another image, its configuration, a new function)."""
        return self.status in (OutcomeStatus.BUILT, OutcomeStatus.UPDATED, OutcomeStatus.CREATED)
