"""Witnesses: another party's signature that it saw the ledger's checkpoint, and that it extends every one
before it (c2sp.org/tlog-witness, c2sp.org/tlog-cosignature).

A cosignature is a signed-note line `— <witness name> base64(key ID || u64 BE timestamp || Ed25519
signature)` over "cosignature/v1\\ntime <timestamp>\\n" + the checkpoint's note text; the key ID is
SHA-256(name || 0x0A || 0x04 || public key)[:4], and keys are written like the log's with type 0x04:
`<name>+<8 hex key ID>+<base64(0x04 || key)>` (and `PRIVATE+KEY+...` with the seed).

`Witness` is the whole of a witness: a state file (SQLite, its own) with the last cosigned tree of each
log it knows, and `add_checkpoint`, which answers POST <prefix>/add-checkpoint as the spec says (400 a
malformed request, 404 an unknown origin, 403 no trusted log signature, 409 an old size that is not the
witness's, with its size as text/x.tlog.size, or a different root at that size, 422 a consistency proof
that does not verify, 200 the cosignature). `request_cosignatures` is the log's side.
"""

import contextlib
import http.server
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import checkpoint as notes
from . import merkle
from .checkpoint import CheckpointError, _b64, _shown, _unb64, _valid_name

COSIGNATURE = 0x04  # the signed-note signature type of a cosignature/v1 key
MAX_PROOF = 63  # consistency proof lines a client may send
MAX_REQUEST = notes.MAX_NOTE_BYTES + 16 * 1024  # a checkpoint, an old line and 63 proof lines fit well within
SIZE_TYPE = "text/x.tlog.size"
_SIGNER_PREFIX = "PRIVATE+KEY+"
_DASH = "\u2014 "


class WitnessError(Exception):
    """A witness that did not cosign, or a key or state file that cannot be used; one line."""


def cosigner_key_id(name, public_key):
    return sha256(name.encode("utf-8") + b"\n" + bytes([COSIGNATURE]) + public_key).digest()[:4]


def _message(body, timestamp):
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode("utf-8")


@dataclass(frozen=True)
class CosignerVerifier:
    """A witness's public key: checks its cosignatures."""

    name: str
    key_id: bytes
    public_key: bytes

    def text(self):
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([COSIGNATURE]) + self.public_key)}"

    def timestamp(self, body, signature):
        """The time of this witness's cosignature (the signature line's bytes after the key ID) on the note
        text `body`, or None if it does not verify."""
        if len(signature) != 8 + 64:
            return None
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp >= 2**63:
            return None
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature[8:], _message(body, timestamp))
        except InvalidSignature:
            return None
        return timestamp


@dataclass(frozen=True)
class Cosigner:
    """A witness's private key; the seed stays out of repr."""

    name: str
    key_id: bytes
    seed: bytes = field(repr=False)

    @property
    def verifier(self):
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return CosignerVerifier(self.name, self.key_id, public)

    def text(self):
        return f"{_SIGNER_PREFIX}{self.name}+{self.key_id.hex()}+{_b64(bytes([COSIGNATURE]) + self.seed)}"

    def cosign(self, body, timestamp=None):
        """The cosignature line (ending in LF) on the checkpoint note text `body`."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = Ed25519PrivateKey.from_private_bytes(self.seed).sign(_message(body, timestamp))
        return f"{_DASH}{self.name} {_b64(self.key_id + timestamp.to_bytes(8, 'big') + signature)}\n"


def _fields(text, what):
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
        raise WitnessError(f"not {what}: expected <name>+<8 hex key ID>+<base64 key>")
    name, hex_id, encoded = parts
    key = _unb64(encoded)
    if key is None or len(key) != 33 or key[0] != COSIGNATURE:
        raise WitnessError(f"{what} {_shown(name)}+{_shown(hex_id)} is not a cosignature/v1 key (type 0x04 and 32 "
                           "bytes, in base64)")
    return name, hex_id, key[1:]


def parse_cosigner_verifier(text):
    name, hex_id, public = _fields(text, "a witness key")
    if cosigner_key_id(name, public).hex() != hex_id:
        raise WitnessError(f"the witness key {_shown(name)}+{_shown(hex_id)} is damaged: its key ID does not match")
    return CosignerVerifier(name, bytes.fromhex(hex_id), public)


def parse_cosigner(text):
    if not text.startswith(_SIGNER_PREFIX):
        raise WitnessError(f"not a witness signer key: expected {_SIGNER_PREFIX}<name>+<key ID>+<base64 key>")
    name, hex_id, seed = _fields(text[len(_SIGNER_PREFIX):], "a witness signer key")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    if cosigner_key_id(name, public).hex() != hex_id:
        raise WitnessError(f"the witness signer key {_shown(name)}+{hex_id} is damaged: its key ID does not match")
    return Cosigner(name, bytes.fromhex(hex_id), seed)


def _read_text(path_or_text, what):
    if os.path.isfile(path_or_text):
        try:
            with open(path_or_text, "rb") as handle:
                return handle.read(4097).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise WitnessError(f"cannot read the {what} {path_or_text}: {getattr(error, 'strerror', None) or error}"
                               ) from None
    return path_or_text


def load_cosigner_verifier(path_or_text):
    """A witness's public key, from a file or as its text."""
    return parse_cosigner_verifier(_read_text(path_or_text, "witness key"))


