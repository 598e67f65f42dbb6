-- Schema version 3: which process ran each run, so a run whose process died
-- (kill -9, power loss) can be told from one still going, and closed as failed.
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN pid INTEGER;
