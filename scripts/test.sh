#!/usr/bin/env bash
# Set everything up on a fresh Debian machine, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
