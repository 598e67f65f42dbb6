-- Re-applied on every open. The names and columns are the public contract.

DROP VIEW IF EXISTS current_tags;
CREATE VIEW current_tags AS
SELECT registry, repo, tag, digest, image, created, first_seen,
       observed_at AS last_changed, media_type, author, size, event_id
FROM tag_state
WHERE kind != 'removed';

DROP VIEW IF EXISTS tag_history;
CREATE VIEW tag_history AS
SELECT e.id AS event_id, e.run_id, e.observed_at, e.kind, e.registry, e.repo, e.tag,
       e.digest, e.image, p.digest AS prev_digest, p.image AS prev_image,
       e.media_type, e.created, e.author, e.size
FROM events e
LEFT JOIN events p ON p.id = (
    SELECT max(q.id) FROM events q
    WHERE q.registry = e.registry AND q.repo = e.repo AND q.tag = e.tag AND q.id < e.id);

DROP VIEW IF EXISTS replaced_tags;
CREATE VIEW replaced_tags AS
SELECT registry, repo, tag, observed_at AS replaced_at,
       prev_digest AS old_digest, digest AS new_digest,
       prev_image AS old_image, image AS new_image, run_id, event_id
FROM tag_history
WHERE kind = 'moved';

-- A digest (or, where a source gives no digest, an image ID) whose first
-- event in the whole ledger belongs to that run.
DROP VIEW IF EXISTS new_images;
CREATE VIEW new_images AS
SELECT e.digest, e.image, e.observed_at AS first_seen, e.run_id,
       e.registry, e.repo, e.tag, e.media_type
FROM events e
JOIN (SELECT min(id) AS id FROM events
      WHERE kind != 'removed' AND coalesce(digest, image) IS NOT NULL
      GROUP BY coalesce(digest, image)) first USING (id);

DROP VIEW IF EXISTS removed_tags;
CREATE VIEW removed_tags AS
SELECT registry, repo, tag, observed_at AS removed_at, digest AS last_digest, run_id, id AS event_id
FROM events
WHERE kind = 'removed';
