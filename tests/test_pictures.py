"""Pictures in `ledger serve`: a tag's timeline and many tags' timelines, drawn as inline SVG from ledgers
the collector wrote from the real local registry (for hostile names, the hostile one; for a Docker host's
copies, podman; for changes weeks apart, the store's append API), read through the Datasette `ledger serve`
builds, and looked at by a headless Chromium.

Screenshots are kept in test-artifacts/screenshots/ (or $LEDGER_TEST_ARTIFACTS) for people to look at."""

import asyncio
import hashlib
import html
import itertools
import re
import sqlite3
import struct
import time
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
import sqlite_utils

from conftest import Ledger
from sandbox.hostile import HostileRegistry
from ledger import reads, serving, store
from ledger.findings import Listing, RunResult, Sighting
from ledger.pictures.draw import ADDED, MOVED, NEW, REMOVED, colour_of, short
from ledger.semantics import Scope
from ledger.times import format_instant
from sandbox import Pusher
from test_artifacts import cosign_signature, push
from test_browser import ARTIFACTS, chromium


@pytest.fixture(scope="module")
def story(registry, tmp_path_factory):
    """`prod` pushed, then moved twice (its second image signed with a cosign tag), `stable` never changed,
    `old` removed: three collects a second apart into story.db, and `stable` alone into other.db."""
    pusher, tmp = Pusher(registry.url), tmp_path_factory.mktemp("pictures")
    ns = "pictures-" + hashlib.sha256(str(tmp).encode()).hexdigest()[:8]
    repo, target = f"{ns}/app", f"{registry.host}/{ns}/app"
    ledger = Ledger(str(tmp / "story.db"))
    prod = [pusher.image(repo, "prod", seed=f"{ns} prod 1")[0]]
    stable = pusher.image(repo, "stable", seed=f"{ns} stable")[0]
    old = pusher.image(repo, "old", seed=f"{ns} old")[0]
    ledger.collect(target)
    time.sleep(1)
    prod.append(pusher.image(repo, "prod", seed=f"{ns} prod 2")[0])
    push(pusher, repo, prod[1].replace(":", "-") + ".sig", cosign_signature(prod[1]))
    pusher.delete(repo, old)
    ledger.collect(target)
    time.sleep(1)
    prod.append(pusher.image(repo, "prod", seed=f"{ns} prod 3")[0])
    ledger.collect(target)
    other = Ledger(str(tmp / "other.db"))
    other.collect(f"{target}:stable")
    return {"db": ledger.path, "other": other.path, "host": registry.host, "ns": ns, "repo": repo,
            "ref": f"{registry.host}/{repo}", "prod": prod, "stable": stable, "old": old}


@pytest.fixture(scope="module")
def weeks(tmp_path_factory):
    """Changes weeks apart, which collects in a test cannot be, so appended through the store's own API:
    `prod` added 20 days ago and moved 13 and 6 days ago, `old` added then removed 9 days ago, `stable`
    added. The bands, lane by lane (old, prod, stable), are each days wide on a 30-day page."""
    path = str(tmp_path_factory.mktemp("weeks") / "weeks.db")
    db, now = store.open_db(path), datetime.now(timezone.utc)
    digests = {name: "sha256:" + hashlib.sha256(name.encode()).hexdigest()
               for name in ("prod 1", "prod 2", "prod 3", "old", "stable")}
    for days_ago, tags in [(20, {"prod": "prod 1", "old": "old", "stable": "stable"}), (13, {"prod": "prod 2"}),
                           (9, {"prod": "prod 2", "stable": "stable"}), (6, {"prod": "prod 3"})]:
        at = format_instant(now - timedelta(days=days_ago))
        seen = [Sighting("weeks.example", "app", tag, at, digests[name], "application/vnd.oci.image.manifest.v1+json")
                for tag, name in tags.items()]
        listing = [Listing("weeks.example", "app", Scope(), at, list(tags))] if days_ago == 9 else []
        store.append_run(db, store.start_run(db, "registry", ["weeks.example/app"]),
                         RunResult(observations=seen, coverage=listing))
    db.close()
    return {"db": path, "lanes": [[colour_of(digests["old"])],
                                  [colour_of(digests[name]) for name in ("prod 1", "prod 2", "prod 3")],
                                  [colour_of(digests["stable"])]]}


