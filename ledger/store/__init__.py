"""The SQLite ledger: schema, append-only writes, the hash chain and its verification.

database (open, connect, migrate, schema drift), encoding (digests, an event's canonical content and
hash), facts (manifests as stored, what the ledger knows), runs (a run's lifecycle and locks), append
(classify and chain a run's events), coverage (which repositories a run listed, as changes), changes
(what a run appended, for its notification),
verification (verify).

Each name loads its module when first used: a read command opens the file and never imports the
classification, manifest parsing or verification code.
"""

import importlib

_WHERE = {
    "append_run": "append",
    "run_changes": "changes",
    "SCHEMA_VERSION": "database", "Ledger": "database", "StoreError": "database", "connect_attached": "database",
    "connect_readonly": "database", "schema_names": "database",
    "open_db": "database", "open_readonly": "database",
    "GENESIS": "encoding", "REGISTRY": "encoding", "digest_key": "encoding", "digest_text": "encoding",
    "event_hash": "encoding",
    "children_of": "facts", "known_digests": "facts", "known_images": "facts", "known_indexes": "facts",
    "held_repo": "facts", "live_repos": "facts", "manifest_body": "facts", "signature_checks_done": "facts",
    "config_sources": "facts", "stored_config": "facts", "tags_held": "facts", "rate_limited_registries": "facts",
    "stored_facts": "facts",
    "finish_failed_run": "runs", "start_run": "runs",
    "verify": "verification",
}
_MODULES = {"append", "changes", "database", "encoding", "facts", "runs", "verification"}

__all__ = sorted(_WHERE)


def __getattr__(name):
    """Loaded once, then a plain attribute: a run asks for some of these once per digest."""
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        value = globals()[name] = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
