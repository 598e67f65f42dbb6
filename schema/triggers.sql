-- Re-applied by a writer when it or the file's schema changed (a dropped trigger
-- comes back). Append-only is enforced by the database itself.

DROP TRIGGER IF EXISTS event_log_append_only_update;
CREATE TRIGGER event_log_append_only_update BEFORE UPDATE ON event_log
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;

DROP TRIGGER IF EXISTS event_log_append_only_delete;
CREATE TRIGGER event_log_append_only_delete BEFORE DELETE ON event_log
BEGIN SELECT RAISE(ABORT, 'ledger: events is append-only'); END;

-- INSERT OR REPLACE deletes the old row without firing DELETE triggers
-- (recursive_triggers is off on a plain connection), so refuse any insert
-- that is not the next row of the chain.
DROP TRIGGER IF EXISTS event_log_append_only_insert;
CREATE TRIGGER event_log_append_only_insert BEFORE INSERT ON event_log
WHEN NEW.id IS NULL OR NEW.id IS NOT coalesce((SELECT max(id) FROM event_log), 0) + 1
BEGIN SELECT RAISE(ABORT, 'ledger: events may only be appended to the end of the hash chain'); END;

-- Interned keys, digests and media types are never deleted. Their text is
-- part of every event's hash, so an edit shows in `ledger verify`; tag_keys'
-- state columns and digests.first_event_id are derived from the events
-- (written by the append, checked by `ledger verify`). They carry no per-row
-- update or insert guard on the hot path: each trigger halves append speed.
DROP TRIGGER IF EXISTS tag_keys_append_only_delete;
CREATE TRIGGER tag_keys_append_only_delete BEFORE DELETE ON tag_keys
BEGIN SELECT RAISE(ABORT, 'ledger: tag_keys is append-only'); END;

DROP TRIGGER IF EXISTS tag_keys_append_only_insert;
CREATE TRIGGER tag_keys_append_only_insert BEFORE INSERT ON tag_keys
WHEN EXISTS (SELECT 1 FROM tag_keys WHERE id = NEW.id)
  OR EXISTS (SELECT 1 FROM tag_keys WHERE registry = NEW.registry AND repo = NEW.repo AND tag = NEW.tag
             AND source = NEW.source)
BEGIN SELECT RAISE(ABORT, 'ledger: tag_keys is append-only'); END;

DROP TRIGGER IF EXISTS digests_append_only_delete;
CREATE TRIGGER digests_append_only_delete BEFORE DELETE ON digests
BEGIN SELECT RAISE(ABORT, 'ledger: digests is append-only'); END;

DROP TRIGGER IF EXISTS digests_append_only_update;
CREATE TRIGGER digests_append_only_update BEFORE UPDATE ON digests
WHEN OLD.first_event_id IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.digest IS NOT OLD.digest
BEGIN SELECT RAISE(ABORT, 'ledger: digests is append-only'); END;

DROP TRIGGER IF EXISTS media_types_append_only_update;
CREATE TRIGGER media_types_append_only_update BEFORE UPDATE ON media_types
BEGIN SELECT RAISE(ABORT, 'ledger: media_types is append-only'); END;

DROP TRIGGER IF EXISTS media_types_append_only_delete;
CREATE TRIGGER media_types_append_only_delete BEFORE DELETE ON media_types
BEGIN SELECT RAISE(ABORT, 'ledger: media_types is append-only'); END;

