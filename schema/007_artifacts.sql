-- Schema version 7: what a manifest is, not only what shape it has.
--
-- Registries are full of signatures, attestations, SBOMs and referrer lists
-- that look like images or multi-arch indexes. Each manifest row now says
-- what it refers to (`subject`, the digest of its OCI 1.1 subject), what it
-- is (`artifact_kind`: signature, attestation, sbom, referrers, helm-chart,
-- artifact, or NULL for an ordinary image or platform index), its top-level
-- `annotations` (sorted JSON, dropped past 64 KiB), and a Helm chart's `name`
-- and `version` (from its config). Like kind and created, they are derived
-- from the stored bytes (ledger/manifests.py) and `ledger verify` derives
-- them again and compares; they are not in the seal's row digest (its column
-- list is fixed), so rows of before can gain them. Rows that keep bytes get
-- them right after this file (store._fill_artifact_facts), rows without bytes
-- when the next run that meets the digest fills the bytes in. The update
-- guard is dropped for that fill and re-created by triggers.sql after it.
ALTER TABLE manifests ADD COLUMN subject TEXT;
ALTER TABLE manifests ADD COLUMN artifact_kind TEXT;
ALTER TABLE manifests ADD COLUMN annotations TEXT;
ALTER TABLE manifests ADD COLUMN name TEXT;
ALTER TABLE manifests ADD COLUMN version TEXT;
DROP TRIGGER IF EXISTS manifests_append_only_update;
