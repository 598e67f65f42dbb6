"""Signed checkpoints: the ledger's head in the transparency-log format, so others can pin and check it.

A checkpoint (c2sp.org/tlog-checkpoint) is the note text

    <origin>
    <tree size>
    <base64 Merkle root>
    [extension lines, carried opaquely]

signed as a c2sp.org/signed-note: the text, a blank line, then one line per signature,
`— <key name> <base64(4-byte key ID || Ed25519 signature over the text)>`. It is the format of Go's
checksum database (sum.golang.org), Sigstore's Rekor and CT witnesses, and the key texts are Go's
(golang.org/x/mod/sumdb/note): a verifier key `<name>+<8 hex key ID>+<base64(0x01 || public key)>`
and a signer key `PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>`, with
key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4].

Every failure is a CheckpointError with a one-line message for the user.
"""

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .paths import read_bytes

MAX_NOTE_BYTES = 64 * 1024  # read at most this + 1 bytes of a checkpoint file
MAX_SIGNATURES = 100  # as Go's note.Open; the spec asks verifiers to accept at least 16
MAX_SIZE = 2**63 - 1  # Go's and transparency-dev's tree sizes are 64-bit
ED25519 = 0x01  # the signature type byte of c2sp.org/signed-note
_KEY_FILE_BYTES = 4096
_SIGNER_PREFIX = "PRIVATE+KEY+"
_DASH = "\u2014 "  # em dash, space: how a signature line starts
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")  # ASCII decimal, no leading zeros ([0-9] is not \d)
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # signed notes allow no ASCII control character but LF


class CheckpointError(ValueError):
    """A checkpoint, signed note or key that cannot be used; the message is one line for the user."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    """Standard base64 in its one canonical spelling, so that no changed character decodes the same."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return data if _b64(data) == text else None


def _shown(text: str) -> str:
    """Untrusted text fit for a one-line message: bounded, without control or bidi characters."""
    cut = text[:64]
    return "".join(c if c.isprintable() else "?" for c in cut) + ("…" if len(cut) < len(text) else "")


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a file name decoded with surrogateescape
        return None


