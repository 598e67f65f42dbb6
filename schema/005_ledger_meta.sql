-- Schema version 5: what the ledger keeps about its own file. 'schema' is a
-- fingerprint of the re-applied schema (triggers.sql, indexes.sql, views.sql)
-- and of what they made of this file, so a writer re-applies them only when
-- they changed, or when someone dropped or edited one; a plain open writes
-- nothing. Not ledger data and not hash-chained: a forged value can only keep
-- a writer from re-applying the schema; `ledger verify` never relies on it.
CREATE TABLE ledger_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
