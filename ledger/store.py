"""The SQLite ledger: schema, append-only writes, the hash chain and its verification."""

import collections
import concurrent.futures
import fcntl
from hashlib import sha256
import json
import multiprocessing
import os
import socket
import sqlite3
import urllib.parse
import zlib
from importlib import resources

import sqlite_utils

from . import __version__
from . import seals
from .manifests import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, ManifestError, created_before_7, derive
from .problems import Problem
from .referrers import REFERRER, schema_tag
from .semantics import REMOVED, Observation, classify, removed_keys
from .times import now

SCHEMA_VERSION = 7
READABLE_FROM = 4  # the oldest schema whose tables reading and verify understand: the compact event log
GENESIS = "0" * 64
REGISTRY = "registry"  # the source of observations made of a registry; a daemon's are 'daemon:NAME'
_BY_DIGEST = (REGISTRY, REFERRER)  # sources whose keys are told apart by digest, with facts from manifests
BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 65_536  # the default 2 MB thrashes on the key index of a million-event ledger
_REAPPLIED = ("triggers.sql", "indexes.sql", "views.sql")
_LEDGER_TABLES = {"runs", "events", "manifests", "platforms", "coverage", "errors", "tag_state",
                  "event_log", "tag_keys", "digests", "media_types", "images", "ledger_meta", "run_seals"}


