"""Run seals: every finished run's rows, hash-chained, so every stored fact is covered as events are.

A seal commits to the run's own row, its coverage (the per-run rows of before schema 19, its
coverage_runs row and coverage changes since) and errors, the manifests, platforms and images it wrote
first, and the event chain's head when it finished, and is chained to the seal before it (seals go in
the order runs finished). It keeps 8 bytes of sha256 per row, so `ledger verify`
names the first row that differs, not just the run. A manifest's stored bytes are not in its row
digest: they verify against the digest itself (and may be filled in later for a row from before
they were kept).
"""

import json
from dataclasses import dataclass, replace
from hashlib import sha256

from .encoding import _CANONICAL

ROW_DIGEST = 8
UPGRADE = "sealed at upgrade"  # in a seal's counts: made by the upgrade, for a run finished before it


@dataclass(frozen=True)
class Sealed:
    """One table's share of a run: which rows, in which order, named how in a problem."""

    table: str
    columns: tuple
    where: str  # the run's rows, `?` = run id
    order: str
    key: tuple  # the columns that name a row
    # Columns a later schema added, as (column, default): in a row's digest only when not the default,
    # so the rows sealed before they existed (all default) keep their digests. Those after the first go
    # in by name ({column: value}), so no value of one can pass for another's.
    optional: tuple = ()
    stored: str = ""  # the table the rows are in, when it is not `table` (the name their digests keep)

    def select(self, one_run=True, present=None):
        """The run's rows (every run's, in run order, unless `one_run`). `present`: the optional columns
        the file has (an older file read by verify may lack them: their default is read instead)."""
        columns = [f"t.{c}" for c in self.columns] + [
            f"t.{column}" if present is None or column in present else _literal(default)
            for column, default in self.optional]
        run = "t.id" if self.table == "runs" else self.run_column
        where = f"WHERE {self.where}" if one_run else f"WHERE {run} IS NOT NULL"
        return f"SELECT {run}, {', '.join(columns)} FROM {self._from} {where} ORDER BY {run}, {self.order}"

    def digest(self, row):
        width = len(self.columns)
        extra = [value if place == 0 else {column: value.hex() if isinstance(value, bytes) else value}
                 for place, ((column, default), value) in enumerate(zip(self.optional, row[width:]))
                 if value != default or type(value) is not type(default)]
        return row_digest(self.table, tuple(row[:width]) + tuple(extra))

    @property
    def run_column(self):
        return {"manifests": "t.first_run_id", "images": "t.first_run_id", "platforms": "m.first_run_id"}.get(
            self.table, "t.run_id")

    @property
    def _from(self):
        if self.table == "platforms":
            return "platforms t JOIN manifests m ON m.digest = t.index_digest"
        return f"{self.stored or self.table} t"

    def name(self, row):
        values = dict(zip(self.columns, row))
        return f"{self.table} " + " ".join(f"{column}={values[column]}" for column in self.key)


# Fixed column lists: a later migration adding a column must not change what old seals cover.
TABLES = (
    Sealed("runs", ("id", "started_at", "finished_at", "status", "source", "targets", "tool_version", "repos_listed",
                    "tags_seen", "added", "moved", "updated", "removed", "new_images", "errors", "requests",
                    "error_summary", "head_event_id", "head_hash", "rate_limits", "host", "pid"),
           "t.id = ?", "t.id", ("id",)),
    Sealed("coverage", ("run_id", "source", "registry", "repo", "scope", "complete", "tags_listed", "listed_at",
                        "reason"),
           "t.run_id = ?", "t.source, t.registry, t.repo", ("run_id", "source", "registry", "repo")),
    Sealed("errors", ("id", "run_id", "at", "registry", "repo", "tag", "digest", "stage", "http_status", "code",
                      "message"),
           "t.run_id = ?", "t.id", ("id",), optional=(("source", "registry"), ("count", 1))),
    Sealed("manifests", ("digest", "media_type", "kind", "config_digest", "config_media_type", "artifact_type",
                         "created", "author", "size", "layers", "os", "architecture", "variant", "os_version",
                         "labels", "first_run_id"),
           "t.first_run_id = ?", "t.digest", ("digest",)),
    Sealed("platforms", ("index_digest", "position", "digest", "media_type", "size", "os", "architecture", "variant",
                         "os_version", "attestation", "attests"),
           "m.first_run_id = ?", "t.index_digest, t.position", ("index_digest", "position")),
    Sealed("images", ("id", "created", "size", "author", "architecture", "os", "labels", "first_run_id"),
           "t.first_run_id = ?", "t.id", ("id",)),
    # Schema 9: seals made before it count none of these rows (a count absent is 0).
    Sealed("signature_checks", ("id", "run_id", "checked_at", "registry", "repo", "signature", "subject", "key",
                                "result", "reason", "layer"),
           "t.run_id = ?", "t.id", ("id",)),
    # Schema 19: coverage as changes (seals made before it count none of these rows).
    Sealed("coverage_runs", ("run_id", "stream", "position"), "t.run_id = ?", "t.run_id", ("run_id",)),
    Sealed("coverage_changes", ("run_id", "stream", "source", "registry", "repo", "position", "scope", "complete",
                                "tags_listed", "listed_at", "reason"),
           "t.run_id = ?", "t.source, t.registry, t.repo", ("run_id", "source", "registry", "repo")),
)
# Where a table's rows are from schema 19 on; a file not yet upgraded keeps them under the sealed name.
_RENAMED = {"coverage": "coverage_listings"}


