"""Pictures in `ledger serve`: a tag's timeline and many tags' timelines, drawn as inline SVG from ledgers
the collector wrote from the real local registry (and, for hostile names, the hostile one), read through
the Datasette `ledger serve` builds, and looked at by a headless Chromium.

Screenshots are kept in test-artifacts/screenshots/ (or $LEDGER_TEST_ARTIFACTS) for people to look at."""

import asyncio
import hashlib
import html
import re
import struct
import time
import zlib
from xml.etree import ElementTree

import pytest

from conftest import Ledger
from hostile import HostileRegistry
from ledger import serving
from ledger.pictures import ADDED, MOVED, NEW, REMOVED, colour_of, short
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


@pytest.mark.parametrize("path, params, status, says", [
    ("/story/-/timeline", {"tag": "{ref}:nope"}, 404, "The ledger story has never seen the tag {ref}:nope."),
    ("/story/-/timeline", {}, 400, "Which tag?"),
    ("/story/-/timeline", {"tag": "no-slash-or-colon"}, 400, "Give a tag as REGISTRY/REPO:TAG"),
    ("/story/-/timelines", {"days": "a week"}, 400, "days is a whole number of days from 1 to 3660."),
    ("/story/-/timelines", {"days": "0"}, 400, "days is a whole number of days"),
    ("/story/-/timelines", {"pattern": "nowhere.example/*"}, 200, "No tag matches nowhere.example/*"),
    ("/nowhere/-/timeline", {"tag": "{ref}:prod"}, 404, "Database not found"),
])
def test_unknown_tags_and_bad_parameters_are_pages_that_say_so(story, served, path, params, status, says):
    response = get(served, path, **{name: value.format(**story) for name, value in params.items()})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert says.format(**story) in html.unescape(response.text)
    assert "Traceback" not in response.text


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


def png_pixels(path):
    """(width, height, {(r, g, b): count}) of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
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
    counts, previous = {}, bytearray(stride)
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
        for x in range(0, stride, channels):
            pixel = bytes(line[x:x + 3])
            counts[pixel] = counts.get(pixel, 0) + 1
        previous = line
    return width, height, counts


def rgb(colour):
    return bytes.fromhex(colour[1:])


@pytest.mark.parametrize("name, path, colours", [
    ("timeline", "/story/-/timeline?tag={ref}:prod", "prod"),
    ("timelines", "/story/-/timelines?pattern={host}/{ns}/*&days=2", [MOVED, REMOVED, NEW]),
])
def test_chromium_draws_both_pages(story, serve, tmp_path, name, path, colours):
    served = serve(story["db"])  # `ledger serve` itself: the pictures are its plugin
    url = served.base + path.format(**story)
    dom = chromium(tmp_path, "--dump-dom", url)
    assert 'class="ledger-picture"' in dom
    shot = ARTIFACTS / "screenshots" / f"{name}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    chromium(tmp_path, f"--screenshot={shot}", url)
    width, height, counts = png_pixels(shot)
    assert (width, height) == (1280, 900)
    background = max(counts, key=counts.get)
    assert counts[background] < width * height * 0.9, "mostly one colour: a blank page"
    assert len(counts) > 50, "a page of text and pictures has many colours (anti-aliasing)"
    wanted = [colour_of(digest) for digest in story["prod"]] if colours == "prod" else colours
    for colour in wanted:
        # A band or bar, not only its 14x14 legend swatch or a marker.
        assert counts.get(rgb(colour), 0) > 300, f"{colour} is not drawn: {counts.get(rgb(colour), 0)} pixels"
    if name == "timeline":
        assert counts.get(rgb(ADDED), 0) > 0, "the signature's mark"