@pytest.fixture(scope="module")
def hosted(registry, podman_service, tmp_path_factory):
    """A Docker host's copy of a tag beside the registry's, collected with --daemon from podman: `app:1` built
    on the host (an image ID and podman's own digest), pushed, removed and pulled back (the same image ID,
    now with the registry's digest: an update, not a move), then built again (a move); and then
    docker.io/library/nginx:latest, the new image tagged on the host alone."""
    podman = podman_service
    podman.clear()
    tmp = tmp_path_factory.mktemp("hosted")
    ns = "hosted-" + hashlib.sha256(str(tmp).encode()).hexdigest()[:8]
    name, daemon = f"{registry.host}/{ns}/app", ("--daemon", "--docker-host", podman.unix_host)
    ledger = Ledger(str(tmp / "hosted.db"))
    podman.build(f"{name}:1", f"{ns} first".encode())
    images = [podman.image_id(f"{name}:1")]
    ledger.collect(*daemon)
    podman.push(f"{name}:1")
    podman.remove(f"{name}:1")
    podman.pull(f"{name}:1")
    ledger.collect(name, *daemon)
    podman.build(f"{name}:1", f"{ns} second".encode())
    images.append(podman.image_id(f"{name}:1"))
    podman.tag(f"{name}:1", "docker.io/library/nginx:latest")
    ledger.collect(*daemon)
    registry_digest, = ledger.rows("SELECT digest FROM current_tags WHERE tag = '1' AND source = 'registry'")
    return {"ledger": ledger, "db": ledger.path, "name": name, "images": images, "digest": registry_digest["digest"]}


def get(datasette, path, **params):
    async def fetch():  # params None: keep a query the path has (httpx drops it for an empty dict)
        return await datasette.client.get(path, params=params or None)
    return asyncio.run(fetch())


def picture(page):
    """The page's one SVG, parsed as XML: hostile text that escaped its escaping would not parse."""
    found = re.findall(r"<svg class=\"ledger-picture\".*?</svg>", page, re.S)
    assert len(found) == 1, "one picture per page"
    assert "http:" not in found[0] and "https:" not in found[0] and "<script" not in found[0], "nothing fetched"
    return ElementTree.fromstring(found[0])


def with_class(svg, tag, prefix):
    return [element for element in svg.iter(tag) if element.get("class", "").startswith(prefix)]


def linked_bands(svg):
    """(fill, x, digest_usage link) of every band, left to right."""
    found = [(rect.get("fill"), float(rect.get("x")), anchor.get("href"))
             for anchor in svg.iter("a") for rect in anchor.iter("rect") if rect.get("class") == "band"]
    return sorted(found, key=lambda band: band[1])


def lane_bands(svg):
    """The bands' (fill, digest_usage link), lane by lane from the top, each lane left to right."""
    found = sorted(((float(rect.get("y")), float(rect.get("x")), rect.get("fill"), anchor.get("href"))
                    for anchor in svg.iter("a") for rect in anchor.iter("rect") if rect.get("class") == "band"),
                   key=lambda band: band[:2])  # stable: bands at one x (seconds apart) stay in drawing order
    return [[(fill, href) for _, _, fill, href in lane] for _, lane in itertools.groupby(found, lambda b: b[0])]


def usage(name, database="story"):
    return f"/{database}/digest_usage?digest={quote(name, safe='')}"


def title_of(element):
    return element.find("title").text


@pytest.fixture(scope="module")
def served(story):
    return serving.ledger_datasette([story["db"]])


