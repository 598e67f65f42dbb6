"""The SQLite ledger: schema, append-only writes, the hash chain and its verification."""

import hashlib
import json
import os
import socket
import sqlite3
from importlib import resources

import sqlite_utils

from . import __version__
from .semantics import REMOVED, Observation, classify, removed_keys
from .times import now

SCHEMA_VERSION = 3
GENESIS = "0" * 64
BUSY_TIMEOUT_MS = 30_000
_REAPPLIED = ("triggers.sql", "indexes.sql", "views.sql")
_EVENT_FIELDS = ("id", "run_id", "observed_at", "kind", "registry", "repo", "tag",
                 "digest", "image", "media_type", "created", "author", "size")
_LEDGER_TABLES = {"runs", "events", "manifests", "platforms", "coverage", "errors", "tag_state"}


class StoreError(Exception):
    """A ledger file that cannot be used; the message names the file."""


def _schema_file(name):
    return resources.files("ledger").joinpath("schema", name).read_text(encoding="utf-8")


def _migrations():
    """Numbered files `NNN_*.sql`, each bringing the schema to version NNN."""
    files = sorted(f.name for f in resources.files("ledger").joinpath("schema").iterdir() if f.name[:3].isdigit())
    return [(int(name[:3]), name) for name in files]


def event_hash(prev_hash, row):
    """The hash over an event's canonical content, chained to the previous event's hash."""
    canonical = json.dumps([row[name] for name in _EVENT_FIELDS], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode("utf-8")).hexdigest()


