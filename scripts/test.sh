#!/usr/bin/env bash
# Set everything up on a fresh Debian machine, then run the test suite: the real
# registry, Chromium for the browser test, podman for the Docker daemon source and
# systemd for `systemd-analyze verify` of contrib/systemd (Debian's minimal image
# has none).
set -euo pipefail
cd "$(dirname "$0")/.."
LEDGER_PACKAGES="docker-registry chromium podman systemd" source scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
