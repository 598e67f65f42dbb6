"""What a person at a terminal, or a script, sees."""

import os
import pty
import select
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ledger.cli import cli


def run_on_a_terminal(args, cwd):
    """Run `python -m ledger` with stderr on a pseudo-terminal; returns (exit code, stdout, terminal text)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "ledger", *args], stdout=subprocess.PIPE,
                               stderr=terminal, cwd=cwd)
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    stdout = process.stdout.read().decode()
    process.wait(30)
    os.close(controller)
    return process.returncode, stdout, seen.decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(registry, pusher, ns, tmp_path):
    for n in range(3):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns)
    code, stdout, terminal = run_on_a_terminal(["collect", f"{registry.host}/{ns}/app", "--db", "t.db"], tmp_path)
    assert code == 0
    assert "collecting 3/3 tags" in terminal and "0/0" not in terminal
    assert "tags seen          3" in stdout
    piped = subprocess.run([sys.executable, "-m", "ledger", "collect", f"{registry.host}/{ns}/app", "--db", "p.db"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == ""
    assert "tags seen          3" in piped.stdout


def test_quiet_prints_nothing_on_success(registry, pusher, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    code, stdout, terminal = run_on_a_terminal(["collect", "-q", f"{registry.host}/{ns}/app", "--db", "q.db"], tmp_path)
    assert (code, stdout, terminal) == (0, "", "")


def test_the_summary_names_every_count(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    output = ledger("collect", f"{registry.host}/{ns}/app").output
    for label in ("run 1: ok in", "tags seen", "added", "moved", "updated", "removed", "new images", "errors",
                  "requests"):
        assert label in output


def test_the_ledger_defaults_to_ledger_db_or_the_ledger_db_variable(registry, pusher, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    env = {**os.environ, "LEDGER_DB": str(tmp_path / "from-env.db")}
    subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", f"{registry.host}/{ns}/app"],
                   cwd=tmp_path, env=env, check=True)
    subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", f"{registry.host}/{ns}/app"],
                   cwd=tmp_path, check=True)
    assert (tmp_path / "from-env.db").exists() and (tmp_path / "ledger.db").exists()


def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path):
    not_a_ledger = tmp_path / "notes.db"
    not_a_ledger.write_text("plain text, not sqlite" * 200)
    cases = [
        (["collect", "127.0.0.1:5000/App"], 2, "invalid repository 'App'"),
        (["collect", "--concurrency", "0", "127.0.0.1:5000/app"], 2, "--concurrency"),
        (["collect"], 2, "name at least one TARGET, or --config FILE"),
        (["collect", "--colour", "127.0.0.1:5000/app"], 2, "No such option '--colour'"),
        (["frobnicate"], 2, "No such command 'frobnicate'"),
        (["collect", "127.0.0.1:5000/app", "--db", str(not_a_ledger)], 1, f"{not_a_ledger}: not a ledger"),
        (["collect", "127.0.0.1:5000/app", "--db", str(tmp_path / "no" / "such" / "dir.db")], 1, "cannot open"),
        (["verify", "--db", str(not_a_ledger)], 1, "not a ledger"),
    ]
    for args, code, message in cases:
        result = subprocess.run([sys.executable, "-m", "ledger", *args], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not_a_ledger.read_text() == "plain text, not sqlite" * 200


@pytest.mark.parametrize("command", ["collect", "watch"])
def test_help_keeps_the_target_table_as_written(command):
    lines = CliRunner().invoke(cli, [command, "--help"]).output.splitlines()
    assert "    HOST/REPO:TAG          one tag" in lines
    assert "    'docker.io/myorg/*'    a Docker Hub namespace, via the Hub API" in lines


def test_help_and_the_reading_commands_load_no_network_server_or_parsing_code(tmp_path):
    """They start fast because they import only what they use: no Datasette, no requests, no collector,
    registry, transport or cryptography, no manifest parsing, RE2 or process pools (the store's modules
    import those where they use them), no apprise or prometheus_client (scripts/bench_startup.py times
    them)."""
    from ledger import store
    from ledger.findings import RunResult, Sighting

    path = str(tmp_path / "l.db")
    db = store.open_db(path)
    run_id = store.start_run(db, "registry", ["r.example/app"])
    store.append_run(db, run_id, RunResult(observations=[
        Sighting("r.example", "app", "v1", "2026-01-01T00:00:00.000000Z", "sha256:" + "1" * 64, "m")]))
    db.close()
    probe = ("import sys\nfrom ledger.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(' '.join(sorted(sys.modules)), file=sys.stderr)")
    heavy = {"datasette", "requests", "ledger.collector", "ledger.registry", "ledger.transport", "cryptography",
             "ledger.manifests", "re2", "concurrent.futures", "multiprocessing", "sqlite_utils", "apprise",
             "prometheus_client", "ledger.notify", "ledger.metrics"}
    for args in (["--help"], ["tags", "--db", path], ["history", "r.example/app:v1", "--db", path],
                 ["at", "now", "--db", path], ["changes", "--since", "2000-01-01", "--db", path],
                 ["runs", "--db", path]):
        ran = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
        loaded = set(ran.stderr.split())
        assert "ledger.cli" in loaded and not heavy & loaded, (args, sorted(heavy & loaded))
