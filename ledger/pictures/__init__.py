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

Three modules, each importing only those before it: data.py reads, draw.py draws what was read, routes.py
serves the pages; this one is the plugin's hooks.
"""

import re
from urllib.parse import urlencode

from datasette import hookimpl
from markupsafe import Markup

from ..reads import FLEET
from ..terminal import short_digest
from .data import TagName
from .routes import Links, timeline_page, timelines_page


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
