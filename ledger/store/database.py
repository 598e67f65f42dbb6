"""Opening a ledger file: connections (read-only ones too), the schema applied and migrated, and how
the file's schema differs from the shipped one."""

import contextlib
import itertools
import os
import sqlite3
import urllib.parse
from hashlib import sha256
from importlib import resources

from ..paths import PathError, check_file
from . import seals
from .encoding import _CANONICAL, digest_key
from .facts import fill_artifact_facts, fill_categories

SCHEMA_VERSION = 19
READABLE_FROM = 4  # the oldest schema whose tables reading and verify understand: the compact event log
BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 65_536  # the default 2 MB thrashes on the key index of a million-event ledger
_REAPPLIED = ("triggers.sql", "indexes.sql", "views.sql")
_LEDGER_TABLES = {"runs", "events", "manifests", "platforms", "coverage", "errors", "tag_state", "coverage_listings",
                  "coverage_runs", "coverage_changes", "signature_checks",
                  "event_log", "tag_keys", "digests", "media_types", "images", "ledger_meta", "run_seals"}


def _after_migration(number, conn):
    """What a migration needs done in Python."""
    if number == 6:
        seals.seal_existing(conn)
    elif number == 7:
        fill_artifact_facts(conn)
    elif number == 11:
        fill_categories(conn)


class StoreError(Exception):
    """A ledger file that cannot be used; the message names the file."""


def _schema_file(name):
    return resources.files("ledger").joinpath("schema", name).read_text(encoding="utf-8")


def _migrations():
    """Numbered files `NNN_*.sql`, each bringing the schema to version NNN."""
    files = sorted(f.name for f in resources.files("ledger").joinpath("schema").iterdir() if f.name[:3].isdigit())
    return [(int(name[:3]), name) for name in files]


def _register_functions(conn):
    conn.create_function("ledger_digest_key", 1, digest_key, deterministic=True)
    conn.create_function("ledger_unhex", 1, lambda text: None if text is None else bytes.fromhex(text),
                         deterministic=True)


def _uri(path, **query):
    """A SQLite URI naming exactly this file: a `#`, `?` or `%` left as it is would end the path early
    or be decoded, and open another file."""
    return f"file:{urllib.parse.quote(os.fsencode(os.path.abspath(path)))}?{urllib.parse.urlencode(query)}"


def _connect(uri, probe=False):
    """A connection; with `probe`, one that has read once (SQLite opens a WAL database's side files
    on the first read, not on connect)."""
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False)
    try:
        _register_functions(conn)
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if probe:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _regular(path):
    """Refuse what is not a regular file before SQLite opens it: it would wait forever on a FIFO."""
    try:
        check_file(path)
    except PathError as error:
        raise StoreError(f"{error}, so not a ledger") from None


def _opened(path, connect):
    """connect(), with SQLite's refusal said in one line naming the file."""
    _regular(path)
    try:
        return connect()
    except sqlite3.OperationalError as error:
        raise StoreError(f"{path}: cannot open ({error})") from None
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: not a ledger database ({error})") from None


def connect_readonly(path):
    """A connection that can only read the file at `path`.

    SQLite reads a WAL database through its -wal and -shm files and creates them beside it when they
    are missing (the ledger's own bytes stay as they are). Where they cannot be created (a read-only
    directory or mount) the file is opened `immutable`: no locks, no side files. That is safe only
    because nothing can be appending there either (a writer needs those files, or a rollback journal,
    in the same directory), and only when no -wal holds writes the file itself lacks."""
    return _readonly(path, lambda uri: _connect(uri, probe=True))


def schema_names(names):
    """{name: schema}: the schema each ledger is attached as, its own name wherever SQLite allows it. `main`
    and `temp` are the connection's own, and schema names are ASCII case-insensitive (`Prod` and `prod` are
    one): those are attached as `ledger_1`, `ledger_2`, ... in the order of the names sorted, so a schema
    does not move with the order of the arguments."""
    def key(name):
        return name.encode("utf-8", "surrogatepass").lower()
    taken = {b"main", b"temp"}
    schemas = {}
    for name in sorted(names, key=lambda name: (key(name), name)):
        if key(name) not in taken:
            schemas[name] = name
            taken.add(key(name))
    aliases = (f"ledger_{n}" for n in itertools.count(1))
    for name in sorted(set(names) - set(schemas)):
        schemas[name] = next(alias for alias in aliases if key(alias) not in taken)
        taken.add(key(schemas[name]))
    return {name: schemas[name] for name in names}


