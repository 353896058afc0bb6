"""markdown_budget: keeping a pull-request comment under GitHub's size limit.

GitHub refuses a comment body over 65,536 characters ("Body is too long", tfcmt #227, Atlantis
#55). What exactly it counts is not documented, so the count here is the most pessimistic of the
plausible ones: UTF-16 code units (a character outside the BMP, an emoji say, counts twice), plus
one per line break in case the body is normalised to CRLF on the way. The budget also leaves a
margin for what a CI step adds around the plan (a sticky-comment marker, a header).

Only whole pieces are spent: the renderer offers complete table rows and complete `<details>`
sections, so a cut never falls inside a tag, a code span, a row or a character reference.
"""

from __future__ import annotations

from typing import Sequence

GITHUB_LIMIT = 65_536
MARGIN = 2_048
BUDGET = GITHUB_LIMIT - MARGIN
ELLIPSIS = "…"


def size(text: str) -> int:
    """`text`'s length as the most pessimistic counter sees it: UTF-16 code units, and each
    "\\n" twice (as "\\r\\n"). Never less than len(text)."""
    # surrogatepass: a lone surrogate (JSON can carry one) counts as the one unit it is.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2 + text.count("\n")


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the last of them an ellipsis when cut. Meant for a
    value *before* it is escaped: a Python str is cut between code points, never inside one, and
    escaping comes after, so no character reference or code span is cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


class Budget:
    """What is left of the comment's size; pieces are spent whole or not at all."""

    def __init__(self, room: int = BUDGET) -> None:
        self.room = room

    def spend(self, text: str) -> None:
        """Spend what must be there whatever the cost (the summary line) or what is reserved."""
        self.room -= size(text)

    def fits(self, pieces: Sequence[str]) -> bool:
        return sum(size(piece) for piece in pieces) <= self.room

    def prefix(self, pieces: Sequence[str]) -> int:
        """Spend the longest prefix of `pieces` that fits; returns its length. Later pieces are the
        ones left out (a plan reads in order: what is cut is the end)."""
        taken = 0
        for piece in pieces:
            cost = size(piece)
            if cost > self.room:
                break
            self.room -= cost
            taken += 1
        return taken
