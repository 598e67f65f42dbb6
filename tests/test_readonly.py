"""Reading never writes: the read commands and verify open the ledger read-only, and a missing or
foreign file is an error for them, never a new ledger."""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from ledger import store
from ledger.findings import RunResult, Sighting

# Root writes through any file mode; without these capabilities it is held to the modes like anyone else.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                "--inh-caps=-dac_override,-dac_read_search,-fowner"]


def fingerprint(path):
    """The bytes of the file and of its write-ahead log (where writes land first), and the schema
    cookie, read without writing."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
    try:
        cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return [hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            hashlib.sha256(wal.read_bytes()).hexdigest() if wal.exists() else None, cookie]


def synthetic(path, runs=2, tags=20):
    """A ledger written through the store: run 1 adds every tag, each later run moves them all."""
    db = store.open_db(path)
    for run in range(runs):
        run_id = store.start_run(db, "registry", ["r.example/app"])
        store.append_run(db, run_id, RunResult(observations=[
            Sighting("r.example", "app", f"t{n}", f"2026-01-0{run + 1}T00:00:00.000000Z",
                     f"sha256:{run * 1000 + n:064x}", "m") for n in range(tags)]))
    db.close()
    return path


@pytest.fixture
def story(registry, pusher, ledger, ns):
    """Two collects through the real registry: prod added, then moved."""
    pusher.image(f"{ns}/app", "prod", seed=ns + "a")
    ledger.collect(f"{registry.host}/{ns}/app")
    pusher.image(f"{ns}/app", "prod", seed=ns + "b")
    ledger.collect(f"{registry.host}/{ns}/app")
    return f"{registry.host}/{ns}/app:prod"


def reads(reference):
    return [["tags"], ["history", reference], ["at", "now"], ["changes", "--since", "2000-01-01"],
            ["runs", "--errors"], ["verify"]]


def test_reading_leaves_every_byte_and_the_schema_as_they_were(ledger, story):
    before = fingerprint(ledger.path)
    for args in reads(story):
        ledger(*args)
        assert fingerprint(ledger.path) == before, args


def unprivileged(args, db, cwd):
    prefix = UNPRIVILEGED if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to read as root without its override of file modes")
    return subprocess.run([*prefix, sys.executable, "-m", "ledger", *args, "--db", db], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("side_files", [False, True], ids=["bare", "with-wal-and-shm"])
def test_reads_work_on_a_read_only_file_in_a_read_only_directory(ledger, story, tmp_path, side_files):
    directory = tmp_path / "ro"
    directory.mkdir()
    db = directory / "ledger.db"
    shutil.copy(ledger.path, db)
    os.chmod(db, 0o444)
    if side_files:  # what a reader leaves in a writable directory: SQLite's -wal and -shm
        assert unprivileged(["tags"], str(db), tmp_path).returncode == 0
        assert {p.name for p in directory.iterdir()} == {"ledger.db", "ledger.db-wal", "ledger.db-shm"}
    directory.chmod(0o555)
    before, files = fingerprint(db), sorted(p.name for p in directory.iterdir())
    try:
        for args in reads(story):
            result = unprivileged(args, str(db), tmp_path)
            assert result.returncode == 0, (args, result.stderr)
            assert "Traceback" not in result.stderr
        assert "ok, 2 events" in unprivileged(["verify"], str(db), tmp_path).stdout
        writing = unprivileged(["collect", "127.0.0.1:1/app"], str(db), tmp_path)
        assert writing.returncode == 1 and f"Error: {db}: " in writing.stderr  # the check itself holds
        assert "Traceback" not in writing.stderr
    finally:
        directory.chmod(0o755)
    assert (fingerprint(db), sorted(p.name for p in directory.iterdir())) == (before, files)


def test_a_read_only_file_in_a_writable_directory_is_read_through_sqlites_side_files(ledger, story, tmp_path):
    db = Path(ledger.path)
    os.chmod(db, 0o444)
    before = fingerprint(db)
    for args in reads(story):
        result = unprivileged(args, str(db), tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    writing = unprivileged(["collect", "127.0.0.1:1/app"], str(db), tmp_path)
    assert (writing.returncode, writing.stderr) == (1, f"Error: {db}: cannot append to it: the file is read-only\n")
    assert fingerprint(db) == before


def test_unread_writes_in_a_read_only_directory_are_a_clear_error(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    writer = store.open_db(synthetic(tmp_path / "live.db"))
    store.start_run(writer, "registry", ["r.example/app"])  # committed to the -wal, not yet to the file
    shutil.copy(tmp_path / "live.db", directory / "ledger.db")
    shutil.copy(tmp_path / "live.db-wal", directory / "ledger.db-wal")
    writer.close()
    directory.chmod(0o555)
    try:
        result = unprivileged(["runs"], str(directory / "ledger.db"), tmp_path)
    finally:
        directory.chmod(0o755)
    assert result.returncode == 1 and "ledger.db-wal holds writes not yet in the file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["verify"], ["tags"], ["runs"], ["history", "r.example/app:t1"],
                                     ["at", "now"], ["changes", "--since", "1 day ago"]])
def test_a_missing_ledger_is_an_error_and_is_not_created(tmp_path, command):
    result = subprocess.run([sys.executable, "-m", "ledger", *command, "--db", "typo.db"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == (
        "Error: no ledger at typo.db (make one with `ledger collect TARGET`, or name another with --db PATH or "
        "LEDGER_DB)")
    assert list(tmp_path.iterdir()) == []


def test_what_is_not_a_ledger_is_refused_read_only_and_left_alone(tmp_path):
    (tmp_path / "notes.db").write_text("plain text, not sqlite" * 200)
    (tmp_path / "empty.db").write_bytes(b"")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE people (name)")
    old = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "ledger-v1.sqlite", old)
    cases = {"notes.db": "not a ledger database (file is not a database)",
             "empty.db": "not a ledger database (no ledger schema in it)",
             "other.db": "not a ledger database (it has other tables: people)",
             "old.db": "ledger schema version 1 is too old to read as it is; run `ledger collect` on it once"}
    for name, message in cases.items():
        before = (tmp_path / name).read_bytes()
        with pytest.raises(store.StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
            store.open_readonly(tmp_path / name)
        assert (tmp_path / name).read_bytes() == before


@pytest.mark.parametrize("name, decoy", [("ledger#2026-11.db", "ledger"), ("a b?c=%41.db", "a b"),
                                         ("100%25.db", "100%.db")])
@pytest.mark.parametrize("parallel", [False, True])
def test_verify_checks_the_file_named_whatever_its_name(ledger, tmp_path, monkeypatch, name, decoy, parallel):
    """A path is never pasted into a SQLite URI as it is: `#` would end it, `?` start a query, `%25`
    be decoded, and verify would check the clean file beside the tampered one."""
    clean = synthetic(tmp_path / decoy)
    shutil.copy(clean, tmp_path / name)
    conn = sqlite3.connect(tmp_path / name)
    conn.execute("DROP TRIGGER event_log_append_only_update")
    conn.execute("UPDATE event_log SET size = 666 WHERE id = 3")
    conn.commit()
    conn.close()
    if parallel:
        monkeypatch.setattr(store.verification, "_PARALLEL_FROM", 0)
    ledger.path = str(tmp_path / name)
    assert "TAMPERED: event 3: content does not match its hash" in ledger("verify", expect=1).output
    ledger.path = str(clean)
    assert "ok, 40 events" in ledger("verify").output


def test_readers_take_no_write_lock(tmp_path, monkeypatch):
    path = synthetic(tmp_path / "ledger.db")
    monkeypatch.setattr(store.database, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for open_ in (store.open_readonly, store.open_db):
            db = open_(path)
            assert store.verify(db).ok
            assert db.execute("SELECT count(*) FROM current_tags").fetchone()[0] == 20
            db.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_ledger_of_an_older_schema_is_read_as_it_is(tmp_path):
    """tests/fixtures/ledger-v8.sqlite was written by the schema 8 code: r.example/app:v1 and v2, and a cosign
    signature tag of v1, before manifests had a category. Every read answers from it as its own views do (a
    tag named like a signature's is one), and leaves its bytes alone: no reader may assume a later schema."""
    from conftest import Ledger
    path = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "ledger-v8.sqlite", path)
    before = fingerprint(path)
    ledger = Ledger(str(path))
    signature = "sha256-" + "1" * 64 + ".sig"
    for args in (["at", "now"], ["at", "now", "r.example/app"], ["tags"]):
        shown = ledger(*args).output
        assert "v1" in shown and "v2" in shown and signature not in shown, args
    suggested = ledger("tags", "r.example/app:v12", expect=1).output
    assert "did you mean r.example/app:v" in suggested and "sha256-" not in suggested
    assert signature in ledger("changes", "--since", "2000-01-01").output
    assert "v1" in ledger("digest", "sha256:" + "1" * 64).output
    assert fingerprint(path) == before
