"""`python -m tests.localcloud run -- CMD ARGS...`: bring the local cloud up (building the stand-in
images), run CMD with its environment (see LocalCloud.env), tear down, exit with CMD's exit code."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tests.localcloud.cloud import LocalCloud, LocalCloudError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.localcloud")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run CMD against the local cloud")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("run: give a command after --")
    try:
        with LocalCloud() as cloud:
            for name, value in sorted(cloud.env.items()):
                print(f"local cloud: {name}={value}", file=sys.stderr)
            sys.stderr.flush()
            returncode = subprocess.call(cmd, env={**os.environ, **cloud.env})
            cloud.check_recorder()
            return returncode
    except LocalCloudError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