def connect_attached(ledgers):
    """An in-memory connection with each ledger of `ledgers` ({name: path}) attached as its schema_names()
    schema, each read as connect_readonly reads it, for queries across ledgers. ATTACH reads the file's
    schema, so a file it cannot read fails here; the schema and the URI are bound as values, never pasted
    into SQL."""
    conn = _connect("file::memory:")
    try:
        for name, schema in schema_names(list(ledgers)).items():
            _readonly(ledgers[name], lambda uri: conn.execute("ATTACH DATABASE ? AS ?", [uri, schema]))
    except BaseException:
        conn.close()
        raise
    return conn


def _readonly(path, open_):
    """open_(uri) of the file read-only, or `immutable` where its side files cannot be created (see
    connect_readonly)."""
    _regular(path)
    try:
        return open_(_uri(path, mode="ro"))
    except sqlite3.OperationalError:
        if os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise
    wal = f"{path}-wal"
    if os.path.exists(wal) and os.path.getsize(wal):
        raise StoreError(f"{path}: cannot read it in a read-only directory: {wal} holds writes not yet in the file, "
                         "which SQLite reads only with a -shm file beside it; copy the ledger with its -wal "
                         "to a writable directory")
    return open_(_uri(path, mode="ro", immutable=1))


def _inspect(conn, path):
    """The file's schema version; refuses a file that is not SQLite, holds other tables, or was
    written by a newer version."""
    try:
        with _transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        conn.close()
        raise StoreError(f"{path}: not a ledger database ({error})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"{path}: ledger schema version {version} is newer than this ledger "
                         f"(supports {SCHEMA_VERSION}); upgrade registry-ledger")
    if version == 0 and tables - _LEDGER_TABLES:
        conn.close()
        raise StoreError(f"{path}: not a ledger database (it has other tables: {', '.join(sorted(tables))})")
    return version


def open_db(path):
    """Open a ledger to append to, creating or upgrading it.

    The schema is written only when this file needs it: a migration is due, or the re-applied
    triggers, indexes and views changed or were dropped (see _fingerprint). A plain open writes
    nothing and takes no write lock."""
    conn = _opened(path, lambda: _connect(_uri(path, mode="rwc")))
    _inspect(conn, path)
    if not os.access(path, os.W_OK):  # SQLite opens it read-only then, and the run's first write would fail
        conn.close()
        raise StoreError(f"{path}: cannot append to it: the file is read-only")
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        with _transaction(conn):
            stale = _stale_schema(conn) or _altered(conn)
        if stale:
            with _transaction(conn, "IMMEDIATE"):
                if _stale_schema(conn) or _altered(conn):  # another writer may have brought it up to date meanwhile
                    _apply_schema(conn)
        foreign = _foreign_triggers(conn)
    except sqlite3.Error as error:
        conn.close()
        raise StoreError(f"{path}: cannot open the ledger ({error})") from None
    if foreign:
        conn.close()
        raise StoreError(f"{path}: it has a trigger the ledger did not make ({foreign}): a trigger runs inside every "
                         "append, so nothing is appended through it; `ledger verify` says what else changed")
    return Ledger(conn)


class Ledger:
    """An open ledger: its connection, statements that commit as they go, and rows as dicts for the
    reading code. Our own, so that a read command does not import sqlite-utils."""

    def __init__(self, conn):
        self.conn = conn
        conn.execute("PRAGMA recursive_triggers = on")  # REPLACE fires the delete guards too

    def execute(self, sql, parameters=()):
        """Run one statement. Every connection here is opened with isolation_level=None (SQLite's own
        autocommit, sqlite3 never begins a transaction itself): a write outside a `_transaction` commits
        as it runs, one inside commits or rolls back with it."""
        return self.conn.execute(sql, parameters)

    def query(self, sql, parameters=()):
        """The rows of a query, each a dict by column name."""
        cursor = self.conn.execute(sql, parameters)
        names = [column[0] for column in cursor.description or ()]
        return (dict(zip(names, row)) for row in cursor)

    def close(self):
        self.conn.close()


def _altered(conn):
    """A shipped trigger, view or index missing or not as shipped. The fingerprint in ledger_meta says when
    to re-apply, but it is the file's own word: a view made to lie, with the fingerprint recomputed, would
    otherwise be read by the next append."""
    return any(what != "unknown" and kind != "table" for what, kind, _ in _schema_drift(conn))


def _foreign_triggers(conn):
    """The first trigger in the file that the shipped schema does not make, or None."""
    return next((name for what, kind, name in _schema_drift(conn) if what == "unknown" and kind == "trigger"), None)


