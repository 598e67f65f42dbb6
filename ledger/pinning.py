"""Anchor the ledger outside its file: signed checkpoints of its head, checked pins, Merkle proofs.

The Merkle tree's leaves are the events in id order, each leaf's data the event's 32-byte chain
hash (RFC 9162 hashing, ledger/merkle.py). A checkpoint (ledger/checkpoint.py, the signed-note
format of Go's checksum database and CT witnesses) states the tree size and root, plus one
extension line naming the last run seal, so it pins the run records as well as the events.
"""

import base64
import contextlib
import fcntl
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as notes
from . import merkle, store
from .checkpoint import CheckpointError
from .paths import read_bytes

LATEST = "latest.checkpoint"
_MAX_ID = 2**63 - 1
_RUN_FILE = re.compile(r"run-[0-9]{8,19}\.checkpoint")
SEAL_LINE = re.compile(r"seal ([1-9][0-9]{0,17}) ([A-Za-z0-9+/]{43}=)")
_PIN = re.compile(r"([1-9][0-9]{0,17}):([0-9a-f]{64})")


class PinError(Exception):
    """A pin that does not hold, or cannot be read; one line."""


def leaves(db, size=None):
    """The first `size` events' chain hashes (all of them by default), in id order."""
    query = "SELECT hash FROM event_log ORDER BY id" + (" LIMIT ?" if size is not None else "")
    return [row[0] for row in db.execute(query, [size] if size is not None else [])]


def head(db, origin, verified=None):
    """The ledger's tree head as an unsigned Checkpoint, its events and last seal read in one snapshot (read
    apart, a run appended in between would give the tree a seal line of another tree). With `verified`, a
    store.verify report, it is the head that was verified: runs appended since are left out, and a
    verified event or seal changed since is a PinError."""
    last_seal = (verified.seal[0] if verified.seal else 0) if verified else _MAX_ID
    with store.snapshot(db):
        hashes = leaves(db, verified.events if verified else None)
        seal = db.execute("SELECT id, hash FROM run_seals WHERE id <= ? ORDER BY id DESC LIMIT 1",
                          [last_seal]).fetchone()
    if verified and ((hashes[-1].hex() if hashes else None, seal[1] if seal else None)
                     != (verified.head_hash, verified.seal[2] if verified.seal else None)):
        raise PinError("the ledger changed while it was verified (its head or last seal differs): verify it")
    extensions = (f"seal {seal[0]} {base64.b64encode(seal[1]).decode()}",) if seal else ()
    return notes.Checkpoint(origin, len(hashes), merkle.root(hashes), extensions)


def signed_head(db, signer, origin=None):
    """The signed head of a ledger that verifies (`ledger verify`'s checks, then the head it verified): a
    checkpoint vouches for the history it pins, so a ledger that fails them is a PinError. Its origin is the
    key's name unless `origin` says otherwise."""
    report = store.verify(db)
    if not report.ok:
        raise PinError(f"TAMPERED: {report.problems[0]}; a ledger that does not verify is not signed")
    return notes.sign(head(db, origin or signer.name, verified=report), signer)


def write_checkpoint(directory, db, signer, run_id):
    """Write this ledger's signed head as DIR/run-RUN.checkpoint, once it is checked to extend the
    checkpoints already in DIR, then point DIR/latest.checkpoint (a symlink) at it. Returns the run's file.

    No checkpoint file is ever overwritten: a run's file is written aside and hard-linked into place
    (whole, and only if that name is free), and latest.checkpoint is a link, replaced atomically, whose
    target keeps its bytes. A head that does not extend the checkpoints there (the ledger was rolled back
    or rewritten since) is a PinError and DIR is left as it was: its files are the evidence. The
    directory is locked meanwhile, so two writers' checks and links follow one another."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        previous = _previous(directory, signer.verifier)
        with store.snapshot(db):  # the head written and the check that it extends the previous one: one snapshot
            checkpoint = head(db, signer.name)
            broken = check_pins(db, previous)
        if broken:
            raise PinError(f"the ledger does not extend the checkpoints already there, so it was rolled back or "
                           f"rewritten since: {broken}")
        target = directory / f"run-{run_id:08d}.checkpoint"
        _create(target, notes.sign(checkpoint, signer))
        _link_latest(directory, target.name)
    return target


@contextlib.contextmanager
def _locked(directory):
    handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _previous(directory, verifier):
    """The pins a new checkpoint in `directory` must hold: the one latest.checkpoint links to, which was
    checked to extend every one before it when it was written, so it stands for them all; in a directory
    without that link (written before links were, or by hand), every checkpoint in it."""
    latest = directory / LATEST
    if latest.is_symlink() and _RUN_FILE.fullmatch(os.readlink(latest)):
        if not latest.exists():
            raise PinError(f"{latest} links to {os.readlink(latest)}, which is gone: checkpoints were deleted")
        return [_checkpoint_pin(latest, verifier, verifier.name)]
    if latest.exists() and not latest.is_symlink():
        _check_copy(directory, latest)
    return read_pins([str(directory)], verifier, verifier.name) if any(directory.glob("*.checkpoint")) else []


def _check_copy(directory, latest):
    """A latest.checkpoint that is a file of its own (as written before it was a link) is replaced by the
    link only when the newest run's checkpoint holds the same bytes: else it is evidence of its own."""
    runs = sorted((int(path.name[4:-11]), path) for path in directory.glob("run-*.checkpoint")
                  if _RUN_FILE.fullmatch(path.name))
    if not runs or _read(runs[-1][1]) != _read(latest):
        newest = f" ({runs[-1][1].name})" if runs else ""
        raise PinError(f"{latest} is a file, not a link, and the newest run's checkpoint{newest} does not hold its "
                       "bytes: move it aside (nothing in the directory is overwritten)")


