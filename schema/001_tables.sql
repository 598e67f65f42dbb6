-- Ledger tables, schema version 1. Later files change them: 004 drops events,
-- coverage and tag_state for the compact tables, 002, 003, 006 and 007 add
-- columns. schema/current.sql (generated) shows the schema as it is now.
-- Timestamps are UTC ISO-8601 text of one fixed width, made in Python:
-- observed/started/finished: 2026-11-28T05:20:41.123456Z; image created: 2026-11-28T05:20:41Z.

-- One row per `ledger collect`. Inserted when the run starts (status
-- 'running') and finished exactly once; a row still 'running' with no
-- finished_at was interrupted.
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed')),
    source TEXT NOT NULL,             -- what was collected: registry, daemon or registry+daemon
    targets TEXT NOT NULL,            -- JSON list of the targets as given, with --config / --daemon
    tool_version TEXT NOT NULL,
    repos_listed INTEGER,
    tags_seen INTEGER,
    added INTEGER,
    moved INTEGER,
    updated INTEGER,
    removed INTEGER,
    new_images INTEGER,
    errors INTEGER,
    requests TEXT,                    -- JSON: requests made, by kind
    error_summary TEXT,
    head_event_id INTEGER,            -- the chain head when the run finished
    head_hash TEXT
);

-- The hash-chained event log: one row per change of a tag key. Dropped by
-- 004: the events are in event_log now, and `events` is a view over it
-- (views.sql) with these columns and a source.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    observed_at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('added', 'moved', 'updated', 'removed')),
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT,                      -- manifest (or index) digest; for 'removed', the last one
    image TEXT,                       -- config digest of a single-platform manifest
    media_type TEXT,
    created TEXT,
    author TEXT,
    size INTEGER,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- Content-addressed facts, written once per digest and never changed, but
-- for one update: a row written before schema 6 gets its bytes, and the
-- columns derived from them, filled in once (006, 007, triggers.sql).
CREATE TABLE IF NOT EXISTS manifests (
    digest TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('image', 'index', 'artifact', 'legacy')),
    config_digest TEXT,               -- the config's digest: for 'image', the image ID
    config_media_type TEXT,
    artifact_type TEXT,
    created TEXT,
    author TEXT,
    size INTEGER,                     -- config plus layers, compressed, as stored
    layers INTEGER,
    os TEXT,
    architecture TEXT,
    variant TEXT,
    os_version TEXT,
    labels TEXT,                      -- JSON object
    first_run_id INTEGER REFERENCES runs(id)
);

-- The children of an index / manifest list, in the order the index gives.
CREATE TABLE IF NOT EXISTS platforms (
    index_digest TEXT NOT NULL REFERENCES manifests(digest),
    position INTEGER NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT,
    size INTEGER,
    os TEXT,
    architecture TEXT,
    variant TEXT,
    os_version TEXT,
    attestation INTEGER NOT NULL DEFAULT 0,  -- 1: an attestation manifest, not a platform
    attests TEXT,                            -- for attestations: the digest they describe
    PRIMARY KEY (index_digest, position)
) WITHOUT ROWID;

-- What each run listed, and whether the listing was complete. Only a
-- complete listing may produce 'removed' events. Replaced by 004 with the
-- same table keyed by source too.
CREATE TABLE IF NOT EXISTS coverage (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    scope TEXT NOT NULL,              -- '*' for every tag, else JSON of what narrows it (see 004)
    complete INTEGER NOT NULL,
    tags_listed INTEGER,
    listed_at TEXT,
    reason TEXT,                      -- why the listing is incomplete
    PRIMARY KEY (run_id, registry, repo)
) WITHOUT ROWID;

-- Typed problems per run: failures are data.
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    registry TEXT NOT NULL,
    repo TEXT,
    tag TEXT,
    digest TEXT,
    stage TEXT NOT NULL,              -- where: ping, catalog, tags, head, manifest, config, referrers, ...
    http_status INTEGER,
    code TEXT,                        -- registry error code, e.g. NAME_UNKNOWN, or a local one
    message TEXT NOT NULL
);

-- Schema 1 to 3: the latest event of every tag key, kept by a trigger on
-- events so that current state and classification read one row per key.
-- Dropped by 004, trigger and all: tag_keys keeps each key's latest event
-- now, written by the append itself (`ledger verify` re-derives it).
CREATE TABLE IF NOT EXISTS tag_state (
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    digest TEXT,
    image TEXT,
    media_type TEXT,
    created TEXT,
    author TEXT,
    size INTEGER,
    first_seen TEXT NOT NULL,         -- the 'added' event that began the key's current life
    PRIMARY KEY (registry, repo, tag)
) WITHOUT ROWID;
