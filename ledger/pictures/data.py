"""What the pictures read: bounded SQL over one ledger into typed dataclasses (a Lane per tag key, a
Timeline, an Overview). Only reads, each under a LIMIT or through an index, so no ledger is too large to
draw; nothing here draws or knows Datasette."""

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

from ..findings import REGISTRY, identity
from ..reads import NEW_IMAGE_SQL, pattern_clause
from ..store.fragments import key_digest_sql, referrer_tag_sql

LANES = 50  # tags drawn on the timelines page; more would not be readable
TAG_EVENTS = 1000  # events drawn per lane of one tag's timeline
LANE_EVENTS = 100  # events drawn per lane of the timelines page
REFERRER_EVENTS = 500  # signature, attestation and SBOM events drawn on one tag's timeline
COUNTED = 50_000  # events counted for the chart of changes per day, at most
SCANNED = 250_000  # newest events looked at when more than COUNTED match: the chart's worst case
DEFAULT_DAYS, MOST_DAYS = 30, 3660


class NotALedger(Exception):
    """The database has no ledger tables (Datasette's own, or another file served beside the ledgers)."""


@dataclass(frozen=True)
class TagName:
    registry: str
    repo: str
    tag: str

    def __str__(self):
        return f"{self.registry}/{self.repo}:{self.tag}"


@dataclass(frozen=True)
class Change:
    """One event of a tag key; `name` is what it pointed to, as its source tells images apart (shown)."""
    at: datetime
    kind: str  # added, moved, updated or removed
    digest: str | None
    image: str | None
    name: str | None


@dataclass(frozen=True)
class Lane:
    """One key's changes, oldest first. The first may be from before the window: the state carried in.
    `left_off` older changes in the window were not read (the lane's limit)."""
    name: TagName
    source: str
    changes: list[Change]
    left_off: int


@dataclass(frozen=True)
class ReferrerChange:
    """A signature, attestation, SBOM or other artifact of a digest the tag pointed to, added or removed
    (a cosign tag `moved`: a signature added to it or dropped)."""
    at: datetime
    kind: str
    what: str
    subject: str
    referrer: str | None


@dataclass(frozen=True)
class Timeline:
    name: TagName
    lanes: list[Lane]  # one per source: the registry, and any Docker host's copy
    referrers: list[ReferrerChange]
    referrers_left_off: bool


@dataclass(frozen=True)
class DayCount:
    day: date
    moved: int
    removed: int
    new_images: int


@dataclass(frozen=True)
class Overview:
    lanes: list[Lane]
    matched: int  # tags the pattern matches that had a life in the window
    days: list[DayCount]
    counted_since: datetime | None  # None: every change of the window is counted
    changed: int = 0  # lanes of tags moved or removed in the window: drawn first, and chosen first