def open_db(path):
    """Open (creating or upgrading) a ledger; re-apply triggers, indexes and views."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.OperationalError as error:
        raise StoreError(f"{path}: cannot open ({error})") from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: not a ledger database ({error})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"{path}: ledger schema version {version} is newer than this ledger "
                         f"(supports {SCHEMA_VERSION}); upgrade registry-ledger")
    if version == 0 and tables - _LEDGER_TABLES:
        conn.close()
        raise StoreError(f"{path}: not a ledger database (it has other tables: {', '.join(sorted(tables))})")
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, name in _migrations():
            if number > version:
                for statement in _statements(_schema_file(name)):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        for name in _REAPPLIED:
            for statement in _statements(_schema_file(name)):
                conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.Error as error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise StoreError(f"{path}: cannot open the ledger ({error})") from None
    return sqlite_utils.Database(conn)


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


def start_run(db, source, targets):
    """Record that a run began, so an interrupted run stays visible; close runs whose process died."""
    host, pid = socket.gethostname(), os.getpid()
    with _immediate(db):
        for run_id, old_pid in db.execute(
                "SELECT id, pid FROM runs WHERE finished_at IS NULL AND host = ? AND pid IS NOT NULL", [host]):
            if not _alive(old_pid):
                db.execute("UPDATE runs SET finished_at = ?, status = 'failed', errors = 1, error_summary = ? "
                           "WHERE id = ?", [now(), f"interrupted: process {old_pid} ended before the run did",
                                            run_id])
        cursor = db.execute(
            "INSERT INTO runs (started_at, status, source, targets, tool_version, host, pid) "
            "VALUES (?, 'running', ?, ?, ?, ?, ?)", [now(), source, json.dumps(list(targets)), __version__, host, pid])
        return cursor.lastrowid


def _alive(pid):
    """Signal 0 probes a process; only 'no such process' proves it gone (not permission denied)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class _immediate:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock before reading the state we classify against."""

    def __init__(self, db):
        self.conn = db.conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def finish_failed_run(db, run_id, message):
    """Close a run whose results could not be appended: nothing of it enters the ledger."""
    with _immediate(db):
        db.execute("UPDATE runs SET finished_at = ?, status = 'failed', errors = 1, error_summary = ? WHERE id = ?",
                   [now(), message, run_id])


def _save_manifests(db, run_id, manifests):
    for facts in manifests:
        platforms = facts.pop("platforms", [])
        inserted = db.execute(
            f"INSERT INTO manifests ({', '.join(facts)}, first_run_id) "
            f"SELECT {', '.join('?' for _ in facts)}, ? WHERE NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?)",
            [*facts.values(), run_id, facts["digest"]]).rowcount
        if inserted and platforms:
            columns = list(platforms[0])
            db.conn.executemany(
                f"INSERT INTO platforms (index_digest, {', '.join(columns)}) VALUES (?, {', '.join('?' for _ in columns)})",
                [[facts["digest"], *row.values()] for row in platforms])


def _known_facts(db, digests):
    facts = {}
    for chunk in _chunks(set(digests)):
        rows = db.execute(
            f"SELECT digest, kind, media_type, config_digest, created, author, size FROM manifests "
            f"WHERE digest IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        for digest, kind, media_type, config_digest, created, author, size in rows:
            facts[digest] = Observation(digest=digest, image=config_digest if kind == "image" else None,
                                        media_type=media_type, created=created, author=author, size=size)
    return facts


def _states(db, repos):
    """The tag_state rows of every (registry, repo) touched by this run, keyed by tag key."""
    states = {}
    for registry, repo in repos:
        for row in db.query("SELECT * FROM tag_state WHERE registry = ? AND repo = ?", [registry, repo]):
            states[(row["registry"], row["repo"], row["tag"])] = row
    return states


def _as_observation(row):
    return Observation(digest=row["digest"], image=row["image"], media_type=row["media_type"],
                       created=row["created"], author=row["author"], size=row["size"])


def _classify_all(db, result):
    """The events this run makes, classified against the ledger as it is now."""
    facts = _known_facts(db, [o["digest"] for o in result.observations if o.get("digest")])
    repos = {(o["registry"], o["repo"]) for o in result.observations}
    repos |= {(c["registry"], c["repo"]) for c in result.coverage if c["complete"]}
    states = _states(db, repos)
    pending = []
    for seen in result.observations:
        key = (seen["registry"], seen["repo"], seen["tag"])
        known = facts.get(seen["digest"])
        obs = known or Observation(digest=seen["digest"], media_type=seen.get("media_type"))
        row = states.get(key)
        if row is not None and row["observed_at"] > seen["observed_at"]:
            continue  # a newer observation is already in the ledger (a concurrent run)
        state = _as_observation(row) if row is not None and row["kind"] != REMOVED else None
        kind = classify(state, obs)
        if kind is None or (known is None and kind not in ("added", "moved")):
            continue  # an incomplete observation (a fetch failed) never downgrades what is known
        pending.append((seen["observed_at"], key, kind, obs))
    for listing in result.coverage:
        if not listing["complete"]:
            continue
        current = {key[2]: row for key, row in states.items()
                   if key[:2] == (listing["registry"], listing["repo"]) and row["kind"] != REMOVED
                   and listing["scope"].covers(key[2])}
        for tag in removed_keys(current, listing["tags"]):
            row = current[tag]
            if row["observed_at"] > listing["listed_at"]:
                continue
            pending.append((listing["listed_at"], (listing["registry"], listing["repo"], tag), REMOVED,
                            _as_observation(row)))
    pending.sort(key=lambda item: (item[0], item[1]))
    return pending


def _append_events(db, run_id, pending):
    head = db.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev = head if head else (0, GENESIS)
    rows = []
    for observed_at, (registry, repo, tag), kind, obs in pending:
        last_id += 1
        row = {"id": last_id, "run_id": run_id, "observed_at": observed_at, "kind": kind,
               "registry": registry, "repo": repo, "tag": tag, "digest": obs.digest, "image": obs.image,
               "media_type": obs.media_type, "created": obs.created, "author": obs.author, "size": obs.size}
        row["prev_hash"] = prev
        row["hash"] = prev = event_hash(prev, row)
        rows.append(row)
    if rows:
        columns = list(rows[0])
        db.conn.executemany(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [list(row.values()) for row in rows])
    return rows, (last_id, prev) if head or rows else (None, None)


def _count_new_images(db, rows):
    """Digests (or image IDs) this run's events show for the first time in the whole ledger."""
    firsts = {}
    for row in rows:
        key = row["digest"] or row["image"]
        if key and row["kind"] != REMOVED:
            firsts.setdefault(key, row)
    new = 0
    for key, row in firsts.items():
        column = "digest" if row["digest"] else "image"
        earlier = db.execute(
            f"SELECT 1 FROM events WHERE {column} = ? AND id < ? AND kind != 'removed' LIMIT 1",
            [key, row["id"]]).fetchone()
        new += earlier is None
    return new


