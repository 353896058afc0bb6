"""deployer.layout matches .dockerignore patterns as docker-py does (docker.utils.build.Pattern), but
without Python's backtracking for patterns of several wildcards: the same answers, checked against
docker-py on random patterns and names small enough for its regular expressions; and quick answers
where those take exponential time."""

from __future__ import annotations

import random
import re
import time

import pytest
from docker.utils.build import Pattern

from deployer.dockerignore import _glob_match, _glob_nodes, _IgnorePattern

pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")

PATTERN_CHARS = "ab/*?[]!^-\\.A"
NAME_CHARS = "ab/.-A[]\\\n^!"


def reference(pattern: str, name: str) -> bool | None:
    try:
        return bool(Pattern(pattern).match(name))
    except re.error:
        return None


def simulated(pattern: str, name: str) -> bool | None:
    """The automaton's answer, whatever the number of wildcards."""
    try:
        return _glob_match(_glob_nodes(Pattern(pattern).cleaned_pattern.lower()), name.lower())
    except re.error:
        return None


def ours(pattern: str, name: str) -> bool | None:
    try:
        return bool(_IgnorePattern(pattern).match(name))
    except re.error:
        return None


def test_the_same_answers_as_docker_py_on_random_patterns_and_names() -> None:
    rng = random.Random(20240613)
    compared = 0
    for _ in range(20_000):
        pattern = "".join(rng.choice(PATTERN_CHARS) for _ in range(rng.randint(1, 9)))
        if not Pattern(pattern).dirs:
            continue
        name = "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(0, 10)))
        expected = reference(pattern, name)
        assert simulated(pattern, name) == expected == ours(pattern, name), (pattern, name)
        compared += 1
    assert compared > 15_000


@pytest.mark.parametrize("pattern, name, expected", [
    ("**/*.md", "docs/a/b/readme.MD", True),  # docker-py lowers both
    ("docs/**", "docs/a/b", True),
    ("docs/**/*", "docs/a/b", True),
    ("**/testdata/**", "a/testdata/b/c.json", True),
    ("*/*.go", "a/b/c.go", False),
    ("a*b*c", "a-x-b-y-c", True),
    ("a*b*c", "a/b/c", False),
    ("**/x", "x\n", True),  # `$` of the translated expression also matches before a final line break
])
def test_patterns_of_several_wildcards_answer_as_docker_py(pattern: str, name: str, expected: bool) -> None:
    assert simulated(pattern, name) is ours(pattern, name) is reference(pattern, name) is expected


def test_a_pattern_that_backtracks_exponentially_is_answered_at_once() -> None:
    started = time.monotonic()
    assert not _IgnorePattern("*a" * 30 + "b").match("a" * 4000)
    assert not _IgnorePattern("**/" * 30 + "x").match("/".join(["a"] * 2000))
    assert time.monotonic() - started < 5
