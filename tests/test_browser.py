"""A real headless Chromium loads the served ledger: the home page, a table and a canned query.

Screenshots are kept in test-artifacts/screenshots/ (or $LEDGER_TEST_ARTIFACTS) for people to look at."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow  # headless Chromium

ARTIFACTS = Path(os.environ.get("LEDGER_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
# As root Chromium needs --no-sandbox; the rest keep it off the network this machine does not have.
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--window-size=1280,900"]


def chromium(tmp_path, *args):
    result = subprocess.run([*CHROMIUM, f"--user-data-dir={tmp_path / 'chromium'}", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture
def demo(registry, pusher, ns, tmp_path, serve):
    """A demo ledger: three tags, then `prod` moved to a new image, collected twice and served."""
    digests = {tag: pusher.image(f"{ns}/app", tag, seed=ns + tag)[0] for tag in ("1.0", "1.1", "prod")}
    db = str(tmp_path / "demo.db")
    collect = [sys.executable, "-m", "ledger", "collect", "-q", f"{registry.host}/{ns}/app", "--db", db]
    subprocess.run(collect, check=True)
    digests["prod-before"] = digests["prod"]
    digests["prod"] = pusher.image(f"{ns}/app", "prod", seed=ns + "v2")[0]
    subprocess.run(collect, check=True)
    return serve(db), {"registry": registry.host, "repo": f"{ns}/app", **digests}


@pytest.mark.parametrize("name, path, expect", [
    ("home", "/", ["registry ledger", "An append-only, tamper-evident history", "/demo\"", "current_tags"]),
    ("current-tags", "/demo/current_tags?_sort=tag",
     ["3 rows", "{registry}", "{repo}", ">1.0<", ">1.1<", ">prod<", "{prod}"]),
    ("history-of-tag", "/demo/history_of_tag?ref={registry}/{repo}:prod", ["2 rows", "moved", "added", "{prod}"]),
])
def test_chromium_renders_the_served_ledger(demo, tmp_path, name, path, expect):
    served, names = demo
    url = served.base + path.format(**names)
    dom = chromium(tmp_path, "--dump-dom", url)
    for text in expect:
        assert text.format(**names) in dom, f"{text!r} not rendered at {url}"
    if name == "history-of-tag":
        assert dom.index(">added<") < dom.index(">moved<"), "history is oldest first"
    ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "screenshots" / f"{name}.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, f"--screenshot={shot}", url)
    assert png_size(shot) == (1280, 900)
    assert shot.stat().st_size > 20_000, "a blank page compresses to almost nothing"


def test_a_ledgers_page_starts_with_its_answers(demo, tmp_path):
    served, names = demo
    dom = chromium(tmp_path, "--dump-dom", served.base + "/demo")
    start = dom.index('class="bullets ledger-start"')
    first = [dom.index(f'href="/demo/{name}"', start) for name in
             ("current_tags", "changes_feed", "tag_history", "new_images", "-/timelines", "state_at")]
    assert first == sorted(first), "current tags, changes, history, new images, timelines, then the audit queries"
    assert first[4] < dom.index("</ul>", start), "the timelines link is in the list, not only in the gear menu"
    assert dom.index('id="sql-editor"') > first[-1]
    assert "from current_tags" in dom[dom.index('id="sql-editor"'):dom.index("</textarea>")]
    for bookkeeping in ("coverage", "run_seals"):
        assert f'href="/demo/{bookkeeping}"' not in dom
    hidden = chromium(tmp_path, "--dump-dom", served.base + "/demo?_show_hidden=1")
    assert 'href="/demo/coverage"' in hidden and 'href="/demo/run_seals"' in hidden
    assert "<title>demo: coverage: 2 rows</title>" in chromium(tmp_path, "--dump-dom", served.base + "/demo/coverage")


def test_tables_show_digests_short_and_whole_on_hover(demo, tmp_path):
    served, names = demo
    dom = chromium(tmp_path, "--dump-dom", served.base + "/demo/current_tags?_sort=tag")
    prod = names["prod"]
    assert (f'<a class="ledger-digest" href="/demo/digest_usage?digest={prod.replace(":", "%3A")}" title="{prod}">'
            f'{prod[:19]}<span class="ledger-digest-rest">{prod[19:]}</span>') in dom
    assert ".ledger-digest-rest { display: none; }" in dom and "body.row .ledger-digest-rest { display: inline; }" in dom
    rows = requests.get(served.base + "/demo/current_tags.json", params={"_shape": "array"}, timeout=10).json()
    assert prod in {row["digest"] for row in rows}, "JSON keeps them whole"


@pytest.mark.parametrize("name, path", [("landing", "/demo"), ("table", "/demo/current_tags?_sort=tag")])
def test_screenshots_at_1280_by_800(demo, tmp_path, name, path):
    """The pages a newcomer meets first, at a laptop's size: docs/landing.png and docs/table.png are these."""
    served, names = demo
    ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "screenshots" / f"{name}-1280x800.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, "--window-size=1280,800", f"--screenshot={shot}", served.base + path)
    assert png_size(shot) == (1280, 800)
    assert shot.stat().st_size > 20_000, "a blank page compresses to almost nothing"
