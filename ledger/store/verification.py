"""Verifying a ledger: the hash chain (in parallel ranges on a big one), run heads, the seals, the
manifests against their bytes, the derived tables against the events, and the schema."""

import collections
import os
import sqlite3
import zlib

from . import coverage, seals
from ..findings import identity
from ..referrers import REFERRER
from ..semantics import REMOVED
from .database import SCHEMA_VERSION, StoreError, _db_file, _schema_drift, _transaction, connect_readonly
from .encoding import GENESIS, _canonical, digest_text, event_hash
from .facts import _MANIFEST_COLUMNS, settled_category, stored_facts


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
            digest, image = digest_text(digest), digest_text(image)
            try:
                prev = event_hash(prev, _canonical(event_id, run_id, observed_at, kind, registry, repo, tag, digest,
                                                   image, media_types.get(media_type_id), created, author, size, source))
            except (TypeError, ValueError):  # a blob where text belongs, a lone surrogate: put there by hand
                return count, last_id, prev, f"event {event_id}: a column holds a value of the wrong type", derived
            if type(stored) is not bytes or prev != stored.hex():
                return count, last_id, prev, (f"event {event_id}: content does not match its hash "
                                              "(the row was edited, or an event before it was replaced)"), derived
            if source == REFERRER and digest != tag:
                return count, last_id, prev, (f"event {event_id}: a referrer's event shows {digest}, not the "
                                              f"referrer {tag} its key names"), derived
            derived.see(event_id, kind, observed_at, key_id, identity(digest_id, image_id, source), prev_event_id)
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
        import concurrent.futures  # a process pool, only for a big ledger: not imported by a read command
        import multiprocessing
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
              lambda: coverage.check(db.conn),
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
    for row in db.execute(f"SELECT {columns}, category, body, config_body FROM manifests ORDER BY digest"):
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
        if settled_category(db, facts) != row[-3]:
            return f"manifests digest={digest}: category does not match its bytes (the row was edited)"
        derived = [tuple(p.values()) for p in facts.get("platforms", [])]
        # a referrers list stored before schema 11 has its entries as platforms rows: its seal covers them
        listed = [tuple(p.values()) for p in facts.get("referrers", [])]
        if derived != platforms.get(digest, []) and not (listed and listed == platforms.get(digest)):
            return f"platforms index_digest={digest}: do not match the index's bytes (rows were edited)"
    return None


def _kept_from_before_7(column, stored, facts):
    """A `created` as schema 6 code derived it from the same bytes (Go's zero time kept, an artifact's
    annotations not read): the row's seal covers it, so it stays as it was written."""
    from ..manifests import created_before_7  # manifest parsing: not imported by a read command
    return column == "created" and stored["created"] == created_before_7(facts["kind"], facts.get("config_body"))


def _check_schema(db):
    """Unknown, missing or altered triggers, views, indexes and tables: someone's own trigger can rewrite
    what the next run appends, a view can lie to a reader."""
    for what, kind, name in _schema_drift(db.conn):
        return {"unknown": f"schema: unknown {kind} {name!r} (not part of the ledger; added by hand?)",
                "differs": f"schema: {kind} {name!r} differs from the shipped one (edited by hand?)",
                "missing": f"schema: {kind} {name!r} is missing (dropped by hand?)"}[what]
    return None
