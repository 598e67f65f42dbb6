"""Crashes and concurrent writers, with real processes on one ledger file."""

import random
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from ledger import store
from ledger.findings import RunResult, Sighting
from ledger.manifests import ACCEPT
from sandbox import Proxy

pytestmark = pytest.mark.slow  # collects killed and raced, many times over


def collect_process(target, db, *extra):
    return subprocess.Popen([sys.executable, "-m", "ledger", "collect", "-q", target, "--db", db, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def true_state(registry, repos):
    """The registry's real tag -> digest map for these repos, read straight from it."""
    state = {}
    for repo in repos:
        for tag in requests.get(f"{registry.url}/v2/{repo}/tags/list").json()["tags"] or []:
            head = requests.head(f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            state[(repo, tag)] = head.headers["Docker-Content-Digest"]
    return state


def ledger_state(ledger):
    return {(r["repo"], r["tag"]): r["digest"] for r in ledger.rows("SELECT repo, tag, digest FROM current_tags")}


def test_two_collectors_at_once_never_duplicate_or_fork_and_never_lock(registry, pusher, ledger, ns):
    for repo in range(3):
        for tag in range(8):
            pusher.image(f"{ns}/r{repo}", f"t{tag}", seed=f"{ns}{repo}{tag % 3}")
    ledger.collect(f"{registry.host}/{ns}/r0")  # the file exists before the race
    stop = threading.Event()
    reader_errors = []

    def read_while_writing():
        conn = sqlite3.connect(ledger.path, timeout=30)
        while not stop.is_set():
            try:
                conn.execute("SELECT count(*) FROM current_tags").fetchone()
            except sqlite3.Error as error:
                reader_errors.append(error)
    reader = threading.Thread(target=read_while_writing)
    reader.start()
    for round_ in range(3):
        if round_:
            pusher.image(f"{ns}/r1", "t0", seed=f"{ns}moved{round_}")
        procs = [collect_process(f"{registry.host}/{ns}/*", ledger.path) for _ in range(3)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "locked" not in err
    stop.set()
    reader.join()
    assert reader_errors == []
    keys = ledger.rows("SELECT repo, tag, kind, count(*) AS n FROM events GROUP BY repo, tag, kind HAVING n > 1 "
                       "AND NOT (repo = ? AND tag = 't0' AND kind = 'moved')", [f"{ns}/r1"])
    assert keys == []  # one 'added' per key, whichever process got there first
    assert ledger.rows("SELECT count(*) AS n FROM events WHERE kind = 'moved'")[0]["n"] == 2
    assert ledger("verify").exit_code == 0
    assert ledger_state(ledger) == true_state(registry, [f"{ns}/r{n}" for n in range(3)])


def test_kill_9_at_any_moment_leaves_a_sound_ledger_and_the_next_run_completes(registry, pusher, ledger, ns,
                                                                              tmp_path):
    for repo in range(3):
        for tag in range(10):
            pusher.image(f"{ns}/r{repo}", f"t{tag}", seed=f"{ns}{repo}{tag}")
    rng = random.Random(20261128)
    kills = 0
    # Latency keeps the run itself (not interpreter start-up) most of the window the kills land in.
    with Proxy(registry.host, latency=0.04) as slow:
        target = f"{slow.host}/{ns}/*"
        started = time.monotonic()
        assert collect_process(target, str(tmp_path / "timing.db")).wait(120) == 0
        window = (time.monotonic() - started) * 1.2  # kills land anywhere from start-up to the commit
        for attempt in range(16):
            if attempt % 4 == 3:  # the registry changes between some crashes
                pusher.image(f"{ns}/r{rng.randrange(3)}", f"t{rng.randrange(10)}", seed=f"{ns}change{attempt}")
            proc = collect_process(target, ledger.path)
            time.sleep(rng.uniform(0.0, window))
            if proc.poll() is None:
                proc.kill()
                kills += 1
            proc.wait(30)
            conn = sqlite3.connect(ledger.path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
            assert ledger("verify").exit_code == 0
        assert kills >= 4
        final = collect_process(target, ledger.path)
        assert final.wait(120) == 0, final.stderr.read()
        proxy_state = {(repo.replace(slow.host, registry.host), tag): digest
                       for (repo, tag), digest in ledger_state(ledger).items()}
    assert proxy_state == true_state(registry, [f"{ns}/r{n}" for n in range(3)])
    duplicates = ledger.rows("SELECT repo, tag FROM events WHERE kind = 'added' GROUP BY repo, tag HAVING count(*) > 1")
    assert duplicates == []
    unfinished = ledger.rows("SELECT count(*) AS n FROM runs WHERE finished_at IS NULL")[0]["n"]
    assert unfinished == 0  # every killed run was closed by a later start
    statuses = ledger.rows("SELECT sum(status = 'ok') AS ok, sum(error_summary LIKE 'interrupted%') AS interrupted, "
                           "count(*) AS runs FROM runs")[0]
    assert statuses["ok"] + statuses["interrupted"] == statuses["runs"]
    assert statuses["interrupted"] >= 3  # kills landed mid-run, not only during start-up


def test_datasette_reads_while_collects_write(registry, pusher, ledger, ns):
    import asyncio

    from datasette.app import Datasette

    for n in range(10):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns + str(n))
    ledger.collect(f"{registry.host}/{ns}/app:t0")
    datasette = Datasette([ledger.path])

    async def count():
        response = await datasette.client.get("/ledger/current_tags.json", params={"_shape": "array"})
        assert response.status_code == 200, response.text
        return len(response.json())

    writer = collect_process(f"{registry.host}/{ns}/app", ledger.path)
    counts = []
    while writer.poll() is None or len(counts) < 5:
        counts.append(asyncio.run(count()))
    assert writer.returncode == 0
    assert counts[0] >= 1 and counts[-1] == 10 and counts == sorted(counts)


def test_verify_never_cries_wolf_while_a_watch_appends(registry, pusher, ledger, ns, monkeypatch):
    """`ledger watch --every 1` appending while `ledger verify` runs, over and over: no false alarm.

    Thousands of synthetic events first, so that each verify spans the moment a run commits."""
    db = store.open_db(ledger.path)
    run_id = store.start_run(db, "registry", ["bench.example"])
    store.append_run(db, run_id, RunResult(observations=[
        Sighting("bench.example", f"team/app{n % 50}", f"v{n}", "2026-01-01T00:00:00.000000Z", f"sha256:{n:064x}", "m")
        for n in range(10_000)]))
    db.close()
    pusher.image(f"{ns}/app", "prod", seed=ns)
    watch = subprocess.Popen([sys.executable, "-m", "ledger", "watch", "--every", "1", "-q", "--db", ledger.path,
                              f"{registry.host}/{ns}/app"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def keep_moving_the_tag():
        moves = 0
        while not stop.wait(0.2):
            moves += 1
            pusher.image(f"{ns}/app", "prod", seed=f"{ns}{moves}")

    def moved():
        return ledger.rows("SELECT count(*) AS n FROM events WHERE kind = 'moved'")[0]["n"]
    mover = threading.Thread(target=keep_moving_the_tag)
    mover.start()
    try:
        verified, deadline = 0, time.monotonic() + 90
        while (verified < 20 or moved() < 5) and time.monotonic() < deadline:
            monkeypatch.setattr(store.verification, "_PARALLEL_FROM", 0 if verified % 2 else 200_000)  # forked ranges too
            ledger("verify")  # exit 0, or the assertion shows what it printed
            verified += 1
        assert verified >= 20 and moved() >= 5
    finally:
        stop.set()
        mover.join()
        watch.terminate()
        watch.communicate(timeout=60)
