-- Re-applied by a writer when it or the file's schema changed. The contract's
-- names and columns (events, current_tags, tag_history, replaced_tags,
-- new_images, removed_tags) are views over the compact tables; digests read
-- back as 'sha256:<hex>' text.
-- Each also says the key's source: 'registry', or 'daemon:NAME' for what a
-- Docker daemon holds locally. Every event has its key; the joins to it are
-- LEFT joins only so that SQLite can skip them when counting rows.

DROP VIEW IF EXISTS digest_names;
CREATE VIEW digest_names AS
SELECT id, CASE typeof(digest) WHEN 'blob' THEN 'sha256:' || lower(hex(digest)) ELSE digest END AS digest,
       first_event_id
FROM digests;

DROP VIEW IF EXISTS events;
CREATE VIEW events AS
SELECT e.id, e.run_id, e.observed_at, e.kind, k.registry, k.repo, k.tag, d.digest, i.digest AS image,
       m.media_type, e.created, e.author, e.size, k.source,
       coalesce((SELECT lower(hex(p.hash)) FROM event_log p WHERE p.id < e.id ORDER BY p.id DESC LIMIT 1),
                '0000000000000000000000000000000000000000000000000000000000000000') AS prev_hash,
       lower(hex(e.hash)) AS hash
FROM event_log e
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id;

-- The view keeps the table's promise: nothing is changed through it.
CREATE TRIGGER events_append_only_insert INSTEAD OF INSERT ON events
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;
CREATE TRIGGER events_append_only_update INSTEAD OF UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;
CREATE TRIGGER events_append_only_delete INSTEAD OF DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;

-- Every tag key with its latest event, removed ones included.
DROP VIEW IF EXISTS key_states;
CREATE VIEW key_states AS
SELECT k.id AS key_id, k.registry, k.repo, k.tag, k.source, k.kind, d.digest, i.digest AS image, e.created,
       k.first_seen, k.observed_at AS last_changed, m.media_type, e.author, e.size, k.event_id
FROM tag_keys k
JOIN event_log e ON e.id = k.event_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id;

DROP VIEW IF EXISTS current_tags;
CREATE VIEW current_tags AS
SELECT registry, repo, tag, digest, image, created, first_seen, last_changed, media_type, author, size, source,
       event_id
FROM key_states
WHERE kind != 'removed';

DROP VIEW IF EXISTS tag_history;
CREATE VIEW tag_history AS
SELECT e.id AS event_id, e.run_id, e.observed_at, e.kind, k.registry, k.repo, k.tag,
       d.digest, i.digest AS image, pd.digest AS prev_digest, pi.digest AS prev_image,
       m.media_type, e.created, e.author, e.size,
       d.first_event_id IS e.id OR i.first_event_id IS e.id AS first_sighting, k.source
FROM event_log e
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN event_log p ON p.id = e.prev_event_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
LEFT JOIN digest_names pd ON pd.id = p.digest_id
LEFT JOIN digest_names pi ON pi.id = p.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id;

DROP VIEW IF EXISTS replaced_tags;
CREATE VIEW replaced_tags AS
SELECT registry, repo, tag, observed_at AS replaced_at,
       prev_digest AS old_digest, digest AS new_digest,
       prev_image AS old_image, image AS new_image, run_id, source, event_id
FROM tag_history
WHERE kind = 'moved';

-- A digest (or, where a source gives no digest, an image ID) whose first
-- event in the whole ledger belongs to that run.
DROP VIEW IF EXISTS new_images;
CREATE VIEW new_images AS
SELECT d.digest, i.digest AS image, e.observed_at AS first_seen, e.run_id,
       k.registry, k.repo, k.tag, m.media_type, k.source, e.id AS event_id
FROM event_log e
JOIN digests f ON f.id IN (e.digest_id, e.image_id) AND f.first_event_id = e.id
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id;

DROP VIEW IF EXISTS removed_tags;
CREATE VIEW removed_tags AS
SELECT k.registry, k.repo, k.tag, e.observed_at AS removed_at, d.digest AS last_digest, e.run_id, k.source,
       e.id AS event_id
FROM event_log e
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN digest_names d ON d.id = e.digest_id
WHERE e.kind = 'removed';