def append_run(db, run_id, result):
    """Append one run's findings in a single write transaction; returns the run's counts."""
    with _immediate(db):
        _save_manifests(db, run_id, result.manifests)
        pending = _classify_all(db, result)
        rows, (head_id, head_hash) = _append_events(db, run_id, pending)
        for listing in result.coverage:
            db.execute(
                "INSERT INTO coverage (run_id, registry, repo, scope, complete, tags_listed, listed_at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, listing["registry"], listing["repo"],
                 listing["scope"].describe(),
                 int(listing["complete"]), len(listing["tags"]) if listing["complete"] else None,
                 listing["listed_at"], listing.get("reason")])
        for error in result.errors:
            db.execute(
                "INSERT INTO errors (run_id, at, registry, repo, tag, digest, stage, http_status, code, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, error.at, error.registry, error.repo, error.tag, error.digest, error.stage,
                 error.status, error.code, error.message])
        counts = {kind: sum(1 for row in rows if row["kind"] == kind)
                  for kind in ("added", "moved", "updated", "removed")}
        counts["new_images"] = _count_new_images(db, rows)
        counts["tags_seen"] = len(result.observations)
        counts["repos_listed"] = sum(1 for c in result.coverage if c["complete"])
        counts["errors"] = len(result.errors)
        summary = "; ".join(sorted({str(e) for e in result.errors})[:5]) or None
        db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, repos_listed = ?, tags_seen = ?, added = ?, moved = ?, "
            "updated = ?, removed = ?, new_images = ?, errors = ?, requests = ?, rate_limits = ?, error_summary = ?, "
            "head_event_id = ?, head_hash = ? WHERE id = ?",
            [now(), result.status, counts["repos_listed"], counts["tags_seen"], counts["added"], counts["moved"],
             counts["updated"], counts["removed"], counts["new_images"], counts["errors"],
             json.dumps(dict(sorted(result.requests.items()))),
             json.dumps(result.rate_limits, sort_keys=True) if result.rate_limits else None,
             summary, head_id, head_hash, run_id])
    return counts


_DERIVED_STATE = """
SELECT * FROM (
WITH latest AS (SELECT max(id) AS id FROM events GROUP BY registry, repo, tag),
     began AS (SELECT registry, repo, tag, max(id) AS id FROM events WHERE kind = 'added'
               GROUP BY registry, repo, tag)
SELECT e.registry, e.repo, e.tag, e.id, e.kind, e.observed_at, e.digest, e.image, e.media_type,
       e.created, e.author, e.size, a.observed_at
FROM latest JOIN events e ON e.id = latest.id
LEFT JOIN began b ON (b.registry, b.repo, b.tag) = (e.registry, e.repo, e.tag)
LEFT JOIN events a ON a.id = b.id)
"""
_STORED_STATE = """
SELECT registry, repo, tag, event_id, kind, observed_at, digest, image, media_type, created, author, size, first_seen
FROM tag_state
"""


def _state_differs(db):
    """The maintained current-state table must equal what the events derive."""
    return db.execute(f"SELECT EXISTS ({_DERIVED_STATE} EXCEPT {_STORED_STATE}) "
                      f"OR EXISTS ({_STORED_STATE} EXCEPT {_DERIVED_STATE})").fetchone()[0] == 1


class Verification:
    def __init__(self):
        self.events = 0
        self.head_id = None
        self.head_hash = None
        self.problems = []

    @property
    def ok(self):
        return not self.problems


def verify(db):
    """Recompute the hash chain and check the derived state; name the first bad row."""
    report = Verification()
    prev, last_id = GENESIS, 0
    cursor = db.conn.execute(f"SELECT {', '.join(_EVENT_FIELDS)}, prev_hash, hash FROM events ORDER BY id")
    for values in cursor:
        row = dict(zip(_EVENT_FIELDS + ("prev_hash", "hash"), values))
        if row["prev_hash"] != prev:
            what = "deleted or reordered" if row["id"] != last_id + 1 else "inserted or edited"
            report.problems.append(f"event {row['id']}: prev_hash does not match event {last_id} "
                                   f"(an event before it was {what})")
            break
        if event_hash(prev, row) != row["hash"]:
            report.problems.append(f"event {row['id']}: content does not match its hash (the row was edited)")
            break
        prev, last_id = row["hash"], row["id"]
        report.events += 1
    if report.ok and report.events:
        report.head_id, report.head_hash = last_id, prev
    if report.ok:
        for run_id, head_id, head_hash in db.execute(
                "SELECT id, head_event_id, head_hash FROM runs WHERE head_event_id IS NOT NULL ORDER BY id"):
            found = db.execute("SELECT hash FROM events WHERE id = ?", [head_id]).fetchone()
            if found is None or found[0] != head_hash:
                report.problems.append(f"run {run_id}: its chain head, event {head_id}, is missing or changed "
                                       "(events were removed from the end)")
                break
    if report.ok and _state_differs(db):
        report.problems.append("tag_state does not match the events (the current-state table was edited)")
    return report
