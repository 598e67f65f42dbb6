"""The questions people ask the ledger, as SQL over the contract's tables and views."""

import json
import re

from .references import TargetError, parse_target
from .store.fragments import categorised, digest_text_sql, key_digest_sql, referrer_tag_sql
from .suggest import closest, did_you_mean
from .times import parse_when

# For each tag key, its latest event observed at or before :at (empty: now): one index seek per key,
# because a key's events never go back in time. Image tags only. `ledger at` narrows it by its
# arguments; the `state_at` canned query (metadata.yml) is this with globs (CANNED below).
_STATE_AT = """
SELECT k.registry, k.repo, k.tag, e.digest, e.image, e.created, e.observed_at AS since, e.run_id, k.source
FROM tag_keys k
JOIN events e ON e.id = (
    SELECT q.id FROM event_log q
    WHERE q.key_id = k.id
      AND q.observed_at <= coalesce(nullif(:at, ''), strftime('%Y-%m-%dT%H:%M:%S.999999Z', 'now'))
    ORDER BY q.observed_at DESC, q.id DESC LIMIT 1)
WHERE e.kind != 'removed' AND k.source != 'referrer' AND NOT {referrer_tag} {where}
ORDER BY k.registry, k.repo, k.tag, k.source
"""
def _state_at(where, by_category=True):
    return _STATE_AT.format(where=where, referrer_tag=referrer_tag_sql("k.tag", "e.digest", categorised=by_category))


# Every tag that ever pointed to a digest or image ID (:digest, with or without sha256:): when it first did
# (first_seen), when it last stopped (left_at: the first `moved` or `removed` of the key after its last event
# there; NULL while it still points there, points_there_now). One row per key however often it came back.
# `ledger digest`, the digest_usage canned query, and (over every ledger served) fleet_digest_usage.
_GIVEN = "WITH given AS (SELECT lower(CASE WHEN :digest LIKE 'sha256:%' THEN substr(:digest, 8) ELSE :digest END) AS hex)"
_USAGE = """
SELECT {ledger}k.registry, k.repo, k.tag, k.source, f.observed_at AS first_seen, gone.observed_at AS left_at,
       gone.id IS NULL AS points_there_now
FROM (WITH wanted AS MATERIALIZED (
          SELECT d.id FROM {schema}.digests d, given
          WHERE substr(hex(d.digest), 1, 12) = upper(substr(given.hex, 1, 12)) AND lower(hex(d.digest)) = given.hex
          UNION SELECT id FROM {schema}.digests WHERE digest = :digest)
      SELECT e.key_id, min(e.id) AS first_id, max(e.id) AS last_id FROM {schema}.event_log e NOT INDEXED
      WHERE e.kind != 'removed' AND (e.digest_id IN (SELECT id FROM wanted) OR e.image_id IN (SELECT id FROM wanted))
      GROUP BY e.key_id) g
JOIN {schema}.tag_keys k ON k.id = g.key_id
JOIN {schema}.event_log f ON f.id = g.first_id
LEFT JOIN {schema}.event_log gone ON gone.id = (SELECT min(n.id) FROM {schema}.event_log n
                                                 WHERE n.key_id = g.key_id AND n.id > g.last_id
                                                   AND n.kind IN ('moved', 'removed'))"""
_USAGE_ORDER = "ORDER BY points_there_now DESC, left_at DESC, first_seen DESC"


def _usage(schema, ledger=""):
    """One ledger's part: the event log is read once, in order (an image ID has no index to look it up by)."""
    return _USAGE.format(schema=schema, ledger=ledger)


_DIGEST_USAGE = "\n".join([_GIVEN, _usage("main"), _USAGE_ORDER])

# Canned queries whose SQL is said here, for `ledger serve` to put into metadata.yml.
CANNED = {"state_at": _state_at("AND (k.registry || '/' || k.repo) GLOB coalesce(nullif(:pattern, ''), '*') "
                                "AND k.source GLOB coalesce(nullif(:source, ''), '*')").strip(),
          "digest_usage": _DIGEST_USAGE.strip()}

