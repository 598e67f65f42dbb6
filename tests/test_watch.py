"""`ledger watch`: a schedule that survives failed runs and stops cleanly on a signal."""

import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ledger.cli import parse_interval
from sandbox import Proxy


def runs(path):
    try:
        conn = sqlite3.connect(path, timeout=10)
        rows = conn.execute("SELECT status, finished_at FROM runs ORDER BY id").fetchall()
        conn.close()
        return rows
    except sqlite3.OperationalError:
        return []


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def watch(target, db, *extra):
    return subprocess.Popen([sys.executable, "-m", "ledger", "watch", target, "--db", db, "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_watch_survives_a_failed_run_and_stops_on_sigterm_with_exit_0(registry, pusher, proxy, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "w.db")
    proxy.alter_response = lambda *a: (503, [("Content-Type", "text/plain")], b"down")
    process = watch(f"{proxy.host}/{ns}/app", db, "--every", "0.3s", "--retries", "0")
    assert wait_for(lambda: any(status == "failed" for status, _ in runs(db)))
    proxy.alter_response = None
    assert wait_for(lambda: any(status == "ok" for status, _ in runs(db)))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "watch: stopped" in err
    assert all(finished for _, finished in runs(db))


@pytest.mark.slow
def test_sigint_during_a_run_lets_it_finish(registry, pusher, ns, tmp_path):
    for n in range(12):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns + str(n))
    db = str(tmp_path / "w.db")
    with Proxy(registry.host, latency=0.1) as slow:
        process = watch(f"{slow.host}/{ns}/app", db, "--every", "1h", "--concurrency", "2")
        assert wait_for(lambda: slow.counts["manifest"] >= 2)  # cold: each tag resolved with a GET
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "finishing the current run" in err
    assert runs(db) and runs(db)[-1][0] == "ok"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM current_tags").fetchone()[0] == 12


def test_a_second_signal_abandons_the_run_and_records_it(registry, pusher, ns, tmp_path):
    for n in range(20):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns + str(n))
    db = str(tmp_path / "w.db")
    with Proxy(registry.host, latency=0.2) as slow:
        process = watch(f"{slow.host}/{ns}/app", db, "--every", "1h", "--concurrency", "1")
        assert wait_for(lambda: slow.counts["manifest"] >= 1)  # cold: each tag resolved with a GET
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        resolved = slow.counts["manifest"]
    assert process.returncode == 0, err
    assert "run abandoned" in err
    assert resolved < 20  # it stopped asking
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status, error_summary FROM runs").fetchall() == [
        ("failed", "interrupted: stopped by a signal")]
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


@pytest.mark.parametrize("text,seconds", [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("0.5s", 0.5),
                                          ("1d", 86400)])
def test_intervals_read_like_durations(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1m", "soon", "15 minutes"])
def test_bad_intervals_are_refused(text):
    import click
    with pytest.raises(click.BadParameter):
        parse_interval(text)


def test_a_watcher_reads_credentials_anew_for_every_run(htpasswd_registry, pusher, ns, tmp_path, docker_config):
    """A password rotated in the Docker config (or a helper's token) reaches the next run of a watcher
    that started with the old one, without a restart."""
    import base64
    import os

    from conftest import PASSWORD

    def auths(password):
        token = base64.b64encode(f"alice:{password}".encode()).decode()
        return {"auths": {htpasswd_registry.host: {"auth": token}}}
    pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "w.db")
    docker_config(auths("the-old-password"))
    process = subprocess.Popen([sys.executable, "-m", "ledger", "watch", f"{htpasswd_registry.host}/{ns}/app", "--db",
                                db, "-q", "--every", "0.3s", "--retries", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert wait_for(lambda: any(status == "failed" for status, _ in runs(db)))
    docker_config(auths(PASSWORD))
    assert wait_for(lambda: any(status == "ok" for status, _ in runs(db)))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert PASSWORD not in out + err


def test_a_run_that_changed_nothing_is_one_line_starting_with_its_time(registry, pusher, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "w.db")
    process = subprocess.Popen([sys.executable, "-m", "ledger", "watch", f"{registry.host}/{ns}/app", "--db", db,
                                "--every", "0.2s", "--jitter", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert wait_for(lambda: len(runs(db)) >= 3)
    pusher.image(f"{ns}/app", "2", seed=ns + "2")
    count = len(runs(db))
    assert wait_for(lambda: len(runs(db)) >= count + 3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    firsts = [line for line in out.splitlines() if not line.startswith("  ")]
    assert all(re.match(rf"{stamp} run \d+: ", line) for line in firsts), out
    quiet = [line for line in firsts if "no changes" in line]
    assert len(quiet) >= 3 and all(re.fullmatch(rf"{stamp} run \d+: ok, no changes \([12] tags seen, \d+ requests in "
                                                r"\d+\.\d\ds\)", line) for line in quiet), quiet
    full = [line for line in firsts if "no changes" not in line]
    assert len(full) == 2, out  # the first run, and the one that saw tag 2
    assert len(re.findall(r"^  added +1$", out, re.M)) == 2
