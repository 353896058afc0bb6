"""Signs of life in `deployer apply` output without a terminal (CI logs): a step that runs long
says, every DEPLOYER_PROGRESS_INTERVAL seconds, that it is still running, on lines that name
its function. Through the real CLI on the local cloud, with a build that sleeps."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from ruamel.yaml import YAML

from tests.conftest import ImageFunction
from tests.integration.conftest import Monorepo

pytestmark = pytest.mark.integration

SLEEP_SECONDS = 4


def slow_build(monorepo: Monorepo) -> None:
    """deploy.yaml's function builds with a Dockerfile whose one step sleeps and prints nothing.
    FROM names the builder stand-in itself: a RUN step needs the engine's own platform."""
    source = monorepo.root / "functions/finalize-with-error"
    (source / "Dockerfile.slow").write_text(f"FROM {monorepo.env['DEPLOYER_STANDIN_BUILDER']}\n"
                                            f"RUN sleep {SLEEP_SECONDS} # silent, unique: {time.time_ns()}\n")
    yaml = YAML()
    spec = monorepo.root / "deploy.yaml"
    data = yaml.load(spec.read_text())
    data["functions"][0]["build"]["dockerfile"] = "functions/finalize-with-error/Dockerfile.slow"
    for key in ("go_env", "build_args"):  # settings of the Go build, which this Dockerfile needs none of
        data["defaults"]["build"].pop(key, None)
    with spec.open("w") as out:
        yaml.dump(data, out)


def test_a_slow_build_says_it_is_still_running_until_it_is_done(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], tmp_path: Path) -> None:
    fn = make_image_function("arm64")
    monorepo.write_spec([{"name": fn.name, "repository": fn.repository}])
    slow_build(monorepo)
    (tmp_path / "tmpdir").mkdir()

    result: Any = monorepo.deployer("apply", "--yes", env={"DEPLOYER_PROGRESS_INTERVAL": "1", "TMPDIR": str(tmp_path / "tmpdir")})

    shown = f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    assert result.returncode == 0, shown
    lines = result.stdout.splitlines()
    name = re.escape(fn.name)
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"{name} \[\d+/\d+\] build image .* \.\.\.", line))
    step = lines[start].removeprefix(f"{fn.name} ").removesuffix(" ...")  # "[n/N] build image for ..."
    number = step.split(" ", 1)[0]
    done = next(i for i in range(start, len(lines)) if re.fullmatch(rf"{name} {re.escape(number)} done in [\d.]+s", lines[i]))
    still = [re.fullmatch(rf"{name} {re.escape(step)} \.\.\. still running \[(\d+)s elapsed\]", line) for line in lines[start + 1:done]]
    seconds = [int(match.group(1)) for match in still if match]
    assert len(seconds) >= SLEEP_SECONDS - 2, shown
    assert seconds == sorted(set(seconds)) and seconds[0] >= 1, shown
    assert not [line for line in lines[done:] if "still running" in line and number in line], "nothing more once it is done"
