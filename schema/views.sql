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

-- Manifests the ledger read that do not run: an artifact's (signature, attestation, sbom, referrers, a
-- chart, ...; manifests.category decides from the config and layers) and an index of nothing (the tag
-- schema's index once its last referrer is gone). A tag named like a referrer tag is set aside as one only
-- when it points here, never by its name alone, which the pusher chooses. store/fragments.py says the same
-- over the tables, for readers of a file whose views are older than this one.
DROP VIEW IF EXISTS unrunnable_manifests;
CREATE VIEW unrunnable_manifests AS
SELECT m.digest FROM manifests m
WHERE m.category NOT IN ('image', 'index', 'legacy')
   OR (m.category = 'index' AND m.artifact_kind IS NULL
       AND NOT EXISTS (SELECT 1 FROM platforms p WHERE p.index_digest = m.digest AND p.attestation = 0));

-- Image tags only: a referrer, a referrer tag (the referrers tag schema's `sha256-<hex>`, cosign's
-- `sha256-<hex>.sig|.att|.sbom`) or a tag of a signature, attestation, SBOM or referrers list is not one.
-- A referrer tag is one by its name AND what it points to: the name is the pusher's choice, so a tag so
-- named that points to something that runs (manifests.category image, index, legacy; an index of nothing,
-- as the tag schema's once its last referrer is gone, runs nothing), or whose manifest could not be read,
-- is an image tag like any other (here, in replaced_tags, rollbacks, new_images, removed_tags and the
-- referrers view, and store/fragments.py's referrer_tag_sql).
-- `kind` says what the tag points to (image, index, helm-chart, artifact, ...): manifests.category, which
-- what can run decides (an image is one whatever artifactType it carries); signed / attested / sbom
-- say whether the digest has one now: a signature of the digest itself; an attestation or SBOM of it or
-- of one of its platforms (BuildKit attests each platform), or an attestation inside its index.
-- `signed` counts only a signature that verified against a configured key (--signature-key) as a
-- signature of this digest (signature_checks); `has_signature` any signature artifact, verified or not.
DROP VIEW IF EXISTS current_tags;
CREATE VIEW current_tags AS
SELECT registry, repo, tag, digest, image, created, first_seen, last_changed, media_type, author, size, source,
       event_id, kind, CASE WHEN referable THEN coalesce(instr(referred, '<verified-signature>') > 0, 0) ELSE 0 END AS signed,
       CASE WHEN referable THEN coalesce(instr(referred, '<attestation>') > 0, 0) ELSE index_attested END AS attested,
       CASE WHEN referable THEN coalesce(instr(referred, '<sbom>') > 0, 0) ELSE 0 END AS sbom,
       -- '<signature>' or '<verified-signature>', in one look (the subquery is written out for each use)
       CASE WHEN referable THEN coalesce(instr(referred, 'signature>') > 0, 0) ELSE 0 END AS has_signature
FROM (
    SELECT s.registry, s.repo, s.tag, s.digest, s.image, s.created, s.first_seen, s.last_changed, s.media_type,
           s.author, s.size, s.source, s.event_id, coalesce(m.category, m.kind) AS kind,
           -- SQLite writes each of these out where the columns above use it (the subquery is flattened):
           -- `referable` first, so that a repository with no key named like a digest (a referrer's,
           -- `sha256:...`) or a cosign tag (`sha256-...`) costs one probe of its keys per column (one range,
           -- which holds sha512 too), and only an index is looked up for attestations inside it.
           EXISTS (SELECT 1 FROM tag_keys x WHERE x.registry = s.registry AND x.repo = s.repo
                   AND x.tag >= 'sha256-' AND x.tag < 'sha513') AS referable,
           EXISTS (SELECT 1 FROM platforms p WHERE p.index_digest = s.digest AND p.attestation = 1) AS index_attested,
           (SELECT group_concat('<' || found.kind || '>', '') FROM (
                -- a signature that verified is a 'verified-signature', any other keeps its kind
                SELECT CASE WHEN rm.category = 'signature' AND EXISTS (
                           SELECT 1 FROM signature_checks v WHERE v.signature = rm.digest AND v.subject = s.digest
                                                              AND v.result = 'verified')
                       THEN 'verified-signature' ELSE rm.category END AS kind
                FROM manifests rm  -- CROSS JOIN: by subject first, not the repo's keys
                CROSS JOIN tag_keys rk ON rk.registry = s.registry AND rk.repo = s.repo AND rk.tag = rm.digest
                                      AND rk.source = 'referrer'
                WHERE rm.subject = s.digest AND rk.kind != 'removed'
                UNION ALL
                SELECT CASE WHEN cm.category = 'signature' AND EXISTS (
                           SELECT 1 FROM signature_checks v WHERE v.signature = cm.digest AND v.subject = s.digest
                                                              AND v.result = 'verified')
                       THEN 'verified-signature' ELSE cm.category END FROM tag_keys ck
                JOIN event_log ce ON ce.id = ck.event_id
                JOIN digest_names cd ON cd.id = ce.digest_id
                JOIN manifests cm ON cm.digest = cd.digest
                WHERE ck.registry = s.registry AND ck.repo = s.repo AND ck.source = 'registry'
                  AND ck.kind != 'removed' AND ck.tag IN (replace(s.digest, ':', '-') || '.sig',
                                                         replace(s.digest, ':', '-') || '.att',
                                                         replace(s.digest, ':', '-') || '.sbom')
                UNION ALL
                SELECT 'attestation' FROM platforms p WHERE p.index_digest = s.digest AND p.attestation = 1
                UNION ALL
                SELECT pm.category FROM platforms p
                CROSS JOIN manifests pm ON pm.subject = p.digest
                CROSS JOIN tag_keys pk ON pk.registry = s.registry AND pk.repo = s.repo AND pk.tag = pm.digest
                                      AND pk.source = 'referrer'
                WHERE p.index_digest = s.digest AND p.attestation = 0 AND pk.kind != 'removed'
                  AND pm.category IN ('attestation', 'sbom')) found) AS referred
    FROM key_states s
    LEFT JOIN manifests m ON m.digest = s.digest
    WHERE s.kind != 'removed' AND s.source != 'referrer'
      -- named like a referrer tag, and pointing to what does not run (an unread manifest: shown, unknown)
      AND NOT (substr(s.tag, 1, 7) IN ('sha256-', 'sha512-') AND length(s.tag) IN (71, 75, 76)
               AND NOT substr(s.tag, 8, 64) GLOB '*[^0-9a-f]*' AND substr(s.tag, 72) IN ('', '.sig', '.att', '.sbom')
               AND EXISTS (SELECT 1 FROM unrunnable_manifests u WHERE u.digest = m.digest))
)
WHERE kind IS NULL OR kind NOT IN ('signature', 'attestation', 'sbom', 'referrers');

-- Every (subject, referrer) the ledger has seen in a repository, with its key's state: OCI 1.1
-- referrers (keys of source 'referrer', found through the referrers API or the referrers tag schema;
-- the subject is the one the referrer's own manifest names) and cosign's legacy tags (the subject is in
-- the tag's name). `kind` is what the referrer's bytes say it is (manifests.category): signature,
-- attestation, sbom, ..., or image for one that runs, whatever its label.
-- `verified`: 1 when it is a signature of the subject that verified against a configured key.
DROP VIEW IF EXISTS referrers;
CREATE VIEW referrers AS
SELECT k.registry, k.repo, m.subject, k.tag AS referrer, m.category AS kind, m.artifact_type,
       m.annotations, m.created, 'referrers' AS via, NULL AS tag, k.first_seen, k.observed_at AS last_changed,
       k.kind != 'removed' AS current, k.event_id,
       EXISTS (SELECT 1 FROM signature_checks v WHERE v.signature = k.tag AND v.subject = m.subject
                                                  AND v.result = 'verified') AS verified
FROM tag_keys k
LEFT JOIN manifests m ON m.digest = k.tag
WHERE k.source = 'referrer'
UNION ALL
SELECT k.registry, k.repo, 'sha256:' || substr(k.tag, 8, 64), d.digest, m.category, m.artifact_type,
       m.annotations, m.created, 'cosign tag', k.tag, k.first_seen, k.observed_at, k.kind != 'removed', k.event_id,
       EXISTS (SELECT 1 FROM signature_checks v WHERE v.signature = d.digest
                                                  AND v.subject = 'sha256:' || substr(k.tag, 8, 64)
                                                  AND v.result = 'verified')
FROM tag_keys k
JOIN event_log e ON e.id = k.event_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN manifests m ON m.digest = d.digest
WHERE k.source = 'registry' AND substr(k.tag, 1, 7) = 'sha256-' AND length(k.tag) IN (75, 76)
  AND NOT substr(k.tag, 8, 64) GLOB '*[^0-9a-f]*' AND substr(k.tag, 72) IN ('.sig', '.att', '.sbom')
  AND (m.category IS NULL OR EXISTS (SELECT 1 FROM unrunnable_manifests u WHERE u.digest = m.digest));  -- one that runs is an image tag

DROP VIEW IF EXISTS current_referrers;
CREATE VIEW current_referrers AS
SELECT registry, repo, subject, referrer, kind, artifact_type, annotations, created, via, tag, first_seen,
       last_changed, event_id, verified
FROM referrers
WHERE current;

DROP VIEW IF EXISTS tag_history;
CREATE VIEW tag_history AS
SELECT e.id AS event_id, e.run_id, e.observed_at, e.kind, k.registry, k.repo, k.tag,
       d.digest, i.digest AS image, pd.digest AS prev_digest, pi.digest AS prev_image,
       m.media_type, e.created, e.author, e.size,
       d.first_event_id IS e.id OR i.first_event_id IS e.id AS first_sighting, k.source,
       -- The event's kind, with a move told apart (derived here, never stored: the chain's kinds stay four).
       -- 'rollback': back to a digest the key pointed to before (the rollbacks view says when and for how
       -- long it was away); one probe of event_log_by_digest. 'platforms_added': from an index to one whose
       -- platforms (os, architecture, variant; attestations are not platforms) are a strict superset of
       -- the old one's, each old platform with the same child digest. An index rebuilt with other children
       -- as well is an ordinary 'moved'; so is a move between digests whose manifests could not be read.
       CASE WHEN e.kind != 'moved' THEN e.kind
            WHEN EXISTS (SELECT 1 FROM event_log x WHERE x.digest_id = e.digest_id AND x.key_id = e.key_id
                                                       AND x.id < e.id) THEN 'rollback'
            WHEN EXISTS (SELECT 1 FROM manifests mo WHERE mo.digest = pd.digest AND mo.kind = 'index')
             AND EXISTS (SELECT 1 FROM platforms n WHERE n.index_digest = d.digest AND n.attestation = 0
                         AND NOT EXISTS (SELECT 1 FROM platforms o WHERE o.index_digest = pd.digest
                                         AND o.attestation = 0 AND o.os IS n.os
                                         AND o.architecture IS n.architecture AND o.variant IS n.variant))
             AND NOT EXISTS (SELECT 1 FROM platforms o WHERE o.index_digest = pd.digest AND o.attestation = 0
                             AND NOT EXISTS (SELECT 1 FROM platforms n WHERE n.index_digest = d.digest
                                             AND n.attestation = 0 AND n.digest = o.digest AND n.os IS o.os
                                             AND n.architecture IS o.architecture AND n.variant IS o.variant))
            THEN 'platforms_added'
            ELSE 'moved' END AS change
FROM event_log e
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN event_log p ON p.id = e.prev_event_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
LEFT JOIN digest_names pd ON pd.id = p.digest_id
LEFT JOIN digest_names pi ON pi.id = p.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id;

-- Image tags only, as in current_tags (by the digest moved to): a cosign tag moves with every signature added.
DROP VIEW IF EXISTS replaced_tags;
CREATE VIEW replaced_tags AS
SELECT registry, repo, tag, observed_at AS replaced_at,
       prev_digest AS old_digest, digest AS new_digest,
       prev_image AS old_image, image AS new_image, run_id, source, event_id, change
FROM tag_history h
WHERE kind = 'moved' AND source != 'referrer'
  AND NOT (substr(tag, 1, 7) IN ('sha256-', 'sha512-') AND length(tag) IN (71, 75, 76)
           AND NOT substr(tag, 8, 64) GLOB '*[^0-9a-f]*' AND substr(tag, 72) IN ('', '.sig', '.att', '.sbom')
           AND EXISTS (SELECT 1 FROM unrunnable_manifests u WHERE u.digest = h.digest));

-- Image tags moved back to a digest they pointed to before: `first_seen`, when the key first pointed there;
-- `left_at`, when it last stopped (moved away or removed); `away_seconds` from then to the rollback;
-- `earlier_event_id`, the key's latest earlier event at that digest. A key's events at one digest sit
-- together in event_log_by_digest, so one pass over that index finds the (digest, key) pairs seen more
-- than once (few: an update, a removal, a rollback) and only their events are read; no search per event.
-- A daemon's copy known by its image ID alone has no digest to compare and is never listed.
DROP VIEW IF EXISTS rollbacks;
CREATE VIEW rollbacks AS
SELECT k.registry, k.repo, k.tag, e.observed_at AS rolled_back_at, d.digest, pd.digest AS from_digest,
       f.observed_at AS first_seen, gone.observed_at AS left_at,
       CAST(round((julianday(e.observed_at) - julianday(gone.observed_at)) * 86400) AS INTEGER) AS away_seconds,
       l.id AS earlier_event_id, e.run_id, k.source, e.id AS event_id
FROM (SELECT digest_id, key_id, min(id) AS first_id FROM event_log WHERE digest_id IS NOT NULL
      GROUP BY digest_id, key_id HAVING count(*) > 1) g
JOIN event_log e ON e.digest_id = g.digest_id AND e.key_id = g.key_id AND e.id > g.first_id
JOIN event_log f ON f.id = g.first_id
JOIN event_log l ON l.id = (SELECT max(x.id) FROM event_log x WHERE x.digest_id = e.digest_id
                                                                  AND x.key_id = e.key_id AND x.id < e.id)
LEFT JOIN event_log gone ON gone.id = CASE WHEN l.kind = 'removed' THEN l.id ELSE (
    SELECT n.id FROM event_log n WHERE n.key_id = e.key_id AND n.observed_at >= l.observed_at AND n.id > l.id
    ORDER BY n.observed_at, n.id LIMIT 1) END
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN event_log p ON p.id = e.prev_event_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names pd ON pd.id = p.digest_id
WHERE e.kind = 'moved' AND k.source != 'referrer'
  AND NOT (substr(k.tag, 1, 7) IN ('sha256-', 'sha512-') AND length(k.tag) IN (71, 75, 76)
           AND NOT substr(k.tag, 8, 64) GLOB '*[^0-9a-f]*' AND substr(k.tag, 72) IN ('', '.sig', '.att', '.sbom')
           AND EXISTS (SELECT 1 FROM unrunnable_manifests u WHERE u.digest = d.digest));

-- A digest (or, where a source gives no digest, an image ID) whose first event in the whole ledger
-- belongs to that run, with what it is (`kind`: image, index, legacy, or an artifact's kind: signature,
-- attestation, sbom, referrers, helm-chart, artifact, as manifests.category says from what can run; NULL
-- when its manifest could not be read).
DROP VIEW IF EXISTS new_digests;
CREATE VIEW new_digests AS
SELECT d.digest, i.digest AS image, e.observed_at AS first_seen, e.run_id,
       k.registry, k.repo, k.tag, m.media_type, k.source, e.id AS event_id,
       CASE WHEN k.source GLOB 'daemon:*' THEN 'image' ELSE coalesce(mf.category, mf.kind) END AS kind
FROM event_log e
JOIN digests f ON f.id IN (e.digest_id, e.image_id) AND f.first_event_id = e.id
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id
LEFT JOIN manifests mf ON mf.digest = d.digest;

-- The new digests that are images (or indexes of them): no signature, SBOM, referrer or chart, nor a
-- referrer tag's (an empty tag schema index is an index of nothing), as in current_tags.
DROP VIEW IF EXISTS new_images;
CREATE VIEW new_images AS
SELECT digest, image, first_seen, run_id, registry, repo, tag, media_type, source, event_id, kind
FROM new_digests n
WHERE (kind IS NULL OR kind IN ('image', 'index', 'legacy')) AND source != 'referrer'
  AND NOT (substr(tag, 1, 7) IN ('sha256-', 'sha512-') AND length(tag) IN (71, 75, 76)
           AND NOT substr(tag, 8, 64) GLOB '*[^0-9a-f]*' AND substr(tag, 72) IN ('', '.sig', '.att', '.sbom')
           AND EXISTS (SELECT 1 FROM unrunnable_manifests u WHERE u.digest = n.digest));

DROP VIEW IF EXISTS removed_tags;
CREATE VIEW removed_tags AS
SELECT k.registry, k.repo, k.tag, e.observed_at AS removed_at, d.digest AS last_digest, e.run_id, k.source,
       e.id AS event_id
FROM event_log e
LEFT JOIN tag_keys k ON k.id = e.key_id
LEFT JOIN digest_names d ON d.id = e.digest_id
WHERE e.kind = 'removed' AND k.source != 'referrer'
  AND NOT (substr(k.tag, 1, 7) IN ('sha256-', 'sha512-') AND length(k.tag) IN (71, 75, 76)
           AND NOT substr(k.tag, 8, 64) GLOB '*[^0-9a-f]*' AND substr(k.tag, 72) IN ('', '.sig', '.att', '.sbom')
           AND EXISTS (SELECT 1 FROM unrunnable_manifests u WHERE u.digest = d.digest));

-- What each run listed, and whether the listing was complete, as the coverage table of before said it:
-- the rows written before schema 19 as they are, then each later run's listings, which are the latest
-- change of each repository at or before the run's place in its stream (schema/019_coverage_changes.sql).
-- listed_at is when the run listed it where the run changed it, else the run's finished_at (it was
-- listed by then).
DROP VIEW IF EXISTS coverage;
CREATE VIEW coverage AS
SELECT run_id, source, registry, repo, scope, complete, tags_listed, listed_at, reason FROM coverage_listings
UNION ALL
SELECT r.run_id, c.source, c.registry, c.repo, c.scope, c.complete, c.tags_listed,
       CASE WHEN c.run_id = r.run_id THEN c.listed_at ELSE x.finished_at END, c.reason
FROM coverage_runs r
JOIN coverage_changes c ON c.stream = r.stream AND c.position <= r.position
JOIN runs x ON x.id = r.run_id
WHERE c.scope IS NOT NULL
  AND c.position = (SELECT max(d.position) FROM coverage_changes d
                    WHERE d.stream = c.stream AND d.source = c.source AND d.registry = c.registry
                      AND d.repo = c.repo AND d.position <= r.position);

CREATE TRIGGER coverage_append_only_view_insert INSTEAD OF INSERT ON coverage
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;
CREATE TRIGGER coverage_append_only_view_update INSTEAD OF UPDATE ON coverage
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;
CREATE TRIGGER coverage_append_only_view_delete INSTEAD OF DELETE ON coverage
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;