def _fill_artifact_facts(conn):
    """At the upgrade to schema 7: each row's new columns (subject, artifact kind, annotations, a Helm
    chart's name and version), derived from the bytes it keeps. A row without bytes gets them when its
    bytes are filled in; a row whose bytes do not hold gets none (verify names it)."""
    digests = [row[0] for row in conn.execute("SELECT digest FROM manifests WHERE body IS NOT NULL")]
    for chunk in _chunks(digests):
        rows = conn.execute(f"SELECT digest, media_type, kind, body, config_body FROM manifests "
                            f"WHERE digest IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        for row in rows:
            facts = stored_facts(row)
            values = [facts.get(column) for column in _ARTIFACT_COLUMNS] if facts else []
            if any(value is not None for value in values):
                conn.execute(f"UPDATE manifests SET {', '.join(f'{c} = ?' for c in _ARTIFACT_COLUMNS)} "
                             "WHERE digest = ?", [*values, row[0]])


_AFTER_MIGRATION = {6: seals.seal_existing, 7: _fill_artifact_facts}  # what a migration needs done in Python


class StoreError(Exception):
    """A ledger file that cannot be used; the message names the file."""


def _schema_file(name):
    return resources.files("ledger").joinpath("schema", name).read_text(encoding="utf-8")


def _migrations():
    """Numbered files `NNN_*.sql`, each bringing the schema to version NNN."""
    files = sorted(f.name for f in resources.files("ledger").joinpath("schema").iterdir() if f.name[:3].isdigit())
    return [(int(name[:3]), name) for name in files]


def digest_key(text):
    """How a digest is stored: a sha256 digest as its 32 raw bytes (half the text), anything else as text."""
    if text is None or len(text) != 71 or not text.startswith("sha256:"):
        return text
    try:
        raw = bytes.fromhex(text[7:])
    except ValueError:
        return text
    return raw if raw.hex() == text[7:] else text


def digest_text(stored):
    return "sha256:" + stored.hex() if isinstance(stored, bytes) else stored


def _register_functions(conn):
    conn.create_function("ledger_digest_key", 1, digest_key, deterministic=True)
    conn.create_function("ledger_unhex", 1, lambda text: None if text is None else bytes.fromhex(text),
                         deterministic=True)


_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _canonical(*values):
    """An event's hashed content: id, run_id, observed_at, kind, registry, repo, tag, digest, image,
    media_type, created, author, size, and the source unless it is the registry (so events
    written before sources existed keep their hashes)."""
    return list(values[:-1]) if values[-1] == REGISTRY else list(values)


def event_hash(prev_hash, values):
    """The hash over an event's canonical content, chained to the previous hash."""
    return sha256(f"{prev_hash}\n{_CANONICAL(values)}".encode("utf-8")).hexdigest()


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


def _opened(path, connect):
    """connect(), with SQLite's refusal said in one line naming the file."""
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
    try:
        return _connect(_uri(path, mode="ro"), probe=True)
    except sqlite3.OperationalError:
        if os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise
    wal = f"{path}-wal"
    if os.path.exists(wal) and os.path.getsize(wal):
        raise StoreError(f"{path}: cannot read it in a read-only directory: {wal} holds writes not yet in the file, "
                         "which SQLite reads only with a -shm file beside it; copy the ledger with its -wal "
                         "to a writable directory")
    return _connect(_uri(path, mode="ro", immutable=1), probe=True)


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
    return sqlite_utils.Database(conn)


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
    return sqlite_utils.Database(conn)


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
            if number in _AFTER_MIGRATION:
                _AFTER_MIGRATION[number](conn)
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


def _chunks(values, size=500):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


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


_HELD = {}  # (ledger file, run id) -> the descriptor whose flock says that run of this process is alive


def _db_file(db):
    return db.execute("PRAGMA database_list").fetchone()[2]


def _lock_path(db_file, run_id):
    return f"{db_file}-run-{run_id}.lock"


def _take(fd):
    """flock without waiting: True if it was free (its holder, if any, is gone)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _interrupted(db, run_id, pid):
    db.execute("UPDATE runs SET finished_at = ?, status = 'failed', errors = 1, error_summary = ? WHERE id = ?",
               [now(), f"interrupted: process {pid} ended before the run did", run_id])
    seals.seal(db.conn, run_id)


def start_run(db, source, targets):
    """Record that a run began, so an interrupted run stays visible; close runs whose process died.

    A run holds an flock on `<ledger>-run-<id>.lock` from before its row is committed until
    append_run or finish_failed_run ends it, so a run is dead exactly when its lock is free, whatever
    host, container or pid namespace it ran in: two live processes can share a hostname and pid, and a
    dead run's pid can be reused. host and pid stay in the row for people. A row without a lock file
    was started before run locks existed: only the old rule (this host, its pid gone) can judge it."""
    host, pid = socket.gethostname(), os.getpid()
    path = _db_file(db)
    freed, held = [], None
    try:
        with _transaction(db.conn, "IMMEDIATE"):
            for run_id, old_host, old_pid in db.execute(
                    "SELECT id, host, pid FROM runs WHERE finished_at IS NULL "
                    "AND id NOT IN (SELECT run_id FROM run_seals)").fetchall():  # a sealed one was edited back
                try:
                    fd = os.open(_lock_path(path, run_id), os.O_RDONLY)
                except FileNotFoundError:
                    if old_host == host and old_pid is not None and not _alive(old_pid):
                        _interrupted(db, run_id, old_pid)
                    continue
                if _take(fd):
                    freed.append((run_id, fd))
                    _interrupted(db, run_id, old_pid)
                else:
                    os.close(fd)
            run_id = db.execute(
                "INSERT INTO runs (started_at, status, source, targets, tool_version, host, pid) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                [now(), source, json.dumps(list(targets)), __version__, host, pid]).lastrowid
            held = os.open(_lock_path(path, run_id), os.O_RDONLY | os.O_CREAT, 0o644)
            if not _take(held):
                raise StoreError(f"{_lock_path(path, run_id)}: held by another process")
    except BaseException:
        for fd in [held, *(fd for _, fd in freed)]:
            if fd is not None:
                os.close(fd)
        raise
    for old_id, fd in freed:  # closed rows: their lock files go, then the locks
        _unlink(_lock_path(path, old_id))
        os.close(fd)
    _HELD[(path, run_id)] = held
    return run_id


def _alive(pid):
    """Signal 0 probes a process; only 'no such process' proves it gone (not permission denied)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _end_run(db, run_id):
    """The run is over: its lock file goes first, then the lock, so a free lock on an existing file
    always means a dead run."""
    path = _db_file(db)
    fd = _HELD.pop((path, run_id), None)
    if fd is not None:
        _unlink(_lock_path(path, run_id))
        os.close(fd)


def _row_to_finish(db, run_id):
    """The run row to finish, and a note for its error summary: the run's own row, or, when that was
    closed while the run was still going (a misjudged cleanup, an edit), a new row with the same start,
    source and targets, so that nothing the run found is lost and the ledger says what happened."""
    row = db.execute("SELECT finished_at, status, error_summary FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None or row[0] is None:
        return run_id, None
    new_id = db.execute(
        "INSERT INTO runs (started_at, status, source, targets, tool_version, host, pid) "
        "SELECT started_at, 'running', source, targets, ?, ?, ? FROM runs WHERE id = ?",
        [__version__, socket.gethostname(), os.getpid(), run_id]).lastrowid
    return new_id, f"run {run_id} continued here: its row was closed while it was still going ({row[1]}: {row[2]})"


def finish_failed_run(db, run_id, message):
    """Close a run whose results could not be appended: nothing of it enters the ledger."""
    try:
        with _transaction(db.conn, "IMMEDIATE"):
            row_id, note = _row_to_finish(db, run_id)
            db.execute("UPDATE runs SET finished_at = ?, status = 'failed', errors = 1, error_summary = ? "
                       "WHERE id = ?", [now(), "; ".join(filter(None, [message, note])), row_id])
            seals.seal(db.conn, row_id)
    finally:
        _end_run(db, run_id)


# Schema 7's columns: derived from the stored bytes like the others, and checked against them by verify, but
# not in the seals' row digests (seals.TABLES is fixed), so a row of before can have them filled in.
_ARTIFACT_COLUMNS = ("subject", "artifact_kind", "annotations", "name", "version")
_MANIFEST_COLUMNS = ("digest", "media_type", "kind", "config_digest", "config_media_type", "artifact_type",
                     "created", "author", "size", "layers", "os", "architecture", "variant", "os_version", "labels",
                     *_ARTIFACT_COLUMNS)


def _save_manifests(db, run_id, manifests):
    """Write each new manifest once, with its bytes (zlib); a row from before bytes were kept gets them,
    and the schema 7 columns derived from them."""
    for facts in manifests:
        body = zlib.compress(facts["body"]) if facts.get("body") is not None else None
        config = zlib.compress(facts["config_body"]) if facts.get("config_body") is not None else None
        values = [facts.get(column) for column in _MANIFEST_COLUMNS]
        inserted = db.execute(
            f"INSERT INTO manifests ({', '.join(_MANIFEST_COLUMNS)}, body, config_body, first_run_id) "
            f"SELECT {', '.join('?' for _ in _MANIFEST_COLUMNS)}, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?)",
            [*values, body, config, run_id, facts["digest"]]).rowcount
        if not inserted and body is not None:
            db.execute(f"UPDATE manifests SET body = ?, config_body = ?, "
                       f"{', '.join(f'{c} = ?' for c in _ARTIFACT_COLUMNS)} WHERE digest = ? AND body IS NULL",
                       [body, config, *(facts.get(c) for c in _ARTIFACT_COLUMNS), facts["digest"]])
        platforms = facts.get("platforms") or []
        if inserted and platforms:
            columns = list(platforms[0])
            db.conn.executemany(
                f"INSERT INTO platforms (index_digest, {', '.join(columns)}) VALUES (?, {', '.join('?' for _ in columns)})",
                [[facts["digest"], *row.values()] for row in platforms])


def known_digests(db):
    """Digests whose facts the ledger holds verifiably, in bytes that hash to them: a run never fetches
    them again. A row from before bytes were kept is fetched once more."""
    return {row[0] for row in db.execute("SELECT digest FROM manifests WHERE body IS NOT NULL")}


def stored_facts(row):
    """A manifests row (media_type, kind, body, config_body) as facts derived again from its bytes, or None
    when it has none or they do not hold (edited): then nothing is taken from it."""
    digest, media_type, kind, body, config = row
    if body is None:  # a schema1 row, written from a HEAD's word alone by older versions, is not believed
        return None
    try:
        return derive(digest, media_type, _inflate(body, MAX_MANIFEST_BYTES),
                      _inflate(config, MAX_CONFIG_BYTES) if config else None)
    except (ManifestError, zlib.error, TypeError, ValueError):
        return None


def _inflate(stored, limit):
    """zlib bytes back, refusing more than `limit` (a few KiB can inflate to GiB)."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(stored, limit + 1)
    if len(raw) > limit or inflater.unconsumed_tail:
        raise ValueError(f"stored bytes inflate past {limit}")
    return raw


def _save_images(db, run_id, images):
    db.conn.executemany(
        "INSERT INTO images (id, created, size, author, architecture, os, labels, first_run_id) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM images WHERE id = ?)",
        [[facts["id"], facts["created"], facts["size"], facts["author"], facts["architecture"], facts["os"],
          facts["labels"], run_id, facts["id"]] for facts in images])


def _known_facts(db, digests):
    """What the ledger knows of each digest, derived again from the bytes it was read from: a row edited
    in the file is not believed (verify names it), so it can never become an event."""
    facts = {}
    for chunk in _chunks(set(digests)):
        rows = db.execute(f"SELECT digest, media_type, kind, body, config_body FROM manifests "
                          f"WHERE digest IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        for row in rows:
            derived = stored_facts(row)
            if derived is not None:
                facts[row[0]] = derived
    return facts


def _observed(derived):
    """An event's facts, from a manifest's."""
    return Observation(digest=derived["digest"], image=derived.get("config_digest") if derived["kind"] == "image"
                       else None, media_type=derived["media_type"], created=derived.get("created"),
                       author=derived.get("author"), size=derived.get("size"))


def children_of(db, digest):
    """The children of a stored index whose referrers are followed with it (its platforms, not its
    attestations); [] for anything else."""
    return [row[0] for row in db.execute("SELECT digest FROM platforms WHERE index_digest = ? AND attestation = 0 "
                                         "ORDER BY position", [digest])]


_State = collections.namedtuple("_State", "key_id event_id kind observed_at digest image media_type created author size")


def _states(db, repos):
    """The state of every tag key (removed ones too) of every (registry, repo, source) this run touched:
    each key's latest event, checked against its place in the hash chain first, so that nothing edited in
    the file (a digest's bytes, a view, tag_keys) can be classified against and become a chained event."""
    states = {}
    for registry, repo, source in repos:
        for (tag, key_id, event_id, kind, observed_at, digest, image, media_type, created, author, size, run_id,
             stored, previous) in db.conn.execute(_KEY_STATES, [registry, repo, source]):
            digest, image = digest_text(digest), digest_text(image)
            try:
                recomputed = event_hash(previous.hex() if previous else GENESIS, _canonical(
                    event_id, run_id, observed_at, kind, registry, repo, tag, digest, image, media_type, created,
                    author, size, source))
            except (AttributeError, TypeError, ValueError):
                recomputed = None
            if recomputed is None or (previous is None and event_id != 1) or recomputed != stored.hex():
                raise StoreError(f"event {event_id} no longer matches its hash: the ledger was edited, so nothing "
                                 "is appended to it (`ledger verify` names what changed)")
            states[(registry, repo, tag, source)] = _State(key_id, event_id, kind, observed_at, digest, image,
                                                           media_type, created, author, size)
    return states


# A key's state is its latest event in the chain, never tag_keys' derived copy of it, read from the
# tables themselves (not views), with what its hash is checked against.
_KEY_STATES = """
SELECT k.tag, k.id, e.id, e.kind, e.observed_at, d.digest, i.digest, m.media_type, e.created, e.author, e.size,
       e.run_id, e.hash, (SELECT p.hash FROM event_log p WHERE p.id = e.id - 1)
FROM tag_keys k
JOIN event_log e ON e.id = (SELECT max(q.id) FROM event_log q WHERE q.key_id = k.id)
LEFT JOIN digests d ON d.id = e.digest_id
LEFT JOIN digests i ON i.id = e.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id
WHERE k.registry = ? AND k.repo = ? AND k.source = ?
"""


def _as_observation(state):
    return Observation(digest=state.digest, image=state.image, media_type=state.media_type,
                       created=state.created, author=state.author, size=state.size)


def _classify_all(db, result):
    """The events this run makes, classified against the ledger as it is now, and the facts they show."""
    repos = {(o["registry"], o["repo"], o.get("source", REGISTRY)) for o in result.observations}
    listings = result.coverage + result.referrer_listings
    repos |= {(c["registry"], c["repo"], c.get("source", REGISTRY)) for c in listings if c["complete"]}
    states = _states(db, repos)
    facts = _known_facts(db, [o["digest"] for o in result.observations
                              if o.get("digest") and o.get("source", REGISTRY) in _BY_DIGEST]
                         + [row.digest for key, row in states.items() if key[3] == REFERRER and row.digest])
    pending = []
    for seen in result.observations:
        source = seen.get("source", REGISTRY)
        key = (seen["registry"], seen["repo"], seen["tag"], source)
        if source in _BY_DIGEST:
            derived = facts.get(seen["digest"])
            known = derived and _observed(derived)
            obs = known or Observation(digest=seen["digest"], media_type=seen.get("media_type"))
            if source == REFERRER and not _refers(result, seen, derived):
                continue
        else:  # a daemon reports every fact with the tag
            known = obs = Observation(**{name: seen.get(name) for name in Observation.__dataclass_fields__})
        row = states.get(key)
        if row is not None and row.observed_at > seen["observed_at"]:
            continue  # a newer observation is already in the ledger (a concurrent run)
        state = _as_observation(row) if row is not None and row.kind != REMOVED else None
        kind = classify(state, obs, by_image=source not in _BY_DIGEST)
        if kind is None or (known is None and kind not in ("added", "moved")):
            continue  # an incomplete observation (a fetch failed) never downgrades what is known
        pending.append((seen["observed_at"], key, kind, obs, row))
    for listing in listings:
        if not listing["complete"]:
            continue
        where = (listing["registry"], listing["repo"])
        source = listing.get("source", REGISTRY)
        subjects = getattr(listing["scope"], "subjects", None)  # a referrer listing speaks for these only
        current = {key[2]: row for key, row in states.items()
                   if key[:2] == where and key[3] == source and row.kind != REMOVED
                   and listing["scope"].covers(key[2])
                   and (subjects is None or (facts.get(row.digest) or {}).get("subject") in subjects)}
        for tag in removed_keys(current, listing["tags"]):
            row = current[tag]
            if row.observed_at > listing["listed_at"]:
                continue
            pending.append((listing["listed_at"], (*where, tag, source), REMOVED, _as_observation(row), row))
    pending.sort(key=lambda item: (item[0], item[1]))
    return pending, facts


def _refers(result, seen, derived):
    """Whether a listed referrer is one: its manifest, once read, must name the subject it was listed
    for. A registry's list is its word; the bytes are the referrer's."""
    if derived is None:
        return False  # not read (its fetch failed and is an errors row): nothing to record yet
    if derived.get("subject") == seen["subject"]:
        return True
    result.errors.append(Problem(
        at=now(), registry=seen["registry"], repo=seen["repo"], digest=seen["digest"], stage="referrers",
        code="REFERRER_MISMATCH", message=f"referrers: {seen['digest']} is listed as a referrer of "
        f"{seen['subject']}, but its manifest's subject is {derived.get('subject') or 'absent'}; not recorded"))
    return False


def _image_event(key, obs, facts):
    """Whether an event shows an image (for the count of new images): not a referrer, not a referrer tag,
    not an artifact such as a signature or a Helm chart."""
    registry, repo, tag, source = key
    if source not in _BY_DIGEST:
        return True
    derived = facts.get(obs.digest)
    return source == REGISTRY and not schema_tag(tag) and not (derived and derived.get("artifact_kind"))


def _hex_prefix(stored):
    """What the digests_by_prefix index holds for a stored digest."""
    raw = stored if isinstance(stored, bytes) else stored.encode("utf-8")
    return raw[:6].hex().upper()


def _stored_digests(db, values):
    """{digest text: [id, first_event_id]} for the values already in the digests table."""
    wanted = {digest_key(value): value for value in values}
    found = {}
    for chunk in _chunks(wanted):
        rows = db.execute(f"SELECT id, digest, first_event_id FROM digests "
                          f"WHERE substr(hex(digest), 1, 12) IN ({', '.join('?' for _ in chunk)})",
                          [_hex_prefix(key) for key in chunk])
        for digest_id, stored, first in rows:
            if stored in wanted:
                found[wanted[stored]] = [digest_id, first]
    return found


class _Digests:
    """Interned digests for one append: ids for known ones, new ids (and first sightings) for the rest."""

    def __init__(self, db, values):
        self.known = _stored_digests(db, values)
        self.next_id = db.execute("SELECT coalesce(max(id), 0) + 1 FROM digests").fetchone()[0]
        self.new = {}
        self.first_sightings = []

    def id(self, value):
        if value is None:
            return None
        entry = self.known.get(value) or self.new.get(value)
        if entry is None:
            entry = self.new[value] = [self.next_id, None]
            self.next_id += 1
        return entry[0]

    def seen(self, value, event_id):
        """The first non-removed event that shows a digest is where it counts as new; True if this is it."""
        entry = self.known.get(value) or self.new.get(value)
        if entry[1] is not None:
            return False
        entry[1] = event_id
        if value in self.known:
            self.first_sightings.append((event_id, entry[0]))
        return True

    def save(self, db):
        db.conn.executemany("INSERT INTO digests (id, digest, first_event_id) VALUES (?, ?, ?)",
                            [(digest_id, digest_key(value), first) for value, (digest_id, first) in self.new.items()])
        db.conn.executemany("UPDATE digests SET first_event_id = ? WHERE id = ?", self.first_sightings)


def _media_type_ids(db, pending):
    ids = dict(db.execute("SELECT media_type, id FROM media_types").fetchall())
    new = [value for value in {obs.media_type for *_, obs, _ in pending} - ids.keys() if value is not None]
    next_id = max(ids.values(), default=0) + 1
    for offset, value in enumerate(sorted(new)):
        ids[value] = next_id + offset
        db.execute("INSERT INTO media_types (id, media_type) VALUES (?, ?)", [ids[value], value])
    return ids


def _shown(digest, image, source):
    """What an event shows as an image, for first sightings: a registry tag (or referrer) is its manifest
    digest; a Docker daemon's is its image ID, whatever digests it carries (pushed, re-pushed, retagged)."""
    return (digest or image) if source in _BY_DIGEST else (image or digest)


def _append_events(db, run_id, pending, facts):
    """Hash-chain and insert this run's events; keep tag_keys' state and digests' first sightings."""
    head = db.execute("SELECT id, hash FROM event_log ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev = (head[0], head[1].hex()) if head else (0, GENESIS)
    digests = _Digests(db, {value for *_, obs, _ in pending for value in (obs.digest, obs.image) if value})
    media_types = _media_type_ids(db, pending)
    next_key = db.execute("SELECT coalesce(max(id), 0) + 1 FROM tag_keys").fetchone()[0]
    new_keys, states, kinds, stored, new_images = {}, {}, [], [], 0
    for observed_at, key, kind, obs, state in pending:
        registry, repo, tag, source = key
        key_id = state.key_id if state else new_keys.get(key)
        if key_id is None:
            key_id = new_keys[key] = next_key
            next_key += 1
        previous = states[key_id][0] if key_id in states else state and state.event_id
        last_id += 1
        prev = event_hash(prev, _canonical(last_id, run_id, observed_at, kind, registry, repo, tag, obs.digest,
                                           obs.image, obs.media_type, obs.created, obs.author, obs.size, source))
        kinds.append(kind)
        stored.append((last_id, run_id, observed_at, kind, key_id, previous, digests.id(obs.digest),
                       digests.id(obs.image), media_types.get(obs.media_type), obs.created, obs.author, obs.size,
                       bytes.fromhex(prev)))
        if kind != REMOVED and (obs.digest or obs.image):
            if digests.seen(_shown(obs.digest, obs.image, source), last_id) and _image_event(key, obs, facts):
                new_images += 1
        began = observed_at if kind == "added" else states.get(key_id, (None,) * 4)[3]
        states[key_id] = (last_id, kind, observed_at, began)
    digests.save(db)
    db.conn.executemany("INSERT INTO tag_keys (id, registry, repo, tag, source) VALUES (?, ?, ?, ?, ?)",
                        [(key_id, *key) for key, key_id in new_keys.items()])
    db.conn.executemany(
        "UPDATE tag_keys SET event_id = ?, kind = ?, observed_at = ?, first_seen = coalesce(?, first_seen) WHERE id = ?",
        [(*state, key_id) for key_id, state in states.items()])
    db.conn.executemany(
        "INSERT INTO event_log (id, run_id, observed_at, kind, key_id, prev_event_id, digest_id, image_id, "
        "media_type_id, created, author, size, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", stored)
    return kinds, (last_id, prev) if head or kinds else (None, None), new_images


def append_run(db, run_id, result):
    """Append one run's findings in a single write transaction; returns the run's counts, and under
    `run_id` the run they were recorded as (a new one if the run's own row was closed underneath it)."""
    with _transaction(db.conn, "IMMEDIATE"):
        row_id, note = _row_to_finish(db, run_id)
        _save_manifests(db, row_id, result.manifests)
        _save_images(db, row_id, result.images)
        pending, facts = _classify_all(db, result)
        if result.status == "ok" and not all(problem.warning for problem in result.errors):
            result.status = "partial"  # a registry's word the bytes contradict (a referrer of another subject)
        kinds, (head_id, head_hash), new_images = _append_events(db, row_id, pending, facts)
        for listing in result.coverage:
            db.execute(
                "INSERT INTO coverage (run_id, source, registry, repo, scope, complete, tags_listed, listed_at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row_id, listing.get("source", REGISTRY), listing["registry"], listing["repo"],
                 listing["scope"].describe(),
                 int(listing["complete"]), len(listing["tags"]) if listing["complete"] else None,
                 listing["listed_at"], listing.get("reason")])
        for error in result.errors:
            db.execute(
                "INSERT INTO errors (run_id, at, registry, repo, tag, digest, stage, http_status, code, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row_id, error.at, error.registry, error.repo, error.tag, error.digest, error.stage,
                 error.status, error.code, error.message])
        counts = {kind: kinds.count(kind) for kind in ("added", "moved", "updated", "removed")}
        counts["new_images"] = new_images
        counts["tags_seen"] = len(result.observations)
        counts["repos_listed"] = sum(1 for c in result.coverage if c["complete"])
        counts["errors"] = sum(1 for error in result.errors if not error.warning)  # warnings are rows, not failures
        counts["run_id"] = row_id
        summary = "; ".join(([note] if note else []) +
                            sorted({str(e) for e in result.errors if not e.warning})[:5]) or None
        db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, repos_listed = ?, tags_seen = ?, added = ?, moved = ?, "
            "updated = ?, removed = ?, new_images = ?, errors = ?, requests = ?, rate_limits = ?, error_summary = ?, "
            "head_event_id = ?, head_hash = ? WHERE id = ?",
            [now(), result.status, counts["repos_listed"], counts["tags_seen"], counts["added"], counts["moved"],
             counts["updated"], counts["removed"], counts["new_images"], counts["errors"],
             json.dumps(dict(sorted(result.requests.items()))),
             json.dumps(result.rate_limits, sort_keys=True) if result.rate_limits else None,
             summary, head_id, head_hash, row_id])
        seals.seal(db.conn, row_id)
    _end_run(db, run_id)
    return counts


class Verification:
    def __init__(self):
        self.events = 0
        self.head_id = None
        self.head_hash = None
        self.problems = []
        self.without_bytes = 0  # manifests from before schema 6, covered by their seal only
        self.seal = None  # the last seal: (id, run id, hash)

    @property
    def ok(self):
        return not self.problems


_CHAIN = """
SELECT e.id, e.run_id, e.observed_at, e.kind, e.key_id, d.digest, i.digest, e.media_type_id, e.created, e.author,
       e.size, e.hash, e.digest_id, e.image_id, e.prev_event_id
FROM event_log e
LEFT JOIN digests d ON d.id = e.digest_id
LEFT JOIN digests i ON i.id = e.image_id
WHERE e.id BETWEEN ? AND ?
ORDER BY e.id
"""
_PARALLEL_FROM = 200_000  # below this, starting processes costs more than it saves


class _Derived:
    """What the events of a range say the derived data hold: each key's latest event and latest
    'added' time, each digest's first non-removed event, and each event's link to the key's event
    before it (checked here, or by the range before for a key's first event in this range)."""

    def __init__(self):
        self.latest, self.began, self.firsts, self.opening = {}, {}, {}, {}
        self.broken_link = False

    def see(self, event_id, kind, observed_at, key_id, shown, prev_event_id):
        if key_id in self.latest:
            self.broken_link |= prev_event_id != self.latest[key_id][0]
        else:
            self.opening[key_id] = prev_event_id
        self.latest[key_id] = (event_id, kind, observed_at)
        if kind == "added":
            self.began[key_id] = observed_at
        if kind != REMOVED and shown is not None:
            self.firsts.setdefault(shown, event_id)

    def after(self, later):
        """This range's findings followed by a later range's."""
        self.broken_link |= later.broken_link or any(
            prev_event_id != self.latest.get(key_id, (None,))[0] for key_id, prev_event_id in later.opening.items())
        self.latest.update(later.latest)
        self.began.update(later.began)
        for digest_id, event_id in later.firsts.items():
            self.firsts.setdefault(digest_id, event_id)
        return self

    def mismatch(self, db):
        """The first stored thing derived from the events that disagrees with them, and the first row of
        it (or None when all agree)."""
        if self.broken_link:
            return "event_log.prev_event_id", None
        states = {key: (*latest, self.began.get(key)) for key, latest in self.latest.items()}
        rows = {key: tuple(values) for key, *values in
                db.execute("SELECT id, event_id, kind, observed_at, first_seen FROM tag_keys")}
        if rows != states:
            return "tag_keys", min(key for key in rows.keys() | states.keys() if rows.get(key) != states.get(key))
        firsts = dict(db.execute("SELECT id, first_event_id FROM digests WHERE first_event_id IS NOT NULL"))
        if firsts != self.firsts:
            return "digests", min(key for key in firsts.keys() | self.firsts.keys()
                                  if firsts.get(key) != self.firsts.get(key))
        return None


def _verify_range(path, low, high):
    """Check events low..high, each against the stored hash of the row before it, and gather what they
    say the derived tables hold.

    Returns (events checked, last id, last hash, first problem, _Derived). Ranges are independent, so
    they can be checked in parallel; the first problem of the earliest range is the chain's."""
    conn = connect_readonly(path)
    derived = _Derived()
    try:
        keys = {key_id: key for key_id, *key in conn.execute("SELECT id, registry, repo, tag, source FROM tag_keys")}
        media_types = dict(conn.execute("SELECT id, media_type FROM media_types"))
        before = conn.execute("SELECT id, hash FROM event_log WHERE id < ? ORDER BY id DESC LIMIT 1", [low]).fetchone()
        last_id, prev = (before[0], before[1].hex()) if before else (0, GENESIS)
        count = 0
        for (event_id, run_id, observed_at, kind, key_id, digest, image, media_type_id, created, author, size,
             stored, digest_id, image_id, prev_event_id) in conn.execute(_CHAIN, [low, high]):
            if event_id != last_id + 1:
                return count, last_id, prev, (f"event {event_id}: follows event {last_id} "
                                              "(events between them were deleted, or the log was reordered)"), derived
            if key_id not in keys:
                return count, last_id, prev, f"event {event_id}: its tag key {key_id} is missing", derived
            registry, repo, tag, source = keys[key_id]
            canonical = [event_id, run_id, observed_at, kind, registry, repo, tag,
                         "sha256:" + digest.hex() if type(digest) is bytes else digest,
                         "sha256:" + image.hex() if type(image) is bytes else image,
                         media_types.get(media_type_id), created, author, size]
            if source != REGISTRY:
                canonical.append(source)
            try:
                prev = sha256(f"{prev}\n{_CANONICAL(canonical)}".encode()).hexdigest()  # event_hash, inlined
            except (TypeError, ValueError):  # a blob where text belongs, a lone surrogate: put there by hand
                return count, last_id, prev, f"event {event_id}: a column holds a value of the wrong type", derived
            if type(stored) is not bytes or prev != stored.hex():
                return count, last_id, prev, (f"event {event_id}: content does not match its hash "
                                              "(the row was edited, or an event before it was replaced)"), derived
            if source == REFERRER and canonical[7] != tag:
                return count, last_id, prev, (f"event {event_id}: a referrer's event shows {canonical[7]}, not the "
                                              f"referrer {tag} its key names"), derived
            derived.see(event_id, kind, observed_at, key_id, _shown(digest_id, image_id, source), prev_event_id)
            last_id = event_id
            count += 1
        return count, last_id, prev, None, derived
    finally:
        conn.close()


def _check_chain(db, low, high, report):
    """The chain from event low to high, range by range (in parallel on a big ledger); returns what
    the events derive."""
    path = _db_file(db)
    workers = min(os.cpu_count() or 1, 4) if high - low >= _PARALLEL_FROM else 1
    step = max(1, (high - low) // workers + 1)
    ranges = [(path, start, min(start + step - 1, high)) for start in range(low, high + 1, step)] or [(path, 1, 0)]
    if len(ranges) > 1:
        with concurrent.futures.ProcessPoolExecutor(len(ranges), mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_verify_range, *zip(*ranges)))
    else:
        results = [_verify_range(*ranges[0])]
    derived = _Derived()
    for count, last_id, last_hash, problem, found in results:
        report.events += count
        derived.after(found)
        if problem:
            report.problems.append(problem)
            return derived
    if report.events:
        report.head_id, report.head_hash = last_id, last_hash
    return derived


def verify(db):
    """Recompute the hash chain, the seals over every other table, the manifests from their bytes, and
    the derived tables; check the schema is the shipped one; name the first bad row.

    Everything checked is read in one snapshot: the chain up to its head then, and the other tables as
    they were with it, so a run appended meanwhile is not taken for an edit. The range checkers read
    their own snapshots, but only events up to that head, which appends never change."""
    report = Verification()
    with _transaction(db.conn):
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreError(f"ledger schema version {version}, not {SCHEMA_VERSION}: run `ledger collect` on it "
                             "once to upgrade it, then verify (or its version was edited)")
        try:
            _verify(db, report)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, zlib.error,
                sqlite3.DatabaseError) as error:  # only an edit puts a value of the wrong type in a column
            report.problems.append(f"a column holds a value of the wrong type, so it was edited by hand "
                                   f"({error.__class__.__name__}: {str(error)[:200]})")
    return report


