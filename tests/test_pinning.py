"""Checkpoints anchor the head outside the file: what `verify` alone cannot see, a pin does."""

import base64
import json
import os
import shutil
import sqlite3

import pytest

from ledger import checkpoint, merkle, store
from ledger.store import seals
from test_notify import Receiver
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


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.stop()


def snapshot(directory):
    """Every entry of a directory as it is on disk: a file's bytes, a link's target."""
    return {path.name: ("link", os.readlink(path)) if path.is_symlink() else path.read_bytes()
            for path in sorted(directory.iterdir())}


@pytest.mark.parametrize("undo", ["rollback", "rewrite"])
def test_a_ledger_rolled_back_or_rewritten_under_its_checkpoint_dir_is_refused_and_the_evidence_kept(
        registry, pusher, ledger, ns, keyed, tmp_path, receiver, undo):
    anchors, target = tmp_path / "anchors", f"{registry.host}/{ns}/app"
    anchored = ["--checkpoint-dir", str(anchors), "--checkpoint-key", keyed]
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(target, *anchored)
    older = tmp_path / "older.db"
    shutil.copy(ledger.path, older)
    pusher.image(f"{ns}/app", "1", seed=ns + "moved")
    ledger.collect(target, *anchored)
    assert os.readlink(anchors / "latest.checkpoint") == "run-00000002.checkpoint"
    kept = snapshot(anchors)
    if undo == "rollback":
        shutil.copy(older, ledger.path)  # run 2 cut: the next run is numbered 2 again
    else:
        tamper(ledger.path, "UPDATE event_log SET created = '1999-01-01T00:00:00Z' WHERE id = 1")
        rechain(ledger.path)
    ledger("verify")  # the file alone holds together
    pusher.image(f"{ns}/app", "1", seed=ns + "again")

    result = ledger("collect", "-q", target, *anchored, "--notify", receiver.url(), expect=1)
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: {anchors}: run ")
    assert "its checkpoint is refused: the ledger does not extend" in line
    assert "latest.checkpoint:" in line
    assert snapshot(anchors) == kept  # not one byte, not one link changed
    [refusal] = ledger.rows("SELECT r.id, r.status, r.source, e.stage, e.source AS error_source, e.message "
                            "FROM runs r JOIN errors e ON e.run_id = r.id")
    assert (refusal["status"], refusal["source"], refusal["stage"], refusal["error_source"]) == (
        "failed", "checkpoint", "checkpoint", "checkpoint")
    assert refusal["message"] == line.removeprefix("Error: ")
    told, message = receiver.messages()  # the run's move, then the refusal
    assert told["title"].startswith(f"registry ledger: run {refusal['id'] - 1} ok: 1 moved")
    assert message["type"] == "failure"
    assert message["title"] == f"registry ledger: run {refusal['id']} failed: 1 error"
    assert "its checkpoint is refused" in message["message"]
    ledger("verify")  # the refusal is a sealed run like any other
    failed = ledger("verify", "--expect", str(anchors), "--key", keyed + ".pub", expect=1)
    assert "events no longer hash to the pinned root" in failed.output
    ledger.collect(target, *anchored, expect=1)  # and stays refused, run after run
    assert snapshot(anchors) == kept


def test_checkpoints_are_never_overwritten_and_latest_is_a_link(registry, pusher, ledger, ns, keyed, tmp_path):
    anchors, target = tmp_path / "anchors", f"{registry.host}/{ns}/app"
    anchored = ["--checkpoint-dir", str(anchors), "--checkpoint-key", keyed]
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(target, *anchored)
    first = (anchors / "run-00000001.checkpoint").read_bytes()
    (anchors / "run-00000002.checkpoint").write_text("planted\n")  # the name the next run would take
    result = ledger("collect", "-q", target, *anchored, expect=1)
    assert "run-00000002.checkpoint already exists: a checkpoint file is never overwritten" in result.output
    assert (anchors / "run-00000002.checkpoint").read_text() == "planted\n"
    assert os.readlink(anchors / "latest.checkpoint") == "run-00000001.checkpoint"
    (anchors / "run-00000002.checkpoint").unlink()
    ledger.collect(target, *anchored)  # run 3's head extends run 1's: written, and latest follows
    assert os.readlink(anchors / "latest.checkpoint") == "run-00000004.checkpoint"
    assert (anchors / "run-00000001.checkpoint").read_bytes() == first
    assert sorted(path.name for path in anchors.iterdir()) == [
        "latest.checkpoint", "run-00000001.checkpoint", "run-00000004.checkpoint"]


