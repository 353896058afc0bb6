"""Fixtures of the CLI tests."""

from __future__ import annotations

import pytest

# Its assertions compare a case's expected output with the real one: show the difference.
pytest.register_assert_rewrite("tests.cli_harness")

from tests.cli_harness import InProcessCli  # noqa: E402


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcessCli:
    """`cli("validate", cwd=repo)`: deployer run in this process, its exit code and output."""
    return InProcessCli(monkeypatch, capsys)
