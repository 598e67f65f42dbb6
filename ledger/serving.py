"""`ledger serve`: Datasette on ledgers, read-only, each under its name and with queries across them all,
with limits that hold when others can reach it."""

import copy
import html
import os
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
from datasette.views.base import DatasetteError

from . import pictures, reads, store, tlogserve
from .reads import FLEET
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


# Templates over Datasette's own (`{% extends "default:..." %}`): a ledger's page starts with its answers, tables
# show digests short.
TEMPLATES = Path(__file__).parent / "templates"

# Datasette's own databases: a ledger cannot be served under either name.
RESERVED_NAMES = ("_internal", "_memory")


def ledger_names(db_paths):
    """{name: path}: each ledger's database name, its file stem, which is its URL, its metadata's key and
    its schema in the fleet-wide queries. Two files with one stem are refused, not renamed: a name made up
    from the order of the arguments would move URLs and the `ledger` column between restarts."""
    ledgers = {}
    for path in map(str, db_paths):
        name = Path(path).stem
        if name in RESERVED_NAMES:
            raise StoreError(f"{path}: cannot be served as /{name}, a name Datasette keeps for itself; "
                             "copy or link it under another name")
        if name in ledgers:
            raise StoreError(f"{ledgers[name]} and {path} would both be served as /{name}: "
                             "copy or link one of them under another name")
        ledgers[name] = path
    return ledgers


def attach_limit():
    """How many ledgers one connection can attach: SQLite's SQLITE_MAX_ATTACHED, 10 unless built otherwise
    (Datasette 0.65's crossdb stops at 10 too)."""
    with closing(sqlite3.connect(":memory:")) as conn:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED)


def has_fleet(ledgers):
    """Whether the fleet's database is served: two ledgers or more, all attached to one connection."""
    return 1 < len(ledgers) <= attach_limit()


def serving_metadata(*db_paths, sql=True):
    """metadata.yml keyed to each ledger's database name (the file stem), which Datasette requires, and with
    a fleet, the fleet-wide queries made for these ledgers.

    Names come from file names, so each is URL-encoded as Datasette routes it and HTML-escaped where it
    goes into the page. `sql` False blocks arbitrary SQL for everyone; canned queries still run."""
    metadata = yaml.safe_load(resources.files("ledger").joinpath("metadata.yml").read_text(encoding="utf-8"))
    names = list(ledger_names(db_paths))
    databases, ledger = metadata["databases"], metadata["databases"].pop("ledger")
    fleet = databases.pop(FLEET)
    for query, text in reads.CANNED.items():
        ledger["queries"][query]["sql"] = text  # said once, in reads.py, for `ledger at` and this query alike
    databases.update({name: copy.deepcopy(ledger) for name in names})
    if len(names) == 1:
        metadata["description_html"] = metadata.get("description_html", "").replace(
            'href="/ledger/', f'href="/{_href(names[0])}/')
    else:
        metadata["description_html"] = _fleet_description(names)
    if has_fleet(names):
        for query, text in reads.fleet_canned(names).items():
            fleet["queries"][query]["sql"] = text
        databases[FLEET] = fleet
    if not sql:
        metadata["allow_sql"] = False
    return metadata


def _href(name):
    return html.escape(tilde_encode(name))


def _fleet_description(names):
    """The home page's words for several ledgers: each one, and the fleet's queries when they are served."""
    ledgers = ", ".join(f'<a href="/{_href(name)}">{html.escape(name)}</a>' for name in names)
    text = f"Append-only, tamper-evident histories of container registry tags, from {len(names)} ledgers: {ledgers}."
    if has_fleet(names):
        text += (f' Across them all: <a href="/{FLEET}/fleet_current_tags">current tags</a>, '
                 f'<a href="/{FLEET}/fleet_changes">moves, removals and new images</a> or '
                 f'<a href="/{FLEET}/fleet_digest_usage">where a digest is used</a>.')
    return text


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
        conn = _opened(store.connect_readonly, self.path, [self.path])
        self._all_file_connections.append(conn)
        return conn


class _FleetDatabase(Database):
    """Datasette's cross-database `_memory`, with every ledger attached under its name, read-only as the store
    reads it. Datasette's own `crossdb` pastes path and name into `ATTACH "file:{path}?mode=ro" AS [{name}]`:
    a quote or `]` in a file name breaks it, and a `#` or `?` attaches another file."""

    def __init__(self, datasette, ledgers):
        super().__init__(datasette, is_memory=True)
        self.ledgers = ledgers

    def connect(self, write=False):
        if write:
            raise StoreError(f"{FLEET}: ledger serve never writes")
        conn = _opened(store.connect_attached, self.ledgers, list(self.ledgers.values()))
        self._all_file_connections.append(conn)
        return conn


