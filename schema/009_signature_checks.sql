-- Schema version 9: whether a signature verifies, not only whether one is there.
--
-- A signature artifact (a cosign `.sig` tag's manifest, a Notation or cosign referrer) was enough to call
-- a digest signed, though its bytes could be anything. Now each run checks every current signature of a
-- digest it follows against the keys and certificates given with --signature-key (ledger/signatures.py)
-- and keeps one row per (signature, subject, key): `verified` (the signature verifies with the key and what
-- it signed names `subject`), `failed` or `unsupported` with the `reason`, or `no key` (key NULL: none was
-- configured when it was met). A result is recorded once: the bytes and the key cannot change under their
-- digests, so a run checks only the keys a signature has no row for yet. The run seal covers the rows
-- (ledger/seals.py); seals made before this version have none.
CREATE TABLE IF NOT EXISTS signature_checks (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    checked_at TEXT NOT NULL,
    registry TEXT NOT NULL,           -- where the signature was read
    repo TEXT NOT NULL,
    signature TEXT NOT NULL,          -- the signature artifact's manifest digest
    subject TEXT NOT NULL,            -- the digest it was checked as a signature of
    key TEXT,                         -- 'sha256:' + SHA-256 of the key's SubjectPublicKeyInfo; NULL: no key
    result TEXT NOT NULL CHECK (result IN ('verified', 'failed', 'unsupported', 'no key')),
    reason TEXT,                      -- why it did not verify
    layer TEXT                        -- the layer (signature blob) that verified
);