def test_a_checkpoint_dir_of_another_key_or_with_an_unknown_latest_file_is_refused(registry, pusher, ledger, ns,
                                                                                   keyed, tmp_path):
    anchors, target = tmp_path / "anchors", f"{registry.host}/{ns}/app"
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(target, "--checkpoint-dir", str(anchors), "--checkpoint-key", keyed)
    other = str(tmp_path / "other.key")
    ledger("checkpoint", "--new-key", other, "--name", "ledger.example/audit")
    kept = snapshot(anchors)
    result = ledger("collect", "-q", target, "--checkpoint-dir", str(anchors), "--checkpoint-key", other, expect=1)
    assert "latest.checkpoint: the checkpoint is signed by another key named ledger.example/audit" in result.output
    assert snapshot(anchors) == kept

    legacy = tmp_path / "legacy"  # as written before latest was a link: a copy of the newest run's
    legacy.mkdir()
    shutil.copy(anchors / "run-00000001.checkpoint", legacy / "run-00000001.checkpoint")
    shutil.copy(anchors / "run-00000001.checkpoint", legacy / "latest.checkpoint")
    ledger.collect(target, "--checkpoint-dir", str(legacy), "--checkpoint-key", keyed)
    assert os.readlink(legacy / "latest.checkpoint") == "run-00000004.checkpoint"
    (legacy / "latest.checkpoint").unlink()
    shutil.copy(legacy / "run-00000001.checkpoint", legacy / "latest.checkpoint")  # not the newest run's
    kept = snapshot(legacy)
    result = ledger("collect", "-q", target, "--checkpoint-dir", str(legacy), "--checkpoint-key", keyed, expect=1)
    assert "latest.checkpoint is a file, not a link, and the newest run's checkpoint (run-00000004.checkpoint) does " \
           "not hold its bytes: move it aside" in result.output
    assert snapshot(legacy) == kept


def test_a_checkpoint_without_its_key_pins_nothing_and_is_refused(registry, pusher, ledger, ns, keyed, tmp_path):
    collect_twice(ledger, registry, pusher, ns)
    pinned = tmp_path / "head.checkpoint"
    pinned.write_text(ledger("checkpoint", "--key", keyed).output)
    for args in (["verify", "--expect", str(pinned)], ["verify", "--expect", str(tmp_path)],
                 ["prove", "--consistency", str(pinned), "3"], ["prove", "--consistency", "1", str(pinned)]):
        result = ledger(*args, expect=2)
        assert "a checkpoint needs --key PUBLIC" in result.output, args
        assert "Error: " + ("--expect" if args[0] == "verify" else "--consistency") in result.output
        assert ("EVENT_ID:HASH needs none" in result.output) == (args[0] == "verify"), args  # prove takes sizes
    head = ledger.rows("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1")[0]
    assert "1 pin hold" in ledger("verify", "--expect", f"{head['id']}:{head['hash']}").output  # needs no key
    assert json.loads(ledger("prove", "--consistency", "1", "3").output)["new_size"] == 3


def test_a_ledger_that_does_not_verify_is_not_signed(registry, pusher, ledger, ns, keyed):
    collect_twice(ledger, registry, pusher, ns)
    tamper(ledger.path, "UPDATE event_log SET created = '1999-01-01T00:00:00Z' WHERE id = 2")
    result = ledger("checkpoint", "--key", keyed, expect=1)
    assert result.output == (f"Error: {ledger.path}: TAMPERED: event 2: content does not match its hash (the row was "
                             "edited, or an event before it was replaced); a ledger that does not verify is not "
                             "signed\n")