def load_cosigner(path):
    try:
        return parse_cosigner(_read_text(path, "witness signer key"))
    except WitnessError as error:
        raise WitnessError(f"{path}: {error}") from None


def write_new_key(path, name):
    """A new witness key in `path` (0600) and its public key in `path.pub`; never overwrites."""
    if not _valid_name(name):
        raise WitnessError(f"invalid witness name {_shown(name)!r}: non-empty, without spaces or '+'")
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    cosigner = Cosigner(name, cosigner_key_id(name, public), seed)
    try:
        notes._create(Path(path), cosigner.text(), private=True)
        try:
            notes._create(Path(f"{path}.pub"), cosigner.verifier.text(), private=False)
        except CheckpointError:
            os.unlink(path)
            raise
    except CheckpointError as error:
        raise WitnessError(str(error).replace("a key", "a witness key")) from None
    return cosigner.verifier


def cosignatures(note, verifiers):
    """{witness name: timestamp} of the given witnesses whose cosignature on the note verifies; lines of
    other keys are ignored, as the spec asks."""
    body, signatures = notes._split_note(notes._decode(note))
    found = {}
    for signature in signatures:
        for verifier in verifiers:
            if (signature.name, signature.key_id) == (verifier.name, verifier.key_id):
                timestamp = verifier.timestamp(body, signature.signature)
                if timestamp is not None:
                    found[verifier.name] = timestamp
    return found


# -- the witness -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,          -- the log's checkpoint origin line
    size INTEGER NOT NULL,            -- the tree size of the latest checkpoint cosigned for it
    root BLOB NOT NULL,               -- its root hash
    checkpoint TEXT NOT NULL,         -- that checkpoint, as submitted
    cosigned_at INTEGER NOT NULL      -- the cosignature's timestamp
);
"""


def parse_request(body):
    """(old size, proof hashes, checkpoint note) of an add-checkpoint body, or a 400 Answer."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Answer(400, "the request is not UTF-8")
    head, blank, note = text.partition("\n\n")
    lines = head.split("\n")
    if not blank or not lines[0].startswith("old "):
        return Answer(400, "expected an old size line, proof lines, a blank line, then the checkpoint")
    old = lines[0][4:]
    if not notes._SIZE.fullmatch(old) or int(old) > notes.MAX_SIZE:
        return Answer(400, "the old size is not a decimal number without leading zeros")
    proof = [_unb64(line) for line in lines[1:]]
    if len(proof) > MAX_PROOF or any(node is None or len(node) != merkle.HASH_SIZE for node in proof):
        return Answer(400, f"the proof lines are not at most {MAX_PROOF} base64 SHA-256 hashes")
    return int(old), proof, note


