"""The SQLite ledger: schema, append-only writes, the hash chain and its verification. Every write to a
ledger file is made here.

database (open, connect, migrate, schema drift), encoding (digests, an event's canonical content and
hash), facts (manifests as stored, what the ledger knows), runs (a run's lifecycle and locks), append
(classify and chain a run's events), coverage (which repositories a run listed, as changes), seals (every
finished run's rows, hash-chained), changes (what a run appended, for its notification), verification
(verify).

Plain imports: a read command loads these modules too, so what is slow to import (manifest parsing,
RE2, process pools) is imported inside the functions that use it (tests/test_cli.py checks it).
"""

from .append import append_run
from .changes import run_changes
from .database import (SCHEMA_VERSION, Ledger, StoreError, connect_attached, connect_readonly, open_db, open_readonly,
                       schema_names, snapshot)
from .encoding import GENESIS, REGISTRY, event_hash
from .facts import (children_of, config_sources, held_repo, known_digests, known_images, known_indexes, live_repos,
                    manifest_body, rate_limited_registries, signature_checks_done, stored_config,
                    tags_held)
from .runs import finish_failed_run, start_run
from .verification import verify

__all__ = ["GENESIS", "REGISTRY", "SCHEMA_VERSION", "Ledger", "StoreError", "append_run", "children_of",
           "config_sources", "connect_attached", "connect_readonly", "event_hash",
           "finish_failed_run", "held_repo", "known_digests", "known_images", "known_indexes", "live_repos",
           "manifest_body", "open_db", "open_readonly", "rate_limited_registries", "run_changes", "schema_names",
           "signature_checks_done", "snapshot", "start_run", "stored_config", "tags_held", "verify"]
