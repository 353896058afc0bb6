"""dockerignore: which entries of a tree enter a build context. A function's `.dockerignore` with
Docker's own semantics (the docker SDK's PatternMatcher, which docker build uses), applied to
context paths; and the names never in a context, whatever it says: `.git` (a repository's
history, credentials in its config) and dotenv files (`.env`, `.env.*`, `.envrc`), at any depth.

Patterns are matched without the regular expressions' backtracking where a pattern of several
wildcards could make it exponential (one 26-character line stalled validate): `_glob_match`
answers as docker-py's translation does. Trees are walked with a stack of their own, never by
recursion.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Union

from docker.utils.build import Pattern, PatternMatcher, normalize_slashes
from docker.utils.fnmatch import translate

from deployer.errors import BuildContextError, Diagnostic
from deployer.paths import FileTooLarge, RefusedFile, display, read_inside, shown

# Names never copied into a context; `.env.<anything>` too.
NEVER_IN_CONTEXT = frozenset({".git", ".env", ".envrc"})


def never_in_context(name: str) -> bool:
    """Whether an entry of this name is left out of every context (see the module docstring)."""
    return name in NEVER_IN_CONTEXT or name.startswith(".env.")


# The largest .dockerignore read: tens of thousands of patterns, each tried on every path.
MAX_DOCKERIGNORE_BYTES = 1 << 20


def read_dockerignore(func_dir: Path, root: Path) -> list[str]:
    """Patterns as the docker SDK reads them (docker/api/build.py)."""
    path = func_dir / ".dockerignore"
    try:
        text = read_inside(path, root, limit=MAX_DOCKERIGNORE_BYTES).decode("utf-8")
    except FileNotFoundError:
        return []
    except FileTooLarge as exc:
        raise BuildContextError(f"{display(path)}: {exc.strerror}; keep the patterns of a .dockerignore below that") from exc
    except RefusedFile as exc:
        raise BuildContextError(f"{display(path)}: {exc.strerror}; deployer reads only regular files inside the "
                                "repository root: replace it with a regular file of patterns") from exc
    except UnicodeDecodeError as exc:
        raise BuildContextError(f"{display(func_dir / '.dockerignore')}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                "save it as UTF-8") from exc
    patterns = []
    for number, line in enumerate(text.splitlines(), 1):
        pattern = line.strip()
        if pattern and pattern[0] != "#":
            try:
                _IgnorePattern(pattern)
            except re.error as exc:
                raise BuildContextError(Diagnostic.at(Path(display(path)), number, 0, f"pattern {shown(pattern)} is not a valid "
                                                      f"pattern ({exc.msg}); fix or remove the line")) from None
            patterns.append(pattern)
    return patterns


# The nodes of a .dockerignore pattern, as docker-py's fnmatch.translate turns it into a regular
# expression: a character, `?` ([^/]), a class ([...]), `*` ([^/]*), `**/` ((.*/)?), a final `**` (.*).
_CHAR, _ONE, _CLASS, _STAR, _DIRS, _ALL = range(6)
_Node = tuple[int, Union[str, "re.Pattern[str]", None]]


def _glob_nodes(pattern: str) -> list[_Node]:
    """docker.utils.fnmatch.translate, step for step, into nodes; a class is compiled on its own
    (re.error for one Python cannot read, as translate's expression would raise)."""
    nodes: list[_Node] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                nodes.append((_ALL, None) if i >= n else (_DIRS, None))
            else:
                nodes.append((_STAR, None))
        elif c == "?":
            nodes.append((_ONE, None))
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                nodes.append((_CHAR, "["))
            else:
                stuff = pattern[i:j].replace("\\", "\\\\")
                i = j + 1
                if stuff[0] == "!":
                    stuff = f"^{stuff[1:]}"
                elif stuff[0] == "^":
                    stuff = f"\\{stuff}"
                nodes.append((_CLASS, re.compile(f"[{stuff}]")))
        else:
            nodes.append((_CHAR, c))
    return nodes


def _glob_match(nodes: list[_Node], name: str) -> bool:
    """Whether `name` matches the expression of `nodes` as re.match(translate(...)) decides
    (`$` also before a final line break; `.` not a line break), in time linear in the name: the
    expression's automaton is simulated, all of its states at once, with no backtracking. A
    state is 2*i (at node i) or 2*i+1 (inside the `.*` of the `(.*/)?` of node i)."""
    accept = 2 * len(nodes)

    def closure(states: set[int]) -> set[int]:
        stack = list(states)
        while stack:
            state = stack.pop()
            if state % 2 == 0 and state < accept and nodes[state // 2][0] in (_STAR, _DIRS, _ALL):
                for skip in (state + 2, state + 1) if nodes[state // 2][0] == _DIRS else (state + 2,):
                    if skip not in states:
                        states.add(skip)
                        stack.append(skip)
        return states

    states = closure({0})
    for at, c in enumerate(name):
        if c == "\n" and at == len(name) - 1 and accept in states:
            return True
        following: set[int] = set()
        for state in states:
            index = state // 2
            if state % 2:  # inside (.*/)?
                if c != "\n":
                    following.add(state)
                if c == "/":
                    following.add(state + 1)
                continue
            if state == accept:
                continue
            what, arg = nodes[index]
            if what == _STAR:
                if c != "/":
                    following.add(state)
            elif what == _ALL:
                if c != "\n":
                    following.add(state)
            elif what == _DIRS:
                continue  # entered or skipped by the closure
            elif (what == _ONE and c != "/") or (what == _CHAR and c == arg) or \
                    (what == _CLASS and isinstance(arg, re.Pattern) and arg.fullmatch(c)):
                following.add(state + 2)
        if not following:
            return False
        states = closure(following)
    return accept in states


# Above this many ways for the wildcards of a pattern to share a name between them, a name is
# matched by `_glob_match` rather than by the regular expression (see _IgnorePattern).
_BACKTRACKING_BUDGET = 200_000


class _IgnorePattern(Pattern):  # type: ignore[misc]  # docker-py has no type hints
    """A .dockerignore pattern of docker-py, matched as docker-py matches it (its fnmatch: name
    and pattern in lower case, the translated expression matched from the start). Python's
    regular expressions backtrack: with k wildcards they may try every way of splitting a name
    of n characters among them, about (2n+2)^k, so a line such as `*a*a*a*a*a*a*a*a*a*ab` takes
    them exponential time and a pull request's .dockerignore could stall validate and plan.
    Where that count exceeds _BACKTRACKING_BUDGET, the name goes to `_glob_match` instead (the
    same answer, in linear time); everything else keeps the expression's speed."""

    def __init__(self, pattern_str: str) -> None:
        super().__init__(pattern_str)
        # Compiled here, once: docker-py's fnmatch keeps 100 expressions and, past that, compiles
        # every pattern again for every path.
        self.regex = re.compile(translate(self.cleaned_pattern.lower()))
        self.nodes = _glob_nodes(self.cleaned_pattern.lower())
        self.wildcards = sum(what in (_STAR, _DIRS, _ALL) for what, _ in self.nodes)

    def match(self, filepath: str) -> bool:
        name = normalize_slashes(filepath).lower()
        if self.wildcards > 1 and (2 * len(name) + 2) ** self.wildcards > _BACKTRACKING_BUDGET:
            return _glob_match(self.nodes, name)
        return self.regex.match(name) is not None


class IgnoreMatcher(PatternMatcher):  # type: ignore[misc]
    """docker-py's PatternMatcher (docker/utils/build.py) with _IgnorePattern for its patterns."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p for p in (_IgnorePattern(pattern) for pattern in patterns) if p.dirs]
        self.patterns.append(_IgnorePattern("!.dockerignore"))


def walk(pm: PatternMatcher, src: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """The docker SDK's PatternMatcher.walk over `src`, matching paths as `prefix + relative`:
    yields (relative POSIX path, lstat) of the included entries (sorted), not descending into
    symlinks."""

    def children(rel_dir: str) -> Iterator[os.DirEntry[str]]:
        with os.scandir(os.path.join(src, rel_dir) if rel_dir else src) as it:
            return iter(sorted(it, key=lambda e: e.name))

    # Depth first, each directory's entries sorted, with a stack of its own rather than
    # recursion: a tree a thousand directories deep must not exhaust Python's stack.
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", children(""))]
    while stack:
        rel_dir, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            continue
        if never_in_context(child.name):
            continue
        rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
        ctx_path = prefix + rel
        excluded = pm.matches(ctx_path)
        if not excluded:
            yield rel, child.stat(follow_symlinks=False)
        if not child.is_dir(follow_symlinks=False):
            continue
        if excluded and not any(p.exclusion and p.cleaned_pattern.startswith(ctx_path) for p in pm.patterns):
            continue
        stack.append((rel, children(rel)))
