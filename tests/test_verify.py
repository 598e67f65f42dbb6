"""`ledger verify` recomputes the chain and names the first bad row."""

import json
import sqlite3

import pytest


@pytest.fixture
def honest(registry, pusher, ledger, ns):
    for tag in ("a", "b", "c", "d"):
        pusher.image(f"{ns}/app", tag, seed=ns + tag)
    ledger.collect(f"{registry.host}/{ns}/app")
    pusher.image(f"{ns}/app", "a", seed=ns + "new")
    ledger.collect(f"{registry.host}/{ns}/app")
    return ledger


def tamper(path, *statements):
    """Edit the file the way an attacker with the file would: triggers dropped first."""
    conn = sqlite3.connect(path)
    for name, in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_an_honest_ledger_verifies_and_prints_its_head(honest):
    result = honest("verify")
    head = honest.rows("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1")[0]
    assert result.output.strip().endswith(f"ok, 5 events; head event {head['id']} {head['hash']}")
    report = json.loads(honest("verify", "--json").output)
    assert report == {"ok": True, "events": 5, "head_event_id": head["id"], "head_hash": head["hash"], "problems": []}


def test_an_edited_event_is_caught(honest):
    tamper(honest.path, "UPDATE event_log SET digest_id = (SELECT digest_id FROM event_log WHERE id = 1) WHERE id = 2")
    result = honest("verify", expect=1)
    assert "TAMPERED: event 2: content does not match its hash" in result.output


def test_an_edited_digest_is_caught_at_the_first_event_that_shows_it(honest):
    tamper(honest.path, "UPDATE digests SET digest = zeroblob(32) WHERE id = (SELECT digest_id FROM event_log WHERE id = 3)")
    assert "TAMPERED: event 3: content does not match its hash" in honest("verify", expect=1).output


def test_a_renamed_tag_is_caught(honest):
    tamper(honest.path, "UPDATE tag_keys SET tag = 'z' WHERE tag = 'c'")
    assert "content does not match its hash" in honest("verify", expect=1).output


def test_a_deleted_event_is_caught(honest):
    tamper(honest.path, "DELETE FROM event_log WHERE id = 3")
    assert "event 4: follows event 2 (events between them were deleted" in honest("verify", expect=1).output


def test_reordered_events_are_caught(honest):
    tamper(honest.path, "UPDATE event_log SET id = -id WHERE id IN (3, 4)",
           "UPDATE event_log SET id = 7 + id WHERE id IN (-3, -4)")
    assert "TAMPERED: event 3: content does not match its hash" in honest("verify", expect=1).output


def test_events_cut_from_the_end_are_caught_by_the_run_head(honest):
    tamper(honest.path, "DELETE FROM event_log WHERE id = 5")
    assert "run 2: its chain head, event 5, is missing" in honest("verify", expect=1).output


def test_an_edited_current_state_is_caught(honest):
    tamper(honest.path, "UPDATE tag_keys SET kind = 'removed' WHERE tag = 'b'")
    assert "tag_keys does not match the events" in honest("verify", expect=1).output


def test_an_edited_first_sighting_is_caught(honest):
    tamper(honest.path, "UPDATE digests SET first_event_id = 5 WHERE first_event_id = 1")
    assert "digests does not match the events" in honest("verify", expect=1).output


def test_an_edited_history_link_is_caught(honest):
    tamper(honest.path, "UPDATE event_log SET prev_event_id = NULL WHERE id = 5")  # a move: it has one
    assert "event_log.prev_event_id does not match the events" in honest("verify", expect=1).output


def test_a_big_ledger_is_checked_in_parallel_ranges_that_agree_at_their_seams(honest, monkeypatch):
    from ledger import store

    monkeypatch.setattr(store.verification, "_PARALLEL_FROM", 0)  # five events, checked as two ranges in two processes
    db = store.open_db(honest.path)
    report = store.verify(db)
    assert report.ok and report.events == 5
    db.close()
    tamper(honest.path, "UPDATE event_log SET prev_event_id = NULL WHERE id = 5")  # its previous is in range 1
    db = store.open_db(honest.path)
    assert store.verify(db).problems == [
        "event_log.prev_event_id does not match the events (what is derived from them was edited)"]
    db.close()


@pytest.mark.parametrize("parallel", [False, True])
def test_a_run_appended_while_verify_reads_is_not_taken_for_an_edit(honest, monkeypatch, parallel):
    """Another process's collect commits between verify's first read and its last: verify checks
    the ledger as it was at its first read, and says so."""
    from ledger import store
    from ledger.findings import RunResult, Sighting

    if parallel:
        monkeypatch.setattr(store.verification, "_PARALLEL_FROM", 0)
    check_chain = store.verification._check_chain

    def append_meanwhile(*args):
        found = check_chain(*args)
        writer = store.open_db(honest.path)
        run_id = store.start_run(writer, "registry", ["r.example/app"])
        store.append_run(writer, run_id, RunResult(observations=[
            Sighting("r.example", "app", "new", "2030-01-01T00:00:00.000000Z", "sha256:" + "9" * 64, "m")]))
        writer.close()
        return found
    monkeypatch.setattr(store.verification, "_check_chain", append_meanwhile)
    db = store.open_readonly(honest.path)
    report = store.verify(db)
    assert (report.ok, report.events, report.problems) == (True, 5, [])
    monkeypatch.setattr(store.verification, "_check_chain", check_chain)
    assert store.verify(db).events == 6
    db.close()
