# Sourced by demo.sh and test.sh: installs what registry ledger needs on Debian.
# docker-registry (the CNCF distribution registry) from Debian's packages, and
# a virtualenv in .venv with the project and its test dependencies.
set -euo pipefail

if ! command -v docker-registry >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "setup: docker-registry is missing; install it as root: apt-get install -y docker-registry" >&2
        exit 1
    fi
    echo "setup: installing docker-registry from Debian's packages" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-registry >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