# The fleet-wide canned queries (metadata.yml's `_memory`): a head, then one SELECT per ledger, with {schema}
# where it is attached and {ledger} its name as a value, joined by UNION ALL, then a tail. A union sorted
# as a whole computes every column of every row: fleet_current_tags leaves out current_tags' signed,
# attested and sbom, which cost more than the rest of the view together (the ledger's own pages and
# unsigned_current_tags have them).
_SINCE_DAY = "coalesce(nullif(:since, ''), strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-1 day'))"
_UNTIL_NOW = "coalesce(nullif(:until, ''), strftime('%Y-%m-%dT%H:%M:%S.999999Z', 'now'))"
# Whether event `e` of key `k` is a first sighting that is an image (or an index of them), as the
# new_images view says: no signature, SBOM, chart or other artifact. Daemon keys hold images. For the
# window queries here and the pictures' chart, which read events rather than the view.
NEW_IMAGE_SQL = """(EXISTS (SELECT 1 FROM {schema}.digests f
                     WHERE f.id IN (e.digest_id, e.image_id) AND f.first_event_id = e.id)
             AND (k.source GLOB 'daemon:*'
                  OR coalesce((SELECT coalesce(m.category, m.kind) FROM {schema}.digest_names d
                               JOIN {schema}.manifests m ON m.digest = d.digest WHERE d.id = e.digest_id),
                              'image') IN ('image', 'index', 'legacy')))"""
# fleet_changes, in one ledger: the ids of the window's changes as a JSON list, at most a page of them, so
# that the union sorts a page per ledger (Datasette shows a query's first 1,000 rows, max_returned_rows, and
# says when there were more). Fewer than a page are found whole through the keys changed since the window
# began (a key's latest event is in the window when any of its events is) and their index, so an empty
# window reads no event; more, and the newest page of them (by id, as appended) is read from event_log
# newest first, as the window queries read it, which stops once it has them. A key's time is tested before
# its name's GLOB, which costs more: SQLite tests the terms in the order written.
_PAGE_ROWS = 1001
_CHANGES = f"""SELECT e.id FROM {{schema}}.{{tables}}
                         WHERE {{keys}} e.observed_at > {_SINCE_DAY} AND e.observed_at <= {_UNTIL_NOW}
                           AND (k.registry || '/' || k.repo || ':' || k.tag) GLOB coalesce(nullif(:pattern, ''), '*')
                           AND k.source != 'referrer'
                           AND NOT {referrer_tag_sql("k.tag", digest_text_sql("e.digest_id", "{schema}"), "{schema}")}
                           AND (e.kind IN ('moved', 'removed') OR {NEW_IMAGE_SQL})"""
_FEW_CHANGES = f"""(SELECT CASE WHEN count(*) < {_PAGE_ROWS} THEN json_group_array(id) END FROM (
                         {_CHANGES.format(schema="{schema}", tables="tag_keys k CROSS JOIN {schema}.event_log e "
                                          "ON e.key_id = k.id", keys=f"k.observed_at > {_SINCE_DAY} AND")}
                         LIMIT {_PAGE_ROWS}))"""
_PAGE_OF_CHANGES = f"""(SELECT json_group_array(id) FROM (
                         {_CHANGES.format(schema="{schema}", tables="event_log e NOT INDEXED CROSS JOIN "
                                          "{schema}.tag_keys k ON k.id = e.key_id", keys="")}
                         ORDER BY e.id DESC LIMIT {_PAGE_ROWS}))"""