def _in_file(conn):
    """TABLES as this file holds them: a renamed table read where it is, one the file does not have yet
    (an older file read by verify) left out, its runs' seals counting none of its rows."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = []
    for sealed in TABLES:
        if _RENAMED.get(sealed.table) in names:
            found.append(replace(sealed, stored=_RENAMED[sealed.table]))
        elif sealed.table in names:
            found.append(sealed)
    return found


def _literal(value):
    return str(value) if type(value) is int else "'" + value.replace("'", "''") + "'"


def _present(conn):
    """The optional columns this file has, by table."""
    return {sealed.table: {row[1] for row in conn.execute(f"PRAGMA table_info({sealed.table})")}
            for sealed in TABLES if sealed.optional}


def row_digest(table, row):
    values = [value.hex() if isinstance(value, bytes) else value for value in row]
    return sha256(f"{table}\n{_CANONICAL(values)}".encode("utf-8")).digest()[:ROW_DIGEST]


def seal_hash(previous, run_id, head_event_id, head_hash, counts, rows):
    """The seal's hash: over the seal before it, the run, the event chain's head, and its rows."""
    text = _CANONICAL([run_id, head_event_id, head_hash.hex() if head_hash else None, counts])
    return sha256((previous or b"") + text.encode("utf-8") + rows).digest()


def run_rows(conn, run_id):
    """[(Sealed, [row, ...])] of one run, in the sealed order (sealed by the upgrade to version 6, a run's
    rows lack the columns later versions add: their default is sealed, as it is for rows without them)."""
    present, found = _present(conn), {sealed.table: sealed for sealed in _in_file(conn)}
    return [(sealed, [row[1:] for row in conn.execute(found[sealed.table].select(present=present.get(sealed.table)),
                                                       [run_id])] if sealed.table in found else [])
            for sealed in TABLES]


def digests_of(rows_by_table):
    """(counts, rows blob) for a run's rows."""
    counts = {sealed.table: len(rows) for sealed, rows in rows_by_table}
    blob = b"".join(sealed.digest(row) for sealed, rows in rows_by_table for row in rows)
    return counts, blob


def seal(conn, run_id, at_upgrade=False):
    """Seal a run that has just finished, inside the transaction that finished it: the events after the
    previous seal's head are this run's. A seal made by the upgrade to version 6 says so: the runs it
    seals finished earlier, so it cannot say which events were theirs."""
    previous = conn.execute("SELECT id, hash FROM run_seals ORDER BY id DESC LIMIT 1").fetchone()
    head = conn.execute("SELECT id, hash FROM event_log ORDER BY id DESC LIMIT 1").fetchone()
    head_event_id, head_hash = head if head else (None, None)
    counts, blob = digests_of(run_rows(conn, run_id))
    if at_upgrade:
        counts[UPGRADE] = 1
    conn.execute("INSERT INTO run_seals (id, run_id, head_event_id, counts, rows, hash) VALUES (?, ?, ?, ?, ?, ?)",
                 [(previous[0] + 1) if previous else 1, run_id, head_event_id, _CANONICAL(counts), blob,
                  seal_hash(previous[1] if previous else None, run_id, head_event_id, head_hash, counts, blob)])


def seal_existing(conn):
    """At the upgrade that brings seals: seal every run already finished, in the order they finished.
    This proves nothing about what happened before the upgrade, only that nothing changes after it."""
    for (run_id,) in conn.execute("SELECT id FROM runs WHERE finished_at IS NOT NULL "
                                  "ORDER BY finished_at, id").fetchall():
        seal(conn, run_id, at_upgrade=True)


