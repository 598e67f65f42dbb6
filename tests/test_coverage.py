"""Coverage recorded as changes (schema 19): the same answers as the per-run rows of before, sealed, and a
run where nothing changed costs O(1) bytes."""

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from ledger import store
from ledger.findings import Listing, RunResult, Sighting
from ledger.semantics import Scope
from ledger.store import coverage
from test_verify import tamper

D1 = "sha256:" + "1" * 64
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
COLUMNS = "run_id, source, registry, repo, scope, complete, tags_listed, listed_at, reason"


def run(db, repos, at, targets=("r.example",), incomplete=(), tags=("v1",)):
    """A run listing `repos` of r.example (each with `tags`, seen at D1), those in `incomplete` failing."""
    run_id = store.start_run(db, "registry", list(targets))
    listings = [Listing("r.example", repo, Scope(), at, list(tags) if repo not in incomplete else [],
                        complete=repo not in incomplete, reason="HTTP 500" if repo in incomplete else None)
                for repo in repos]
    seen = [Sighting("r.example", repo, tag, at, D1, MANIFEST) for repo in repos if repo not in incomplete
            for tag in tags]
    return store.append_run(db, run_id, RunResult(observations=seen, coverage=listings))


def answers(conn, runs, repos):
    """What the ledger says of each run's listing of each repository, as coverage.listed and the view say it."""
    return {(run_id, repo): (coverage.listed(conn, run_id, "r.example", repo),
                             conn.execute("SELECT complete, reason FROM coverage WHERE run_id = ? AND repo = ?",
                                          [run_id, repo]).fetchall())
            for run_id in runs for repo in repos}


@pytest.fixture
def v11(tmp_path):
    """tests/fixtures/ledger-v11.sqlite was written by the schema 11 code, one coverage row per repository per
    run: run 1 lists a (v1, v2), b, c of r.example completely; run 2 a without v2 (removed), b failing (HTTP
    500: v1 stays), c; run 3, a one-off of r.example/a, sees a:v1 moved; run 4 lists a and b (b's v1 now
    removed), c gone from the catalog."""
    path = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "ledger-v11.sqlite", path)
    return path


def test_coverage_answers_the_same_before_and_after_the_upgrade(v11):
    old = sqlite3.connect(v11)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 11
    rows = old.execute(f"SELECT {COLUMNS} FROM coverage ORDER BY run_id, repo").fetchall()
    removed = old.execute("SELECT run_id, repo, tag FROM events WHERE kind = 'removed' ORDER BY id").fetchall()
    old.close()
    assert len(rows) == 9 and removed == [(2, "a", "v2"), (4, "b", "v1")]

    db = store.open_db(v11)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert db.execute(f"SELECT {COLUMNS} FROM coverage ORDER BY run_id, repo").fetchall() == rows
    assert db.execute("SELECT run_id, repo, tag FROM events WHERE kind = 'removed' ORDER BY id").fetchall() == removed
    assert [coverage.listed(db.conn, 2, "r.example", repo) for repo in "abcx"] == [
        (True, None), (False, "HTTP 500"), (True, None), None]
    assert coverage.listed(db.conn, 4, "r.example", "c") is None
    assert store.verify(db).ok

    # The stream's first run after the upgrade states every listing; the next, where nothing changed, none.
    first = run(db, "ab", "2026-01-05T00:00:00.000000Z")
    same = run(db, "ab", "2026-01-06T00:00:00.000000Z")
    assert db.execute("SELECT run_id, count(*) FROM coverage_changes GROUP BY run_id").fetchall() == [
        (first["run_id"], 2)]
    view = f"SELECT {COLUMNS} FROM coverage WHERE run_id = ? ORDER BY repo"
    finished = db.execute("SELECT finished_at FROM runs WHERE id = ?", [same["run_id"]]).fetchone()[0]
    assert db.execute(view, [same["run_id"]]).fetchall() == [
        (same["run_id"], "registry", "r.example", repo, "*", 1, 1, finished, None) for repo in "ab"]
    assert db.execute(f"SELECT {COLUMNS} FROM coverage WHERE run_id <= 4 ORDER BY run_id, repo").fetchall() == rows
    assert store.verify(db).ok
    db.close()


def test_was_a_repository_listed_completely_in_run_n(db_path):
    db = store.open_db(db_path)
    r1 = run(db, "abc", "2026-01-01T00:00:00.000000Z")["run_id"]
    r2 = run(db, "abc", "2026-01-02T00:00:00.000000Z")["run_id"]
    r3 = run(db, "ac", "2026-01-03T00:00:00.000000Z", incomplete="c")["run_id"]  # b gone, c failing
    r4 = run(db, "x", "2026-01-03T12:00:00.000000Z", targets=["r.example/x"])["run_id"]  # another stream
    r5 = run(db, "abc", "2026-01-04T00:00:00.000000Z")["run_id"]
    got = answers(db.conn, (r1, r2, r3, r4, r5), "abcx")
    complete, failed = (True, None), (False, "HTTP 500")
    expected = {(r1, "a"): complete, (r1, "b"): complete, (r1, "c"): complete,
                (r2, "a"): complete, (r2, "b"): complete, (r2, "c"): complete,
                (r3, "a"): complete, (r3, "c"): failed,
                (r4, "x"): complete,
                (r5, "a"): complete, (r5, "b"): complete, (r5, "c"): complete}
    for key, (listed, rows) in got.items():
        assert listed == expected.get(key), key
        assert rows == ([(int(expected[key][0]), expected[key][1])] if key in expected else []), key
    # the changes: run 1's three, run 3's b no longer listed and c failing, run 4's x, run 5's b and c back
    assert db.execute("SELECT run_id, repo, scope IS NULL FROM coverage_changes ORDER BY position, repo").fetchall() \
        == [(r1, "a", 0), (r1, "b", 0), (r1, "c", 0), (r3, "b", 1), (r3, "c", 0), (r4, "x", 0), (r5, "b", 0),
            (r5, "c", 0)]
    assert store.verify(db).ok
    db.close()


