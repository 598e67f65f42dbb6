"""The two pages: a request's arguments parsed strictly, the reads run in the database's thread under the
serving time limit, and every failure one line on the page with its status, never a traceback."""

import functools
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode

from datasette.utils import sqlite_timelimit, tilde_decode
from datasette.utils.asgi import NotFound, Response

from ..findings import REGISTRY
from ..references import TargetError, parse_target, storable_repo, storable_tag
from .data import (COUNTED, DEFAULT_DAYS, MOST_DAYS, REFERRER_EVENTS, TAG_EVENTS, NotALedger, TagName, default_days,
                   read_overview, read_timeline)
from .draw import _when, draw_overview, draw_timeline

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
