"""Run seals: every finished run's rows, hash-chained, so every stored fact is covered as events are.

A seal commits to the run's own row, its coverage and errors, the manifests, platforms and images
it wrote first, and the event chain's head when it finished, and is chained to the seal before it
(seals go in the order runs finished). It keeps 8 bytes of sha256 per row, so `ledger verify`
names the first row that differs, not just the run. A manifest's stored bytes are not in its row
digest: they verify against the digest itself (and may be filled in later for a row from before
they were kept).
"""

import json
from dataclasses import dataclass
from hashlib import sha256

_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
ROW_DIGEST = 8


@dataclass(frozen=True)
class Sealed:
    """One table's share of a run: which rows, in which order, named how in a problem."""

    table: str
    columns: tuple
    where: str  # the run's rows, `?` = run id
    order: str
    key: tuple  # the columns that name a row

    def select(self, one_run=True):
        columns = ", ".join(f"t.{c}" for c in self.columns)
        run = "t.id" if self.table == "runs" else self.run_column
        where = f"WHERE {self.where}" if one_run else f"WHERE {run} IS NOT NULL"
        return f"SELECT {run}, {columns} FROM {self._from} {where} ORDER BY {run}, {self.order}"

    @property
    def run_column(self):
        return {"manifests": "t.first_run_id", "images": "t.first_run_id", "platforms": "m.first_run_id"}.get(
            self.table, "t.run_id")

    @property
    def _from(self):
        if self.table == "platforms":
            return "platforms t JOIN manifests m ON m.digest = t.index_digest"
        return f"{self.table} t"

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
           "t.run_id = ?", "t.id", ("id",)),
    Sealed("manifests", ("digest", "media_type", "kind", "config_digest", "config_media_type", "artifact_type",
                         "created", "author", "size", "layers", "os", "architecture", "variant", "os_version",
                         "labels", "first_run_id"),
           "t.first_run_id = ?", "t.digest", ("digest",)),
    Sealed("platforms", ("index_digest", "position", "digest", "media_type", "size", "os", "architecture", "variant",
                         "os_version", "attestation", "attests"),
           "m.first_run_id = ?", "t.index_digest, t.position", ("index_digest", "position")),
    Sealed("images", ("id", "created", "size", "author", "architecture", "os", "labels", "first_run_id"),
           "t.first_run_id = ?", "t.id", ("id",)),
)


def row_digest(table, row):
    values = [value.hex() if isinstance(value, bytes) else value for value in row]
    return sha256(f"{table}\n{_CANONICAL(values)}".encode("utf-8")).digest()[:ROW_DIGEST]


def seal_hash(previous, run_id, head_event_id, head_hash, counts, rows):
    """The seal's hash: over the seal before it, the run, the event chain's head, and its rows."""
    text = _CANONICAL([run_id, head_event_id, head_hash.hex() if head_hash else None, counts])
    return sha256((previous or b"") + text.encode("utf-8") + rows).digest()


def run_rows(conn, run_id):
    """{table: [row, ...]} of one run, in the sealed order."""
    return {sealed.table: [row[1:] for row in conn.execute(sealed.select(), [run_id])] for sealed in TABLES}


def digests_of(rows_by_table):
    """(counts, rows blob) for a run's rows."""
    counts = {table: len(rows) for table, rows in rows_by_table.items()}
    blob = b"".join(row_digest(table, row) for table, rows in rows_by_table.items() for row in rows)
    return counts, blob


def seal(conn, run_id):
    """Seal a run that has just finished, inside the transaction that finished it."""
    previous = conn.execute("SELECT id, hash FROM run_seals ORDER BY id DESC LIMIT 1").fetchone()
    head = conn.execute("SELECT id, hash FROM event_log ORDER BY id DESC LIMIT 1").fetchone()
    head_event_id, head_hash = head if head else (None, None)
    counts, blob = digests_of(run_rows(conn, run_id))
    conn.execute("INSERT INTO run_seals (id, run_id, head_event_id, counts, rows, hash) VALUES (?, ?, ?, ?, ?, ?)",
                 [(previous[0] + 1) if previous else 1, run_id, head_event_id, _CANONICAL(counts), blob,
                  seal_hash(previous[1] if previous else None, run_id, head_event_id, head_hash, counts, blob)])