# `ledger serve` serves the fleet-wide queries below in Datasette's `_memory` (the name its `crossdb` uses),
# and the pictures link a digest there to fleet_digest_usage.
FLEET = "_memory"
_FLEET = {
    "fleet_current_tags": ("", """\
SELECT {ledger} AS ledger, registry, repo, tag, digest, kind, image, created, first_seen, last_changed, source
FROM {schema}.current_tags
WHERE (registry || '/' || repo || ':' || tag) GLOB coalesce(nullif(:pattern, ''), '*')""",
                           "ORDER BY registry, repo, tag, source, ledger"),
    "fleet_changes": ("", f"""\
SELECT {{ledger}} AS ledger, observed_at,
       CASE WHEN kind IN ('moved', 'removed') THEN kind ELSE 'new image' END AS change,
       registry, repo, tag, digest, prev_digest, image, prev_image, kind, run_id, source
FROM {{schema}}.tag_history
WHERE event_id IN (SELECT value FROM json_each(coalesce({_FEW_CHANGES}, {_PAGE_OF_CHANGES})))""",
                      "ORDER BY observed_at DESC, ledger"),
    "fleet_digest_usage": (_GIVEN, _usage("{schema}", "{ledger} AS ledger, "), _USAGE_ORDER + ", ledger"),
}


def fleet_canned(names):
    """The fleet-wide canned queries' SQL over ledgers attached by these names (`ledger serve a.db b.db`), each
    as its store.schema_names() schema. A name comes from a file name: its schema goes in as a quoted
    identifier and the name as a quoted string (the `ledger` column), never as they are."""
    from .store import schema_names
    quoted = [{"schema": '"' + schema.replace('"', '""') + '"', "ledger": "'" + name.replace("'", "''") + "'"}
              for name, schema in schema_names(names).items()]
    return {query: "\n".join(filter(None, [head, "\nUNION ALL\n".join(each.format(**q) for q in quoted), tail]))
            for query, (head, each, tail) in _FLEET.items()}


# A tag's own events, and the events of the referrers (signatures, attestations, SBOMs, ...) of every
# digest it has pointed to, in the order they happened.
_HISTORY = """
SELECT event_id, observed_at, kind, 'tag' AS what, digest, prev_digest, NULL AS subject, created, run_id, source
FROM tag_history
WHERE registry = :registry AND repo = :repo AND tag = :tag {also}
UNION ALL
SELECT h.event_id, h.observed_at, h.kind, coalesce(r.kind, 'artifact'), h.digest, h.prev_digest, r.subject,
       h.created, h.run_id, h.source
FROM referrers r
JOIN tag_history h ON h.registry = r.registry AND h.repo = r.repo AND h.tag = coalesce(r.tag, r.referrer)
                  AND h.source = CASE WHEN r.tag IS NULL THEN 'referrer' ELSE 'registry' END
WHERE r.registry = :registry AND r.repo = :repo AND r.subject IN (
    SELECT digest FROM tag_history WHERE registry = :registry AND repo = :repo AND tag = :tag AND digest IS NOT NULL
    {also})
ORDER BY event_id
"""
_GLOB = re.compile(r"[*?\[]")


def pattern_clause(pattern, alias=""):
    """A glob over `registry/repo` or, with a tag part, `registry/repo:tag` (SQLite GLOB: * ? [...]).

    A pattern with no glob characters names one repo (or tag) and is matched by equality, so the
    key index answers it."""
    if not pattern:
        return "", {}
    with_tag = ":" in pattern.rsplit("/", 1)[-1]
    target = _exact(pattern)
    if target is not None:
        clause, params = f"AND {alias}registry = :registry", {"registry": target.registry}
        for part in ("repo", "tag"):
            if getattr(target, part) is not None:
                clause += f" AND {alias}{part} = :{part}"
                params[part] = getattr(target, part)
        return clause, params
    name = f"{alias}registry || '/' || {alias}repo"
    if with_tag:
        name += f" || ':' || {alias}tag"
    return f"AND ({name}) GLOB :pattern", {"pattern": pattern}


def _exact(pattern):
    if _GLOB.search(pattern):
        return None
    try:
        return parse_target(pattern)
    except TargetError:
        return None


def unheld(db, pattern):
    """Why PATTERN (or a REFERENCE) found nothing, when the ledger never held a key it names: 'NAME is not in
    the ledger', with the closest names it holds. None when it holds one: then an empty answer is the answer
    (every tag removed, nothing at that time, no change in the window)."""
    where, params = pattern_clause(pattern)
    if db.execute(f"SELECT 1 FROM tag_keys WHERE 1 {where} LIMIT 1", params).fetchone():
        return None
    return f"{pattern} is not in the ledger" + did_you_mean(_closest_held(db, pattern))


