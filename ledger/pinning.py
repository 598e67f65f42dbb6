"""Anchor the ledger outside its file: signed checkpoints of its head, checked pins, Merkle proofs.

The Merkle tree's leaves are the events in id order, each leaf's data the event's 32-byte chain
hash (RFC 9162 hashing, ledger/merkle.py). A checkpoint (ledger/checkpoint.py, the signed-note
format of Go's checksum database and CT witnesses) states the tree size and root, plus one
extension line naming the last run seal, so it pins the run records as well as the events.
"""

import base64
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as notes
from . import merkle, store
from .checkpoint import CheckpointError
from .paths import read_bytes

SEAL_LINE = re.compile(r"seal ([1-9][0-9]{0,17}) ([A-Za-z0-9+/]{43}=)")
_PIN = re.compile(r"([1-9][0-9]{0,17}):([0-9a-f]{64})")


class PinError(Exception):
    """A pin that does not hold, or cannot be read; one line."""


def leaves(db, size=None):
    """The first `size` events' chain hashes (all of them by default), in id order."""
    query = "SELECT hash FROM event_log ORDER BY id" + (" LIMIT ?" if size is not None else "")
    return [row[0] for row in db.execute(query, [size] if size is not None else [])]


def head(db, origin):
    """The ledger's current tree head as an unsigned Checkpoint."""
    hashes = leaves(db)
    seal = db.execute("SELECT id, hash FROM run_seals ORDER BY id DESC LIMIT 1").fetchone()
    extensions = (f"seal {seal[0]} {base64.b64encode(seal[1]).decode()}",) if seal else ()
    return notes.Checkpoint(origin, len(hashes), merkle.root(hashes), extensions)


def signed_head(db, signer):
    return notes.sign(head(db, signer.name), signer)


