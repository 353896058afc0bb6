"""Ctrl-C during plan: exits 130 at once, says so, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_during_plan_exits_130_without_waiting_for_aws_retries() -> None:
    # Nothing listens on port 1: every AWS call is retried with backoff for seconds.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deployer", "plan", "deploy.example.yaml"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # imports done, workers blocked in botocore's retries
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == "interrupted\n"
    assert out == ""