def _closest_held(db, pattern):
    """The names the ledger holds most like PATTERN: a tag of the same repository, else the same repository
    on another registry (one left out reads as Docker Hub), else the closest repository names."""
    repos = {f"{registry}/{repo}": (registry, repo) for registry, repo in
             db.execute("SELECT DISTINCT registry, repo FROM tag_keys").fetchall()}
    target = _exact(pattern)
    if target is None:  # a glob: its repository part against the names held
        with_tag = ":" in pattern.rsplit("/", 1)[-1]
        return closest(pattern.rsplit(":", 1)[0] if with_tag else pattern, repos)
    if target.repo is None:  # a registry
        return closest(target.registry, {registry for registry, _ in repos.values()})
    name = f"{target.registry}/{target.repo}"
    if target.tag is not None and name in repos:
        tags = [tag for (tag,) in db.execute(
            f"SELECT k.tag FROM tag_keys k WHERE k.registry = ? AND k.repo = ? AND k.source != 'referrer' "
            f"AND NOT {referrer_tag_sql('k.tag', key_digest_sql('k'), categorised=categorised(db))}",
            [target.registry, target.repo])]
        return [f"{name}:{tag}" for tag in closest(target.tag, tags)] or [f"one of the tags `ledger tags {name}` lists"]
    here = [repo for registry, repo in repos.values() if registry == target.registry]
    found = (sorted(held for held, (_, repo) in repos.items() if repo == target.repo)
             or [f"{target.registry}/{repo}" for repo in closest(target.repo, here)] or closest(name, repos))
    return [_with_tag(db, held, repos[held], target.tag) for held in found[:3]]


def _with_tag(db, name, key, tag):
    """`name:tag` when the ledger holds that tag there, else the repository's name alone."""
    if tag is not None and db.execute("SELECT 1 FROM tag_keys WHERE registry = ? AND repo = ? AND tag = ? LIMIT 1",
                                      [*key, tag]).fetchone():
        return f"{name}:{tag}"
    return name


def _source_clause(source, alias=""):
    """A glob over the source: 'registry', 'daemon:*', 'daemon:build-host'."""
    return (f"AND {alias}source GLOB :source", {"source": source}) if source else ("", {})


def current_tags(db, pattern=None, source=None, unsigned=False):
    """Image tags now, with what their digest is and whether it is signed (a signature that verified against
    a configured key), has a signature at all, is attested, with an SBOM. `unsigned`: no signature that
    verified. A ledger whose views predate referrers (read-only, not yet upgraded by a collect) says NULL
    there; one whose views predate verification (schema 9) has verified nothing: its `signed` said what
    has_signature says now."""
    where, params = pattern_clause(pattern)
    also, more = _source_clause(source)
    if _has_column(db, "current_tags", "has_signature"):
        referred, signed = "kind, signed, has_signature, attested, sbom", "signed"
    elif _has_column(db, "current_tags", "signed"):
        referred, signed = "kind, 0 AS signed, signed AS has_signature, attested, sbom", "0"
    else:
        referred = "NULL AS kind, NULL AS signed, NULL AS has_signature, NULL AS attested, NULL AS sbom"
        signed = "0"
    return list(db.query(
        f"SELECT registry, repo, tag, digest, image, created, first_seen, last_changed, source, {referred} "
        f"FROM current_tags WHERE 1 {where} {also} {f'AND NOT {signed}' if unsigned else ''} "
        f"ORDER BY registry, repo, tag, source", {**params, **more}))


def _has_column(db, table, column):
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def moment(db, text, end_of_day=False):
    """TIME as people type it, or a run id (`42` or `run:42`: the moment that run finished). A date is the
    start of that day (UTC), or with `end_of_day` (an --until) its last microsecond. ValueError says why not."""
    run = re.fullmatch(r"(?:run:)?(\d+)", text.strip())
    if run and len(run.group(1)) < 8:
        found = db.execute("SELECT finished_at FROM runs WHERE id = ?", [int(run.group(1))]).fetchone()
        if not found or not found[0]:
            raise ValueError(f"run {run.group(1)} is not a finished run")
        return found[0]
    return parse_when(text, end_of_day=end_of_day, also="a run id (42, run:42)")