def test_a_tag_moved_twice_is_three_bands_with_its_moves_and_its_signature(story, served):
    response = get(served, "/story/-/timeline", tag=f"{story['ref']}:prod")
    assert response.status_code == 200
    svg = picture(response.text)
    bands = linked_bands(svg)
    assert [fill for fill, _, _ in bands] == [colour_of(digest) for digest in story["prod"]]
    assert [href for _, _, href in bands] == [f"/story/digest_usage?digest={digest.replace(':', '%3A')}"
                                              for digest in story["prod"]]
    assert len(with_class(svg, "g", "marker moved")) == 2
    assert len(with_class(svg, "g", "marker added")) == 1
    assert not with_class(svg, "g", "marker removed")
    signatures = with_class(svg, "g", "marker referrer signature added")
    assert len(signatures) == 1 and title_of(signatures[0]).endswith(f"of {story['prod'][1]}")
    # The signature was seen with the first move, so it sits at the second band's start.
    moves = [float(line.get("x1")) for marker in with_class(svg, "g", "marker moved") for line in marker.iter("line")]
    assert moves == [bands[1][1], bands[2][1]]
    legend = {text.text for text in svg.iter("text")}
    assert {short(digest) for digest in story["prod"]} <= legend
    assert f"{story['ref']}:prod" in legend  # the title
    usage = get(served, bands[0][2].split("?")[0] + ".json", digest=story["prod"][0], _shape="array")
    assert [(row["tag"], row["points_there_now"]) for row in usage.json()] == [("prod", 0)]


def test_a_removed_tag_ends_its_band_at_the_removal_mark(story, served):
    svg = picture(get(served, "/story/-/timeline", tag=f"{story['ref']}:old").text)
    bands = [rect for rect in svg.iter("rect") if rect.get("class") == "band"]
    removed = with_class(svg, "g", "marker removed")
    assert len(bands) == 1 and len(removed) == 1 and bands[0].get("fill") == colour_of(story["old"])
    mark = float(next(removed[0].iter("line")).get("x1"))
    assert float(bands[0].get("x")) + float(bands[0].get("width")) == pytest.approx(mark, abs=0.2)
    assert title_of(removed[0]).endswith(f"(it pointed to {story['old']})")
    still = picture(get(served, "/story/-/timeline", tag=f"{story['ref']}:stable").text)
    assert len([rect for rect in still.iter("rect") if rect.get("class") == "band"]) == 1
    assert not with_class(still, "g", "marker moved") and not with_class(still, "g", "marker removed")


def day_counts(svg):
    counts = {}
    for bar in with_class(svg, "rect", "bar "):
        day, count, kind = re.fullmatch(r"(\d{4}-\d\d-\d\d): (\d+) (.+)", title_of(bar)).groups()
        counts[kind] = counts.get(kind, 0) + int(count)
    return counts


@pytest.mark.parametrize("pattern", ["{host}/{ns}/*", "{host}/{ns}/app", "*/pictures-*/a?p"])
def test_the_timelines_page_stacks_the_tags_and_counts_changes_per_day(story, served, pattern):
    pattern = pattern.format(**story)
    response = get(served, "/story/-/timelines", pattern=pattern, days="2")
    assert response.status_code == 200
    svg = picture(response.text)
    lanes = [anchor for anchor in svg.iter("a") if anchor.get("href").startswith("/story/-/timeline?")]
    assert [title_of(lane) for lane in lanes] == [f"{story['ref']}:{tag}" for tag in ("old", "prod", "stable")]
    assert len(linked_bands(svg)) == 5  # old's, prod's three, stable's
    assert len(with_class(svg, "g", "marker moved")) == 2 and len(with_class(svg, "g", "marker removed")) == 1
    # Two moves, one removal, five images first seen (the signature is not an image).
    assert day_counts(svg) == {"moved": 2, "removed": 1, "new images": 5}
    assert "left off" not in response.text


def test_the_timelines_page_draws_fifty_tags_and_says_how_many_it_left_off(tmp_path):
    with HostileRegistry() as hostile:
        for n in range(60):
            hostile.add_image("many/app", f"t{n:02d}", seed=f"many {n}")
        ledger = Ledger(str(tmp_path / "many.db"))
        ledger.collect(f"{hostile.host}/many/app")
    page = get(serving.ledger_datasette([ledger.path]), "/many/-/timelines").text
    svg = picture(page)
    assert len(linked_bands(svg)) == 50
    assert "60 tags match: the 50 most recently changed are drawn, 10 are left off." in page
    assert day_counts(svg) == {"new images": 60}


