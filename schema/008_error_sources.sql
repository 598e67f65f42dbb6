-- Schema version 8: an error says which source met it.
--
-- A Docker daemon's failures were filed as if a registry named 'daemon:HOST' had failed. Now `source`
-- says 'registry' or 'daemon:HOST' (as coverage and tag_keys do), and `registry` the registry the
-- failure concerns: '' for the whole daemon (unreachable, a bad answer), the image's registry for one
-- of its names. Rows of before keep what they say (their run seals cover them): a daemon's there have
-- source 'registry' and registry 'daemon:HOST'. The seal covers the column from now on, in a row's
-- digest only when it is not 'registry' (ledger/seals.py), so the rows sealed before keep their digests.
ALTER TABLE errors ADD COLUMN source TEXT NOT NULL DEFAULT 'registry';
