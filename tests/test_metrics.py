"""Prometheus metrics: `--metrics-file` written after every run, `ledger watch --metrics-port` served on
loopback; both parsed with prometheus_client's own parser and held against what the runs recorded."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox import free_port


def samples(text):
    """{(name, sorted labels): value} of a metrics text."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found, name, **labels):
    return found[name, tuple(sorted(labels.items()))]


def test_a_collect_writes_the_runs_numbers_and_the_next_run_continues_its_counters(registry, pusher, ledger, ns,
                                                                                    tmp_path):
    old, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "old")
    pusher.image(f"{ns}/app", "stable", seed=ns + "stable")
    path = tmp_path / "metrics" / "ledger.prom"
    path.parent.mkdir()
    target = f"{registry.host}/{ns}/app"
    before = time.time()
    ledger.collect(target, "--metrics-file", str(path))
    first = samples(path.read_text())
    run = ledger.rows("SELECT added, new_images, requests FROM runs")[0]
    assert value(first, "ledger_runs_total", status="ok") == 1
    assert value(first, "ledger_runs_total", status="failed") == 0
    assert value(first, "ledger_last_run_status", status="ok") == 1
    assert value(first, "ledger_events_total", kind="added") == run["added"] == 2
    assert value(first, "ledger_last_run_events", kind="added") == 2
    assert value(first, "ledger_new_images_total") == run["new_images"] == 2
    for kind, count in json.loads(run["requests"]).items():
        assert value(first, "ledger_requests_total", kind=kind) == count
    assert value(first, "ledger_tags_tracked", source="registry") == 2
    assert before <= value(first, "ledger_last_run_timestamp_seconds") <= time.time()
    assert 0 < value(first, "ledger_last_run_duration_seconds") < 60
    assert [p.name for p in path.parent.iterdir()] == ["ledger.prom"]  # written beside it, then renamed

    pusher.image(f"{ns}/app", "prod", seed=ns + "new")
    ledger.collect(target, "--metrics-file", str(path))
    second = samples(path.read_text())
    assert value(second, "ledger_runs_total", status="ok") == 2  # continued from the file: a counter
    assert value(second, "ledger_events_total", kind="added") == 2
    assert value(second, "ledger_events_total", kind="moved") == 1
    assert value(second, "ledger_last_run_events", kind="added") == 0  # a gauge: this run's
    assert value(second, "ledger_last_run_events", kind="moved") == 1
    assert value(second, "ledger_requests_total", kind="head") == 2  # the first run GETs its new tags instead
    assert value(second, "ledger_tags_tracked", source="registry") == 2
    assert not any(name.endswith("_created") for name, _ in second)


def test_a_failed_run_is_counted_and_its_errors_by_stage(registry, ledger, tmp_path):
    path = tmp_path / "ledger.prom"
    ledger.collect(f"127.0.0.1:{free_port()}/nothing/here", "--retries", "0", "--metrics-file", str(path), expect=1)
    found = samples(path.read_text())
    errors = ledger.rows("SELECT stage, count(*) AS n FROM errors GROUP BY stage")
    assert errors and value(found, "ledger_runs_total", status="failed") == 1
    assert value(found, "ledger_last_run_status", status="failed") == 1
    for row in errors:
        assert value(found, "ledger_errors_total", stage=row["stage"], severity="error") == row["n"]


def scrape(port):
    return samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def test_watch_serves_metrics_on_loopback_only_and_counts_every_run(registry, pusher, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    port, db = free_port(), str(tmp_path / "w.db")
    process = subprocess.Popen([sys.executable, "-m", "ledger", "watch", f"{registry.host}/{ns}/app", "--db", db,
                                "-q", "--every", "1s", "--jitter", "0", "--metrics-port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        first = None
        while time.monotonic() < deadline:
            try:
                first = scrape(port)
                if value(first, "ledger_runs_total", status="ok") >= 1:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        assert first and value(first, "ledger_events_total", kind="added") == 1
        runs = value(first, "ledger_runs_total", status="ok")
        gets = value(first, "ledger_requests_total", kind="manifest")  # the first run GETs its new tag
        with pytest.raises(ConnectionRefusedError):  # bound to 127.0.0.1, not every address
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
        while time.monotonic() < deadline and value(scrape(port), "ledger_runs_total", status="ok") == runs:
            time.sleep(0.1)
        later = scrape(port)
        assert value(later, "ledger_runs_total", status="ok") > runs
        assert value(later, "ledger_requests_total", kind="manifest") == gets  # a counter, carried over
        assert value(later, "ledger_requests_total", kind="head") >= 1  # later runs: a HEAD for the held tag
        assert value(later, "ledger_events_total", kind="added") == 1  # nothing new was added
        assert value(later, "ledger_last_run_events", kind="added") == 0
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_metrics_file_without_its_directory_or_a_busy_port_is_one_line(ledger, tmp_path):
    result = ledger("collect", "127.0.0.1:9/app", "--metrics-file", str(tmp_path / "no" / "m.prom"), expect=1)
    assert result.stderr == f"Error: --metrics-file {tmp_path / 'no' / 'm.prom'}: no directory {tmp_path / 'no'}\n"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ledger("watch", "127.0.0.1:9/app", "--metrics-port", str(port), expect=1)
    assert result.stderr.startswith(f"Error: --metrics-port {port}: cannot listen on 127.0.0.1:{port} (")
    assert not os.path.exists(ledger.path)  # refused before any run