def test_tag_cells_link_to_their_timeline_on_every_table_view_and_query(story, served):
    link = f'<a href="/story/-/timeline?tag={story["ref"]}:prod">prod</a>'
    for path, params in [("/story/current_tags", {}), ("/story/tag_history", {"tag": "prod"}),
                         ("/story/events", {"tag": "prod"}), ("/story/replaced_in_window", {}),
                         ("/story/state_at", {"pattern": f"{story['host']}/*"})]:
        page = get(served, path, **params).text
        assert link in page, f"no timeline link at {path}"
    history = get(served, "/story/tag_history", tag="prod").text
    assert history.count(link) == 3


def test_hostile_names_are_escaped_everywhere_they_are_drawn(tmp_path):
    repo, tag = 'evil/"><b>x', "<script>alert(1)<!--&amp'"  # no `;`: the ledger stores no such tag
    with HostileRegistry() as hostile:
        digest, _ = hostile.add_image(repo, tag, seed="hostile")
        ledger = Ledger(str(tmp_path / "hostile.db"))
        ledger.collect(hostile.host)
        host = hostile.host
    datasette = serving.ledger_datasette([ledger.path])
    tags = get(datasette, "/hostile/current_tags").text
    links = re.findall(r'<a href="(/hostile/-/timeline\?tag=[^"]+)">([^<]*)</a>', tags)
    assert len(links) == 1 and html.unescape(links[0][1]) == tag
    timeline = get(datasette, html.unescape(links[0][0]))
    assert timeline.status_code == 200
    pages = [tags, timeline.text, get(datasette, "/hostile/-/timelines", pattern=f"{host}/*").text]
    for page in pages:
        assert "<script>alert" not in page and '"><b>' not in page
        assert "&lt;script&gt;alert(1)&lt;!--&amp;amp" in page
    svg = picture(timeline.text)
    assert f"{host}/{repo}:{tag}" in {text.text for text in svg.iter("text")}
    assert [fill for fill, _, _ in linked_bands(svg)] == [colour_of(digest)]
    lanes = picture(pages[2])
    assert [title_of(anchor) for anchor in lanes.iter("a") if "-/timeline?" in anchor.get("href")] == [
        f"{host}/{repo}:{tag}"]


DAYS = "days is a whole number of days from 1 to 3660."


@pytest.mark.parametrize("path, params, status, says", [
    ("/story/-/timeline", {"tag": "{ref}:nope"}, 404, "The ledger story has never seen the tag {ref}:nope."),
    ("/story/-/timeline", {}, 400, "Which tag?"),
    ("/story/-/timeline", {"tag": "  "}, 400, "Which tag?"),
    ("/story/-/timeline", {"tag": "no-slash-or-colon"}, 400, "Give a tag as REGISTRY/REPO:TAG"),
    ("/story/-/timeline", {"tag": "{ref}@sha256:" + "0" * 64}, 400, "digests are not tags"),
    ("/story/-/timeline", {"tag": "{ref}:a\x00b"}, 400, "Give a tag as REGISTRY/REPO:TAG"),
    ("/story/-/timeline", {"tag": "{ref}:" + "x" * 10_000}, 400, "Give a tag as REGISTRY/REPO:TAG"),
    ("/story/-/timelines", {"days": "a week"}, 400, DAYS),
    ("/story/-/timelines", {"days": "0"}, 400, DAYS),
    ("/story/-/timelines?days=%C2%B2", {}, 400, DAYS),  # '²': str.isdigit says yes, int says no
    ("/story/-/timelines", {"days": "\u0661\u0662"}, 400, DAYS),  # Arabic-Indic 12: int takes it
    ("/story/-/timelines", {"days": "\uff17"}, 400, DAYS),  # a fullwidth 7
    ("/story/-/timelines", {"days": "9" * 5000}, 400, DAYS),  # more digits than int converts
    ("/story/-/timelines", {"days": "99999999999999999999"}, 400, DAYS),
    ("/story/-/timelines", {"days": "3661"}, 400, DAYS),
    ("/story/-/timelines", {"days": "-5"}, 400, DAYS),
    ("/story/-/timelines", {"days": "+5"}, 400, DAYS),
    ("/story/-/timelines", {"days": "1_0"}, 400, DAYS),
    ("/story/-/timelines", {"days": ""}, 200, "Every tag, today (UTC)"),  # empty: the ledger's age, a day
    ("/story/-/timelines", {"days": " 0007 "}, 200, "Every tag, the last 7 days (UTC)"),
    ("/story/-/timelines", {"pattern": "nowhere.example/*"}, 200, "No tag matches nowhere.example/*"),
    ("/nowhere/-/timeline", {"tag": "{ref}:prod"}, 404, "Database not found"),
])
def test_unknown_tags_and_bad_parameters_are_pages_that_say_so(story, served, path, params, status, says):
    response = get(served, path, **{name: value.format(**story) for name, value in params.items()})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert says.format(**story) in html.unescape(response.text)
    assert "Traceback" not in response.text


