"""Pictures in `ledger serve`: a tag's timeline, and many tags' timelines with their changes per day.

A Datasette plugin (serving.ledger_datasette registers it) that draws on the server, as inline SVG: no
script and nothing fetched from elsewhere, so it works air-gapped. Every route names its database, so it
serves any ledger name and several ledgers in one Datasette:

    /{database}/-/timeline?tag=REGISTRY/REPO:TAG   which digest the tag pointed to, when, with its moves,
                                                    removals and signature, attestation and SBOM changes
    /{database}/-/timelines?pattern=GLOB&days=N     the 50 most recently changed tags a glob matches, and
                                                    their moves, removals and new images per day

`render_cell` links the tag cell of every row with registry, repo and tag columns to the tag's timeline.
Every read is bounded (a LIMIT, an index, the serving time limit) and only reads; every name from the
ledger is escaped, since registries choose them.
"""

import colorsys
import functools
import hashlib
import html
import json
import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote, urlencode

from datasette import hookimpl
from datasette.utils import sqlite_timelimit, tilde_decode
from datasette.utils.asgi import NotFound, Response
from markupsafe import Markup

from .findings import REGISTRY, identity
from .reads import NEW_IMAGE_SQL, SCHEMA_TAG_SQL, pattern_clause
from .references import TargetError, parse_target, storable_repo, storable_tag
from .terminal import short_digest

FLEET = "_memory"  # serving.FLEET: the fleet's database, whose digest query is fleet_digest_usage

LANES = 50  # tags drawn on the timelines page; more would not be readable
TAG_EVENTS = 1000  # events drawn per lane of one tag's timeline
LANE_EVENTS = 100  # events drawn per lane of the timelines page
REFERRER_EVENTS = 500  # signature, attestation and SBOM events drawn on one tag's timeline
COUNTED = 50_000  # events counted for the chart of changes per day, at most
SCANNED = 250_000  # newest events looked at when more than COUNTED match: the chart's worst case
DEFAULT_DAYS, MOST_DAYS = 30, 3660

WIDTH = 1100
MOVED, REMOVED, NEW, ADDED = "#b45309", "#dc2626", "#2563eb", "#15803d"
LANE_BACKGROUND, INK, MUTED = "#eef0f3", "#1f2328", "#59636e"


class NotALedger(Exception):
    """The database has no ledger tables (Datasette's own, or another file served beside the ledgers)."""


