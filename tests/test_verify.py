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
    tamper(honest.path, "UPDATE events SET digest = 'sha256:" + "f" * 64 + "' WHERE id = 2")
    result = honest("verify", expect=1)
    assert "TAMPERED: event 2: content does not match its hash" in result.output


def test_a_deleted_event_is_caught(honest):
    tamper(honest.path, "DELETE FROM events WHERE id = 3")
    assert "event 4: prev_hash does not match event 2" in honest("verify", expect=1).output


def test_an_event_inserted_out_of_order_is_caught(honest):
    tamper(honest.path, "UPDATE events SET id = id + 10 WHERE id >= 3",
           "INSERT INTO events SELECT 3, run_id, observed_at, kind, registry, repo, tag, digest, image, media_type,"
           " created, author, size, prev_hash, hash FROM events WHERE id = 12")
    assert "TAMPERED: event" in honest("verify", expect=1).output


def test_events_cut_from_the_end_are_caught_by_the_run_head(honest):
    tamper(honest.path, "DELETE FROM events WHERE id = 5")
    assert "run 2: its chain head, event 5, is missing" in honest("verify", expect=1).output


def test_an_edited_current_state_is_caught(honest):
    tamper(honest.path, "UPDATE tag_state SET digest = 'sha256:" + "e" * 64 + "' WHERE tag = 'b'")
    assert "tag_state does not match the events" in honest("verify", expect=1).output