def open_readonly(path):
    """Open a ledger only to read it (read commands, verify, serve): nothing is written, no write lock
    is taken, and the file's bytes stay as they were, on a read-only file, directory or mount too.

    A missing file is an error, never created. A ledger of an older schema version is read as it is
    from READABLE_FROM on (later migrations add nothing reading needs); an older one must first be
    upgraded by `ledger collect`, since a reader cannot write, and upgrading a copy in memory would
    cost the whole file in memory and hide that the file itself is old. Views are read as the file
    holds them; the next writer re-applies changed ones."""
    if not os.path.exists(path):
        raise StoreError(f"no ledger at {path}")
    conn = _opened(path, lambda: connect_readonly(path))
    version = _inspect(conn, path)
    if version == 0:
        conn.close()
        raise StoreError(f"{path}: not a ledger database (no ledger schema in it)")
    if version < READABLE_FROM:
        conn.close()
        raise StoreError(f"{path}: ledger schema version {version} is too old to read as it is; run "
                         "`ledger collect` on it once to upgrade it in place")
    return Ledger(conn)


def _fingerprint(conn):
    """The shipped re-applied schema and the file's whole schema as it is now. It changes when a new
    version ships other triggers, indexes or views, and when any schema object is dropped, added or
    edited (a `table.transform()` drops triggers), so a writer re-applies exactly then."""
    digest = sha256()
    for name in _REAPPLIED:
        digest.update(_schema_file(name).encode("utf-8"))
    for row in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"):
        digest.update(_CANONICAL(row).encode("utf-8"))
    return digest.hexdigest()


def _stale_schema(conn):
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        return True
    stored = conn.execute("SELECT value FROM ledger_meta WHERE name = 'schema'").fetchone()
    return stored is None or stored[0] != _fingerprint(conn)


def _apply_schema(conn):
    """Due migrations, then the re-applied files, then the fingerprint of what they made."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, name in _migrations():
        if number > version:
            for statement in _statements(_schema_file(name)):
                conn.execute(statement)
            _after_migration(number, conn)
            conn.execute(f"PRAGMA user_version = {number}")
    for name in _REAPPLIED:
        for statement in _statements(_schema_file(name)):
            conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO ledger_meta (name, value) VALUES ('schema', ?)", [_fingerprint(conn)])


def _statements(sql):
    """Split a schema file into statements (executescript would commit our transaction)."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


class _transaction:
    """BEGIN ... COMMIT, or ROLLBACK on an exception. IMMEDIATE takes the write lock before reading the
    state a write depends on; a plain BEGIN makes every read inside see one snapshot."""

    def __init__(self, conn, mode=""):
        self.conn, self.mode = conn, mode

    def __enter__(self):
        self.conn.execute(f"BEGIN {self.mode}")

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite rolls some failures back itself
            self.conn.execute("ROLLBACK")


@contextlib.contextmanager
def snapshot(db):
    """Every read inside sees one snapshot of the ledger (the outer one's, when nested): for readers outside
    the store that ask several questions of one state (a checkpoint's head and its check)."""
    if db.conn.in_transaction:
        yield
        return
    with _transaction(db.conn):
        yield


def _db_file(db):
    return db.execute("PRAGMA database_list").fetchone()[2]


_SCHEMA = None


def _shipped_schema():
    """The schema objects a ledger holds once fully migrated: (type, name) -> SQL for triggers, views and
    indexes, and table names (a table's text differs between a new and an upgraded file)."""
    global _SCHEMA
    if _SCHEMA is None:
        conn = _connect("file:shipped?mode=memory")
        try:
            _apply_schema(conn)
            _SCHEMA = _schema_objects(conn)
        finally:
            conn.close()
    return _SCHEMA


def _schema_objects(conn):
    return {(kind, name): sql if kind != "table" else None for kind, name, sql in conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


def _schema_drift(conn):
    """How the file's schema objects differ from the shipped ones, sorted: ('unknown' | 'differs' |
    'missing', type, name). One comparison for the writer (re-apply, refuse a foreign trigger) and verify."""
    shipped, found = _shipped_schema(), _schema_objects(conn)
    drift = [("unknown" if key not in shipped else "differs", *key) for key, sql in found.items()
             if key not in shipped or shipped[key] != sql]
    return sorted(drift + [("missing", *key) for key in shipped.keys() - found.keys()],
                  key=lambda item: ({"unknown": 0, "differs": 0, "missing": 1}[item[0]], item[1], item[2]))
