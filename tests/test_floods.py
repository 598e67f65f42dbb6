"""Floods are bounded (issue 21): a registry that repeats one failure many times makes a few errors rows,
each with the count of the failures it stands for, and every list it controls is cut at a cap that says
what it cut.

The registries are sandbox/hostile.py's loopback HostileRegistry, collected by a real `ledger collect`
process (tests/test_hostile.py's `run_ledger`). The figures for the full flood (120 tags, 9,000 lying
referrers each: peak RSS, ledger growth) are scripts/bench_flood.py's, not a test's.
"""

import json
import sqlite3

import pytest

from sandbox.hostile import HostileRegistry, answer, referrer_flood, referrer_manifest, referrers_list, when
from test_hostile import assert_ended_sanely, assert_verifies, env, rows, run_ledger  # noqa: F401 (env: a fixture)

TAGS = 12
FLOOD = 300  # lying referrers listed for every digest
PER_DIGEST = 100  # --max-referrers
PER_RUN = 1_000  # --max-run-referrers


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "ledger.db")


@pytest.fixture
def flooded():
    """flood/app with TAGS distinct images, each with one true referrer; `.flood()` then answers every
    referrers request with the same FLOOD referrers whose manifests name another subject."""
    server = HostileRegistry()
    true = {}
    for n in range(TAGS):
        digest, _ = server.add_image("flood/app", f"v{n}", seed=f"image {n}")
        true[digest] = referrers_list(server, "flood/app", [referrer_manifest(digest, f"signature of {n}")])
    server.put_blob(b"{}")
    server.referrers = true.get
    server.true = true
    server.start()

    def flood():
        answer_bytes, elsewhere = referrer_flood(server, "flood/app", FLOOD)
        server.referrers = lambda _subject: answer_bytes
        return elsewhere
    server.flood = flood
    yield server
    server.stop()


def collect(db, env, server, *extra):
    return run_ledger(["collect", "--quiet", "--db", db, "--retries", "0", "--deadline", "10",
                       "--max-referrers", str(PER_DIGEST), "--max-run-referrers", str(PER_RUN), *extra,
                       f"{server.host}/flood/app"], env=env)


def test_a_referrer_flood_is_a_few_rows_with_true_counts_and_removes_nothing(flooded, db, env):
    first = collect(db, env, flooded)
    assert first.returncode == 0, first.tail()
    assert rows(db, "SELECT count(*) AS n FROM current_referrers") == [{"n": TAGS}]
    events = rows(db, "SELECT count(*) AS n FROM event_log")[0]["n"]

    flooded.flood()
    flooded.requests.clear()
    outcome = collect(db, env, flooded)
    assert_ended_sanely(outcome)
    assert outcome.returncode == 3, outcome.tail()  # partial: what the registry said cannot all be believed
    run = rows(db, "SELECT id, status, errors, error_summary, tags_seen FROM runs ORDER BY id DESC LIMIT 1")[0]
    assert run["status"] == "partial"
    assert run["tags_seen"] == TAGS  # the tags listed, not the referrers followed for them
    errors = {row["code"]: row for row in rows(db, "SELECT stage, repo, code, count, message FROM errors "
                                                   "WHERE run_id = ?", [run["id"]])}
    # Every digest's list is cut at --max-referrers; the run follows PER_RUN (digest, referrer) pairs of the
    # TAGS * PER_DIGEST read, and cuts the rest; each one it followed names another subject.
    assert {code: row["count"] for code, row in errors.items()} == {
        "LISTING_TRUNCATED": TAGS, "RUN_REFERRERS_CAPPED": TAGS * PER_DIGEST - PER_RUN, "REFERRER_MISMATCH": PER_RUN}
    assert {row["stage"] for row in errors.values()} == {"referrers"}
    assert {row["repo"] for row in errors.values()} == {"flood/app"}
    assert "--max-referrers" in errors["LISTING_TRUNCATED"]["message"]
    assert "--max-run-referrers" in errors["RUN_REFERRERS_CAPPED"]["message"]
    assert run["errors"] == TAGS + TAGS * PER_DIGEST  # the total, not the rows
    assert run["error_summary"].startswith(f"{run['errors']} errors; ")
    # Each lying referrer's manifest is fetched once, however many digests list it.
    manifests = [r for r in flooded.requests if r.kind == "manifest" and r.method == "GET"]
    assert len({r.ref for r in manifests}) == len(manifests) <= PER_DIGEST

    # Nothing removed: every true referrer is still there, and the flood added no event.
    assert rows(db, "SELECT count(*) AS n FROM current_referrers") == [{"n": TAGS}]
    assert rows(db, "SELECT count(*) AS n FROM event_log")[0]["n"] == events
    assert_verifies(db, env)

    shown = run_ledger(["runs", "--db", db, "--errors"], env=env)
    assert shown.returncode == 0, shown.tail()
    text = shown.stdout.decode()
    assert f"({PER_RUN} times)" in text and f"({TAGS} times)" in text


@pytest.mark.slow
def test_thousands_of_tags_failing_alike_are_one_row_with_their_count(db, env):
    """The class, not the instance: per-tag errors of one code in one repository merge too."""
    server = HostileRegistry()
    for n in range(2_000):
        server.repos.setdefault("many/app", {})[f"t{n}"] = "sha256:" + "0" * 64
    server.add_image("many/app", "good", seed="good")
    for method in ("HEAD", "GET"):  # a new tag is resolved with a GET (a held one with a HEAD)
        server.misbehave[(method, "manifest", "many/app")] = when(
            lambda handler: handler.ref != "good", answer(500, b'{"errors":[{"code":"UNKNOWN","message":"down"}]}'))
    with server:
        outcome = run_ledger(["collect", "--quiet", "--db", db, "--retries", "0", f"{server.host}/many/app"], env=env)
    assert_ended_sanely(outcome)
    assert outcome.returncode == 3, outcome.tail()
    errors = rows(db, "SELECT stage, repo, tag, http_status, count FROM errors")
    assert len(errors) == 1 and errors[0]["count"] == 2_000, errors
    assert errors[0]["stage"] == "manifest" and errors[0]["tag"].startswith("t") and errors[0]["http_status"] == 500
    assert rows(db, "SELECT status, errors FROM runs") == [{"status": "partial", "errors": 2_000}]
    assert [line for line in outcome.err.splitlines() if line.startswith("error: ")] == [
        line for line in outcome.err.splitlines() if "(2000 times)" in line]
    assert_verifies(db, env)