def test_a_failed_listing_never_removes_and_a_complete_one_after_it_does(db_path):
    db = store.open_db(db_path)
    run(db, "ab", "2026-01-01T00:00:00.000000Z", tags=("v1", "v2"))
    assert run(db, "ab", "2026-01-02T00:00:00.000000Z", incomplete="b", tags=("v1",))["removed"] == 1  # a:v2
    assert run(db, "ab", "2026-01-03T00:00:00.000000Z", tags=("v1",))["removed"] == 1  # b:v2, listed at last
    assert db.execute("SELECT run_id, repo, tag FROM events WHERE kind = 'removed' ORDER BY id").fetchall() == [
        (2, "a", "v2"), (3, "b", "v2")]
    db.close()


def test_the_last_complete_listing_before_a_time(db_path):
    """stale_coverage's question, answered from the changes: a failing listing does not count, and a run
    that listed it as the run before did counts at its finished_at."""
    from freezegun import freeze_time

    import yaml
    sql = yaml.safe_load((Path(__file__).parent.parent / "metadata.yml").read_text())[
        "databases"]["ledger"]["queries"]["stale_coverage"]["sql"]
    db = store.open_db(db_path)
    for day, incomplete in ((1, ""), (2, ""), (3, "b"), (4, "b")):
        with freeze_time(f"2026-01-0{day}T00:00:00Z"):
            run(db, "ab", f"2026-01-0{day}T00:00:00.000000Z", incomplete=incomplete)
    stale = {row[1]: row[4] for row in db.execute(sql, {"since": "2026-01-03T12:00:00.000000Z"})}
    assert stale == {"b": "2026-01-02T00:00:00.000000Z"}  # run 2 listed b as run 1 had: its finished_at
    assert [row[1] for row in db.execute(sql, {"since": "2026-01-01T12:00:00.000000Z"})] == []
    db.close()


def _size(db, path):
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return os.path.getsize(path) + (os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0)


def test_a_run_where_nothing_changed_adds_a_few_bytes_whatever_the_repository_count(db_path):
    """50 repositories: 10 unchanged runs add less than one run's 50 coverage rows did before (~94 bytes
    each); scripts/bench_growth.py measures 500 to 10,000."""
    db = store.open_db(db_path)
    repos = [f"team/app{n}" for n in range(50)]
    run(db, repos, "2026-01-01T00:00:00.000000Z")
    run(db, repos, "2026-01-01T00:05:00.000000Z")
    before = _size(db, db_path)
    for minute in range(10, 60, 5):
        assert run(db, repos, f"2026-01-01T00:{minute:02d}:00.000000Z")["added"] == 0
    grown = _size(db, db_path) - before
    assert grown < 50 * 94, grown
    assert db.execute("SELECT count(*) FROM coverage_changes").fetchone()[0] == 50
    assert db.execute("SELECT count(*) FROM coverage WHERE run_id = 12 AND complete").fetchone()[0] == 50
    seal = db.execute("SELECT length(rows), counts FROM run_seals WHERE run_id = 12").fetchone()
    assert seal[0] == 16 and '"coverage_runs":1' in seal[1] and '"coverage_changes":0' in seal[1]
    db.close()


def test_runs_of_one_stream_compare_in_the_order_they_were_appended(db_path):
    """Two runs of one stream, the later-started one appended first: each is compared with the state the
    ledger held when it was appended, so both read back as they listed."""
    db = store.open_db(db_path)
    run(db, "ab", "2026-01-01T00:00:00.000000Z")
    slow = store.start_run(db, "registry", ["r.example"])
    fast = run(db, "a", "2026-01-02T00:00:00.000000Z")["run_id"]
    listings = [Listing("r.example", repo, Scope(), "2026-01-02T00:00:01.000000Z", ["v1"]) for repo in "ab"]
    store.append_run(db, slow, RunResult(observations=[], coverage=listings))
    assert answers(db.conn, (fast, slow), "ab") == {
        (fast, "a"): ((True, None), [(1, None)]), (fast, "b"): (None, []),
        (slow, "a"): ((True, None), [(1, None)]), (slow, "b"): ((True, None), [(1, None)])}
    assert store.verify(db).ok
    db.close()


def test_a_coverage_change_moved_to_another_place_is_named_by_verify(db_path):
    db = store.open_db(db_path)
    run(db, "ab", "2026-01-01T00:00:00.000000Z")
    run(db, "a", "2026-01-02T00:00:00.000000Z")
    db.close()
    tamper(db_path, "UPDATE coverage_changes SET scope = '*', complete = 1, listed_at = NULL WHERE scope IS NULL")
    readonly = store.open_readonly(db_path)
    problems = store.verify(readonly).problems
    readonly.close()
    assert problems[0].startswith("coverage_changes run_id=2 source=registry registry=r.example repo=b: changed")