class Witness:
    """A witness's state and its add-checkpoint. `logs`: {origin: the log's verifier key}."""

    def __init__(self, state_path, cosigner, logs):
        self.cosigner = cosigner
        self.logs = dict(logs)
        self.lock = threading.Lock()
        try:
            self.conn = sqlite3.connect(state_path, isolation_level=None, check_same_thread=False, timeout=30)
            self.conn.executescript(_SCHEMA)
            self.conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as error:
            raise WitnessError(f"{state_path}: cannot use it as the witness's state ({error})") from None

    def close(self):
        self.conn.close()

    def add_checkpoint(self, body):
        request = parse_request(body)
        if isinstance(request, Answer):
            return request
        old, proof, note = request
        try:
            claimed, _ = notes.parse(note)
        except CheckpointError as error:
            return Answer(400, f"not a checkpoint: {error}")
        verifier = self.logs.get(claimed.origin)
        if verifier is None:
            return Answer(404, f"unknown log {_shown(claimed.origin)!r}")
        try:
            checkpoint = notes.verify(note, verifier, claimed.origin)
        except CheckpointError as error:
            return Answer(403, f"no signature by the log's key verifies: {error}")
        if old > checkpoint.size:
            return Answer(400, f"the old size {old} is larger than the checkpoint's {checkpoint.size}")
        body_text = checkpoint.note_text()
        with self.lock, self._transaction():
            row = self.conn.execute("SELECT size, root FROM logs WHERE origin = ?", [checkpoint.origin]).fetchone()
            size, root = row if row else (0, merkle.EMPTY_ROOT)
            if old != size:
                return Answer(409, f"{size}\n", SIZE_TYPE)
            if old == checkpoint.size and root != checkpoint.root:
                return Answer(409, f"{size}\n", SIZE_TYPE)
            if not merkle.verify_consistency(old, checkpoint.size, root, checkpoint.root, proof):
                return Answer(422, f"the consistency proof from {old} to {checkpoint.size} does not verify")
            timestamp = int(time.time())
            self.conn.execute("INSERT OR REPLACE INTO logs (origin, size, root, checkpoint, cosigned_at) "
                              "VALUES (?, ?, ?, ?, ?)", [checkpoint.origin, checkpoint.size, checkpoint.root,
                                                         note, timestamp])
        return Answer(200, self.cosigner.cosign(body_text, timestamp))

    @contextlib.contextmanager
    def _transaction(self):
        """The check and the new state in one write transaction: two requests never both pass one old size."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def handler_for(witness):
    class Handler(http.server.BaseHTTPRequestHandler):
        """POST /add-checkpoint, bounded; anything else 404 or 405."""

        timeout = 10  # a client that stops sending is dropped
        server_version = "ledger-witness"
        protocol_version = "HTTP/1.1"  # keep-alive, as the spec asks: every answer has a Content-Length

        def do_POST(self):
            length = self.headers.get("Content-Length")
            refused = None
            if self.path != "/add-checkpoint":
                refused = Answer(404, "not found")
            elif length is None or not length.isascii() or not length.isdigit():
                refused = Answer(411, "a Content-Length is needed")
            elif int(length) > MAX_REQUEST:
                refused = Answer(413, f"the request is larger than {MAX_REQUEST} bytes")
            if refused:
                self.close_connection = True  # its body, unread, must not be taken for the next request
                return self._answer(refused)
            body = self.rfile.read(int(length))
            if len(body) != int(length):
                return None
            return self._answer(witness.add_checkpoint(body))

        def do_GET(self):
            self._answer(Answer(405 if self.path == "/add-checkpoint" else 404, "add-checkpoint takes a POST"))

        def _answer(self, answer):
            data = answer.body.encode("utf-8")
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            pass
    return Handler


def server(witness, host, port):
    """A threading HTTP server of the witness (serve_forever it)."""
    return http.server.ThreadingHTTPServer((host, port), handler_for(witness))


# -- the log's side ---------------------------------------------------------------------------------------


def _verifies(note, verifiers):
    """Whether a cosignature of `verifiers` on the note verifies; a line that is no signature line at all
    (from a hostile or broken witness) is one that does not."""
    try:
        return bool(cosignatures(note, verifiers))
    except CheckpointError:
        return False


def request_cosignatures(note, leaves, url, verifiers, transport):
    """The cosignature lines of the witness at `url` (its submission prefix) on the signed checkpoint `note`
    of the tree of `leaves`: asked with old size 0, then, on 409, with the size the witness has and the
    consistency proof from it. Only lines of `verifiers` that verify are kept; none is a WitnessError."""
    from .terminal import printable
    from .transport import TransportError
    checkpoint, _ = notes.parse(note)
    endpoint = url.rstrip("/") + "/add-checkpoint"
    old, asked = 0, set()
    while True:
        asked.add(old)
        proof = merkle.consistency_proof(leaves, old) if old else []
        body = f"old {old}\n" + "".join(_b64(node) + "\n" for node in proof) + "\n" + note
        try:
            response = transport.request("POST", endpoint, {"Content-Type": "text/plain; charset=utf-8"},
                                         body.encode("utf-8"))
            answer = response.read(MAX_REQUEST, "answer")
        except TransportError as error:
            raise WitnessError(f"witness {url}: {error}") from None
        text = answer.decode("utf-8", "replace")
        if response.status == 409 and (response.header("Content-Type") or "").startswith(SIZE_TYPE):
            size = text[:-1] if text.endswith("\n") else None
            if size is None or not notes._SIZE.fullmatch(size) or int(size) > notes.MAX_SIZE:
                raise WitnessError(f"witness {url}: 409 without a tree size")
            size = int(size)
            if size > checkpoint.size:
                raise WitnessError(f"witness {url} has cosigned a tree of {size} events, larger than this checkpoint's "
                                   f"{checkpoint.size}: the ledger was rolled back (or forked) since")
            if size in asked:
                raise WitnessError(f"witness {url} has cosigned another tree of {size} events: the ledger was "
                                   "rewritten (or forked) since")
            old = size
            continue
        if response.status != 200:
            raise WitnessError(f"witness {url}: {response.status} {printable(text.strip()[:200])}")
        lines = [line + "\n" for line in text.split("\n") if line.startswith(_DASH)]
        kept = [line for line in lines if _verifies(note + line, verifiers)]
        if not kept:
            raise WitnessError(f"witness {url}: no cosignature by a given --witness-key verifies")
        return kept