# -- what is read --------------------------------------------------------------------------------------


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
    return (f"k.source != 'referrer' AND NOT {SCHEMA_TAG_SQL.format(tag='k.tag')} "
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


# -- drawing ---------------------------------------------------------------------------------------------


def colour_of(name):
    """A band's colour, the same for a digest on every page and every day: hue, lightness and saturation
    from its hash (any text: a digest, an image ID, even one an old ledger holds unchecked). No pure red:
    that is a removal's mark."""
    seed = hashlib.sha256(name.encode()).digest()
    hue = 0.05 + int.from_bytes(seed[:2], "big") / 65536 * 0.88
    lightness = 0.40 + seed[2] / 255 * 0.16
    saturation = 0.50 + seed[3] / 255 * 0.35
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#%02x%02x%02x" % (round(red * 255), round(green * 255), round(blue * 255))


def _ink_on(colour):
    red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return INK if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.55 else "#ffffff"


def short(name):
    """A digest or image ID as its first 12 hex digits."""
    return name.split(":", 1)[-1][:12] if name else "?"


def _e(text):
    return html.escape(str(text), quote=True)


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(delta):
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            rest = seconds % size
            below = {"d": (3600, "h"), "h": (60, "min"), "min": (1, "s")}[unit]
            return f"{seconds // size} {unit}" + (f" {rest // below[0]} {below[1]}" if rest // below[0] else "")
    return f"{seconds} s"


@dataclass(frozen=True)
class Links:
    """URLs of one database's pages: `database` is its path as Datasette routes it (base_url included)."""
    database: str

    def digest(self, name):
        return f"{self.database}/digest_usage?{urlencode({'digest': name})}"

    def timeline(self, name):
        return f"{self.database}/-/timeline?tag={quote(str(name), safe='/:')}"

    def timelines(self, pattern):
        """The timelines page over its default window (default_days)."""
        return f"{self.database}/-/timelines?{urlencode({'pattern': pattern})}"


@dataclass(frozen=True)
class Scale:
    """Time to x, clamped to the drawing."""
    start: datetime
    end: datetime
    left: float
    right: float

    def x(self, moment):
        share = (moment - self.start) / (self.end - self.start)
        return round(self.left + min(max(share, 0.0), 1.0) * (self.right - self.left), 1)


@dataclass(frozen=True)
class Band:
    start: datetime
    end: datetime
    name: str | None
    current: bool


def bands(changes, end):
    """The stretches of time a key pointed to one image (by its name: a digest, a Docker host's image ID): a
    move starts a new band, a removal ends one, and an update (the same image, more facts) keeps it unless
    it names another."""
    found, start, name = [], None, None
    for change in changes:
        if change.kind == "updated" and start is not None and change.name == name:
            continue
        if start is not None:
            found.append(Band(start, change.at, name, False))
            start = None
        if change.kind != "removed":
            start, name = change.at, change.name
    if start is not None:
        found.append(Band(start, end, name, True))
    return found


_STEPS = [timedelta(seconds=s) for s in (1, 5, 15, 30)] + [timedelta(minutes=m) for m in (1, 5, 15, 30)] + [
    timedelta(hours=h) for h in (1, 3, 6, 12)] + [timedelta(days=d) for d in (1, 2, 7, 14)]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Steps of a longer axis, in months: up to 10,000 years, so any span datetime holds has one.
_MONTHS = (1, 3, 6) + tuple(12 * years for years in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000))


def ticks(start, end, most=8):
    """Round moments between start and end for an axis, at most `most`, with their labels."""
    span = end - start
    for step in _STEPS:
        if span / step <= most:
            label = "%Y-%m-%d" if step >= timedelta(days=1) else "%H:%M:%S" if step < timedelta(minutes=1) else (
                "%m-%d %H:%M")
            moment = _EPOCH + math.ceil((start - _EPOCH) / step) * step
            found = []
            while moment <= end:
                found.append((moment, moment.strftime(label)))
                moment += step
            return found
    months = next(m for m in _MONTHS if span.days / (30.44 * m) <= most)
    index = start.year * 12 + start.month - 1
    index += -index % months
    found = []
    while (moment := datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)) <= end:
        if moment >= start:
            found.append((moment, moment.strftime("%Y-%m" if months < 12 else "%Y")))
        index += months
    return found


def _axis(scale, y):
    parts = [f'<line x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" stroke="{MUTED}"/>']
    for moment, label in ticks(scale.start, scale.end):
        x = scale.x(moment)
        anchor = "end" if x > WIDTH - 45 else "middle"  # a label at the right edge stays in the picture
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x}" y2="{y + 5}" stroke="{MUTED}"/>'
                     f'<text x="{x}" y="{y + 18}" text-anchor="{anchor}" class="tick">{_e(label)}</text>')
    return "".join(parts)


def _svg(height, title, body):
    return Markup(f'<svg class="ledger-picture" role="img" width="{WIDTH}" height="{height}" '
                  f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">'
                  f'<title>{_e(title)}</title>{body}</svg>')


def _band(band, scale, y, height, links, what):
    """One band, linking to where its digest (`what`: or image ID) is used, its label inside when it fits."""
    x1, x2 = scale.x(band.start), scale.x(band.end)
    width = round(max(x2 - x1, 2.0), 1)
    colour = colour_of(band.name or "")
    until = "now" if band.current else _when(band.end)
    tip = (f"{band.name or 'no ' + what}\nfrom {_when(band.start)} to {until} ({_span(band.end - band.start)})"
           f"\nclick: where this {what} is used")
    text = ""
    if width > 96:
        text = (f'<text x="{x1 + 6}" y="{y + height / 2 + 4}" fill="{_ink_on(colour)}" '
                f'pointer-events="none">{_e(short(band.name))}</text>')
    return (f'<a href="{_e(links.digest(band.name or ""))}"><title>{_e(tip)}</title>'
            f'<rect class="band" x="{x1}" y="{y}" width="{width}" height="{height}" fill="{colour}" '
            f'stroke="#ffffff" stroke-width="1"/>{text}</a>')