def _valid_name(name: str) -> bool:
    """Key names are non-empty, without spaces or `+` (which separates the fields of a key text)."""
    return (bool(name) and "+" not in name and _utf8(name) is not None
            and not any(c.isspace() or c < " " for c in name))


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 key: it ties a signature line to a (name, key) pair."""
    return sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A public key and its name: what checks a checkpoint, without being able to sign one."""

    name: str
    key_id: bytes
    public_key: bytes

    def text(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519]) + self.public_key)}"

    def verifies(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A private key and its name. The seed stays out of repr, so it never lands in a log or traceback."""

    name: str
    key_id: bytes
    seed: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> "Signer":
        if not _valid_name(name):
            raise CheckpointError(f"invalid key name {_shown(name)!r}: it must be non-empty, without spaces or '+'")
        return cls(name, key_id(name, _public_key(seed)), seed)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, _public_key(self.seed))

    def text(self) -> str:
        return f"{_SIGNER_PREFIX}{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519]) + self.seed)}"

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


def _public_key(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def _key_fields(text: str, what: str) -> tuple[str, str, bytes]:
    """Split `<name>+<key ID>+<base64(0x01 || key)>`: the name holds no `+`, the base64 may."""
    parts = text.split("+", 2)
    if len(parts) != 3 or not _valid_name(parts[0]) or not _KEY_ID.fullmatch(parts[1]):
        raise CheckpointError(f"not {what}: expected <name>+<8 hex key ID>+<base64 key>")
    name, hex_id, encoded = parts
    key = _unb64(encoded)
    if key is None or len(key) != 33 or key[0] != ED25519:
        raise CheckpointError(f"{what} {_shown(name)}+{hex_id} is not an Ed25519 key "
                              "(type 0x01 and 32 bytes, in base64)")
    return name, hex_id, key[1:]


def parse_verifier(text: str) -> Verifier:
    """A verifier key text, as `ledger checkpoint --new-key` writes to FILE.pub and Go's note package reads."""
    if text.startswith(_SIGNER_PREFIX):
        raise CheckpointError("this is a private signer key: give its public verifier key (the .pub file)")
    name, hex_id, public_key = _key_fields(text, "a verifier key")
    if key_id(name, public_key).hex() != hex_id:
        raise CheckpointError(f"the verifier key {_shown(name)}+{hex_id} is damaged: its key ID does not match its key")
    return Verifier(name, bytes.fromhex(hex_id), public_key)


def parse_signer(text: str) -> Signer:
    """A signer key text, as Go's note.GenerateKey writes it; its key ID must match the key it holds."""
    if not text.startswith(_SIGNER_PREFIX):
        raise CheckpointError(f"not a signer key: expected {_SIGNER_PREFIX}<name>+<8 hex key ID>+<base64 key>")
    name, hex_id, seed = _key_fields(text[len(_SIGNER_PREFIX):], "a signer key")
    signer = Signer.from_seed(name, seed)
    if signer.key_id.hex() != hex_id:
        raise CheckpointError(f"the signer key {_shown(name)}+{hex_id} is damaged: its key ID does not match its key")
    return signer


def new_key(name: str) -> tuple[str, str]:
    """A fresh Ed25519 key pair as (signer key text, verifier key text)."""
    signer = Signer.from_seed(name, Ed25519PrivateKey.generate().private_bytes_raw())
    return signer.text(), signer.verifier.text()


def write_new_key(path: str | os.PathLike, name: str) -> Verifier:
    """Write a new signer key to `path` (mode 0600) and its verifier key to `path.pub`; never overwrite.

    Both files are created exclusively, so an existing key (or a symlink planted in its place) is
    never replaced; if the public half cannot be written, the private half is removed again.
    """
    signer_text, verifier_text = new_key(name)
    private = Path(path)
    public = private.with_name(private.name + ".pub")
    _create(private, signer_text, private=True)
    try:
        _create(public, verifier_text, private=False)
    except CheckpointError:
        private.unlink()
        raise
    return parse_verifier(verifier_text)


def _create(path: Path, text: str, private: bool) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    except FileExistsError:
        raise CheckpointError(f"{path} already exists: refusing to overwrite a key") from None
    except OSError as error:
        raise CheckpointError(f"cannot create {path}: {error.strerror}") from None
    try:
        if private:
            os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exactly owner-only
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    except OSError as error:
        path.unlink()
        raise CheckpointError(f"cannot write {path}: {error.strerror}") from None


def _read_key(path: str | os.PathLike) -> str:
    try:
        raw = read_bytes(path, _KEY_FILE_BYTES)
    except OSError as error:
        raise CheckpointError(f"cannot read the key file {path}: {error.strerror}") from None
    if len(raw) > _KEY_FILE_BYTES:
        raise CheckpointError(f"{path} is not a key file: larger than {_KEY_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a key file: not UTF-8 text") from None


def load_signer(path: str | os.PathLike) -> Signer:
    """The signer key in the file `path` (`ledger checkpoint --key FILE`)."""
    text = _read_key(path)
    try:
        return parse_signer(text)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None


def load_verifier(path_or_text: str | os.PathLike) -> Verifier:
    """A verifier key from a file, or given as the key text itself (`ledger verify --key PUBLIC`)."""
    if isinstance(path_or_text, str) and not os.path.exists(path_or_text):
        if "+" not in path_or_text:
            raise CheckpointError(f"no key file {path_or_text}, and it is not a verifier key text")
        return parse_verifier(path_or_text.strip())
    text = _read_key(path_or_text)
    try:
        return parse_verifier(text)
    except CheckpointError as error:
        raise CheckpointError(f"{path_or_text}: {error}") from None


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note, not yet checked."""

    name: str
    key_id: bytes
    signature: bytes


def _decode(note: bytes | str) -> str:
    """The note as text, bounded, valid UTF-8 and free of control characters but LF."""
    raw = note.encode("utf-8", "surrogatepass") if isinstance(note, str) else note
    if len(raw) > MAX_NOTE_BYTES:
        raise CheckpointError(f"the checkpoint is larger than {MAX_NOTE_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"malformed checkpoint: not UTF-8 (byte {error.start})") from None
    control = _CONTROL.search(text)
    if control:
        hint = " (Windows line endings?)" if control.group() == "\r" else ""
        raise CheckpointError(f"malformed checkpoint: control character U+{ord(control.group()):04X}{hint}")
    return text


def _split_note(text: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """The signed text (up to the last blank line, with its final LF) and the signature lines after it."""
    split = text.rfind("\n\n")
    body, block = text[:split + 1], text[split + 2:]
    if split < 0 or not block and "\n\n" not in body:
        raise CheckpointError("the checkpoint has no signature (no blank line and signature lines after its text)")
    if not block:
        raise CheckpointError("malformed checkpoint: a blank line after the signature lines")
    if not block.endswith("\n"):
        raise CheckpointError("malformed checkpoint: the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"malformed checkpoint: more than {MAX_SIGNATURES} signature lines")
    signatures = []
    for line in lines:
        name, space, encoded = line[len(_DASH):].partition(" ")
        signature = _unb64(encoded)
        if not (line.startswith(_DASH) and space and _valid_name(name) and signature and len(signature) > 4):
            raise CheckpointError(f"malformed checkpoint: {_shown(line)!r} is not a signature line "
                                  "(— <key name> <base64 key ID and signature>)")
        signatures.append(NoteSignature(name, signature[:4], signature[4:]))
    return body, tuple(signatures)


def sign_note(text: str, signer: Signer) -> str:
    """A signed note of `text` (which must end in LF) with one signature, as Go's note.Sign makes it."""
    if not text.endswith("\n"):
        raise CheckpointError("malformed checkpoint: the text to sign must end with a newline")
    data = _utf8(text)
    if data is None or _CONTROL.search(text):
        raise CheckpointError("malformed checkpoint: the text to sign is not UTF-8 without control characters")
    note = f"{text}\n{_DASH}{signer.name} {_b64(signer.key_id + signer.sign(data))}\n"
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise CheckpointError(f"the checkpoint would be larger than {MAX_NOTE_BYTES // 1024} KiB")
    return note


def open_note(note: bytes | str, verifier: Verifier) -> str:
    """The text of a signed note, once a signature by `verifier` checks (c2sp.org/signed-note rules).

    Signatures by other keys (another name or key ID) are ignored; every one by this key must verify.
    """
    body, signatures = _split_note(_decode(note))
    mine = [s for s in signatures if (s.name, s.key_id) == (verifier.name, verifier.key_id)]
    if not mine:
        wanted = f"{_shown(verifier.name)}+{verifier.key_id.hex()}"
        if any(s.name == verifier.name for s in signatures):
            raise CheckpointError(f"the checkpoint is signed by another key named {_shown(verifier.name)}, "
                                  f"not by the key given ({wanted})")
        others = ", ".join(f"{_shown(s.name)}+{s.key_id.hex()}" for s in signatures[:3])
        more = f" and {len(signatures) - 3} more" if len(signatures) > 3 else ""
        raise CheckpointError(f"the checkpoint is signed by another key ({others}{more}), not by {wanted}")
    data = body.encode("utf-8")
    if not all(verifier.verifies(data, s.signature) for s in mine):
        raise CheckpointError("the signature does not verify: the checkpoint was altered or signed by another key")
    return body


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log (origin), how many leaves, their Merkle root, and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("checkpoint extensions must be a tuple of lines")
        for line in (self.origin, *self.extensions):
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line) or _utf8(line) is None:
                raise CheckpointError(f"invalid checkpoint line {_shown(str(line))!r}: "
                                      "it must be non-empty UTF-8 without control characters")
        if type(self.size) is not int or not 0 <= self.size <= MAX_SIZE:
            raise CheckpointError(f"invalid checkpoint tree size {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != 32:
            raise CheckpointError("invalid checkpoint root: it must be 32 bytes")

    def note_text(self) -> str:
        """The signed text: origin, size, base64 root, extension lines, each ending in LF."""
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), _b64(self.root), *self.extensions))