DROP TRIGGER IF EXISTS media_types_append_only_insert;
CREATE TRIGGER media_types_append_only_insert BEFORE INSERT ON media_types
WHEN EXISTS (SELECT 1 FROM media_types WHERE id = NEW.id OR media_type = NEW.media_type)
BEGIN SELECT RAISE(ABORT, 'ledger: media_types is append-only'); END;

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
-- The one update a manifest row takes: its bytes filled in, once, when a row
-- from before schema version 6 (which kept none) meets its digest again, with
-- the columns of schema 7 and 11 derived from them (NULL until then).
DROP TRIGGER IF EXISTS manifests_append_only_update;
CREATE TRIGGER manifests_append_only_update BEFORE UPDATE ON manifests
WHEN OLD.body IS NOT NULL OR NEW.body IS NULL OR OLD.config_body IS NOT NULL
  OR (OLD.subject IS NOT NULL AND NEW.subject IS NOT OLD.subject)
  OR (OLD.artifact_kind IS NOT NULL AND NEW.artifact_kind IS NOT OLD.artifact_kind)
  OR (OLD.annotations IS NOT NULL AND NEW.annotations IS NOT OLD.annotations)
  OR (OLD.name IS NOT NULL AND NEW.name IS NOT OLD.name)
  OR (OLD.version IS NOT NULL AND NEW.version IS NOT OLD.version)
  OR (OLD.category IS NOT NULL AND NEW.category IS NOT OLD.category)
  OR NEW.digest IS NOT OLD.digest OR NEW.media_type IS NOT OLD.media_type OR NEW.kind IS NOT OLD.kind
  OR NEW.config_digest IS NOT OLD.config_digest OR NEW.config_media_type IS NOT OLD.config_media_type
  OR NEW.artifact_type IS NOT OLD.artifact_type OR NEW.created IS NOT OLD.created OR NEW.author IS NOT OLD.author
  OR NEW.size IS NOT OLD.size OR NEW.layers IS NOT OLD.layers OR NEW.os IS NOT OLD.os
  OR NEW.architecture IS NOT OLD.architecture OR NEW.variant IS NOT OLD.variant OR NEW.os_version IS NOT OLD.os_version
  OR NEW.labels IS NOT OLD.labels OR NEW.first_run_id IS NOT OLD.first_run_id
BEGIN SELECT RAISE(ABORT, 'ledger: manifests is append-only'); END;

DROP TRIGGER IF EXISTS manifests_append_only_delete;
CREATE TRIGGER manifests_append_only_delete BEFORE DELETE ON manifests
BEGIN SELECT RAISE(ABORT, 'ledger: manifests is append-only'); END;

DROP TRIGGER IF EXISTS manifests_append_only_insert;
CREATE TRIGGER manifests_append_only_insert BEFORE INSERT ON manifests
WHEN EXISTS (SELECT 1 FROM manifests WHERE digest = NEW.digest)
BEGIN SELECT RAISE(ABORT, 'ledger: manifests is append-only'); END;

DROP TRIGGER IF EXISTS images_append_only_update;
CREATE TRIGGER images_append_only_update BEFORE UPDATE ON images
BEGIN SELECT RAISE(ABORT, 'ledger: images is append-only'); END;

DROP TRIGGER IF EXISTS images_append_only_delete;
CREATE TRIGGER images_append_only_delete BEFORE DELETE ON images
BEGIN SELECT RAISE(ABORT, 'ledger: images is append-only'); END;

