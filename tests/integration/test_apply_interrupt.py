"""Ctrl-C during apply: the build stops, the temporary context is removed, Lambda is untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.integration.conftest import Monorepo


@pytest.mark.integration
def test_ctrl_c_during_build_cancels_cleans_up_and_leaves_lambda_alone(
        monorepo: Monorepo, make_image_function: Callable[..., Any], lambda_client: Any, tmp_path: Path) -> None:
    fn = make_image_function("arm64")
    monorepo.write_spec([{"name": fn.name, "repository": fn.repository}])
    # A source no earlier test built: the build cannot come from the layer cache.
    main_go = monorepo.root / "functions/finalize-with-error/main.go"
    main_go.write_text(main_go.read_text() + f"\n// interrupt test {time.time_ns()}\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "NO_COLOR": "1", "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-m", "deployer", "apply", "--yes"], cwd=monorepo.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if "build image for linux/arm64 ..." in line:
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "apply never reached the build step:\n" + "".join(seen)
    rest, _ = proc.communicate(timeout=180)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert "cancelled" in output
    assert output.rstrip().endswith("interrupted")
    assert list(tmpdir.iterdir()) == [], "temporary build context removed"
    code = lambda_client.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"]
    assert code == fn.image.code_sha256, "Lambda still runs the image it ran before"