def _check_table(conn, sealed, layout, present):
    """Stream one table's sealed rows in run order against the digests each run's seal kept (only the
    seals' digests are in memory, not the rows: a year of runs has millions of coverage rows). Names the
    first row that differs."""
    def finish(run_id, seen):
        kept = layout[run_id][1].get(sealed.table, (0, 0))[1]
        if seen < kept:
            return f"{sealed.table}: a row of run {run_id} is missing (deleted after the run was sealed)"
        return None

    current, index = None, 0
    for run_id, *row in conn.execute(sealed.select(one_run=False, present=present.get(sealed.table))):
        if run_id != current:
            problem = finish(current, index) if current in layout else None
            if problem:
                return problem
            current, index = run_id, 0
        if run_id not in layout:
            continue  # no seal: _strays has judged it already (a run still going)
        blob, places = layout[run_id]
        offset, kept = places.get(sealed.table, (0, 0))
        if index >= kept:
            return f"{sealed.name(row)}: added to run {run_id} after it was sealed"
        if sealed.digest(row) != blob[offset + index * ROW_DIGEST: offset + (index + 1) * ROW_DIGEST]:
            return f"{sealed.name(row)}: changed after run {run_id} was sealed"
        index += 1
    problem = finish(current, index) if current in layout else None
    if problem:
        return problem
    seen = {row[0] for row in conn.execute(f"SELECT DISTINCT {'t.id' if sealed.table == 'runs' else sealed.run_column} "
                                           f"FROM {sealed._from}")}
    for run_id, (_, places) in layout.items():
        if places.get(sealed.table, (0, 0))[1] and run_id not in seen:
            return f"{sealed.table}: a row of run {run_id} is missing (deleted after the run was sealed)"
    return None


def _layout(seals, parsed):
    """{run id: (rows blob, {table: (offset in the blob, rows kept)})} from each seal's counts."""
    layout = {}
    for seal_id, run_id, _, _, blob, _ in seals:
        places, offset = {}, 0
        for sealed in TABLES:
            kept = parsed[seal_id].get(sealed.table, 0)
            places[sealed.table] = (offset, kept)
            offset += kept * ROW_DIGEST
        if offset != len(blob):
            return run_id, None
        layout[run_id] = (blob, places)
    return None, layout


def check(conn):
    """The first problem with the seals and the rows they cover, or None. Reads in the caller's snapshot."""
    seals = conn.execute("SELECT id, run_id, head_event_id, counts, rows, hash FROM run_seals ORDER BY id").fetchall()
    for seal_id, run_id, head_event_id, counts, blob, stored in seals:
        if not (isinstance(counts, str) and isinstance(blob, bytes) and isinstance(stored, bytes)
                and (head_event_id is None or type(head_event_id) is int) and type(run_id) is int):
            return f"run_seals id={seal_id}: holds values of the wrong type (edited by hand)"
    parsed = {seal_id: _counts(counts) for seal_id, _, _, counts, _, _ in seals}
    bad = next((seal_id for seal_id, counts in parsed.items() if counts is None), None)
    if bad is not None:
        return f"run_seals id={bad}: its counts are not what a seal writes (edited by hand)"
    problem = _uncovered(conn) or _strays(conn)
    if problem:
        return problem
    short, layout = _layout(seals, parsed)
    if layout is None:
        return f"run_seals run_id={short}: its row digests do not match its counts (edited by hand)"
    present, found = _present(conn), _in_file(conn)
    held = {sealed.table for sealed in found}
    gone = next((sealed.table for sealed in TABLES if sealed.table not in held
                 and any(counts.get(sealed.table) for counts in parsed.values())), None)
    if gone:
        return f"{gone}: the table is gone, and run seals cover rows of it (dropped by hand)"
    for sealed in found:
        problem = _check_table(conn, sealed, layout, present)
        if problem:
            return problem
    previous, previous_head = None, 0
    for position, (seal_id, run_id, head_event_id, _, blob, stored) in enumerate(seals, 1):
        counts = parsed[seal_id]
        if seal_id != position:
            return f"run_seals id={seal_id}: follows seal {position - 1} (seals were deleted or reordered)"
        problem = _window(conn, seal_id, run_id, counts, previous_head, head_event_id)
        if problem:
            return problem
        head = conn.execute("SELECT hash FROM event_log WHERE id = ?", [head_event_id]).fetchone() \
            if head_event_id is not None else (None,)
        if head is None:
            return f"run_seals id={seal_id}: run {run_id} was sealed at event {head_event_id}, which is missing"
        if seal_hash(previous, run_id, head_event_id, head[0], counts, blob) != stored:
            return (f"run_seals id={seal_id}: its hash does not match (the seal of run {run_id}, or one before "
                    "it, was edited)")
        previous, previous_head = stored, head_event_id or 0
    last = conn.execute("SELECT max(id) FROM event_log").fetchone()[0]
    if last is not None and last > previous_head:
        return (f"event {previous_head + 1}: no run seal covers it (events after the last sealed run were added "
                "by hand)")
    return _missing_bytes(conn, seals, parsed)