def window(db, since, until=None):
    """--since and --until as moments (--until a date: its whole day); a window that ends before it starts
    is a ValueError, not an empty answer."""
    start, end = moment(db, since), moment(db, until, end_of_day=True) if until else None
    if end is not None and end < start:
        raise ValueError(f"--until {until} ({end}) is before --since {since} ({start})")
    return start, end


AT_COLUMNS = ["registry", "repo", "tag", "digest", "image", "created", "since", "run_id", "source"]


def state_at(db, at, pattern=None, source=None):
    where, params = pattern_clause(pattern, "k.")
    also, more = _source_clause(source, "k.")
    return list(db.query(_state_at(f"{where} {also}", categorised(db)), {"at": at, **params, **more}))


def history(db, reference, source=None):
    """Every event of one tag, oldest first, with what it pointed to before."""
    target = parse_target(reference)
    if target.repo is None or target.tag is None:
        raise ValueError(f"{reference!r} names no tag: give REGISTRY/REPO:TAG")
    also, more = _source_clause(source)
    params = {"registry": target.registry, "repo": target.repo, "tag": target.tag, **more}
    if not _has_column(db, "referrers", "subject"):  # views from before referrers: the tag's own events
        return list(db.query(
            "SELECT event_id, observed_at, kind, 'tag' AS what, digest, prev_digest, NULL AS subject, created, "
            f"run_id, source FROM tag_history WHERE registry = :registry AND repo = :repo AND tag = :tag {also} "
            "ORDER BY event_id", params))
    return list(db.query(_HISTORY.format(also=also), params))


# A change's class (tag_history's change: a move as moved, rollback or platforms_added) and, for a rollback,
# its earlier sighting as the rollbacks view tells it: when the key first pointed to the digest it came back
# to, and the key's latest earlier event there. Views from before the classes (a ledger read-only, not yet
# upgraded by a collect) say NULL.
_CHANGE = """h.change,
       CASE WHEN h.change = 'rollback' THEN (SELECT min(x.observed_at) FROM event_log x
                                              WHERE x.digest_id = e.digest_id AND x.key_id = e.key_id) END AS seen_before,
       CASE WHEN h.change = 'rollback' THEN (SELECT max(x.id) FROM event_log x WHERE x.digest_id = e.digest_id
                                              AND x.key_id = e.key_id AND x.id < e.id) END AS earlier_event_id"""


CHANGES_COLUMNS = ["observed_at", "kind", "change", "registry", "repo", "tag", "prev_digest", "digest", "seen_before",
                   "earlier_event_id", "run_id", "source"]


def changes(db, since, until=None, pattern=None, source=None):
    """Every event observed from `since` (included: a date is the start of its day) to `until`, in order,
    with its change class."""
    where, params = pattern_clause(pattern, "h.")
    also, more = _source_clause(source, "h.")
    change = (_CHANGE if _has_column(db, "tag_history", "change")
              else "NULL AS change, NULL AS seen_before, NULL AS earlier_event_id")
    return list(db.query(
        f"SELECT h.observed_at, h.kind, h.registry, h.repo, h.tag, h.prev_digest, h.digest, h.run_id, h.source, "
        f"{change} FROM tag_history h JOIN event_log e ON e.id = h.event_id "
        f"WHERE h.observed_at >= :since AND h.observed_at <= :until {where} {also} ORDER BY h.event_id",
        {"since": since, "until": until or "9999", **params, **more}))


def digest_usage(db, digest):
    """Every tag that ever pointed to a digest or image ID (sha256: optional), and whether it still does: the
    ones that do first. A digest that is not whole is a ValueError."""
    digest = digest.strip()
    if not re.fullmatch(r"(sha256:)?[0-9a-fA-F]{64}", digest):
        raise ValueError(_NOT_WHOLE.format(digest=digest))
    return list(db.query(_DIGEST_USAGE, {"digest": digest}))


