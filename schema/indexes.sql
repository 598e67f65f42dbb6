-- Re-applied on every open (a table.transform() drops indexes).
CREATE INDEX IF NOT EXISTS events_by_key ON events (registry, repo, tag, id);
CREATE INDEX IF NOT EXISTS events_by_digest ON events (digest, id);
CREATE INDEX IF NOT EXISTS events_by_image ON events (image, id);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, kind);
CREATE INDEX IF NOT EXISTS events_by_time ON events (observed_at);
CREATE INDEX IF NOT EXISTS errors_by_run ON errors (run_id);
CREATE INDEX IF NOT EXISTS platforms_by_digest ON platforms (digest);