@pytest.mark.parametrize("observed_at, says", [
    ("not a time", "'not a time' is not a UTC time"),
    ("2026-13-45T00:00:00.000000Z", "'2026-13-45T00:00:00.000000Z' is not a UTC time"),
    (f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S}", "is not a UTC time"),  # no zone: the ledger writes Z
    ("9999-12-31T23:59:59.999999Z", "out of range"),  # a time, but past the last one a scale can draw to
])
def test_a_ledger_whose_times_are_garbage_is_a_page_that_says_so(story, tmp_path, observed_at, says):
    """A copy of a real ledger, `prod`'s latest event edited (its append-only trigger dropped in the copy)."""
    path = str(tmp_path / "garbled.db")
    original, copy = sqlite3.connect(story["db"]), sqlite3.connect(path)
    original.backup(copy)
    original.close()
    copy.execute("DROP TRIGGER event_log_append_only_update")
    copy.execute("UPDATE event_log SET observed_at = ? WHERE id = (SELECT max(e.id) FROM event_log e "
                 "JOIN tag_keys k ON k.id = e.key_id WHERE k.tag = 'prod')", [observed_at])
    copy.commit()
    copy.close()
    datasette = serving.ledger_datasette([path])
    for page, params, what in [("timeline", {"tag": f"{story['ref']}:prod"}, "the timeline"),
                               ("timelines", {"pattern": f"{story['ref']}", "days": "2"}, "the timelines")]:
        response = get(datasette, f"/garbled/-/{page}", **params)
        assert response.status_code == 500, page
        assert response.headers["content-type"].startswith("text/html")
        message, = re.findall(r'<p class="message-error">(.*?)</p>', html.unescape(response.text))
        assert message.startswith(f"The ledger garbled holds a time {what} cannot draw: ") and says in message
        assert "Traceback" not in response.text and not re.search(r"<svg class=\"ledger-picture\"", response.text)
    assert get(datasette, "/garbled/-/timeline", tag=f"{story['ref']}:stable").status_code == 200  # the rest draws


def test_a_docker_hosts_lane_is_banded_by_image_id_as_the_store_tells_its_images_apart(hosted):
    """Pushed and pulled back, the host's image gained the registry's digest (an update): still one band,
    named by its image ID and linking to where that image ID is used, until it was rebuilt (a move)."""
    first, second = hosted["images"]
    events = hosted["ledger"].rows("SELECT kind, digest, image, source FROM events WHERE tag = '1' "
                                   "AND source GLOB 'daemon:*' ORDER BY id")
    assert [(e["kind"], e["image"]) for e in events] == [("added", first), ("updated", first), ("moved", second)]
    assert events[0]["digest"] != events[1]["digest"] == hosted["digest"]  # by digest, it would be three bands
    datasette = serving.ledger_datasette([hosted["db"]])
    svg = picture(get(datasette, "/hosted/-/timeline", tag=f"{hosted['name']}:1").text)
    registry, host = lane_bands(svg)
    assert registry == [(colour_of(hosted["digest"]), usage(hosted["digest"], "hosted"))]
    assert host == [(colour_of(image), usage(image, "hosted")) for image in (first, second)]
    moved, = with_class(svg, "g", "marker moved")
    assert title_of(moved).endswith(f": {first} → {second}")
    assert "Digests and image IDs" in {text.text for text in svg.iter("text")}
    page, query = host[1][1].split("?")  # the second band's link, followed
    used = get(datasette, f"{page}.json?{query}&_shape=array").json()
    source, repo = events[0]["source"], hosted["name"].split("/", 1)[1]
    assert {(row["repo"], row["tag"], row["source"], row["points_there_now"]) for row in used} == {
        (repo, "1", source, 1), ("library/nginx", "latest", source, 1)}
    lanes = picture(get(datasette, "/hosted/-/timelines", pattern=hosted["name"], days="2").text)
    assert lane_bands(lanes) == [host, registry]  # the lanes by name, then source: daemon:… before registry


