import fcntl
import os
import socket
import sqlite3
import subprocess
import sys

import pytest
from freezegun import freeze_time

from ledger import store
from ledger.findings import Listing, RunResult, Sighting
from ledger.semantics import Scope

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def observed(tag, digest, at, repo="app"):
    return Sighting("r.example", repo, tag, at, digest, "m")


def append(db, observations=(), coverage=()):
    run_id = store.start_run(db, "registry", ["r.example/app"])
    result = RunResult(observations=list(observations), coverage=list(coverage))
    return store.append_run(db, run_id, result)


@pytest.fixture
def db(db_path):
    ledger = store.open_db(db_path)
    yield ledger
    ledger.close()


def test_schema_is_applied_idempotently_with_a_version(db_path):
    for _ in range(3):
        db = store.open_db(db_path)
        db.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"runs", "events", "manifests", "platforms", "coverage", "errors", "current_tags", "tag_history",
            "replaced_tags", "new_images", "removed_tags"} <= names


def test_dropped_triggers_and_views_come_back_on_open(db_path):
    store.open_db(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER events_append_only_delete")
    conn.execute("DROP VIEW current_tags")
    conn.commit()
    conn.close()
    store.open_db(db_path).close()
    names = {row[0] for row in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master")}
    assert {"events_append_only_delete", "current_tags"} <= names


@pytest.mark.parametrize("sql", [
    "UPDATE events SET digest = 'sha256:evil'",
    "DELETE FROM events",
    "INSERT OR REPLACE INTO events SELECT * FROM events WHERE id = 1",
    "INSERT INTO events (run_id, observed_at, kind, registry, repo, tag, prev_hash, hash) "
    "VALUES (1, 'x', 'added', 'r', 'a', 't', 'p', 'h')",
    "UPDATE runs SET status = 'ok'",
    "DELETE FROM runs",
    "INSERT OR REPLACE INTO runs SELECT * FROM runs WHERE id = 1",
    "UPDATE coverage SET complete = 0",
    "DELETE FROM errors",
    "INSERT OR REPLACE INTO manifests (digest, media_type, kind) VALUES ('" + D1 + "', 'm', 'image')",
    "DELETE FROM manifests",
])
def test_ledger_tables_are_append_only_for_a_plain_sqlite3_connection(db, db_path, sql):
    append(db, [observed("v1", D1, "2026-01-01T00:00:00.000000Z")],
           [Listing("r.example", "app", Scope(), "2026-01-01T00:00:00.000000Z", ["v1"])])
    db.execute("INSERT INTO manifests (digest, media_type, kind) VALUES (?, 'm', 'image')", [D1])
    db.execute("INSERT INTO errors (run_id, at, registry, stage, message) VALUES (1, 'x', 'r', 'ping', 'm')")
    conn = sqlite3.connect(db_path)
    before = conn.execute("SELECT count(*), max(hash) FROM events").fetchone()
    with pytest.raises(sqlite3.DatabaseError, match="append-only|appended|finished once"):
        conn.execute(sql)
    assert conn.execute("SELECT count(*), max(hash) FROM events").fetchone() == before


def test_a_finished_run_is_never_edited_but_a_running_one_finishes_once(db):
    run_id = store.start_run(db, "registry", ["x"])
    assert db.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0] == "running"
    store.append_run(db, run_id, RunResult())
    with pytest.raises(sqlite3.DatabaseError, match="finished once"):
        db.execute("UPDATE runs SET finished_at = 'x', status = 'failed' WHERE id = ?", [run_id])


@freeze_time("2026-03-04 05:06:07.123456")
def test_timestamps_are_fixed_width_utc_text_made_in_python(db):
    append(db, [observed("v1", D1, "2026-03-04T05:06:07.123456Z")])
    started, finished = db.execute("SELECT started_at, finished_at FROM runs").fetchone()
    assert started == finished == "2026-03-04T05:06:07.123456Z"


def test_a_stale_observation_never_undoes_a_newer_one(db):
    """Two runs racing: the one that observed earlier but appends later must not move the tag back."""
    append(db, [observed("prod", D1, "2026-01-01T00:00:00.000000Z")])
    append(db, [observed("prod", D2, "2026-01-01T00:00:10.000000Z")])
    counts = append(db, [observed("prod", D1, "2026-01-01T00:00:05.000000Z")])
    assert counts["moved"] == 0
    assert db.execute("SELECT digest FROM current_tags").fetchone()[0] == D2


def test_state_at_a_time_is_the_last_event_before_it(db):
    append(db, [observed("prod", D1, "2026-01-01T00:00:00.000000Z")])
    append(db, [observed("prod", D2, "2026-01-02T00:00:00.000000Z")])
    at = ("SELECT digest, kind FROM events WHERE id = (SELECT max(id) FROM events "
          "WHERE registry = 'r.example' AND repo = 'app' AND tag = 'prod' AND observed_at <= ?)")
    assert db.execute(at, ["2026-01-01T12:00:00.000000Z"]).fetchone() == (D1, "added")
    assert db.execute(at, ["2026-01-03T00:00:00.000000Z"]).fetchone() == (D2, "moved")


def test_an_incomplete_listing_never_removes(db):
    append(db, [observed("v1", D1, "2026-01-01T00:00:00.000000Z")])
    counts = append(db, coverage=[Listing("r.example", "app", Scope(), "2026-01-02T00:00:00.000000Z", [],
                                          complete=False, reason="HTTP 500")])
    assert counts["removed"] == 0
    reason = db.execute("SELECT complete, reason FROM coverage WHERE run_id = 2").fetchone()
    assert reason == (0, "HTTP 500")


def test_a_listing_scoped_to_named_tags_removes_only_those(db):
    append(db, [observed("v1", D1, "2026-01-01T00:00:00.000000Z"), observed("v2", D1, "2026-01-01T00:00:00.000000Z")])
    counts = append(db, coverage=[Listing("r.example", "app", Scope(tags=frozenset({"v1"})),
                                          "2026-01-02T00:00:00.000000Z", [])])
    assert counts["removed"] == 1
    assert [row[0] for row in db.execute("SELECT tag FROM removed_tags")] == ["v1"]


def test_a_newer_schema_version_is_refused_without_changes(db_path):
    store.open_db(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(store.StoreError, match="schema version 99 is newer"):
        store.open_db(db_path)


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not sqlite at all" * 100)
    with pytest.raises(store.StoreError, match="not a ledger"):
        store.open_db(text)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE people (name)")
    with pytest.raises(store.StoreError, match="other tables: people"):
        store.open_db(other)


def test_a_ledger_from_schema_version_1_is_upgraded_in_place_without_losing_a_row(tmp_path):
    """tests/fixtures/ledger-v1.sqlite was written by the version-1 code: two runs, a move."""
    import shutil
    from pathlib import Path

    path = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "ledger-v1.sqlite", path)
    old = sqlite3.connect(path)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    columns = {"events": "id, run_id, observed_at, kind, registry, repo, tag, digest, image, media_type, created, "
                         "author, size, prev_hash, hash", "platforms": "*",
               "manifests": "digest, media_type, kind, config_digest, config_media_type, artifact_type, created, "
                            "author, size, layers, os, architecture, variant, os_version, labels, first_run_id",
               "coverage": "run_id, registry, repo, scope, complete, tags_listed, listed_at, reason"}
    before = {table: old.execute(f"SELECT {columns[table]} FROM {table} ORDER BY 1").fetchall() for table in columns}
    old.close()
    db = store.open_db(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    for table, rows in before.items():
        assert db.execute(f"SELECT {columns[table]} FROM {table} ORDER BY 1").fetchall() == rows
    assert "rate_limits" in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert store.verify(db).ok and store.verify(db).events == 4
    assert db.execute("SELECT count(*) FROM replaced_tags").fetchone()[0] == 1
    counts = append(db, [observed("v1", D1, "2030-01-01T00:00:00.000000Z")])
    assert counts["added"] == 1 and store.verify(db).ok


def cookie_and_bytes(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA schema_version").fetchone()[0], open(path, "rb").read()
    finally:
        conn.close()


def test_a_plain_open_writes_nothing_and_takes_no_write_lock(db_path, monkeypatch):
    store.open_db(db_path).close()
    before = cookie_and_bytes(db_path)
    monkeypatch.setattr(store.database, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a collect appending right now
    for _ in range(2):
        store.open_db(db_path).close()
    holder.execute("ROLLBACK")
    holder.close()
    assert cookie_and_bytes(db_path) == before


def test_a_changed_shipped_schema_is_re_applied_once(db_path, monkeypatch):
    store.open_db(db_path).close()
    shipped = store.database._schema_file
    monkeypatch.setattr(store.database, "_schema_file", lambda name: shipped(name) + (
        "\nDROP VIEW IF EXISTS newest_runs;\nCREATE VIEW newest_runs AS SELECT id FROM runs ORDER BY id DESC;\n"
        if name == "views.sql" else ""))
    store.open_db(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'newest_runs'").fetchone()[0] == 1
    conn.close()
    after = cookie_and_bytes(db_path)
    store.open_db(db_path).close()
    assert cookie_and_bytes(db_path) == after


def test_cleanup_closes_a_run_only_when_its_lock_is_free(db, db_path):
    """Containers sharing a hostname (host network) see each other's runs with pids of their own pid
    namespace: a pid proves nothing, the lock does."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # a pid that is (almost surely) no process now
    here = socket.gethostname()
    rows = {"live, same host, pid dead here": (here, gone.pid, "held"),
            "dead, other host, pid alive here": ("elsewhere", os.getpid(), "free"),
            "before run locks, same host, pid dead": (here, gone.pid, None),
            "before run locks, other host": ("elsewhere", gone.pid, None)}
    ids = {}
    for name, (host, pid, lock) in rows.items():
        ids[name] = db.execute("INSERT INTO runs (started_at, status, source, targets, tool_version, host, pid) "
                               "VALUES ('x', 'running', 'registry', '[]', '0', ?, ?)", [host, pid]).lastrowid
        if lock:
            open(f"{db_path}-run-{ids[name]}.lock", "w").close()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               f"{db_path}-run-{ids['live, same host, pid dead here']}.lock"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        append(db)
        status = {name: db.execute("SELECT status, error_summary FROM runs WHERE id = ?", [ids[name]]).fetchone()
                  for name in rows}
    finally:
        holder.kill()
        holder.wait()
    interrupted = ("failed", f"interrupted: process {gone.pid} ended before the run did")
    assert status == {"live, same host, pid dead here": ("running", None),
                      "dead, other host, pid alive here": ("failed", f"interrupted: process {os.getpid()} "
                                                                     "ended before the run did"),
                      "before run locks, same host, pid dead": interrupted,
                      "before run locks, other host": ("running", None)}
    assert os.path.exists(f"{db_path}-run-{ids['live, same host, pid dead here']}.lock")
    assert not os.path.exists(f"{db_path}-run-{ids['dead, other host, pid alive here']}.lock")
    append(db)  # the holder is gone now: its run is closed
    assert db.execute("SELECT status FROM runs WHERE id = ?", [ids["live, same host, pid dead here"]]).fetchone() == (
        "failed",)


def test_a_run_holds_its_lock_from_start_to_end(db, db_path):
    first = store.start_run(db, "registry", ["a"])
    second = store.start_run(db, "registry", ["b"])  # its cleanup must not close the first
    lock = f"{db_path}-run-{first}.lock"
    with open(lock) as probe, pytest.raises(BlockingIOError):
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    store.append_run(db, first, RunResult())
    store.finish_failed_run(db, second, "could not append: disk full")
    assert db.execute("SELECT status FROM runs ORDER BY id").fetchall() == [("ok",), ("failed",)]
    assert [name for name in os.listdir(os.path.dirname(db_path)) if name.endswith(".lock")] == []


def test_a_run_whose_row_was_closed_underneath_it_keeps_its_results(db):
    run_id = store.start_run(db, "registry", ["r.example/app"])
    with store.database._transaction(db.conn, "IMMEDIATE"):  # a cleanup that misjudged the run as dead
        store.runs._interrupted(db, run_id, 7)
    found = RunResult(observations=[observed("v1", D1, "2026-01-01T00:00:00.000000Z")])
    counts = store.append_run(db, run_id, found)
    assert counts["added"] == 1 and counts["run_id"] != run_id
    row = db.execute("SELECT status, source, targets, started_at = (SELECT started_at FROM runs WHERE id = ?), "
                     "error_summary FROM runs WHERE id = ?", [run_id, counts["run_id"]]).fetchone()
    assert row == ("ok", "registry", '["r.example/app"]', 1,
                   f"run {run_id} continued here: its row was closed while it was still going "
                   "(failed: interrupted: process 7 ended before the run did)")
    assert db.execute("SELECT run_id FROM events").fetchall() == [(counts["run_id"],)]
    assert store.verify(db).ok
    other = store.start_run(db, "registry", ["r.example/app"])
    with store.database._transaction(db.conn, "IMMEDIATE"):
        store.runs._interrupted(db, other, 8)
    store.finish_failed_run(db, other, "interrupted: stopped by a signal")
    assert db.execute("SELECT status, error_summary FROM runs ORDER BY id DESC LIMIT 1").fetchone() == (
        "failed", f"interrupted: stopped by a signal; run {other} continued here: its row was closed while it was "
                  "still going (failed: interrupted: process 8 ended before the run did)")
    assert store.verify(db).ok


def test_a_daemon_image_id_is_a_new_image_once_whatever_digests_it_carries(db):
    """Built (no digest), pushed, re-pushed in another format, retagged into another repository without a
    digest: one image ID, one new image, in new_images and in runs.new_images alike."""
    image = "sha256:" + "9" * 64

    def daemon(repo, digest, at):
        return Sighting("r.example", repo, "1", at, digest, source="daemon:host", image=image, size=1)
    counts = [append(db, [daemon("app", digest, f"2026-01-0{n}T00:00:00.000000Z")])["new_images"]
              for n, digest in enumerate([None, D1, D2], 1)]
    counts.append(append(db, [daemon("other", None, "2026-01-04T00:00:00.000000Z")])["new_images"])
    assert counts == [1, 0, 0, 0]
    assert db.execute("SELECT image, repo FROM new_images").fetchall() == [(image, "app")]
    assert [row[0] for row in db.execute("SELECT new_images FROM runs ORDER BY id")] == [1, 0, 0, 0]
    assert store.verify(db).ok


def test_the_append_records_an_ok_run_with_a_failure_as_partial_and_leaves_the_result_as_it_was(db):
    """The status is the append's value (findings.appended_status), returned with the counts and written to
    the run's row; the caller decides what to do with it (run.py applies it to its result)."""
    from ledger.findings import Problem
    failure = Problem(at="2026-01-01T00:00:00Z", registry="r.example", stage="referrers", message="a failure",
                      code="REFERRER_MISMATCH")
    result = RunResult(observations=[observed("v1", D1, "2026-01-01T00:00:00.000000Z")], errors=[failure])
    counts = store.append_run(db, store.start_run(db, "registry", ["r.example/app"]), result)
    assert counts["status"] == "partial" and result.status == "ok"
    assert db.execute("SELECT status FROM runs WHERE id = ?", [counts["run_id"]]).fetchone()[0] == "partial"
    clean = store.append_run(db, store.start_run(db, "registry", ["r.example/app"]), RunResult())
    assert clean["status"] == "ok"


def test_a_write_outside_a_transaction_commits_as_it_runs(db, db_path):
    """The connection is in SQLite's autocommit (isolation_level=None): Ledger.execute needs no COMMIT of its
    own, and a failed statement leaves no transaction open."""
    db.execute("CREATE TABLE scratch (x INTEGER NOT NULL)")
    db.execute("INSERT INTO scratch VALUES (1)")
    assert not db.conn.in_transaction
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO scratch VALUES (NULL)")
    assert not db.conn.in_transaction
    other = sqlite3.connect(db_path)
    assert other.execute("SELECT x FROM scratch").fetchall() == [(1,)]
    other.close()
