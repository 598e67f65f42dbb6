#!/usr/bin/env bash
# Set everything up on a fresh Debian machine, then run the test suite: the real
# registry, Chromium for the browser test and podman for the Docker daemon source.
set -euo pipefail
cd "$(dirname "$0")/.."
LEDGER_PACKAGES="docker-registry chromium podman" source scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