def _verify(db, report):
    low, high = db.execute("SELECT coalesce(min(id), 1), coalesce(max(id), 0) FROM event_log").fetchone()
    derived = _check_chain(db, low, high, report)
    checks = [lambda: _check_run_heads(db), lambda: _orphan_events(db), lambda: seals.check(db.conn),
              lambda: _check_manifests(db, report), lambda: _derived_problem(db, derived),
              lambda: _check_schema(db)]
    for check in checks:
        if not report.ok:
            break
        problem = check()
        if problem:
            report.problems.append(problem)
    report.seal = db.execute("SELECT id, run_id, hash FROM run_seals ORDER BY id DESC LIMIT 1").fetchone()


def _derived_problem(db, derived):
    wrong = derived.mismatch(db)
    if wrong is None:
        return None
    table, row = wrong
    return f"{table} does not match the events (what is derived from them was edited)" + (
        f": first at id={row}" if row is not None else "")


def _check_run_heads(db):
    for run_id, head_id, head_hash in db.execute(
            "SELECT id, head_event_id, head_hash FROM runs WHERE head_event_id IS NOT NULL ORDER BY id"):
        found = db.execute("SELECT hash FROM event_log WHERE id = ?", [head_id]).fetchone()
        if found is None or found[0].hex() != head_hash:
            return (f"run {run_id}: its chain head, event {head_id}, is missing or changed "
                    "(events were removed from the end)")
    return None