def _change_marker(previous, change, scale, y, height):
    """A move, removal or (re-)addition, at its time on a lane."""
    x = scale.x(change.at)
    if change.kind == "moved":
        tip = f"moved {_when(change.at)}: {previous or '?'} → {change.name}"
        shape = (f'<line x1="{x}" y1="{y - 3}" x2="{x}" y2="{y + height + 3}" stroke="{INK}" stroke-width="2"/>'
                 f'<path d="M{x - 5} {y - 8} L{x + 5} {y - 8} L{x} {y - 2} Z" fill="{MOVED}"/>')
    elif change.kind == "removed":
        tip = f"removed {_when(change.at)} (it pointed to {change.name or previous or '?'})"
        r = min(6, height / 2 - 1)
        middle = y + height / 2
        shape = (f'<line x1="{x}" y1="{y - 3}" x2="{x}" y2="{y + height + 3}" stroke="{REMOVED}" stroke-width="2"/>'
                 f'<path d="M{x - r} {middle - r} L{x + r} {middle + r} M{x - r} {middle + r} L{x + r} {middle - r}" '
                 f'stroke="{REMOVED}" stroke-width="2.5"/>')
    elif change.kind == "added":
        tip = f"added {_when(change.at)}: {change.name}"
        shape = f'<path d="M{x} {y + height - 7} L{x + 6} {y + height} L{x} {y + height} Z" fill="{ADDED}"/>'
    else:
        return ""
    return f'<g class="marker {change.kind}"><title>{_e(tip)}</title>{shape}</g>'


def _lane_drawing(lane, scale, now, y, height, links):
    """A lane's background, bands to `now` and markers (changes before the window carry its state in,
    unmarked)."""
    parts = [f'<rect x="{scale.left}" y="{y}" width="{round(scale.right - scale.left, 1)}" height="{height}" '
             f'fill="{LANE_BACKGROUND}"/>']
    what = "digest" if lane.source == REGISTRY else "image ID"
    parts += [_band(band, scale, y, height, links, what) for band in bands(lane.changes, now)]
    previous = None
    for change in lane.changes:
        if change.at >= scale.start:
            parts.append(_change_marker(previous, change, scale, y, height))
        previous = change.name if change.kind != "removed" else None
    return "".join(parts)


_GLYPHS = {
    "signature": lambda x, y, r: f'<path d="M{x} {y - r} L{x + r} {y} L{x} {y + r} L{x - r} {y} Z"/>',
    "attestation": lambda x, y, r: f'<circle cx="{x}" cy="{y}" r="{r - 0.5}"/>',
    "sbom": lambda x, y, r: f'<rect x="{x - r + 1}" y="{y - r + 1}" width="{2 * r - 2}" height="{2 * r - 2}"/>',
    "artifact": lambda x, y, r: f'<path d="M{x} {y - r} L{x + r} {y + r - 1} L{x - r} {y + r - 1} Z"/>',
}
_REFERRER_COLOURS = {"added": ADDED, "removed": REMOVED, "moved": MOVED, "updated": MOVED}


def _referrer_markers(referrers, scale, y):
    """Signature, attestation and SBOM changes on a row above the bands; ones at the same x side by side."""
    parts, last = [], None
    for change in referrers:
        x = scale.x(change.at)
        if last is not None and x < last + 10:
            x = last + 10
        last = x
        glyph = _GLYPHS.get(change.what, _GLYPHS["artifact"])
        tip = (f"{change.what} {change.kind} {_when(change.at)}\n{change.referrer or '?'}\nof {change.subject}")
        parts.append(f'<g class="marker referrer {_e(change.what)} {_e(change.kind)}" '
                     f'fill="{_REFERRER_COLOURS.get(change.kind, MUTED)}"><title>{_e(tip)}</title>'
                     f'{glyph(x, y, 5)}</g>')
    return "".join(parts)


