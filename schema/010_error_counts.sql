-- Schema version 10: an errors row stands for every failure of its kind.
--
-- A registry that answered each referrers request with the same 9,000 descriptors that lie made 180,000
-- rows of one line in one run. Now a run keeps one row per (source, registry, repo, stage, code): the
-- first failure of that kind as its sample (message, tag, digest, status), and `count` the failures it
-- stands for; `runs.errors` is their total. Rows of before stand for one each. The seal covers the
-- column from now on, in a row's digest only when it is not 1 (ledger/seals.py), so the rows sealed
-- before keep their digests.
ALTER TABLE errors ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (typeof(count) = 'integer' AND count >= 1);