def _moment(text):
    """A time as the ledger writes it (UTC ISO 8601); anything else is text the pictures cannot place."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"{text!r} is not a UTC time")
    return moment


def _day(text):
    """A UTC day (an observed_at's first ten characters)."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a day") from None


def _stamp(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _require_ledger(conn):
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tag_keys'").fetchone():
        raise NotALedger()


_CHANGES = """
SELECT e.observed_at, e.kind, d.digest, i.digest AS image
FROM event_log e
LEFT JOIN digest_names d ON d.id = e.digest_id
LEFT JOIN digest_names i ON i.id = e.image_id
WHERE e.key_id = :key AND e.observed_at {op} :since
ORDER BY e.observed_at DESC, e.id DESC LIMIT :limit
"""


def _changes(conn, key, source, since, limit, op=">="):
    """A key's newest changes from `since` on (`op` "<": the last one before it), oldest first."""
    rows = conn.execute(_CHANGES.format(op=op), {"key": key, "since": since, "limit": limit}).fetchall()
    return [Change(_moment(at), kind, digest, image, identity(digest, image, source))
            for at, kind, digest, image in reversed(rows)]


def _lane(conn, key, name, source, since, limit, carry_in):
    """A key's lane: its newest `limit` changes from `since`, and (`carry_in`) the state before."""
    changes = _changes(conn, key, source, since, limit + 1)
    left_off = 0
    if len(changes) > limit:
        changes = changes[1:]
        left_off = conn.execute("SELECT count(*) FROM event_log WHERE key_id = ? AND observed_at >= ?",
                                [key, since]).fetchone()[0] - limit
    elif carry_in:
        changes = _changes(conn, key, source, since, 1, op="<") + changes
    return Lane(name, source, changes, left_off)


# The referrer events of digests a tag pointed to: `ledger history`'s (reads._HISTORY), bounded.
_REFERRERS = """
SELECT h.observed_at, h.kind, coalesce(r.kind, 'artifact') AS what, r.subject, h.digest
FROM referrers r
JOIN tag_history h ON h.registry = r.registry AND h.repo = r.repo AND h.tag = coalesce(r.tag, r.referrer)
                  AND h.source = CASE WHEN r.tag IS NULL THEN 'referrer' ELSE 'registry' END
WHERE r.registry = :registry AND r.repo = :repo AND r.subject IN (SELECT value FROM json_each(:subjects))
  AND h.observed_at >= :since
ORDER BY h.event_id DESC LIMIT :limit
"""


def read_timeline(conn, name):
    """One tag's timeline, or None when the ledger never saw the tag."""
    _require_ledger(conn)
    keys = conn.execute(
        "SELECT id, source FROM tag_keys WHERE registry = ? AND repo = ? AND tag = ? AND source != 'referrer' "
        "ORDER BY source != 'registry', source", [name.registry, name.repo, name.tag]).fetchall()
    if not keys:
        return None
    lanes = [_lane(conn, key, name, source, "", TAG_EVENTS, carry_in=False) for key, source in keys]
    referrers, left_off = [], False
    registry = [lane for lane in lanes if lane.source == REGISTRY and lane.changes]
    if registry and "subject" in {row[1] for row in conn.execute("PRAGMA table_info(referrers)")}:
        subjects = sorted({change.digest for change in registry[0].changes if change.digest})
        rows = conn.execute(_REFERRERS, {
            "registry": name.registry, "repo": name.repo, "subjects": json.dumps(subjects),
            "since": _stamp(registry[0].changes[0].at), "limit": REFERRER_EVENTS + 1}).fetchall()
        left_off = len(rows) > REFERRER_EVENTS
        referrers = [ReferrerChange(_moment(at), kind, what, subject, referrer)
                     for at, kind, what, subject, referrer in reversed(rows[:REFERRER_EVENTS])]
    return Timeline(name, lanes, referrers, left_off)


def default_days(conn, now):
    """The timelines' window when none is asked for: the whole UTC days the ledger has lived (its first event's
    day to today), at most DEFAULT_DAYS, so that a young ledger's bands are not slivers at the right edge."""
    _require_ledger(conn)
    first = conn.execute("SELECT observed_at FROM event_log ORDER BY id LIMIT 1").fetchone()
    if first is None:
        return 1
    return min(max((now.date() - _day(first[0][:10])).days + 1, 1), DEFAULT_DAYS)


def _keys_where(pattern):
    """Image tag keys a pattern matches (as `ledger tags PATTERN`), alive at some time from :since."""
    clause, params = pattern_clause(pattern, "k.")
    return (f"k.source != 'referrer' AND NOT {referrer_tag_sql('k.tag', key_digest_sql('k'))} "
            f"AND (k.kind != 'removed' OR k.observed_at >= :since) {clause}"), params


_PER_DAY = f"""
SELECT substr(e.observed_at, 1, 10) AS day, sum(e.kind = 'moved'), sum(e.kind = 'removed'),
       sum({NEW_IMAGE_SQL.format(schema='main')}),
       count(*), min(e.observed_at)
FROM {{events}}
GROUP BY day
"""
# Few enough events: each matched key's, through the (key_id, observed_at) index.
_BY_KEY = "tag_keys k CROSS JOIN event_log e ON e.key_id = k.id AND e.observed_at >= :since WHERE {where}"
# Too many: the newest, in the order they were appended, looking at no more than SCANNED events.
_NEWEST = ("(SELECT e.* FROM event_log e NOT INDEXED JOIN tag_keys k ON k.id = e.key_id "
           "WHERE e.id > :floor AND e.observed_at >= :since AND {where} ORDER BY e.id DESC LIMIT :counted) "
           "AS e JOIN tag_keys k ON k.id = e.key_id")


def read_overview(conn, pattern, since):
    """LANES tags a pattern matches, with their changes from `since`: those moved or removed since then first
    (the most recently changed of them), then the most recently changed of the rest; and the changes per day
    of every tag it matches (the newest COUNTED of them, when there are more)."""
    _require_ledger(conn)
    where, params = _keys_where(pattern)
    params = {**params, "since": _stamp(since)}
    # A key moved or removed since then has its latest event since then: only those keys are probed.
    changed = [key for key, in conn.execute(
        f"SELECT k.id FROM tag_keys k WHERE {where} AND k.observed_at >= :since AND EXISTS (SELECT 1 FROM event_log e "
        "WHERE e.key_id = k.id AND e.observed_at >= :since AND e.kind IN ('moved', 'removed')) "
        "ORDER BY k.observed_at DESC LIMIT :lanes", {**params, "lanes": LANES}).fetchall()]
    newest = changed + [key for key, in conn.execute(
        f"SELECT k.id FROM tag_keys k WHERE {where} AND k.id NOT IN (SELECT value FROM json_each(:changed)) "
        "ORDER BY k.observed_at DESC LIMIT :lanes",
        {**params, "changed": json.dumps(changed), "lanes": LANES - len(changed)}).fetchall()]
    # (the ids alone: sorting whole rows takes twice as long)
    keys = conn.execute("SELECT id, registry, repo, tag, source FROM tag_keys WHERE id IN (SELECT value FROM "
                        "json_each(?))", [json.dumps(newest)]).fetchall()
    first = set(changed)
    lanes = [_lane(conn, key, TagName(registry, repo, tag), source, params["since"], LANE_EVENTS, True)
             for key, registry, repo, tag, source in sorted(
                 keys, key=lambda k: (k[0] not in first, f"{k[1]}/{k[2]}:{k[3]}", k[4]))]
    matched = len(newest) if len(newest) < LANES else conn.execute(
        f"SELECT count(*) FROM tag_keys k WHERE {where}", params).fetchone()[0]
    # A key's latest event is in the window exactly when any of its events is: keys seen since tell.
    where += " AND k.observed_at >= :since"
    many = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {_BY_KEY.format(where=where)} LIMIT :most)",
                        {**params, "most": COUNTED + 1}).fetchone()[0] > COUNTED
    if many:
        floor = max(0, conn.execute("SELECT max(id) FROM event_log").fetchone()[0] - SCANNED)
        rows = conn.execute(_PER_DAY.format(events=_NEWEST.format(where=where)),
                            {**params, "floor": floor, "counted": COUNTED}).fetchall()
        oldest = min((row[5] for row in rows), default=None)
        if floor and sum(row[4] for row in rows) < COUNTED:  # the scan stopped first: counted from where it did
            oldest = conn.execute("SELECT observed_at FROM event_log WHERE id > ? ORDER BY id LIMIT 1",
                                  [floor]).fetchone()[0]
        counted_since = _moment(oldest) if oldest and oldest > params["since"] else None
    else:
        rows = conn.execute(_PER_DAY.format(events=_BY_KEY.format(where=where)), params).fetchall()
        counted_since = None
    days = [DayCount(_day(day), moved, removed, new) for day, moved, removed, new, _, _ in rows]
    return Overview(lanes, matched, days, counted_since, len(changed))
