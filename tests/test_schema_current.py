"""schema/current.sql is the schema a fresh ledger has now: a schema change without regenerating it fails."""

import importlib.util
import sqlite3
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "schema_current.py"


def _generator():
    spec = importlib.util.spec_from_file_location("schema_current", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_current_sql_is_what_a_fresh_ledger_has():
    generator = _generator()
    written = generator.CURRENT.read_text(encoding="utf-8") if generator.CURRENT.exists() else ""
    assert written == generator.render(), (
        f"schema/current.sql is out of date with the schema a fresh ledger gets: run `{generator.COMMAND}` "
        "and commit the result")


def test_current_sql_holds_every_object_of_a_fresh_ledger(tmp_path):
    """Read back as SQL, the file makes the same tables, indexes, triggers and views, with the same text."""
    from ledger import store

    db = store.open_db(str(tmp_path / "fresh.db"))
    try:
        fresh = _objects(db.conn)
    finally:
        db.conn.close()
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript((ROOT / "schema" / "current.sql").read_text(encoding="utf-8"))
        assert _objects(conn) == fresh
    finally:
        conn.close()


def _objects(conn):
    return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
