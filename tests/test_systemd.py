"""contrib/systemd: the unit files pass `systemd-analyze verify` with nothing to say, a broken copy does not,
and each unit's command line, with systemd's specifiers filled in, really collects."""

import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import store

UNITS = Path(__file__).parent.parent / "contrib" / "systemd"
NAMES = ("ledger-watch.service", "ledger-collect.service", "ledger-collect.timer")
LEDGER = Path(sys.executable).parent / "ledger"  # the venv's, where the units say /usr/local/bin/ledger


def units(directory, edit=lambda text: text):
    """The units copied to `directory`, ExecStart= pointed at the venv's ledger, then `edit`ed."""
    directory.mkdir(exist_ok=True)
    for name in NAMES:
        text = (UNITS / name).read_text().replace("/usr/local/bin/ledger", str(LEDGER))
        (directory / name).write_text(edit(text))
    return [str(directory / name) for name in NAMES]


def verify(paths):
    """systemd-analyze's verdict: its exit status and everything it said (it only warns about an unknown
    key or a value it cannot parse, and exits 0)."""
    result = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_the_units_verify_cleanly(tmp_path):
    assert shutil.which("systemd-analyze"), "scripts/test.sh installs systemd for systemd-analyze"
    assert LEDGER.is_file()
    assert verify(units(tmp_path / "units")) == (0, "")


@pytest.mark.parametrize("broken, said", [
    (lambda text: text.replace(str(LEDGER), "/nonexistent/bin/ledger"), "is not executable"),
    (lambda text: text.replace("ProtectSystem=strict", "ProtectSytem=strict"), "Unknown key"),
    (lambda text: text.replace("RestrictAddressFamilies=AF_INET ", "RestrictAddressFamilies=AF_INTERNET "),
     "Failed to parse address family"),
    (lambda text: text.replace("OnCalendar=*:0/15", "OnCalendar=every 15 minutes"), "calendar"),
    (lambda text: text.replace("MemoryMax=1G", "MemoryMax=lots"), "Invalid memory limit"),
], ids=["missing-binary", "misspelt-key", "bad-value", "bad-calendar", "bad-memory-limit"])
def test_a_broken_copy_fails_verification(tmp_path, broken, said):
    status, output = verify(units(tmp_path / "units", broken))
    assert said in output
    assert (status, output) != (0, "")


@pytest.mark.parametrize("name", ["ledger-watch.service", "ledger-collect.service"])
def test_each_service_has_a_memory_ceiling_above_what_a_run_needs(name):
    """A run peaks under 300 MB whatever a registry sends (scripts/bench_flood.py, tests/test_hostile.py):
    MemoryMax= stops a runaway without cutting a run short."""
    limits = [line.removeprefix("MemoryMax=") for line in (UNITS / name).read_text().splitlines()
              if line.startswith("MemoryMax=")]
    assert limits == ["1G"]


def exec_start(name, root):
    """The unit's ExecStart= as an argument list, its specifiers as systemd fills them for a system service,
    under `root`: %E /etc, %S /var/lib, %d the credentials directory."""
    line = next(line for line in (UNITS / name).read_text().splitlines() if line.startswith("ExecStart="))
    for specifier, directory in (("%E", "etc"), ("%S", "var/lib"), ("%d", "credentials")):
        line = line.replace(specifier, str(root / directory))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0] == "/usr/local/bin/ledger"
    return [str(LEDGER), *argv[1:]]


@pytest.fixture
def root(tmp_path, registry, pusher, ns):
    """What the units expect to find: the config file, the Docker config credential and the state
    directory, for a registry with one image."""
    pusher.image(f"{ns}/app", "1", seed=ns)
    (tmp_path / "etc" / "ledger").mkdir(parents=True)
    (tmp_path / "etc" / "ledger" / "ledger.toml").write_text(
        f'[registries."{registry.host}"]\ntargets = ["{registry.host}/{ns}/app"]\n')
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "docker-config.json").write_text("{}")
    (tmp_path / "var" / "lib" / "ledger").mkdir(parents=True)
    return tmp_path


def tags(root):
    ledger = store.open_readonly(str(root / "var" / "lib" / "ledger" / "ledger.db"))
    try:
        return [row[0] for row in ledger.execute("SELECT tag FROM current_tags")]
    finally:
        ledger.close()


def collected(root):
    try:
        return tags(root)
    except store.StoreError:  # no ledger yet, or its first run is still making it
        return []


def test_the_collect_units_command_collects(root):
    result = subprocess.run(exec_start("ledger-collect.service", root), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert tags(root) == ["1"]


def test_the_watch_units_command_watches_until_sigterm(root):
    process = subprocess.Popen(exec_start("ledger-watch.service", root), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not collected(root) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert tags(root) == ["1"] and "watch: stopped" in stderr
