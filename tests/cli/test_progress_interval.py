"""DEPLOYER_PROGRESS_INTERVAL (hidden, for tests): a value that is not a sane number of seconds stops
apply before AWS is asked, saying which variable and what it takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_harness import InProcessCli


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "nan"])
def test_apply_refuses_a_progress_interval_that_is_not_seconds(cli: InProcessCli, tmp_path: Path, raw: str) -> None:
    result = cli("apply", "--yes", cwd=tmp_path, env={"DEPLOYER_PROGRESS_INTERVAL": raw})
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"error: DEPLOYER_PROGRESS_INTERVAL={raw!r}: seconds between progress lines, a number from 0.1 to 3600; "
        "unset it for the default of 10"]
