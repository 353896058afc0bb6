"""Ctrl-C during plan: exits 130 at once, says so, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_during_plan_exits_130_without_waiting_for_aws() -> None:
    # An endpoint that accepts connections and never answers: plan's AWS calls hang in a read.
    held: list[socket.socket] = []
    connected = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)

        def accept() -> None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            connected.set()

        threading.Thread(target=accept, daemon=True).start()
        port = server.getsockname()[1]
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "x",
               "AWS_SECRET_ACCESS_KEY": "y", "NO_COLOR": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "deployer", "plan", "deploy.example.yaml"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert connected.wait(60), "plan never called AWS"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            for conn in held:
                conn.close()
    assert proc.returncode == 130
    assert err == "interrupted\n"
    assert out == ""