@pytest.mark.parametrize("spelling", ["nginx:latest", "docker.io/nginx:latest", "index.docker.io/library/nginx:latest",
                                      "docker.io/library/nginx:latest", " nginx:latest "])
def test_a_tag_is_read_as_ledger_history_reads_it(hosted, spelling):
    db = sqlite_utils.Database(sqlite3.connect(hosted["db"]))
    assert [row["kind"] for row in reads.history(db, spelling)] == ["added"]
    db.close()
    response = get(serving.ledger_datasette([hosted["db"]]), "/hosted/-/timeline", tag=spelling)
    assert response.status_code == 200
    svg = picture(response.text)
    assert title_of(svg) == "Timeline of docker.io/library/nginx:latest"
    assert lane_bands(svg) == [[(colour_of(hosted["images"][1]), usage(hosted["images"][1], "hosted"))]]
    assert 'value="docker.io/library/nginx:latest"' in response.text  # the form says which tag it read


def test_two_ledgers_in_one_datasette_each_draw_their_own(story):
    datasette = serving.ledger_datasette([story["db"], story["other"]])
    mine = picture(get(datasette, "/story/-/timeline", tag=f"{story['ref']}:stable").text)
    theirs = picture(get(datasette, "/other/-/timeline", tag=f"{story['ref']}:stable").text)
    assert linked_bands(mine)[0][0] == linked_bands(theirs)[0][0] == colour_of(story["stable"])
    assert linked_bands(theirs)[0][2].startswith("/other/digest_usage?")
    assert get(datasette, "/other/-/timeline", tag=f"{story['ref']}:prod").status_code == 404
    assert len(linked_bands(picture(get(datasette, "/other/-/timelines").text))) == 1
    assert f'<a href="/other/-/timeline?tag={story["ref"]}:stable">stable</a>' in get(
        datasette, "/other/current_tags").text
    assert 'href="/other/-/timelines"' in get(datasette, "/other").text  # its actions menu
    assert "-/timelines" not in get(datasette, "/_memory").text  # the fleet's database is no ledger
    fleet = get(datasette, "/_memory/fleet_current_tags", pattern=f"*/{story['repo']}:stable").text
    for name in ("story", "other"):  # a fleet row links to the timeline in the ledger it comes from
        assert f'<a href="/{name}/-/timeline?tag={story["ref"]}:stable">stable</a>' in fleet


