-- Re-applied by a writer when it or the file's schema changed (a table.transform() drops indexes).
-- (key_id, observed_at) serves one tag's history and the state of a tag at a time.
-- Every index on event_log costs append speed and bytes per event, so time windows
-- and "where is this digest used" scan the narrow event_log (newest first, by id)
-- instead. Digests are found by a prefix of their hex, which a query can compute
-- from 'sha256:...' text (SQLite 3.40 has no unhex()).
CREATE INDEX IF NOT EXISTS event_log_by_key ON event_log (key_id, observed_at);
CREATE INDEX IF NOT EXISTS digests_by_prefix ON digests (substr(hex(digest), 1, 12));
CREATE INDEX IF NOT EXISTS tag_keys_by_repo_tag ON tag_keys (repo, tag);
CREATE INDEX IF NOT EXISTS errors_by_run ON errors (run_id);
CREATE INDEX IF NOT EXISTS platforms_by_digest ON platforms (digest);
-- A digest's OCI 1.1 referrers, for current_tags' signed / attested / sbom and current_referrers.
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests (subject) WHERE subject IS NOT NULL;
-- One result per signature, subject and key (NULL: none configured), looked up by current_tags' signed.
CREATE UNIQUE INDEX IF NOT EXISTS signature_checks_once ON signature_checks (signature, subject, coalesce(key, ''));
-- Coverage (schema 19): a run's changes, for its seal; a stream's runs in order, for "the run of the
-- stream before"; a repository's changes across streams, for its last complete listing; the per-run
-- rows of before, for the same question.
CREATE INDEX IF NOT EXISTS coverage_changes_by_run ON coverage_changes (run_id);
CREATE UNIQUE INDEX IF NOT EXISTS coverage_runs_by_stream ON coverage_runs (stream, position);
CREATE INDEX IF NOT EXISTS coverage_changes_by_repo ON coverage_changes (registry, repo, source);
CREATE INDEX IF NOT EXISTS coverage_listings_by_repo ON coverage_listings (registry, repo, source, listed_at)
WHERE complete;
-- A key's events at one digest, together: whether a move goes back to a digest the key held before
-- (tag_history's change, the rollbacks view) is one probe, and every digest seen twice by a key one pass.
CREATE INDEX IF NOT EXISTS event_log_by_digest ON event_log (digest_id, key_id);
