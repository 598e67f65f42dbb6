-- Schema version 19: coverage is recorded as changes, so a run where nothing changed costs O(1) bytes.
--
-- Before, every run wrote a coverage row per repository it listed (~94 bytes with its seal digest):
-- at 2,000 repositories every 5 minutes, 20 GB a year of "nothing happened". Now the rows of before
-- stay as they were in `coverage_listings` (their run seals cover them), and from this version on a
-- run writes one `coverage_runs` row, and a `coverage_changes` row only for a repository whose listing
-- differs from the one the run before it in the same stream made. `coverage` is a view answering the
-- same columns from both (schema/views.sql): "was R listed completely in run N" is the latest change
-- of R at or before N's place in its stream (ledger/store/coverage.py).
ALTER TABLE coverage RENAME TO coverage_listings;

-- A run that listed anything: its stream, the runs it is compared with (the same source and targets,
-- so a one-off collect of one repository never reads as the watch loop's registry having shrunk), and
-- its place in the order runs were recorded: its run seal's id, so runs of one stream that finished
-- out of order are compared in the order they were appended.
CREATE TABLE IF NOT EXISTS coverage_runs (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    stream BLOB NOT NULL,             -- 8 bytes of sha256 over the run's source and targets
    position INTEGER NOT NULL         -- the id of the run's seal
);

-- A repository's listing that differs from the one the previous run of the stream made, or that
-- was not made at all: it holds for every later run of the stream until the repository's next change.
-- scope NULL: the stream's run no longer listed the repository (it left the catalog, or could not be
-- reached); every other column as coverage had them.
CREATE TABLE IF NOT EXISTS coverage_changes (
    stream BLOB NOT NULL,
    source TEXT NOT NULL,
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    position INTEGER NOT NULL,        -- the run's place (coverage_runs.position)
    run_id INTEGER NOT NULL REFERENCES runs(id),
    scope TEXT,                       -- '*' or what narrows it (as coverage.scope); NULL: no longer listed
    complete INTEGER,
    tags_listed INTEGER,
    listed_at TEXT,                   -- when this run listed it (a later run of the same listing: its finished_at)
    reason TEXT,
    PRIMARY KEY (stream, source, registry, repo, position)
) WITHOUT ROWID;
