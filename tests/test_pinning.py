"""Checkpoints anchor the head outside the file: what `verify` alone cannot see, a pin does."""

import base64
import json
import shutil
import sqlite3

import pytest

from ledger import checkpoint, merkle, seals, store
from test_verify import tamper


@pytest.fixture
def keyed(ledger, tmp_path):
    key = str(tmp_path / "ledger.key")
    printed = ledger("checkpoint", "--new-key", key, "--name", "ledger.example/audit").output.strip()
    assert printed.startswith("ledger.example/audit+") and open(key + ".pub").read().strip() == printed
    return key


def collect_twice(ledger, registry, pusher, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    pusher.image(f"{ns}/app", "2", seed=ns + "2")
    ledger.collect(f"{registry.host}/{ns}/app")
    pusher.image(f"{ns}/app", "1", seed=ns + "moved")
    ledger.collect(f"{registry.host}/{ns}/app")


def test_a_checkpoint_is_a_signed_note_that_verify_accepts(registry, pusher, ledger, ns, keyed, tmp_path):
    collect_twice(ledger, registry, pusher, ns)
    note = ledger("checkpoint", "--key", keyed).output
    lines = note.split("\n")
    assert lines[0] == "ledger.example/audit" and lines[1] == "3" and lines[3].startswith("seal 2 ")
    assert lines[4] == "" and lines[5].startswith("\u2014 ledger.example/audit ")
    hashes = [bytes.fromhex(r["hash"]) for r in ledger.rows("SELECT hash FROM events ORDER BY id")]
    assert base64.b64decode(lines[2]) == merkle.root(hashes)
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(note)
    assert "3 events; head event 3" in ledger("verify", "--expect", str(pinned), "--key", keyed + ".pub").output
    pusher.image(f"{ns}/app", "3", seed=ns + "3")
    ledger.collect(f"{registry.host}/{ns}/app")  # the ledger extends the pin: it still holds
    ledger("verify", "--expect", str(pinned), "--key", keyed + ".pub")
    head = ledger.rows("SELECT id, hash FROM events WHERE id = 3")[0]
    ledger("verify", "--expect", f"3:{head['hash']}")
    ledger("verify", "--expect", str(pinned), "--key", keyed)  # the signer key file carries its verifier


def test_a_checkpoint_signed_by_another_key_is_refused(registry, pusher, ledger, ns, keyed, tmp_path):
    collect_twice(ledger, registry, pusher, ns)
    other = str(tmp_path / "other.key")
    ledger("checkpoint", "--new-key", other, "--name", "ledger.example/audit")
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(ledger("checkpoint", "--key", other).output)
    result = ledger("verify", "--expect", str(pinned), "--key", keyed + ".pub", expect=1)
    assert "signed by another key" in result.output or "does not verify" in result.output


def rechain(path):
    """What an insider does after an edit: recompute every event hash, run head and seal, so that the
    file is consistent again. Plain `verify` cannot tell; only a pin kept elsewhere can."""
    db = store.open_db(path)
    conn = db.conn
    for name, in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    prev = store.GENESIS
    for row in conn.execute("SELECT id, run_id, observed_at, kind, registry, repo, tag, digest, image, media_type, "
                            "created, author, size, source FROM events ORDER BY id").fetchall():
        prev = store.event_hash(prev, store.encoding._canonical(*row))
        conn.execute("UPDATE event_log SET hash = ? WHERE id = ?", [bytes.fromhex(prev), row[0]])
        conn.execute("UPDATE runs SET head_hash = ? WHERE head_event_id = ?", [prev, row[0]])
    conn.execute("DELETE FROM run_seals")
    seals.seal_existing(conn)
    db.close()
    store.open_db(path).close()  # a writer puts the shipped triggers back


def test_a_rewrite_before_the_pin_passes_verify_but_not_the_pin(registry, pusher, ledger, ns, keyed, tmp_path):
    collect_twice(ledger, registry, pusher, ns)
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(ledger("checkpoint", "--key", keyed).output)
    conn = sqlite3.connect(ledger.path)
    conn.execute("DROP TRIGGER event_log_append_only_update")
    conn.execute("UPDATE event_log SET created = '1999-01-01T00:00:00Z' WHERE id = 2")
    conn.commit()
    conn.close()
    assert "event 2: content does not match its hash" in ledger("verify", expect=1).output
    rechain(ledger.path)
    ledger("verify")  # consistent again: the file alone cannot prove otherwise
    result = ledger("verify", "--expect", str(pinned), "--key", keyed + ".pub", expect=1)
    assert "the first 3 events no longer hash to the pinned root" in result.output
    assert "an event among 1..3 was rewritten" in result.output


def test_a_ledger_cut_back_to_an_older_copy_fails_its_pin(registry, pusher, ledger, ns, keyed, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    older = tmp_path / "older.db"
    shutil.copy(ledger.path, older)  # a copy is a whole, consistent ledger: the last run cut with its rows
    pusher.image(f"{ns}/app", "1", seed=ns + "moved")
    ledger.collect(f"{registry.host}/{ns}/app")
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(ledger("checkpoint", "--key", keyed).output)
    shutil.copy(older, ledger.path)
    ledger("verify")
    result = ledger("verify", "--expect", str(pinned), "--key", keyed + ".pub", expect=1)
    assert "pins 2 events, the ledger has 1: events 2..2 were cut from the end" in result.output


def test_collect_writes_a_checkpoint_per_run_and_a_directory_of_them_bounds_a_rewrite(registry, pusher, ledger, ns,
                                                                                     keyed, tmp_path):
    anchors = tmp_path / "anchors"
    for n in range(3):
        pusher.image(f"{ns}/app", "1", seed=f"{ns}{n}")
        ledger.collect(f"{registry.host}/{ns}/app", "--checkpoint-dir", str(anchors), "--checkpoint-key", keyed)
    written = sorted(p.name for p in anchors.iterdir())
    assert written == ["latest.checkpoint", "run-00000001.checkpoint", "run-00000002.checkpoint",
                       "run-00000003.checkpoint"]
    assert "3 events" in ledger("verify", "--expect", str(anchors), "--key", keyed + ".pub").output
    conn = sqlite3.connect(ledger.path)
    conn.execute("DROP TRIGGER event_log_append_only_update")
    conn.execute("UPDATE event_log SET created = '1999-01-01T00:00:00Z' WHERE id = 3")
    conn.commit()
    conn.close()
    rechain(ledger.path)
    result = ledger("verify", "--expect", str(anchors), "--key", keyed + ".pub", expect=1)
    assert "an event among 3..3 was rewritten (events up to 2 still match)" in result.output


def test_collect_with_a_checkpoint_dir_needs_a_key(registry, ledger, tmp_path):
    result = ledger("collect", f"{registry.host}/x", "--checkpoint-dir", str(tmp_path / "a"), expect=2)
    assert "--checkpoint-dir needs --checkpoint-key" in result.output


def test_inclusion_and_consistency_proofs_verify_without_the_ledger(registry, pusher, ledger, ns, keyed, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    old = tmp_path / "old.checkpoint"
    old.write_text(ledger("checkpoint", "--key", keyed).output)
    for n in range(4):
        pusher.image(f"{ns}/app", f"t{n}", seed=f"{ns}{n}")
    ledger.collect(f"{registry.host}/{ns}/app")
    new = tmp_path / "new.checkpoint"
    new.write_text(ledger("checkpoint", "--key", keyed).output)
    verifier = checkpoint.load_verifier(keyed + ".pub")
    old_head, new_head = (checkpoint.verify(path.read_bytes(), verifier) for path in (old, new))

    proof = json.loads(ledger("prove", "3").output)
    leaf = merkle.leaf_hash(bytes.fromhex(proof["event_hash"]))
    path = [base64.b64decode(node) for node in proof["proof"]]
    assert merkle.verify_inclusion(proof["leaf_index"], new_head.size, leaf, path, new_head.root)
    assert not merkle.verify_inclusion(proof["leaf_index"] + 1, new_head.size, leaf, path, new_head.root)

    proof = json.loads(ledger("prove", "--consistency", str(old), str(new), "--key", keyed + ".pub").output)
    nodes = [base64.b64decode(node) for node in proof["proof"]]
    assert (proof["old_size"], proof["new_size"]) == (1, 5)
    assert merkle.verify_consistency(1, 5, old_head.root, new_head.root, nodes)
    assert not merkle.verify_consistency(1, 5, new_head.root, new_head.root, nodes)


def test_checkpoint_and_prove_are_read_only_and_say_what_is_missing(ledger, tmp_path):
    assert "cannot read" in ledger("checkpoint", "--key", str(tmp_path / "no.key"), expect=1).output
    result = ledger("checkpoint", expect=2)
    assert "give --key FILE" in result.output
    assert "give an EVENT_ID, or --consistency" in ledger("prove", expect=2).output


def test_run_records_rewritten_and_resealed_fail_the_pinned_seal(registry, pusher, ledger, ns, keyed, tmp_path):
    collect_twice(ledger, registry, pusher, ns)
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(ledger("checkpoint", "--key", keyed).output)
    tamper(ledger.path, "UPDATE runs SET status = 'failed' WHERE id = 1", "DELETE FROM run_seals")
    conn = sqlite3.connect(ledger.path)
    seals.seal_existing(conn)
    conn.commit()
    conn.close()
    store.open_db(ledger.path).close()
    ledger("verify")
    result = ledger("verify", "--expect", str(pinned), "--key", keyed + ".pub", expect=1)
    assert "run seal 2 differs from the pinned one" in result.output


def test_a_proof_against_a_rewritten_ledger_or_a_tree_it_lacks_is_refused(registry, pusher, ledger, ns, keyed,
                                                                         tmp_path):
    collect_twice(ledger, registry, pusher, ns)
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(ledger("checkpoint", "--key", keyed).output)
    assert "no tree of 100 events: the ledger has 3" in ledger("prove", "2", "--size", "100", expect=1).output
    conn = sqlite3.connect(ledger.path)
    conn.execute("DROP TRIGGER event_log_append_only_update")
    conn.execute("UPDATE event_log SET created = '1999-01-01T00:00:00Z' WHERE id = 1")
    conn.commit()
    conn.close()
    rechain(ledger.path)
    result = ledger("prove", "--consistency", str(pinned), "3", "--key", keyed + ".pub", expect=1)
    assert "the ledger's tree of 3 events is not the pinned one" in result.output