def read_note(path):
    """A checkpoint file's bytes, bounded (a larger one fails to parse); a PinError if it cannot be read."""
    return _read(path)


def _read(path):
    try:
        return read_bytes(path, notes.MAX_NOTE_BYTES)  # a FIFO planted in the directory never blocks
    except OSError as error:
        raise PinError(f"{path}: cannot read ({error.strerror or error})") from None


def _create(path, text):
    """Write `path` whole (a reader never sees half of it), and only if no file has that name."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)
    except FileExistsError:
        raise PinError(f"{path} already exists: a checkpoint file is never overwritten") from None
    finally:
        os.unlink(temporary)


def _link_latest(directory, name):
    """Point latest.checkpoint at `name` (relative, so the directory can be copied or moved): a new link
    renamed over the old one, so a reader always finds a whole link."""
    temporary = directory / ".latest.tmp"  # not *.checkpoint: never read as a pin; one writer at a time
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(name, temporary)
    os.replace(temporary, directory / LATEST)


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


def is_event_pin(text):
    """EVENT_ID:HASH: a pin that needs no key (anything else names checkpoint files, which do)."""
    return _PIN.fullmatch(text.strip()) is not None


def read_pins(expected, verifier=None, origin=None, witnesses=None):
    """Pins from EVENT_ID:HASH texts, checkpoint files and directories of them (`*.checkpoint`). A
    checkpoint counts only when `verifier`'s signature on it checks: anyone can write an unsigned one; with
    `witnesses`, (witness verifier keys, threshold), only when that many of them cosigned it too."""
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
        pins += [_checkpoint_pin(file, verifier, origin, witnesses) for file in files]
    return sorted(pins, key=lambda pin: pin.size)


def _checkpoint_pin(path, verifier, origin, witnesses=None):
    if verifier is None:
        raise PinError(f"{path}: a checkpoint needs the verifier key that must have signed it")
    try:
        raw = read_bytes(path, notes.MAX_NOTE_BYTES)
    except OSError as error:
        raise PinError(f"{path}: cannot read ({error.strerror}); give a checkpoint file or EVENT_ID:HASH") from None
    try:
        found = notes.verify(raw, verifier, origin)
    except CheckpointError as error:
        raise PinError(f"{path}: {error}") from None
    if witnesses:
        _check_cosigned(path, raw, *witnesses)
    seal = next((SEAL_LINE.fullmatch(line) for line in found.extensions if SEAL_LINE.fullmatch(line)), None)
    return Pin(str(path), found.size, root=found.root, seal=int(seal.group(1)) if seal else None,
               seal_hash=base64.b64decode(seal.group(2)) if seal else None)


def _check_cosigned(path, raw, verifiers, threshold):
    """A witnessed pin: at least `threshold` of the witnesses' cosignatures on it verify (c2sp.org/tlog-cosignature)."""
    from .witness import cosignatures
    found = cosignatures(raw, verifiers)
    if len(found) < threshold:
        names = ", ".join(sorted(found)) or "none"
        raise PinError(f"{path}: cosigned by {len(found)} of the {len(verifiers)} witnesses given ({names}), "
                       f"{threshold} needed")


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