def seal_existing(conn):
    """At the upgrade that brings seals: seal every run already finished, in the order they finished.
    This proves nothing about what happened before the upgrade, only that nothing changes after it."""
    for (run_id,) in conn.execute("SELECT id FROM runs WHERE finished_at IS NOT NULL "
                                  "ORDER BY finished_at, id").fetchall():
        seal(conn, run_id)


def _grouped(conn, sealed):
    """Every sealed row of one table, grouped by run: {run id: [row, ...]}, in the sealed order."""
    groups = {}
    for run_id, *row in conn.execute(sealed.select(one_run=False)):
        groups.setdefault(run_id, []).append(tuple(row))
    return groups


def check(conn):
    """The first problem with the seals and the rows they cover, or None. Reads in the caller's snapshot."""
    seals = conn.execute("SELECT id, run_id, head_event_id, counts, rows, hash FROM run_seals ORDER BY id").fetchall()
    sealed_runs = {row[1] for row in seals}
    tables = {sealed.table: _grouped(conn, sealed) for sealed in TABLES}
    for sealed in TABLES:
        strays = sorted(run for run in tables[sealed.table] if run not in sealed_runs and run is not None)
        for run_id in strays:
            finished = conn.execute("SELECT finished_at FROM runs WHERE id = ?", [run_id]).fetchone()
            if sealed.table == "runs" and (finished is None or finished[0] is None):
                continue  # a run still going is sealed when it finishes
            row = tables[sealed.table][run_id][0]
            return f"{sealed.name(row)}: belongs to run {run_id}, which has no seal (the row was added or edited)"
    previous = None
    for position, (seal_id, run_id, head_event_id, counts_text, blob, stored) in enumerate(seals, 1):
        if seal_id != position:
            return f"run_seals id={seal_id}: follows seal {position - 1} (seals were deleted or reordered)"
        problem = _check_rows(run_id, counts_text, blob, tables)
        if problem:
            return problem
        head = conn.execute("SELECT hash FROM event_log WHERE id = ?", [head_event_id]).fetchone() \
            if head_event_id is not None else (None,)
        if head is None:
            return f"run_seals id={seal_id}: run {run_id} was sealed at event {head_event_id}, which is missing"
        counts = json.loads(counts_text)
        if seal_hash(previous, run_id, head_event_id, head[0], counts, blob) != stored:
            return (f"run_seals id={seal_id}: its hash does not match (the seal of run {run_id}, or one before "
                    "it, was edited)")
        previous = stored
    return None


def _check_rows(run_id, counts_text, blob, tables):
    """Compare a run's rows with the digests its seal kept; name the first that differs."""
    try:
        counts = json.loads(counts_text)
    except ValueError:
        return f"run_seals run_id={run_id}: its counts are not JSON"
    offset = 0
    for sealed in TABLES:
        rows = tables[sealed.table].get(run_id, [])
        kept = counts.get(sealed.table, 0)
        for index in range(max(len(rows), kept)):
            stored = blob[offset + index * ROW_DIGEST: offset + (index + 1) * ROW_DIGEST] if index < kept else None
            if index >= len(rows):
                return f"{sealed.table}: a row of run {run_id} is missing (deleted after the run was sealed)"
            if stored is None:
                return f"{sealed.name(rows[index])}: added to run {run_id} after it was sealed"
            if row_digest(sealed.table, rows[index]) != stored:
                return f"{sealed.name(rows[index])}: changed after run {run_id} was sealed"
        offset += kept * ROW_DIGEST
    return None