def _parse_body(body: str) -> Checkpoint:
    lines = body[:-1].split("\n")
    if len(lines) < 3 or "" in lines:
        raise CheckpointError("malformed checkpoint: expected an origin, a tree size and a root hash line, "
                              "then only non-empty extension lines")
    origin, size, encoded, *extensions = lines
    if not _SIZE.fullmatch(size) or int(size) > MAX_SIZE:
        raise CheckpointError(f"malformed checkpoint: the tree size {_shown(size)!r} is not a decimal number "
                              "without leading zeros")
    root = _unb64(encoded)
    if root is None or len(root) != 32:
        raise CheckpointError("malformed checkpoint: the root hash is not 32 bytes of standard base64")
    return Checkpoint(origin, int(size), root, tuple(extensions))


def sign(checkpoint: Checkpoint, signer: Signer) -> str:
    """The whole signed checkpoint, ending in LF: write it out as is (no extra newline)."""
    return sign_note(checkpoint.note_text(), signer)


def parse(note: bytes | str) -> tuple[Checkpoint, tuple[NoteSignature, ...]]:
    """A checkpoint and its signatures, NOT verified: for showing what a file claims, never for trusting it."""
    body, signatures = _split_note(_decode(note))
    return _parse_body(body), signatures


def verify(note: bytes | str, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """The checkpoint, once `verifier`'s signature on it checks (and its origin is `origin`, if given).

    Checking the origin keeps a checkpoint of another ledger signed by the same key from being
    taken for this one's.
    """
    checkpoint = _parse_body(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"the checkpoint is for {_shown(checkpoint.origin)!r}, not {_shown(origin)!r}")
    return checkpoint
