# Sourced by demo.sh and test.sh: installs what registry ledger needs on Debian.
# Debian packages named in LEDGER_PACKAGES (default: docker-registry, the CNCF
# distribution registry), and a virtualenv in .venv with the project and its
# test dependencies.
set -euo pipefail

missing=()
for package in ${LEDGER_PACKAGES:-docker-registry}; do
    command -v "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "setup: ${missing[*]} missing; install as root: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]} from Debian's packages" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    python3 -m venv .venv
fi
# setuptools 70.1+ builds a wheel by itself: tests/test_package.py builds one without a network
# (--no-build-isolation), and the setuptools a venv starts with (65 on Python 3.11, none on 3.12+) cannot.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 'setuptools>=70.1'