def png_rows(path):
    """The pixel rows of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes), each a list of
    RGB triples as bytes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    channels = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                nearest = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
                line[i] = (line[i] + nearest[2]) & 0xFF
        rows.append([bytes(line[x:x + 3]) for x in range(0, stride, channels)])
        previous = line
    return rows


def rgb(colour):
    return bytes.fromhex(colour[1:])


def bands_seen(rows, colours):
    """The bands a screenshot shows, lane by lane from the top, each lane's colours left to right. A lane is
    a stretch of at least 16 pixel rows holding band colours (bands are 18 or 30 px tall; the legend's
    swatches 14), read along its fullest row, clear of the bands' labels and marks: a band is a run of at
    least 2 pixels of one colour (a move's line and the bands' white edges part them)."""
    wanted = {rgb(colour): colour for colour in colours}
    lanes, stretch = [], []
    for row in rows + [[]]:
        drawn = [wanted.get(pixel) for pixel in row]
        if any(drawn):
            stretch.append(drawn)
            continue
        if len(stretch) >= 16:
            fullest = max(stretch, key=lambda line: sum(map(bool, line)))
            lanes.append([colour for colour, run in itertools.groupby(fullest) if colour and len(list(run)) >= 2])
        stretch = []
    return lanes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["timeline", "timelines"])
def test_chromium_draws_both_pages_with_every_band(story, weeks, serve, tmp_path, name):
    """The timeline of `prod` (three bands, a signature's mark) and a 30-day timelines page of changes days
    apart (bands wide enough to count: a collect's seconds are a sliver of a day), in `ledger serve` itself:
    the rendered DOM holds every band, and the screenshot's pixels show each, lane by lane."""
    if name == "timeline":
        db, path = story["db"], f"/story/-/timeline?tag={story['ref']}:prod"
        lanes, marks = [[colour_of(digest) for digest in story["prod"]]], [ADDED]
    else:
        db, path, lanes, marks = weeks["db"], "/weeks/-/timelines?days=30", weeks["lanes"], [MOVED, REMOVED, NEW]
    url = serve(db).base + path
    dom = picture(chromium(tmp_path, "--dump-dom", url))
    assert [[fill for fill, _ in lane] for lane in lane_bands(dom)] == lanes
    shot = ARTIFACTS / "screenshots" / f"{name}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    chromium(tmp_path, f"--screenshot={shot}", url)
    rows = png_rows(shot)
    assert (len(rows[0]), len(rows)) == (1280, 900)
    counts = Counter(pixel for row in rows for pixel in row)
    most = counts.most_common(1)[0][1]
    assert most < 1280 * 900 * 0.9, "mostly one colour: a blank page"
    assert len(counts) > 50, "a page of text and pictures has many colours (anti-aliasing)"
    assert bands_seen(rows, {colour for lane in lanes for colour in lane}) == lanes
    for colour in marks:  # the signature's mark; the chart's bars
        assert counts[rgb(colour)] > (0 if name == "timeline" else 300), f"{colour}: {counts[rgb(colour)]} pixels"


def test_past_fifty_tags_the_ones_moved_or_removed_are_drawn_first(tmp_path):
    """60 tags, two of them moved, then 60 newer tags: the two moved are drawn (on top), with 48 of the newest."""
    with HostileRegistry() as hostile:
        for n in range(60):
            hostile.add_image("many/app", f"t{n:02d}", seed=f"many {n}")
        ledger = Ledger(str(tmp_path / "many.db"))
        ledger.collect(f"{hostile.host}/many/app")
        for n in (7, 42):
            hostile.add_image("many/app", f"t{n:02d}", seed=f"moved {n}")
        ledger.collect(f"{hostile.host}/many/app")
        for n in range(60):
            hostile.add_image("many/new", f"u{n:02d}", seed=f"new {n}")
        ledger.collect(f"{hostile.host}/many/new")
        host = hostile.host
    page = get(serving.ledger_datasette([ledger.path]), "/many/-/timelines").text
    lanes = [title_of(anchor) for anchor in picture(page).iter("a")
             if anchor.get("href").startswith("/many/-/timeline?")]
    assert lanes[:2] == [f"{host}/many/app:t07", f"{host}/many/app:t42"]
    assert len(lanes) == 50 and all(lane.startswith(f"{host}/many/new:u") for lane in lanes[2:])
    assert ("120 tags match: the 2 moved or removed in these days are drawn first, then the most recently changed "
            "of the rest; 70 are left off.") in html.unescape(page)


def test_the_timelines_window_fits_the_ledgers_age(story, weeks):
    """No days given: from the ledger's first day to today, at most 30 days."""
    young = get(serving.ledger_datasette([story["db"]]), "/story/-/timelines").text
    assert "Every tag, today (UTC)" in young and 'name="days" min="1" max="3660" value="1"' in young
    older = get(serving.ledger_datasette([weeks["db"]]), "/weeks/-/timelines").text
    assert "Every tag, the last 21 days (UTC)" in older and 'value="21"' in older
    assert len(lane_bands(picture(older))) == 3
