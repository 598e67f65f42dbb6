-- Schema version 2: Docker Hub style rate limits seen by each run, as JSON
-- {"registry": {"limit": N, "remaining": N}}.
ALTER TABLE runs ADD COLUMN rate_limits TEXT;