def _counts(text):
    """A seal's counts, or None when they are not what a seal writes."""
    try:
        counts = json.loads(text)
    except ValueError:
        return None
    if not isinstance(counts, dict) or not all(type(value) is int and value >= 0 for value in counts.values()):
        return None
    return counts


def _uncovered(conn):
    """Rows that belong to no run at all: no seal can cover them, so they were added by hand."""
    for table, query in (
            ("manifests", "SELECT digest FROM manifests WHERE first_run_id IS NULL LIMIT 1"),
            ("images", "SELECT id FROM images WHERE first_run_id IS NULL LIMIT 1"),
            ("platforms", "SELECT p.index_digest FROM platforms p LEFT JOIN manifests m ON m.digest = p.index_digest "
                          "WHERE m.digest IS NULL LIMIT 1")):
        row = conn.execute(query).fetchone()
        if row:
            return f"{table} {row[0]}: belongs to no run, so no seal covers it (added by hand)"
    return None


def _strays(conn):
    """Rows of a run that has no seal: a run still going has none yet, and no rows either. An anti-join
    per table, so a ledger of many runs is not read into memory twice."""
    for sealed in _in_file(conn):
        column = "t.id" if sealed.table == "runs" else sealed.run_column
        query = (f"SELECT {column}, {', '.join('t.' + c for c in sealed.columns)} FROM {sealed._from} "
                 f"WHERE {column} IS NOT NULL AND {column} NOT IN (SELECT run_id FROM run_seals)")
        if sealed.table == "runs":
            query += " AND (t.finished_at IS NOT NULL OR " + " OR ".join(
                f"t.{name} IS NOT NULL" for name in _UNFINISHED_EMPTY) + ")"
        row = conn.execute(query + " LIMIT 1").fetchone()
        if row is None:
            continue
        run_id, *values = row
        if sealed.table == "runs" and values[sealed.columns.index("finished_at")] is None:
            return f"runs id={run_id}: a run still going that already has results (edited by hand)"
        return f"{sealed.name(values)}: belongs to run {run_id}, which has no seal (the row was added or edited)"
    return None


_UNFINISHED_EMPTY = ("repos_listed", "tags_seen", "added", "moved", "updated", "removed", "new_images", "errors",
                     "requests", "error_summary", "head_event_id", "head_hash", "rate_limits")


def _window(conn, seal_id, run_id, counts, previous_head, head_event_id):
    """The events a seal's run appended are those after the previous seal's head, up to its own."""
    head = head_event_id or 0
    if head < previous_head:
        return f"run_seals id={seal_id}: its event head {head} is before the previous seal's {previous_head}"
    if counts.get(UPGRADE):
        return None
    other = conn.execute("SELECT id, run_id FROM event_log WHERE id > ? AND id <= ? AND run_id IS NOT ? "
                         "ORDER BY id LIMIT 1", [previous_head, head, run_id]).fetchone()
    if other:
        return (f"event {other[0]}: credited to run {other[1]}, but it lies among the events run {run_id} appended "
                "(added or edited by hand)")
    return None


def _missing_bytes(conn, seals, parsed):
    """A manifest first written by a run sealed after the upgrade was stored with its bytes: bytes gone
    now were removed by hand (rows from before version 6 may lack them until they are met again)."""
    upgraded = {run_id for seal_id, run_id, *_ in seals if parsed[seal_id].get(UPGRADE)}
    for digest, run_id in conn.execute("SELECT digest, first_run_id FROM manifests WHERE body IS NULL "
                                       "AND kind != 'legacy'"):
        if run_id not in upgraded:
            return f"manifests digest={digest}: its bytes were removed (run {run_id} stored them)"
    return None