def _marker_legend(x, y, referrers=True):
    """What the marks mean, on one row."""
    entries = [(f'<path d="M{x} {y - 6} L{x + 10} {y - 6} L{x + 5} {y} Z" fill="{MOVED}"/>'
                f'<line x1="{x + 5}" y1="{y - 6}" x2="{x + 5}" y2="{y + 6}" stroke="{INK}" stroke-width="2"/>', "moved"),
               (f'<path d="M{x} {y - 5} L{x + 10} {y + 5} M{x} {y + 5} L{x + 10} {y - 5}" stroke="{REMOVED}" '
                f'stroke-width="2.5"/>', "removed"),
               (f'<path d="M{x + 2} {y - 5} L{x + 9} {y + 4} L{x + 2} {y + 4} Z" fill="{ADDED}"/>', "added")]
    if referrers:
        entries += [(f'<g fill="{MUTED}">{_GLYPHS[what](x + 5, y, 5)}</g>', label) for what, label in (
            ("signature", "signature"), ("attestation", "attestation"), ("sbom", "SBOM"), ("artifact", "other"))]
        entries.append(("", "(green: added, red: removed, amber: a cosign tag changed)"))
    parts, offset = [], 0
    for shape, label in entries:
        parts.append(f'<g transform="translate({offset} 0)">{shape}'
                     f'<text x="{x + 16}" y="{y + 4}" fill="{INK}">{_e(label)}</text></g>')
        offset += 38 + 7 * len(label)
    return "".join(parts)