DROP TRIGGER IF EXISTS images_append_only_insert;
CREATE TRIGGER images_append_only_insert BEFORE INSERT ON images
WHEN EXISTS (SELECT 1 FROM images WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger: images is append-only'); END;

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

-- The per-run coverage rows written before schema 19: closed (a run now writes coverage_runs and
-- coverage_changes).
DROP TRIGGER IF EXISTS coverage_append_only_update;
CREATE TRIGGER coverage_append_only_update BEFORE UPDATE ON coverage_listings
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;

DROP TRIGGER IF EXISTS coverage_append_only_delete;
CREATE TRIGGER coverage_append_only_delete BEFORE DELETE ON coverage_listings
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;

DROP TRIGGER IF EXISTS coverage_append_only_insert;
CREATE TRIGGER coverage_append_only_insert BEFORE INSERT ON coverage_listings
BEGIN SELECT RAISE(ABORT, 'ledger: coverage is append-only'); END;

DROP TRIGGER IF EXISTS coverage_runs_append_only_update;
CREATE TRIGGER coverage_runs_append_only_update BEFORE UPDATE ON coverage_runs
BEGIN SELECT RAISE(ABORT, 'ledger: coverage_runs is append-only'); END;

DROP TRIGGER IF EXISTS coverage_runs_append_only_delete;
CREATE TRIGGER coverage_runs_append_only_delete BEFORE DELETE ON coverage_runs
BEGIN SELECT RAISE(ABORT, 'ledger: coverage_runs is append-only'); END;

DROP TRIGGER IF EXISTS coverage_runs_append_only_insert;
CREATE TRIGGER coverage_runs_append_only_insert BEFORE INSERT ON coverage_runs
WHEN EXISTS (SELECT 1 FROM coverage_runs WHERE run_id = NEW.run_id)
BEGIN SELECT RAISE(ABORT, 'ledger: coverage_runs is append-only'); END;

DROP TRIGGER IF EXISTS coverage_changes_append_only_update;
CREATE TRIGGER coverage_changes_append_only_update BEFORE UPDATE ON coverage_changes
BEGIN SELECT RAISE(ABORT, 'ledger: coverage_changes is append-only'); END;

DROP TRIGGER IF EXISTS coverage_changes_append_only_delete;
CREATE TRIGGER coverage_changes_append_only_delete BEFORE DELETE ON coverage_changes
BEGIN SELECT RAISE(ABORT, 'ledger: coverage_changes is append-only'); END;

DROP TRIGGER IF EXISTS coverage_changes_append_only_insert;
CREATE TRIGGER coverage_changes_append_only_insert BEFORE INSERT ON coverage_changes
WHEN EXISTS (SELECT 1 FROM coverage_changes WHERE stream = NEW.stream AND source = NEW.source
             AND registry = NEW.registry AND repo = NEW.repo AND position = NEW.position)
BEGIN SELECT RAISE(ABORT, 'ledger: coverage_changes is append-only'); END;

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

DROP TRIGGER IF EXISTS signature_checks_append_only_update;
CREATE TRIGGER signature_checks_append_only_update BEFORE UPDATE ON signature_checks
BEGIN SELECT RAISE(ABORT, 'ledger: signature_checks is append-only'); END;

DROP TRIGGER IF EXISTS signature_checks_append_only_delete;
CREATE TRIGGER signature_checks_append_only_delete BEFORE DELETE ON signature_checks
BEGIN SELECT RAISE(ABORT, 'ledger: signature_checks is append-only'); END;

DROP TRIGGER IF EXISTS signature_checks_append_only_insert;
CREATE TRIGGER signature_checks_append_only_insert BEFORE INSERT ON signature_checks
WHEN EXISTS (SELECT 1 FROM signature_checks WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger: signature_checks is append-only'); END;

-- Seals are appended at the end of their chain and never changed.
DROP TRIGGER IF EXISTS run_seals_append_only_update;
CREATE TRIGGER run_seals_append_only_update BEFORE UPDATE ON run_seals
BEGIN SELECT RAISE(ABORT, 'ledger: run_seals is append-only'); END;

DROP TRIGGER IF EXISTS run_seals_append_only_delete;
CREATE TRIGGER run_seals_append_only_delete BEFORE DELETE ON run_seals
BEGIN SELECT RAISE(ABORT, 'ledger: run_seals is append-only'); END;

DROP TRIGGER IF EXISTS run_seals_append_only_insert;
CREATE TRIGGER run_seals_append_only_insert BEFORE INSERT ON run_seals
WHEN NEW.id IS NULL OR NEW.id IS NOT coalesce((SELECT max(id) FROM run_seals), 0) + 1
BEGIN SELECT RAISE(ABORT, 'ledger: seals may only be appended to the end of their chain'); END;