def _orphan_events(db):
    """Every event's run is in runs (a run row deleted with its seal leaves its events behind)."""
    missing = db.execute("SELECT min(e.id), e.run_id FROM event_log e LEFT JOIN runs r ON r.id = e.run_id "
                         "WHERE r.id IS NULL GROUP BY e.run_id ORDER BY 1 LIMIT 1").fetchone()
    return f"event {missing[0]}: its run {missing[1]} is missing from runs (deleted)" if missing else None


def _check_manifests(db, report):
    """Each manifest row (and its platforms) as its bytes say; rows from before bytes were kept are counted."""
    platforms = collections.defaultdict(list)
    for index_digest, *row in db.execute("SELECT index_digest, position, digest, media_type, size, os, architecture, "
                                         "variant, os_version, attestation, attests FROM platforms "
                                         "ORDER BY index_digest, position"):
        platforms[index_digest].append(tuple(row))
    columns = ", ".join(_MANIFEST_COLUMNS)
    for row in db.execute(f"SELECT {columns}, body, config_body FROM manifests ORDER BY digest"):
        stored = dict(zip(_MANIFEST_COLUMNS, row))
        digest, body = stored["digest"], row[-2]
        if body is None:
            report.without_bytes += stored["kind"] != "legacy"
            continue
        facts = stored_facts((digest, stored["media_type"], stored["kind"], body, row[-1]))
        if facts is None:
            return f"manifests digest={digest}: its stored bytes do not hash to its digest (they were edited)"
        for column in _MANIFEST_COLUMNS:
            if facts.get(column) != stored[column] and not _kept_from_before_7(column, stored, facts):
                return f"manifests digest={digest}: {column} does not match its bytes (the row was edited)"
        derived = [tuple(p.values()) for p in facts.get("platforms", [])]
        if derived != platforms.get(digest, []):
            return f"platforms index_digest={digest}: do not match the index's bytes (rows were edited)"
    return None


def _kept_from_before_7(column, stored, facts):
    """A `created` as schema 6 code derived it from the same bytes (Go's zero time kept, an artifact's
    annotations not read): the row's seal covers it, so it stays as it was written."""
    return column == "created" and stored["created"] == created_before_7(facts["kind"], facts.get("config_body"))


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


def _check_schema(db):
    """Unknown, missing or altered triggers, views, indexes and tables: someone's own trigger can rewrite
    what the next run appends, a view can lie to a reader."""
    for what, kind, name in _schema_drift(db.conn):
        return {"unknown": f"schema: unknown {kind} {name!r} (not part of the ledger; added by hand?)",
                "differs": f"schema: {kind} {name!r} differs from the shipped one (edited by hand?)",
                "missing": f"schema: {kind} {name!r} is missing (dropped by hand?)"}[what]
    return None
