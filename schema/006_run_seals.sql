-- Schema version 6: every stored fact is covered, not only events.
--
-- A manifest row keeps the bytes it was read from (zlib), so its kind, config
-- digest, platforms and created time can be re-derived from bytes that must
-- hash to its digest: `ledger verify` compares, and classification trusts only
-- what it re-derives. NULL for a schema1 manifest (resolved by HEAD alone) and
-- for rows written before version 6, until the next run that meets the digest
-- fills them in.
ALTER TABLE manifests ADD COLUMN body BLOB;
ALTER TABLE manifests ADD COLUMN config_body BLOB;

-- One seal per finished run, in the order runs finished (ledger/seals.py). It
-- commits to the run's own row, its coverage and errors, the manifests,
-- platforms and images it wrote first, and the event chain's head then, and
-- is chained to the seal before it. Runs finished before version 6 are
-- sealed by the upgrade.
CREATE TABLE run_seals (
    id INTEGER PRIMARY KEY,           -- the seal's place in the seal chain
    run_id INTEGER NOT NULL UNIQUE REFERENCES runs(id),
    head_event_id INTEGER,            -- the event chain's head when the run was sealed
    counts TEXT NOT NULL,             -- JSON: rows sealed per table
    rows BLOB NOT NULL,               -- 8 bytes of sha256 per row, in the sealed order
    hash BLOB NOT NULL                -- sha256 over the seal before, the run, the head and the rows
);

-- A Docker daemon's image is told apart by its image ID, whatever digests it
-- carries (build, push, re-push, retag into another repository): it is a new
-- image once, where its image ID was first seen. First sightings of daemon
-- keys are recomputed by that rule (the update guard is re-created after).
DROP TRIGGER IF EXISTS digests_append_only_update;
CREATE TEMP TABLE first_sightings AS
SELECT CASE WHEN k.source = 'registry' THEN coalesce(e.digest_id, e.image_id)
            ELSE coalesce(e.image_id, e.digest_id) END AS digest_id, min(e.id) AS event_id
FROM event_log e JOIN tag_keys k ON k.id = e.key_id
WHERE e.kind != 'removed'
GROUP BY 1;
CREATE INDEX temp.first_sightings_by_digest ON first_sightings (digest_id);
UPDATE digests SET first_event_id = (SELECT event_id FROM first_sightings f WHERE f.digest_id = digests.id);
DROP TABLE temp.first_sightings;