def draw_timeline(timeline, now, links):
    """One tag: a lane per source, bands of the digests it pointed to, marks where it changed, an axis of
    dates and a legend of the digests."""
    moments = [change.at for lane in timeline.lanes for change in lane.changes] + [r.at for r in timeline.referrers]
    first, last = min(moments), max(moments + [now])
    margin = max((last - first) / 50, timedelta(milliseconds=1))
    scale = Scale(first - margin, last, 150, WIDTH - 20)
    parts = [f'<text x="10" y="22" font-size="15" font-weight="bold" fill="{INK}">'
             f'{_e(timeline.name)}</text>']
    y, height = 56, 30
    for lane in timeline.lanes:
        parts.append(f'<text x="{scale.left - 8}" y="{y + height / 2 + 4}" text-anchor="end" fill="{INK}">'
                     f'{_e(lane.source)}</text>')
        if lane.source == REGISTRY and timeline.referrers:
            parts.append(_referrer_markers(timeline.referrers, scale, y - 13))
        parts.append(_lane_drawing(lane, scale, last, y, height, links))
        y += height + 34
    parts.append(_axis(scale, y - 22))
    y += 14
    names = list(dict.fromkeys(band.name for lane in timeline.lanes for band in bands(lane.changes, last)))
    hosts = any(lane.source != REGISTRY for lane in timeline.lanes)
    parts.append(f'<text x="10" y="{y}" font-weight="bold" fill="{INK}">'
                 f'{"Digests and image IDs" if hosts else "Digests"}</text>')
    listed = names[:32]
    for index, name in enumerate(listed):
        x, row_y = 10 + (index % 4) * 270, y + 12 + (index // 4) * 22
        parts.append(f'<a href="{_e(links.digest(name or ""))}"><title>{_e(name or "no digest")}</title>'
                     f'<rect class="swatch" x="{x}" y="{row_y}" width="14" height="14" fill="{colour_of(name or "")}"/>'
                     f'<text x="{x + 20}" y="{row_y + 11}" fill="{INK}">{_e(short(name))}</text></a>')
    y += 12 + math.ceil(len(listed) / 4) * 22
    if len(names) > len(listed):
        parts.append(f'<text x="10" y="{y + 6}" fill="{MUTED}">and {len(names) - len(listed)} more</text>')
        y += 20
    parts.append(_marker_legend(10, y + 14))
    return _svg(y + 30, f"Timeline of {timeline.name}", "".join(parts))


def _nice_step(largest):
    """A round step for a count axis, with at most four steps to `largest`."""
    magnitude = 10 ** max(0, math.floor(math.log10(max(largest, 1))))
    return next(m * magnitude for m in (1, 2, 5, 10) if largest / (m * magnitude) <= 4)


def _day_chart(overview, scale, top, height):
    """Moves, removals and new images per UTC day, stacked bars on the lanes' time scale."""
    parts = []
    largest = max((d.moved + d.removed + d.new_images for d in overview.days), default=0)
    step = _nice_step(largest)
    ceiling = step * max(1, math.ceil(largest / step))
    bottom = top + height
    for value in range(0, ceiling + 1, step):
        y = round(bottom - value / ceiling * height, 1)
        parts.append(f'<line x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" stroke="#d8dee4"/>'
                     f'<text x="{scale.left - 6}" y="{y + 4}" text-anchor="end" class="tick">{value}</text>')
    if overview.counted_since is not None:
        x = scale.x(overview.counted_since)
        parts.append(f'<g class="not-counted"><title>{_e(f"not counted: more than {COUNTED:,} changes match")}'
                     f'</title><rect x="{scale.left}" y="{top}" width="{round(x - scale.left, 1)}" height="{height}" '
                     f'fill="#f6f8fa" stroke="#d8dee4" stroke-dasharray="4 3"/></g>')
    for day in overview.days:
        start = datetime(day.day.year, day.day.month, day.day.day, tzinfo=timezone.utc)
        x1, x2 = scale.x(start), scale.x(start + timedelta(days=1))
        if x2 - x1 < 0.5:
            continue
        width = round(max(x2 - x1 - 1, 1), 1)
        y = bottom
        for count, kind, colour in ((day.moved, "moved", MOVED), (day.removed, "removed", REMOVED),
                                    (day.new_images, "new images", NEW)):
            if not count:
                continue
            bar = count / ceiling * height
            y -= bar
            parts.append(f'<rect class="bar {kind.split()[0]}" x="{x1}" y="{round(y, 1)}" width="{width}" '
                         f'height="{round(bar, 1)}" fill="{colour}"><title>{day.day}: {count} {kind}</title></rect>')
    return "".join(parts)


def draw_overview(overview, title, start, end, now, links):
    """Changes per day, then one lane per tag drawn, on one time scale: whole UTC days from start to end."""
    scale = Scale(start, end, 330, WIDTH - 20)
    parts = [f'<text x="10" y="22" font-size="15" font-weight="bold" fill="{INK}">{_e(title)}</text>']
    x = scale.right - 330
    for colour, label in ((MOVED, "moved"), (REMOVED, "removed"), (NEW, "new images")):
        parts.append(f'<rect x="{x}" y="11" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 17}" y="22" fill="{INK}">{label}</text>')
        x += 110
    parts.append(f'<text x="10" y="60" fill="{MUTED}">changes per day</text>')
    parts.append(_day_chart(overview, scale, 44, 140))
    parts.append(_axis(scale, 190))
    y, height = 232, 18
    for lane in overview.lanes:
        label = str(lane.name) + ("" if lane.source == REGISTRY else f" [{lane.source}]")
        cut = label if len(label) <= 46 else "…" + label[-45:]
        tip = label + (f"\nthe latest {LANE_EVENTS} changes are drawn, {lane.left_off} before them are not"
                       if lane.left_off else "")
        parts.append(f'<a href="{_e(links.timeline(lane.name))}"><title>{_e(tip)}</title>'
                     f'<text x="{scale.left - 8}" y="{y + 13}" text-anchor="end" fill="{INK}">{_e(cut)}</text></a>')
        parts.append(_lane_drawing(lane, scale, now, y, height, links))
        y += height + 6
    if overview.lanes:
        parts.append(_axis(scale, y + 2))
        y += 30
    parts.append(_marker_legend(10, y + 10, referrers=False))
    return _svg(y + 26, title, "".join(parts))


# -- Datasette -------------------------------------------------------------------------------------------

_PAGE = """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block extra_head %}{{ super() }}
<style>
.ledger-picture { max-width: 100%; height: auto; display: block; margin: 1em 0; }
.ledger-picture .tick { fill: #59636e; font-size: 11px; }
.ledger-picture a text { text-decoration: underline; }
form.ledger-picture-form label { width: auto; margin-right: 0.3em; }
form.ledger-picture-form input[type=text] { width: 36em; max-width: 70%; margin-right: 1em; }
form.ledger-picture-form input[type=number] { width: 5em; padding: 8px 4px; margin-right: 1em; }
</style>
{% endblock %}
{% block crumbs %}{{ crumbs.nav(request=request, database=database) }}{% endblock %}
{% block content %}
<h1>{{ title }}</h1>
<form class="ledger-picture-form core" action="{{ action }}" method="get">
{% if page == "timeline" %}
<label for="ledger-tag">tag</label><input type="text" id="ledger-tag" name="tag" value="{{ tag }}" placeholder="REGISTRY/REPO:TAG">
{% else %}
<label for="ledger-pattern">pattern</label><input type="text" id="ledger-pattern" name="pattern" value="{{ pattern }}" placeholder="*/team/* (empty: every tag)">
<label for="ledger-days">days</label><input type="number" id="ledger-days" name="days" min="1" max="{{ most_days }}" value="{{ days }}">
{% endif %}
<input type="submit" value="Draw">
</form>
{% if message %}<p class="message-error">{{ message }}</p>{% endif %}
{% for note in notes %}<p>{{ note }}</p>{% endfor %}
{% if picture %}{{ picture }}{% endif %}
{% if see_also %}<p>{% for label, href in see_also %}<a href="{{ href }}">{{ label }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
{% endblock %}
"""


@functools.lru_cache(maxsize=16)
def _template(environment):
    return environment.from_string(_PAGE)


async def _database(datasette, request):
    """The database the URL names, if the actor may see it."""
    try:
        db = datasette.get_database(route=tilde_decode(request.url_vars["database"]))
    except KeyError:
        raise NotFound("Database not found")
    await datasette.ensure_permissions(request.actor, [("view-database", db.name), "view-instance"])
    return db


async def _read(datasette, db, read, *args):
    """A read in the database's thread, under the time limit every other query of `ledger serve` has."""
    limit = datasette.setting("sql_time_limit_ms")

    def run(conn):
        with sqlite_timelimit(conn, limit):
            return read(conn, *args)
    return await db.execute_fn(run)


async def _page(datasette, request, db, status, **context):
    body = await datasette.render_template(_template(datasette.jinja_env), {
        "database": db.name, "notes": [], "message": None, "picture": None, "see_also": [],
        "most_days": MOST_DAYS, **context}, request=request)
    return Response.html(body, status=status)


def _parse_tag(text):
    """REGISTRY/REPO:TAG as `ledger history` reads it (references.parse_target, as reads.history: `nginx:latest`
    is docker.io/library/nginx:latest), else as a link writes a name the ledger holds that no target can
    spell (a hostile registry's `evil/"><b>x`): the host before the first slash, the tag after the last
    colon. A TargetError says why it is no tag."""
    try:
        target = parse_target(text)
    except TargetError:
        registry, slash, rest = text.strip().partition("/")
        repo, _, tag = rest.rpartition(":")
        if registry and slash and storable_repo(repo) and storable_tag(tag):
            return TagName(registry, repo, tag)
        raise
    if target.repo is None or target.tag is None:
        raise TargetError(f"{text.strip()!r} names no tag")
    return TagName(target.registry, target.repo, target.tag)


def _whole_number(text, low, high):
    """A whole number from low to high in ASCII digits, else None: str.isdigit takes '²' (which int refuses)
    and int takes other scripts' digits and `1_000`; no more digits than `high` has, so none is too long."""
    if not re.fullmatch(f"[0-9]{{1,{len(str(high))}}}", text):
        return None
    number = int(text)
    return number if low <= number <= high else None


# What reading or drawing a ledger may raise: no ledger tables, SQLite's errors (a read over the time limit,
# a damaged file), and the ledger's own text that is no time or date (a file edited by hand, or broken).
_FAILURES = (NotALedger, sqlite3.DatabaseError, ValueError, OverflowError)


def _failure(error, db, what):
    """The status and the one line a page says for one of _FAILURES: never a traceback."""
    if isinstance(error, NotALedger):
        return 404, f"{db.name} is not a ledger."
    if isinstance(error, sqlite3.DatabaseError):
        return 500, f"Reading {what} failed: {error}"
    return 500, f"The ledger {db.name} holds a time {what} cannot draw: {error}"


async def timeline_page(datasette, request):
    db = await _database(datasette, request)
    links = Links(datasette.urls.database(db.name))
    text = request.args.get("tag", "")
    context = {"page": "timeline", "tag": text, "action": f"{links.database}/-/timeline", "title": "Tag timeline"}
    if not text.strip():
        return await _page(datasette, request, db, 400, **context, message=(
            "Which tag? Give it as REGISTRY/REPO:TAG; every tag cell of the ledger's tables links here."))
    try:
        name = _parse_tag(text)
    except TargetError as error:
        return await _page(datasette, request, db, 400, **context,
                           message=f"Give a tag as REGISTRY/REPO:TAG, e.g. ghcr.io/acme/app:prod: {error}")
    now = datetime.now(timezone.utc)
    try:
        timeline = await _read(datasette, db, read_timeline, name)
        picture = None if timeline is None else draw_timeline(timeline, now, links)
    except _FAILURES as error:
        status, message = _failure(error, db, "the timeline")
        return await _page(datasette, request, db, status, **context, message=message)
    repo = f"{name.registry}/{name.repo}"
    see_also = [(f"every tag of {repo}", links.timelines(repo)),
                ("its history as a table", f"{links.database}/history_of_tag?{urlencode({'ref': str(name)})}")]
    if timeline is None:
        return await _page(datasette, request, db, 404, **context, see_also=see_also,
                           message=f"The ledger {db.name} has never seen the tag {name}.")
    notes = [f"{lane.source}: the latest {TAG_EVENTS} events are drawn; {lane.left_off} older ones are not."
             for lane in timeline.lanes if lane.left_off]
    if timeline.referrers_left_off:
        notes.append(f"The latest {REFERRER_EVENTS} signature, attestation and SBOM changes are drawn.")
    hosts = " (on a Docker host, an image ID)" if any(lane.source != REGISTRY for lane in timeline.lanes) else ""
    notes.append(f"Each band is a digest the tag pointed to{hosts}: click it for where else it is used. Marks above "
                 "the bands are signatures, attestations and SBOMs of those digests, added or removed.")
    return await _page(datasette, request, db, 200, **{**context, "tag": str(name), "title": f"Timeline of {name}"},
                       notes=notes, picture=picture, see_also=see_also)


async def timelines_page(datasette, request):
    db = await _database(datasette, request)
    links = Links(datasette.urls.database(db.name))
    pattern = request.args.get("pattern", "").strip()
    now = datetime.now(timezone.utc)
    try:
        days_text = request.args.get("days", "").strip() or str(await _read(datasette, db, default_days, now))
    except _FAILURES as error:
        status, message = _failure(error, db, "the timelines")
        return await _page(datasette, request, db, status, page="timelines", pattern=pattern, days=DEFAULT_DAYS,
                           action=f"{links.database}/-/timelines", title="Tag timelines", message=message)
    context = {"page": "timelines", "pattern": pattern, "days": days_text, "action": f"{links.database}/-/timelines",
               "title": "Tag timelines"}
    days = _whole_number(days_text, 1, MOST_DAYS)
    if days is None:
        return await _page(datasette, request, db, 400, **context,
                           message=f"days is a whole number of days from 1 to {MOST_DAYS}.")
    first = now.date() - timedelta(days=days - 1)  # whole UTC days, today the last: each bar a whole day
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    title = f"{pattern or 'Every tag'}, " + (f"the last {days} days" if days > 1 else "today") + " (UTC)"
    try:
        overview = await _read(datasette, db, read_overview, pattern, start)
        picture = draw_overview(overview, title, start, start + timedelta(days=days), now, links)
    except _FAILURES as error:
        status, message = _failure(error, db, "the timelines")
        return await _page(datasette, request, db, status, **context, message=message)
    notes = []
    if not overview.matched:
        notes.append(f"No tag matches {pattern or '*'} in these {days} days.")
    elif overview.matched > len(overview.lanes) and overview.changed:
        notes.append(f"{overview.matched} tags match: the {overview.changed} moved or removed in these days are drawn "
                     f"first, then the most recently changed of the rest; {overview.matched - len(overview.lanes)} "
                     "are left off. Narrow the pattern to see them.")
    elif overview.matched > len(overview.lanes):
        notes.append(f"{overview.matched} tags match: the {len(overview.lanes)} most recently changed are drawn, "
                     f"{overview.matched - len(overview.lanes)} are left off. Narrow the pattern to see them.")
    if overview.counted_since is not None:
        notes.append(f"More than {COUNTED:,} changes match: the chart counts the newest of them, from about "
                     f"{_when(overview.counted_since)}; the days before are left blank.")
    return await _page(datasette, request, db, 200, **{**context, "title": title}, notes=notes, picture=picture)


@hookimpl
def register_routes():
    return [(r"^/(?P<database>[^/]+)/-/timeline$", timeline_page),
            (r"^/(?P<database>[^/]+)/-/timelines$", timelines_page)]


_WHOLE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _digest_cell(row, value, database, datasette):
    """A digest as tables show it, short (the terminal's 12 hex digits), whole on hover and on a row's own
    page (CSS in templates/base.html), linked to where else it is used: digest_usage in the row's ledger, or
    across ledgers in the fleet's database."""
    columns = row.keys() if row is not None else ()
    if "ledger" in columns and row["ledger"] in datasette.databases:
        database = row["ledger"]
    query = "fleet_digest_usage" if database == FLEET else "digest_usage"
    href = f"{datasette.urls.database(database)}/{query}?{urlencode({'digest': value})}"
    short = short_digest(value)
    return Markup('<a class="ledger-digest" href="{}" title="{}">{}<span class="ledger-digest-rest">{}</span>'
                  '<span class="ledger-digest-more">…</span></a>').format(href, value, short, value[len(short):])


@hookimpl
def render_cell(row, value, column, database, datasette):
    """A whole digest is shown short (_digest_cell). The tag cell of any row that names a tag (registry, repo
    and tag columns) links to its timeline, in the ledger its `ledger` column names (the fleet's queries
    across ledgers) or else its own. A referrer's key (its 'tag' is a digest) is not a tag."""
    if isinstance(value, str) and _WHOLE_DIGEST.fullmatch(value):
        return _digest_cell(row, value, database, datasette)
    if column != "tag" or not isinstance(value, str) or row is None:
        return None
    columns = row.keys()
    if "registry" not in columns or "repo" not in columns:
        return None
    registry, repo = row["registry"], row["repo"]
    if not isinstance(registry, str) or not isinstance(repo, str) or ":" in value or (
            "source" in columns and row["source"] == "referrer"):
        return None
    if "ledger" in columns and row["ledger"] in datasette.databases:
        database = row["ledger"]
    url = Links(datasette.urls.database(database)).timeline(TagName(registry, repo, value))
    return Markup('<a href="{}">{}</a>').format(url, value)


@hookimpl
def database_actions(datasette, database):
    """A ledger's page links to its timelines (Datasette's own databases, and the fleet's, are no ledger)."""
    async def links():
        tables = await datasette.get_database(database).execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tag_keys'")
        return [{"href": f"{datasette.urls.database(database)}/-/timelines", "label": "Tag timelines"}] if (
            tables.rows) else []
    return links