def write_checkpoint(directory, db, signer, run_id):
    """Write this ledger's signed head as DIR/run-RUN.checkpoint and DIR/latest.checkpoint, each
    atomically (a reader never sees half a file). Returns the run's file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = signed_head(db, signer)
    target = directory / f"run-{run_id:08d}.checkpoint"
    for path in (target, directory / "latest.checkpoint"):
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".checkpoint-")
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    return target


@dataclass(frozen=True)
class Pin:
    """What the ledger must still contain: its first `size` events hashing to `root` (a checkpoint), or
    event `event_id` having `event_hash` (EVENT_ID:HASH), and maybe seal `seal` with `seal_hash`."""

    source: str
    size: int
    root: bytes | None = None
    event_hash: bytes | None = None
    seal: int | None = None
    seal_hash: bytes | None = None


def read_pins(expected, verifier=None, origin=None):
    """Pins from EVENT_ID:HASH texts, checkpoint files and directories of them (`*.checkpoint`).
    With a verifier, a checkpoint counts only if its signature checks."""
    pins = []
    for text in expected:
        match = _PIN.fullmatch(text.strip())
        if match:
            pins.append(Pin(text, int(match.group(1)), event_hash=bytes.fromhex(match.group(2))))
            continue
        path = Path(text)
        files = sorted(path.glob("*.checkpoint")) if path.is_dir() else [path]
        if not files:
            raise PinError(f"{text}: no *.checkpoint files in this directory")
        pins += [_checkpoint_pin(file, verifier, origin) for file in files]
    return sorted(pins, key=lambda pin: pin.size)


def _checkpoint_pin(path, verifier, origin):
    try:
        raw = read_bytes(path, notes.MAX_NOTE_BYTES)
    except OSError as error:
        raise PinError(f"{path}: cannot read ({error.strerror}); give a checkpoint file or EVENT_ID:HASH") from None
    try:
        found = notes.verify(raw, verifier, origin) if verifier else notes.parse(raw)[0]
    except CheckpointError as error:
        raise PinError(f"{path}: {error}") from None
    seal = next((SEAL_LINE.fullmatch(line) for line in found.extensions if SEAL_LINE.fullmatch(line)), None)
    return Pin(str(path), found.size, root=found.root, seal=int(seal.group(1)) if seal else None,
               seal_hash=base64.b64decode(seal.group(2)) if seal else None)


def check_pins(db, pins):
    """The first pin the ledger no longer holds, as a problem naming where history differs, or None.

    A pin holds when the ledger still has the pinned prefix and extends it. Pins are checked oldest
    first; with several (a directory of per-run checkpoints), the last that holds and the first that
    does not bound where the history was rewritten."""
    events = db.execute("SELECT count(*) FROM event_log").fetchone()[0]
    sizes = [pin.size for pin in pins if pin.root is not None and pin.size <= events]
    roots = merkle.prefix_roots(leaves(db, max(sizes)), sizes) if sizes else {}
    held = 0
    for pin in pins:
        if pin.size > events:
            return (f"{pin.source}: pins {pin.size} events, the ledger has {events}: events "
                    f"{events + 1}..{pin.size} were cut from the end")
        if pin.root is not None:
            if roots[pin.size] != pin.root:
                return (f"{pin.source}: the first {pin.size} events no longer hash to the pinned root: an event "
                        f"among {held + 1}..{pin.size} was rewritten (events up to {held} still match)")
        if pin.event_hash is not None:
            found = db.execute("SELECT hash FROM event_log WHERE id = ?", [pin.size]).fetchone()
            if found is None or found[0] != pin.event_hash:
                return (f"{pin.source}: event {pin.size} no longer has the pinned hash: an event among "
                        f"{held + 1}..{pin.size} was rewritten (events up to {held} still match)")
        held = pin.size
    for pin in pins:  # events first: where they differ says more than a run record that differs
        if pin.seal is None:
            continue
        seal = db.execute("SELECT hash FROM run_seals WHERE id = ?", [pin.seal]).fetchone()
        if seal is None:
            return f"{pin.source}: pins run seal {pin.seal}, which the ledger no longer has (runs were cut)"
        if seal[0] != pin.seal_hash:
            return (f"{pin.source}: run seal {pin.seal} differs from the pinned one: the records of a run up to "
                    "that seal (its row, coverage, errors, manifests) were rewritten")
    return None


def inclusion(db, event_id, size=None):
    """An RFC 9162 inclusion proof of one event in the tree of the first `size` events (now: all)."""
    hashes = leaves(db, size)
    if size is not None and len(hashes) < size:
        raise PinError(f"no tree of {size} events: the ledger has {len(hashes)}")
    index = db.execute("SELECT count(*) FROM event_log WHERE id < ?", [event_id]).fetchone()[0]
    found = db.execute("SELECT hash FROM event_log WHERE id = ?", [event_id]).fetchone()
    if found is None or index >= len(hashes):
        raise PinError(f"event {event_id} is not in a tree of {len(hashes)} events")
    return {"event_id": event_id, "leaf_index": index, "tree_size": len(hashes),
            "event_hash": found[0].hex(), "leaf_hash": _b64(merkle.leaf_hash(found[0])),
            "root": _b64(merkle.root(hashes)), "proof": [_b64(node) for node in merkle.inclusion_proof(hashes, index)]}


def consistency(db, old, new):
    """An RFC 9162 consistency proof between two trees, each (size, pinned root or None); a pinned root
    the ledger's tree of that size no longer has is refused (the ledger was rewritten since)."""
    (old_size, old_root), (new_size, new_root) = old, new
    hashes = leaves(db, new_size)
    if not 0 <= old_size <= new_size <= len(hashes):
        raise PinError(f"no consistency proof from {old_size} to {new_size} events: the ledger has {len(hashes)}")
    roots = merkle.prefix_roots(hashes, [old_size, new_size])
    for size, pinned in ((old_size, old_root), (new_size, new_root)):
        if pinned is not None and roots[size] != pinned:
            raise PinError(f"the ledger's tree of {size} events is not the pinned one: it was rewritten since")
    return {"old_size": old_size, "new_size": new_size, "old_root": _b64(roots[old_size]),
            "new_root": _b64(roots[new_size]),
            "proof": [_b64(node) for node in merkle.consistency_proof(hashes, old_size)]}


def _b64(data):
    return base64.b64encode(data).decode()


def verify(db, pins=()):
    """`store.verify`, then (if the ledger holds together) that every pin still holds: a problem more if not."""
    report = store.verify(db)
    broken = check_pins(db, pins) if pins and report.ok else None
    if broken:
        report.problems.append(broken)
    return report