# The platforms of an index (attestation manifests are not platforms), or a single image's own.
PLATFORMS_COLUMNS = ["os", "architecture", "variant", "os_version", "digest", "size", "media_type"]
_PLATFORMS = """
SELECT os, architecture, variant, os_version, digest, size, media_type FROM platforms
WHERE index_digest = :digest AND NOT attestation
UNION ALL
SELECT os, architecture, variant, os_version, digest, size, media_type FROM manifests
WHERE digest = :digest AND kind != 'index'
ORDER BY os, architecture, variant, os_version, digest
"""
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_NOT_WHOLE = ("{digest!r} is not a whole digest: give sha256: and 64 hex digits (tables shorten them; --full or "
              "--json shows them whole)")


def platforms(db, reference, source=None):
    """(digest, platforms) of what REFERENCE names: a digest, or REGISTRY/REPO:TAG as it is now (its
    registry's own key unless `source` says another); digest None when the ledger holds no such tag."""
    digest = reference.strip().rpartition("@")[2]
    if digest.startswith(("sha256:", "sha512:")) and not _DIGEST.fullmatch(digest):
        raise ValueError(_NOT_WHOLE.format(digest=digest))
    if not _DIGEST.fullmatch(digest):
        target = parse_target(reference)
        if target.repo is None or target.tag is None:
            raise ValueError(f"{reference!r} names no tag or digest: give REGISTRY/REPO:TAG or sha256:<64 hex>")
        found = db.execute("SELECT digest FROM current_tags WHERE registry = ? AND repo = ? AND tag = ? "
                           "AND source GLOB ? ORDER BY source != 'registry', source LIMIT 1",
                           [target.registry, target.repo, target.tag, source or "registry"]).fetchone()
        if not found or not found[0]:
            return None, []
        digest = found[0]
    return digest, list(db.query(_PLATFORMS, {"digest": digest}))


def holds_manifest(db, digest):
    """Whether the ledger ever stored the manifest DIGEST (an index with no platforms still counts)."""
    return db.execute("SELECT 1 FROM manifests WHERE digest = ?", [digest]).fetchone() is not None


def runs(db, limit, problems=False):
    """The latest runs, newest first, their targets as one line; with `problems`, each one's errors."""
    rows = list(db.query(
        "SELECT id, started_at, finished_at, status, targets, tags_seen, added, moved, updated, removed, "
        "new_images, errors, error_summary FROM runs ORDER BY id DESC LIMIT ?", [limit]))
    # A ledger read as it is, before schema 10, has a row per failure.
    count = "count" if problems and _has_column(db, "errors", "count") else "1 AS count"
    for row in rows:
        row["targets"] = _targets_text(row["targets"])
        if problems:
            row["problems"] = list(db.query(
                f"SELECT stage, registry, repo, tag, http_status, code, message, {count} FROM errors "
                "WHERE run_id = ? ORDER BY id", [row["id"]]))
    return rows


def run_problems(rows, summaries=True):
    """Lines saying what went wrong in runs: each one's errors where they were read, else (`summaries`)
    the summary of each run that was not ok."""
    for row in rows:
        if summaries and row["status"] != "ok" and row["error_summary"] and "problems" not in row:
            yield f"run {row['id']}: {row['error_summary']}"
        for problem in row.get("problems", []):
            where = "/".join(filter(None, [problem["registry"], problem["repo"]])) + (
                f":{problem['tag']}" if problem["tag"] else "")
            times = f" ({problem['count']} times)" if problem["count"] != 1 else ""
            yield f"run {row['id']} {problem['stage']}: " + (f"{where}: " if where else "") + problem["message"] + times


def _targets_text(stored):
    """A run's targets (a JSON list) as one line; what an edit left there is shown as it is."""
    try:
        targets = json.loads(stored)
    except (TypeError, ValueError):
        return str(stored)
    return " ".join(map(str, targets)) if isinstance(targets, list) else str(stored)


def tracked_tags(db):
    """{source: image tags the ledger holds now}, as current_tags counts them."""
    return dict(db.conn.execute("SELECT source, count(*) FROM current_tags GROUP BY source").fetchall())
