-- Re-applied on every open. Append-only is enforced by the database itself.

DROP TRIGGER IF EXISTS events_append_only_update;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;

DROP TRIGGER IF EXISTS events_append_only_delete;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;

-- INSERT OR REPLACE deletes the old row without firing DELETE triggers
-- (recursive_triggers is off on a plain connection), so refuse any insert
-- that is not a fresh append to the end of the chain.
DROP TRIGGER IF EXISTS events_append_only_insert;
CREATE TRIGGER events_append_only_insert BEFORE INSERT ON events
WHEN NEW.id IS NULL
  OR NEW.id <= coalesce((SELECT max(id) FROM events), 0)
  OR NEW.prev_hash IS NOT coalesce(
       (SELECT hash FROM events ORDER BY id DESC LIMIT 1),
       '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN SELECT RAISE(ABORT, 'ledger: events may only be appended to the end of the hash chain'); END;

DROP TRIGGER IF EXISTS events_keep_tag_state;
CREATE TRIGGER events_keep_tag_state AFTER INSERT ON events
BEGIN
    INSERT INTO tag_state (registry, repo, tag, event_id, kind, observed_at, digest, image,
                           media_type, created, author, size, first_seen)
    VALUES (NEW.registry, NEW.repo, NEW.tag, NEW.id, NEW.kind, NEW.observed_at, NEW.digest,
            NEW.image, NEW.media_type, NEW.created, NEW.author, NEW.size, NEW.observed_at)
    ON CONFLICT (registry, repo, tag) DO UPDATE SET
        event_id = excluded.event_id, kind = excluded.kind, observed_at = excluded.observed_at,
        digest = excluded.digest, image = excluded.image, media_type = excluded.media_type,
        created = excluded.created, author = excluded.author, size = excluded.size,
        first_seen = CASE WHEN excluded.kind = 'added' THEN excluded.observed_at ELSE first_seen END;
END;

-- A run is finished exactly once; what it started with never changes.
DROP TRIGGER IF EXISTS runs_finish_once;
CREATE TRIGGER runs_finish_once BEFORE UPDATE ON runs
WHEN OLD.finished_at IS NOT NULL OR NEW.finished_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.started_at IS NOT OLD.started_at
  OR NEW.source IS NOT OLD.source OR NEW.targets IS NOT OLD.targets
BEGIN SELECT RAISE(ABORT, 'ledger: a run is finished once and never edited'); END;

DROP TRIGGER IF EXISTS runs_append_only_delete;
CREATE TRIGGER runs_append_only_delete BEFORE DELETE ON runs
BEGIN SELECT RAISE(ABORT, 'ledger: runs is append-only'); END;

DROP TRIGGER IF EXISTS runs_append_only_insert;
CREATE TRIGGER runs_append_only_insert BEFORE INSERT ON runs
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM runs WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger: runs is append-only'); END;

-- Write-once tables: facts and run records are never changed or replaced.
DROP TRIGGER IF EXISTS manifests_append_only_update;
CREATE TRIGGER manifests_append_only_update BEFORE UPDATE ON manifests
BEGIN SELECT RAISE(ABORT, 'ledger: manifests is append-only'); END;

DROP TRIGGER IF EXISTS manifests_append_only_delete;
CREATE TRIGGER manifests_append_only_delete BEFORE DELETE ON manifests
BEGIN SELECT RAISE(ABORT, 'ledger: manifests is append-only'); END;

DROP TRIGGER IF EXISTS manifests_append_only_insert;
CREATE TRIGGER manifests_append_only_insert BEFORE INSERT ON manifests
WHEN EXISTS (SELECT 1 FROM manifests WHERE digest = NEW.digest)
BEGIN SELECT RAISE(ABORT, 'ledger: manifests is append-only'); END;

DROP TRIGGER IF EXISTS platforms_append_only_update;
CREATE TRIGGER platforms_append_only_update BEFORE UPDATE ON platforms
BEGIN SELECT RAISE(ABORT, 'ledger: platforms is append-only'); END;

DROP TRIGGER IF EXISTS platforms_append_only_delete;
CREATE TRIGGER platforms_append_only_delete BEFORE DELETE ON platforms
BEGIN SELECT RAISE(ABORT, 'ledger: platforms is append-only'); END;

DROP TRIGGER IF EXISTS platforms_append_only_insert;
CREATE TRIGGER platforms_append_only_insert BEFORE INSERT ON platforms
WHEN EXISTS (SELECT 1 FROM platforms WHERE index_digest = NEW.index_digest AND position = NEW.position)
BEGIN SELECT RAISE(ABORT, 'ledger: platforms is append-only'); END;

DROP TRIGGER IF EXISTS coverage_append_only_update;
CREATE TRIGGER coverage_append_only_update BEFORE UPDATE ON coverage
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;

DROP TRIGGER IF EXISTS coverage_append_only_delete;
CREATE TRIGGER coverage_append_only_delete BEFORE DELETE ON coverage
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;

DROP TRIGGER IF EXISTS coverage_append_only_insert;
CREATE TRIGGER coverage_append_only_insert BEFORE INSERT ON coverage
WHEN EXISTS (SELECT 1 FROM coverage WHERE run_id = NEW.run_id AND registry = NEW.registry AND repo = NEW.repo)
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;

DROP TRIGGER IF EXISTS errors_append_only_update;
CREATE TRIGGER errors_append_only_update BEFORE UPDATE ON errors
BEGIN SELECT RAISE(ABORT, 'ledger: errors is append-only'); END;

DROP TRIGGER IF EXISTS errors_append_only_delete;
CREATE TRIGGER errors_append_only_delete BEFORE DELETE ON errors
BEGIN SELECT RAISE(ABORT, 'ledger: errors is append-only'); END;

DROP TRIGGER IF EXISTS errors_append_only_insert;
CREATE TRIGGER errors_append_only_insert BEFORE INSERT ON errors
WHEN EXISTS (SELECT 1 FROM errors WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger: errors is append-only'); END;
