-- Schema version 4: a compact event log. The same events and hashes, stored with
-- tag keys, digests and media types interned, and hashes as 32 raw bytes; the
-- previous hash is the previous row's, so it is not stored twice. `events` and
-- the other contract names become views over these tables (views.sql), and
-- tag_state (with the trigger on events that kept it) gives way to tag_keys.
-- ledger_digest_key() and ledger_unhex() are registered by the ledger on every
-- connection it opens.

DROP VIEW IF EXISTS current_tags;
DROP VIEW IF EXISTS tag_history;
DROP VIEW IF EXISTS replaced_tags;
DROP VIEW IF EXISTS new_images;
DROP VIEW IF EXISTS removed_tags;

-- Every manifest digest and image ID the ledger has seen, once. A sha256
-- digest is kept as its 32 raw bytes; any other algorithm as its text.
CREATE TABLE digests (
    id INTEGER PRIMARY KEY,
    digest BLOB NOT NULL,
    first_event_id INTEGER            -- the first non-removed event showing it (as digest, else as image;
                                      -- a daemon key's as image, else as digest: 006)
);

CREATE TABLE media_types (
    id INTEGER PRIMARY KEY,
    media_type TEXT NOT NULL UNIQUE
);

-- One row per tag key ever seen, with the key's latest event (written by
-- the append) so current state reads one row per key. A key is a tag as one
-- source sees it: the registry itself, or a Docker daemon's local copy
-- ('daemon:NAME'), which is never the registry's truth. A referrer (a
-- signature, attestation or SBOM found through the OCI referrers API or tag
-- schema) is a key of source 'referrer' whose tag is its own digest.
CREATE TABLE tag_keys (
    id INTEGER PRIMARY KEY,
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'registry',
    event_id INTEGER,
    kind TEXT,
    observed_at TEXT,
    first_seen TEXT,                  -- the 'added' event that began the key's current life
    UNIQUE (registry, repo, tag, source)
);

-- Facts about an image ID as a Docker daemon reported them, written once
-- (the ID is a hash of the image's config, so they never change).
CREATE TABLE images (
    id TEXT PRIMARY KEY,              -- the image ID, sha256:...
    created TEXT,
    size INTEGER,                     -- as the daemon reports it: all layers, uncompressed
    author TEXT,
    architecture TEXT,
    os TEXT,
    labels TEXT,                      -- JSON object
    first_run_id INTEGER REFERENCES runs(id)
);

-- Coverage gains the source: a daemon's listing and a registry's listing of
-- the same repo in one run are different facts (so is a 'referrer' listing).
-- scope: '*' for every tag, else JSON: a listing narrowed by named tags or
-- filters stores an object of what narrows it, {"exclude": RE, "include": RE,
-- "tags": [...]} (those that apply; ledger/semantics.py Scope.describe); a
-- referrer listing {"referrers of": N subjects}; rows from the first version
-- a plain list of the tags asked for.
CREATE TABLE coverage_v4 (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    source TEXT NOT NULL DEFAULT 'registry',
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    scope TEXT NOT NULL,              -- '*': every tag; else a JSON object of what narrows it: tags,
                                      -- include, exclude (a referrer listing's: "referrers of")
    complete INTEGER NOT NULL,
    tags_listed INTEGER,
    listed_at TEXT,
    reason TEXT,                      -- why the listing is incomplete
    PRIMARY KEY (run_id, source, registry, repo)
) WITHOUT ROWID;
INSERT INTO coverage_v4 (run_id, registry, repo, scope, complete, tags_listed, listed_at, reason)
SELECT run_id, registry, repo, scope, complete, tags_listed, listed_at, reason FROM coverage;
DROP TABLE coverage;
ALTER TABLE coverage_v4 RENAME TO coverage;

CREATE TABLE event_log (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    observed_at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('added', 'moved', 'updated', 'removed')),
    key_id INTEGER NOT NULL REFERENCES tag_keys(id),
    prev_event_id INTEGER,            -- the key's event before this one: derived, kept so history needs no search
    digest_id INTEGER REFERENCES digests(id),
    image_id INTEGER REFERENCES digests(id),
    media_type_id INTEGER REFERENCES media_types(id),
    created TEXT,
    author TEXT,
    size INTEGER,
    hash BLOB NOT NULL                -- sha256 over the previous hash and this event's canonical content
);

INSERT INTO digests (digest, first_event_id)
SELECT ledger_digest_key(refs.value), firsts.first_event_id
FROM (SELECT digest AS value, min(id) AS seen FROM events WHERE digest IS NOT NULL GROUP BY digest
      UNION ALL
      SELECT image, min(id) FROM events WHERE image IS NOT NULL AND image NOT IN (
          SELECT digest FROM events WHERE digest IS NOT NULL) GROUP BY image) refs
LEFT JOIN (SELECT coalesce(digest, image) AS value, min(id) AS first_event_id FROM events
           WHERE kind != 'removed' AND coalesce(digest, image) IS NOT NULL GROUP BY 1) firsts USING (value)
ORDER BY refs.seen, refs.value;

CREATE INDEX digests_by_prefix ON digests (substr(hex(digest), 1, 12));

INSERT INTO media_types (media_type)
SELECT media_type FROM events WHERE media_type IS NOT NULL GROUP BY media_type ORDER BY min(id);

INSERT INTO tag_keys (registry, repo, tag, event_id, kind, observed_at, first_seen)
SELECT registry, repo, tag, event_id, kind, observed_at, first_seen FROM tag_state ORDER BY event_id;

INSERT INTO event_log (id, run_id, observed_at, kind, key_id, prev_event_id, digest_id, image_id, media_type_id,
                       created, author, size, hash)
SELECT e.id, e.run_id, e.observed_at, e.kind, k.id, lag(e.id) OVER (PARTITION BY k.id ORDER BY e.id),
       (SELECT id FROM digests WHERE substr(hex(digest), 1, 12) = substr(hex(ledger_digest_key(e.digest)), 1, 12)
                                 AND digest = ledger_digest_key(e.digest)),
       (SELECT id FROM digests WHERE substr(hex(digest), 1, 12) = substr(hex(ledger_digest_key(e.image)), 1, 12)
                                 AND digest = ledger_digest_key(e.image)),
       (SELECT id FROM media_types WHERE media_type = e.media_type),
       e.created, e.author, e.size, ledger_unhex(e.hash)
FROM events e JOIN tag_keys k ON (k.registry, k.repo, k.tag) = (e.registry, e.repo, e.tag)
ORDER BY e.id;

DROP TABLE events;
DROP TABLE tag_state;
