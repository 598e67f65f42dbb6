"""`ledger serve`: Datasette on a ledger, read-only, with limits that hold when others can reach it."""

import html
import signal
import sqlite3
import sys
from contextlib import closing
from importlib import resources
from pathlib import Path

import click
import uvicorn
import yaml
from datasette import hookimpl
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm
from datasette.utils import tilde_encode

from . import reads, store
from .references import is_loopback_host
from .store import StoreError

# Facet suggestions group every column of a page's whole view, each up to its time limit: seconds per
# page on a ledger of a million events. Facets chosen in the column menu still work.
SERVE_SETTINGS = {"suggest_facets": False}

# The longest string or blob one SQL value may be. Datasette's time limit cannot stop a single function
# call, so `randomblob(900000000)` would allocate it all; with this limit it fails at once. The largest
# body the collector keeps is an 8 MiB image config, and its hex() is 16 MiB: 32 MiB serves all of that.
VALUE_LIMIT = 32 * 1024 * 1024
# All of SQLite's memory in the serving process: one row of many large values is allocated whole
# before the time limit is looked at. Page caches and sorts of the biggest ledger use a few MiB each.
HEAP_LIMIT = 256 * 1024 * 1024


def serving_metadata(db_path, sql=True):
    """metadata.yml keyed to this ledger's database name (the file stem), which Datasette requires.

    The name comes from a file name, so it is URL-encoded as Datasette routes it and HTML-escaped where
    it goes into the page. `sql` False blocks arbitrary SQL for everyone; canned queries still run."""
    metadata = yaml.safe_load(resources.files("ledger").joinpath("metadata.yml").read_text(encoding="utf-8"))
    name = Path(db_path).stem
    databases = metadata.get("databases", {})
    queries = databases.get("ledger", {}).get("queries", {})
    for query, text in reads.CANNED.items():
        queries[query]["sql"] = text  # said once, in reads.py, for `ledger at` and this query alike
    if "ledger" in databases:
        databases[name] = databases.pop("ledger")
    metadata["description_html"] = metadata.get("description_html", "").replace(
        'href="/ledger/', f'href="/{html.escape(tilde_encode(name))}/')
    if not sql:
        metadata["allow_sql"] = False
    return metadata


@hookimpl
def prepare_connection(conn):
    """Datasette's hook, for `ledger serve` only: no SQL value longer than VALUE_LIMIT."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_LIMIT)


class _LedgerDatabase(Database):
    """Datasette's database, connected as the store reads: Datasette builds `file:{path}?mode=ro` unquoted,
    so a `#`, `?` or `%` in the path would open another file, and it has no fallback for a read-only
    directory."""

    def connect(self, write=False):
        if write:
            raise StoreError(f"{self.path}: ledger serve never writes")
        conn = store.connect_readonly(self.path)
        self._all_file_connections.append(conn)
        return conn


def ledger_datasette(db_path, sql=True):
    """The Datasette `ledger serve` runs, with this module's connection limits as a plugin."""
    plugin = sys.modules[__name__]
    if not pm.is_registered(plugin):
        pm.register(plugin, name=__name__)
    datasette = Datasette([str(db_path)], metadata=serving_metadata(db_path, sql), settings=SERVE_SETTINGS)
    name = Path(db_path).stem
    datasette.remove_database(name)
    datasette.add_database(_LedgerDatabase(datasette, path=str(db_path), is_mutable=True), name=name)
    return datasette


def serve(db_path, host, port, sql=None):
    """Serve until SIGINT or SIGTERM. `sql` None: arbitrary SQL only when bound to loopback."""
    store.open_readonly(db_path).close()  # refuses a missing file or not a ledger, and writes nothing
    loopback = is_loopback_host(host)
    sql = loopback if sql is None else sql
    if not loopback:
        click.echo(f"warning: listening on {host}, not loopback: the ledger is readable by anyone who can reach "
                   f"port {port}" + ("" if sql else " (arbitrary SQL is off; --sql turns it on)"), err=True)
    with closing(sqlite3.connect(":memory:")) as conn:  # the limit is the process's, whichever connection sets it
        conn.execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT}")
    datasette = ledger_datasette(db_path, sql)
    where = f"[{host}]" if ":" in host else host
    click.echo(f"serving {db_path} at http://{where}:{port}/{tilde_encode(Path(db_path).stem)}", err=True)
    # uvicorn stops gracefully on either signal, then raises it again: ignored then, the exit status is 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    uvicorn.run(datasette.app(), host=host, port=port, log_level="info", lifespan="on")