def _opened(connect, what, paths):
    """connect(what), or, when a file served has gone (moved or deleted while served), an error page naming it:
    Datasette opens a connection per thread and database as it needs one, and SQLite says only `unable to
    open database file`."""
    try:
        return connect(what)
    except (sqlite3.Error, StoreError):
        gone = [path for path in paths if not os.path.exists(path)]
        if not gone:
            raise
        raise DatasetteError(f"{', '.join(gone)}: the file is gone (moved or deleted since ledger serve started); "
                             "put it back, or restart ledger serve without it", title="A ledger file is gone") from None


def ledger_datasette(db_paths, sql=True, checkpoints=None):
    """The Datasette `ledger serve` runs: each ledger under its name, the fleet's database when there is
    one, this module's connection limits as a plugin, and each ledger's tlog tiles (with its checkpoint
    file, from `checkpoints`, {name: path})."""
    plugin = sys.modules[__name__]
    if not pm.is_registered(plugin):
        pm.register(plugin, name=__name__)
    for module in (pictures, tlogserve):
        if not pm.is_registered(module):
            pm.register(module, name=module.__name__)
    ledgers = ledger_names(db_paths)
    datasette = Datasette([], metadata=serving_metadata(*db_paths, sql=sql), settings=SERVE_SETTINGS,
                          template_dir=str(TEMPLATES))
    tlogserve.configure(datasette, checkpoints or {})
    datasette.remove_database(FLEET)  # the plain `_memory` Datasette adds when it is given no files
    for name, path in ledgers.items():
        datasette.add_database(_LedgerDatabase(datasette, path=path, is_mutable=True), name=name)
    if has_fleet(ledgers):
        datasette.add_database(_FleetDatabase(datasette, ledgers), name=FLEET)
    return datasette


def checkpoint_files(ledgers, given):
    """{ledger name: checkpoint file} from `--checkpoint [NAME=]FILE` texts; NAME may be left out with one
    ledger. Each file must be readable now (it is read again on every request, as a signer replaces it)."""
    files = {}
    for text in given:
        name, equals, path = text.partition("=")
        if not (equals and name in ledgers):
            if len(ledgers) != 1:
                raise StoreError(f"--checkpoint {text}: with several ledgers, say whose it is: NAME=FILE, NAME one "
                                 f"of {', '.join(ledgers)}")
            name, path = next(iter(ledgers)), text
        if not os.access(path, os.R_OK) or os.path.isdir(path):
            raise StoreError(f"--checkpoint {text}: {path} is not a readable file")
        files[name] = path
    return files


def serve(db_paths, host, port, sql=None, checkpoints=()):
    """Serve until SIGINT or SIGTERM. `sql` None: arbitrary SQL only when bound to loopback."""
    for path in db_paths:
        store.open_readonly(path).close()  # refuses a missing file or not a ledger, and writes nothing
    ledgers = ledger_names(db_paths)
    checkpoint_paths = checkpoint_files(ledgers, checkpoints)
    loopback = is_loopback_host(host)
    sql = loopback if sql is None else sql
    if not loopback:
        click.echo(f"warning: listening on {host}, not loopback: the ledger is readable by anyone who can reach "
                   f"port {port}" + ("" if sql else " (arbitrary SQL is off; --sql turns it on)"), err=True)
    if len(ledgers) > attach_limit():
        click.echo(f"warning: no fleet-wide queries: they attach every ledger to one SQLite connection, which "
                   f"takes at most {attach_limit()}, and there are {len(ledgers)}", err=True)
    with closing(sqlite3.connect(":memory:")) as conn:  # the limit is the process's, whichever connection sets it
        conn.execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT}")
    datasette = ledger_datasette(db_paths, sql, checkpoint_paths)
    where = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    for name, path in ledgers.items():
        click.echo(f"serving {path} at {where}/{tilde_encode(name)}, its tlog tiles at "
                   f"{where}/{tilde_encode(name)}/-/tlog", err=True)
    if has_fleet(ledgers):
        click.echo(f"queries across all {len(ledgers)} ledgers at {where}/{FLEET}", err=True)
    # uvicorn stops gracefully on either signal, then raises it again: ignored then, the exit status is 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    uvicorn.run(datasette.app(), host=host, port=port, log_level="info", lifespan="on")
