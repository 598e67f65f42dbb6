"""An independent tlog-tiles client, written from the specs for the tests (c2sp.org/tlog-tiles,
c2sp.org/signed-note, c2sp.org/tlog-cosignature, RFC 6962 §2.1), importing nothing of the ledger: what
serves or writes the tiles is checked by code that did not make them.

`audit(fetch, vkey)` reads `checkpoint` and every tile and entry bundle its tree needs through
`fetch(path) -> bytes` (raising KeyError for a missing resource), and raises Refused at the first thing
that does not hold.
"""

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Refused(Exception):
    pass


def sha(data):
    return hashlib.sha256(data).digest()


def mth(hashes):
    """RFC 6962 MTH over leaf hashes, recursively: split at the largest power of two smaller than n."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return sha(b"\x01" + mth(hashes[:k]) + mth(hashes[k:]))


def path(level, n, width=256):
    """tlog-tiles: N in 3-digit groups, all but the last with an `x`; `.p/W` for a partial tile."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    text = "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])
    return f"tile/{level}/{text}" + (f".p/{width}" if width < 256 else "")


def open_note(raw, vkey):
    """The checkpoint (origin, size, root, body) once the log key's signature on the note verifies;
    a note that does not even parse (bad UTF-8, base64, layout or size) is refused, as a client must."""
    try:
        return _open_note(raw, vkey)
    except (ValueError, IndexError) as error:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise Refused(f"malformed checkpoint: {error}") from None


def _open_note(raw, vkey):
    name, key_id, key = vkey.split("+", 2)
    key = base64.b64decode(key)
    if key[0] != 1 or sha(name.encode() + b"\n" + key)[:4].hex() != key_id:
        raise Refused("bad log key")
    text = raw.decode("utf-8")
    cut = text.rindex("\n\n")
    body, lines = text[:cut + 1], text[cut + 2:].rstrip("\n").split("\n")
    good = False
    for line in lines:
        who, blob = line[2:].split(" ")
        blob = base64.b64decode(blob)
        if line.startswith("\u2014 ") and who == name and blob[:4].hex() == key_id:
            try:
                Ed25519PublicKey.from_public_bytes(key[1:]).verify(blob[4:], body.encode())
            except InvalidSignature:
                raise Refused("the log's signature does not verify") from None
            good = True
    if not good:
        raise Refused("no signature by the log's key")
    origin, size, root = body.split("\n")[:3]
    return origin, int(size), base64.b64decode(root), body


def cosigned(raw, wkey):
    """The timestamp of a valid cosignature/v1 by the witness key on the note, or None."""
    name, key_id, key = wkey.split("+", 2)
    key = base64.b64decode(key)
    assert key[0] == 4 and sha(name.encode() + b"\n" + key)[:4].hex() == key_id
    text = raw.decode("utf-8")
    cut = text.rindex("\n\n")
    body = text[:cut + 1]
    for line in text[cut + 2:].rstrip("\n").split("\n"):
        who, blob = line[2:].split(" ")
        blob = base64.b64decode(blob)
        if who != name or blob[:4].hex() != key_id or len(blob) != 76:
            continue
        timestamp = int.from_bytes(blob[4:12], "big")
        try:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(
                blob[12:], f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode())
        except InvalidSignature:
            continue
        return timestamp
    return None


def audit(fetch, vkey):
    """Check a published log; returns (origin, size, root) once every tile and entry agrees with the signed
    root, both recomputed from the entries and rebuilt from the upper tiles."""
    origin, size, root, _ = open_note(fetch("checkpoint"), vkey)
    levels = {}  # level -> list of hashes, from the tiles
    level = 0
    while size // 256 ** level:
        count = size // 256 ** level
        hashes = []
        for n in range((count + 255) // 256):
            width = min(256, count - n * 256)
            data = fetch(path(level, n, width))
            if len(data) != 32 * width:
                raise Refused(f"{path(level, n, width)}: {len(data)} bytes for {width} hashes")
            hashes += [data[i:i + 32] for i in range(0, len(data), 32)]
        levels[level] = hashes
        level += 1
    for n in range((size + 255) // 256):  # entries hash to the level-0 tiles
        width = min(256, size - n * 256)
        data = fetch(path("entries", n, width))
        entries = []
        while data:
            length = int.from_bytes(data[:2], "big")
            if len(data) < 2 + length:
                raise Refused(f"entry bundle {n} is truncated")
            entries.append(data[2:2 + length])
            data = data[2 + length:]
        if len(entries) != width:
            raise Refused(f"entry bundle {n} holds {len(entries)} entries, not {width}")
        for i, entry in enumerate(entries):
            if sha(b"\x00" + entry) != levels[0][n * 256 + i]:
                raise Refused(f"entry {n * 256 + i} does not hash to its leaf in tile 0/{n}")
    for level in range(1, len(levels)):  # each upper hash is the MTH of a full tile below
        for j, value in enumerate(levels[level]):
            if mth(levels[level - 1][j * 256:(j + 1) * 256]) != value:
                raise Refused(f"hash {j} of level {level} is not the MTH of tile {level - 1}/{j}")
    if size and mth(levels[0]) != root:
        raise Refused("the leaves do not hash to the checkpoint's root")

    def subtree(start, end):  # the root rebuilt from the highest tiles that cover each part
        for level in range(len(levels) - 1, 0, -1):
            span = 256 ** level
            if end - start == span and start % span == 0:
                return levels[level][start // span]
        if end - start == 1:
            return levels[0][start]
        k = 1
        while k * 2 < end - start:
            k *= 2
        return sha(b"\x01" + subtree(start, start + k) + subtree(start + k, end))
    if size and subtree(0, size) != root:
        raise Refused("the tiles do not rebuild the checkpoint's root")
    return origin, size, root


def directory_fetch(directory):
    def fetch(name):
        try:
            with open(f"{directory}/{name}", "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise Refused(f"{name} is missing") from None
    return fetch
