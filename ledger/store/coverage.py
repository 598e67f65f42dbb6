"""Coverage as changes (schema 19): a run records which repositories it listed, and how, only where that
differs from the run before it in its stream, so a run where nothing changed adds one small row.

A stream is the runs of one source and one list of targets: a one-off collect of one repository is not
the watch loop's registry shrinking. The run before is the stream's last run with a coverage_runs row,
in the order runs were appended (their seals' ids), never by run id: two runs of one stream may finish
out of order."""

from hashlib import sha256

from .encoding import _CANONICAL

STREAM_BYTES = 8

# The latest change of each repository in a stream: SQLite takes the bare columns from the max() row.
_STATE = """
SELECT source, registry, repo, scope, complete, tags_listed, reason, max(position)
FROM coverage_changes WHERE stream = ? GROUP BY source, registry, repo
"""


def stream_of(source, targets):
    """The stream a run belongs to, from its row's source and targets (JSON text, as stored)."""
    return sha256(_CANONICAL([source, targets]).encode("utf-8")).digest()[:STREAM_BYTES]


def _state(listing):
    return (listing.scope.describe(), int(listing.complete), len(listing.tags) if listing.complete else None,
            listing.reason)


def save(conn, run_id, position, listings):
    """Write a run's coverage, inside the transaction that seals it as seal `position`: its coverage_runs
    row, and a change for each repository listed otherwise than by the stream's run before (or no longer
    listed). A run that listed nothing writes nothing: its coverage is empty."""
    if not listings:
        return
    source, targets = conn.execute("SELECT source, targets FROM runs WHERE id = ?", [run_id]).fetchone()
    stream = stream_of(source, targets)
    before = {tuple(row[:3]): tuple(row[3:7]) for row in conn.execute(_STATE, [stream])}
    now = {(listing.source, listing.registry, listing.repo): listing for listing in listings}
    changes = [(key, _state(listing), listing.listed_at) for key, listing in now.items()
               if before.get(key) != _state(listing)]
    changes += [(key, (None, None, None, None), None) for key, state in before.items()
                if state[0] is not None and key not in now]
    conn.execute("INSERT INTO coverage_runs (run_id, stream, position) VALUES (?, ?, ?)", [run_id, stream, position])
    conn.executemany(
        "INSERT INTO coverage_changes (stream, source, registry, repo, position, run_id, scope, complete, "
        "tags_listed, listed_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(stream, *key, position, run_id, scope, complete, tags_listed, listed_at, reason)
         for key, (scope, complete, tags_listed, reason), listed_at in sorted(changes)])


def listed(conn, run_id, registry, repo, source="registry"):
    """(complete, reason) of how run `run_id` listed a repository, or None if it did not: one indexed query
    over the changes (runs from before schema 19 read their own rows)."""
    row = conn.execute(
        "SELECT c.scope, c.complete, c.reason FROM coverage_runs r JOIN coverage_changes c ON c.stream = r.stream "
        "WHERE r.run_id = ? AND c.source = ? AND c.registry = ? AND c.repo = ? AND c.position <= r.position "
        "ORDER BY c.position DESC LIMIT 1", [run_id, source, registry, repo]).fetchone()
    if row is None:
        row = conn.execute("SELECT scope, complete, reason FROM coverage_listings WHERE run_id = ? AND source = ? "
                           "AND registry = ? AND repo = ?", [run_id, source, registry, repo]).fetchone()
    return None if row is None or row[0] is None else (bool(row[1]), row[2])


def check(conn):
    """The first coverage row not where its run puts it, or None: a run's place is its seal's id, its
    stream is its own source and targets, and its changes are at its place in its stream. The seals
    cover every column; this proves the columns agree with each other."""
    for run_id, stream, position, seal_id, source, targets in conn.execute(
            "SELECT r.run_id, r.stream, r.position, s.id, x.source, x.targets FROM coverage_runs r "
            "LEFT JOIN run_seals s ON s.run_id = r.run_id LEFT JOIN runs x ON x.id = r.run_id"):
        if position != seal_id:
            return f"coverage_runs run_id={run_id}: its position {position} is not its seal's id {seal_id} (edited)"
        if not isinstance(stream, bytes) or not isinstance(source, str) or not isinstance(targets, str) \
                or stream != stream_of(source, targets):
            return f"coverage_runs run_id={run_id}: its stream is not its run's source and targets (edited)"
    row = conn.execute(
        "SELECT c.run_id, c.source, c.registry, c.repo FROM coverage_changes c LEFT JOIN coverage_runs r "
        "ON r.run_id = c.run_id WHERE r.run_id IS NULL OR r.stream IS NOT c.stream OR r.position IS NOT c.position "
        "LIMIT 1").fetchone()
    if row:
        return (f"coverage_changes run_id={row[0]} source={row[1]} registry={row[2]} repo={row[3]}: not at its "
                "run's place in its stream (edited)")
    return None
