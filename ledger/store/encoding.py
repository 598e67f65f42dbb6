"""One encoding of an event for the hash chain, used by append and verify alike: digests as stored
and as text, an event's canonical content, and its hash chained to the one before."""

import json
from hashlib import sha256

from ..findings import REGISTRY  # the source whose events' canonical text has no source field

GENESIS = "0" * 64


def digest_key(text):
    """How a digest is stored: a sha256 digest as its 32 raw bytes (half the text), anything else as text."""
    if text is None or len(text) != 71 or not text.startswith("sha256:"):
        return text
    try:
        raw = bytes.fromhex(text[7:])
    except ValueError:
        return text
    return raw if raw.hex() == text[7:] else text


def digest_text(stored):
    return "sha256:" + stored.hex() if isinstance(stored, bytes) else stored


def _hex_prefix(stored):
    """What the digests_by_prefix index holds for a stored digest."""
    raw = stored if isinstance(stored, bytes) else stored.encode("utf-8")
    return raw[:6].hex().upper()


_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _canonical(*values):
    """An event's hashed content: id, run_id, observed_at, kind, registry, repo, tag, digest, image,
    media_type, created, author, size, and the source unless it is the registry (so events
    written before sources existed keep their hashes)."""
    return list(values[:-1]) if values[-1] == REGISTRY else list(values)


def event_hash(prev_hash, values):
    """The hash over an event's canonical content, chained to the previous hash."""
    return sha256(f"{prev_hash}\n{_CANONICAL(values)}".encode("utf-8")).hexdigest()