def test_an_errors_count_changed_after_its_run_is_tampering(flooded, db, env):
    flooded.flood()
    collect(db, env, flooded)
    assert_verifies(db, env)
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER errors_append_only_update")
    conn.execute("UPDATE errors SET count = 1 WHERE code = 'REFERRER_MISMATCH'")
    conn.commit()
    conn.close()
    verified = run_ledger(["verify", "--db", db], env=env)
    assert verified.returncode == 1 and "errors id=" in verified.err, verified.tail()


def test_errors_rows_sealed_before_schema_10_still_verify_after_it(tmp_path):
    """Rows of before stand for one failure each: read-only readers of a file not yet upgraded see a count
    of 1, and the rows' seals still hold once the column is added."""
    from ledger import reads, store
    from ledger.findings import Problem, RunResult

    path = str(tmp_path / "old.db")

    def problem(code, tag):
        return Problem(at="2026-01-01T00:00:00.000000Z", registry="r.example", stage="head", message="down",
                       repo="app", tag=tag, code=code)

    db = store.open_db(path)
    run_id = store.start_run(db, "registry", ["r.example/app"])
    store.append_run(db, run_id, RunResult(errors=[problem("A", "1"), problem("B", "2")]))
    db.close()
    conn = sqlite3.connect(path)  # the file as schema 8 left it: no count column (nor schema 11's category)
    conn.execute("ALTER TABLE errors DROP COLUMN count")
    conn.execute("DROP TRIGGER manifests_append_only_update")
    for (view,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'").fetchall():
        conn.execute(f"DROP VIEW {view}")  # the upgrade re-makes them
    conn.execute("ALTER TABLE manifests DROP COLUMN category")
    conn.execute("DROP INDEX coverage_listings_by_repo")
    conn.execute("ALTER TABLE coverage_listings RENAME TO coverage")  # schema 19's (its new tables stay: sealed)
    conn.execute("PRAGMA user_version = 8")
    conn.commit()
    conn.close()

    old = store.open_readonly(path)  # verify asks for the upgrade first; reading does not
    assert [p["count"] for p in reads.runs(old, 5, problems=True)[0]["problems"]] == [1, 1]
    old.close()

    db = store.open_db(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert db.execute("SELECT code, count FROM errors ORDER BY id").fetchall() == [("A", 1), ("B", 1)]
    assert store.verify(db).ok
    run_id = store.start_run(db, "registry", ["r.example/app"])
    counts = store.append_run(db, run_id, RunResult(errors=[problem("A", str(n)) for n in range(5)]))
    assert counts["errors"] == 5
    assert db.execute("SELECT code, tag, count FROM errors WHERE run_id = ?", [run_id]).fetchall() == [("A", "0", 5)]
    assert store.verify(db).ok
    db.close()


@pytest.mark.slow
def test_an_index_of_thousands_of_children_is_fetched_up_to_its_cap(db, env):
    from ledger.limits import MAX_INDEX_CHILDREN

    server = HostileRegistry()
    children = [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1,
                 "digest": "sha256:%064x" % n, "platform": {"architecture": f"arch{n}", "os": "linux"}}
                for n in range(MAX_INDEX_CHILDREN + 200)]
    server.put_manifest("big/app", "1", json.dumps({"schemaVersion": 2, "manifests": children}).encode(),
                        "application/vnd.oci.image.index.v1+json")
    with server:
        outcome = run_ledger(["collect", "--quiet", "--db", db, "--retries", "0", f"{server.host}/big/app"], env=env)
        fetched = [r.ref for r in server.requests if r.kind == "manifest" and r.method == "GET"]
    assert_ended_sanely(outcome)
    assert outcome.returncode == 3, outcome.tail()
    assert len(fetched) == MAX_INDEX_CHILDREN + 1  # the index, then its first children only
    errors = {row["code"]: row for row in rows(db, "SELECT stage, code, count, message FROM errors")}
    assert errors["INDEX_TRUNCATED"]["count"] == 1 and f"lists {len(children)} children" in (
        errors["INDEX_TRUNCATED"]["message"])
    assert errors["MANIFEST_UNKNOWN"]["count"] == MAX_INDEX_CHILDREN  # each child is missing: one row
    assert len(errors) == 2
    assert rows(db, "SELECT errors FROM runs") == [{"errors": MAX_INDEX_CHILDREN + 1}]
    assert_verifies(db, env)


def test_the_caps_are_config_file_keys_too(tmp_path):
    from ledger.limits import MAX_RUN_REFERRERS
    from ledger.settings import load_config

    config = tmp_path / "ledger.toml"
    config.write_text('max_referrers = 5\n[registries."a.io"]\n[registries."b.io"]\nmax_run_referrers = 7\n')
    _, options, _ = load_config(config)
    assert (options["a.io"].max_referrers, options["a.io"].max_run_referrers) == (5, MAX_RUN_REFERRERS)
    assert (options["b.io"].max_referrers, options["b.io"].max_run_referrers) == (5, 7)
