"""Every canned query in metadata.yml, through Datasette's test client, with default and given parameters."""

import asyncio

import pytest
from datasette.app import Datasette

from ledger.serving import serving_metadata


@pytest.fixture
def site(registry, pusher, proxy, ledger, ns):
    """run 1: app:v1.2.3, app:latest (A), tool:1. run 2: v1.2.3 moved to B, latest removed.
    run 3 (tool only): fails its tag list."""
    a, image_a, _ = pusher.image(f"{ns}/app", "v1.2.3", seed=ns + "a")
    pusher.image(f"{ns}/app", "latest", seed=ns + "a")
    pusher.image(f"{ns}/tool", "1", seed=ns + "t")
    ledger.collect(f"{registry.host}/{ns}/*")
    b, _, _ = pusher.image(f"{ns}/app", "v1.2.3", seed=ns + "b")
    pusher.delete(f"{ns}/app", a)
    ledger.collect(f"{registry.host}/{ns}/app")
    proxy.alter_response = lambda m, p, s, h, body: (500, [], b"") if "/tags/list" in p else None
    ledger("collect", f"{proxy.host}/{ns}/tool", "--retries", "0", expect=1)
    datasette = Datasette([ledger.path], metadata=serving_metadata(ledger.path))
    times = [r["finished_at"] for r in ledger.rows("SELECT finished_at FROM runs ORDER BY id")]

    def query(name, **params):
        async def get():
            response = await datasette.client.get(f"/ledger/{name}.json",
                                                  params={"_shape": "array", **params})
            assert response.status_code == 200, response.text
            return response.json()
        return asyncio.run(get())
    return {"query": query, "path": ledger.path, "a": a, "b": b, "image_a": image_a, "ns": ns, "times": times, "host": registry.host}


def test_state_at_a_time_now_and_by_pattern(site):
    q, ns = site["query"], site["ns"]
    now = {(r["repo"], r["tag"]): r["digest"] for r in q("state_at")}
    assert now == {(f"{ns}/app", "v1.2.3"): site["b"], (f"{ns}/tool", "1"): now[(f"{ns}/tool", "1")]}
    then = {(r["repo"], r["tag"]): r["digest"] for r in q("state_at", at=site["times"][0], pattern=f"*/{ns}/app")}
    assert then == {(f"{ns}/app", "v1.2.3"): site["a"], (f"{ns}/app", "latest"): site["a"]}


def test_history_of_one_tag(site):
    rows = site["query"]("history_of_tag", ref=f"{site['host']}/{site['ns']}/app:v1.2.3")
    assert [(r["kind"], r["prev_digest"], r["digest"]) for r in rows] == [
        ("added", None, site["a"]), ("moved", site["a"], site["b"])]
    assert site["query"]("history_of_tag") == []


def test_replaced_and_removed_in_a_window(site):
    q = site["query"]
    assert [r["tag"] for r in q("replaced_in_window")] == ["v1.2.3"]
    assert q("replaced_in_window", since=site["times"][1]) == []
    assert q("replaced_in_window", until=site["times"][0]) == []
    assert [(r["tag"], r["last_digest"]) for r in q("removed_in_window")] == [("latest", site["a"])]
    assert q("removed_in_window", since="2099-01-01T00:00:00Z") == []


def test_release_tags_that_moved(site):
    rows = site["query"]("release_tags_moved")
    assert [(r["tag"], r["times_moved"]) for r in rows] == [("v1.2.3", 1)]
    assert site["query"]("release_tags_moved", pattern="*/nothing") == []


def test_new_images_since(site):
    q = site["query"]
    assert {r["digest"] for r in q("new_images_since")} >= {site["a"], site["b"]}
    assert [r["digest"] for r in q("new_images_since", since=site["times"][0])] == [site["b"]]


def test_where_a_digest_or_image_is_used(site):
    q = site["query"]
    by_digest = {(r["tag"], r["points_there_now"]) for r in q("digest_usage", digest=site["a"])}
    assert by_digest == {("v1.2.3", 0), ("latest", 0)}
    bare_image = site["image_a"].split(":", 1)[1]
    assert {r["tag"] for r in q("digest_usage", digest=bare_image)} == {"v1.2.3", "latest"}
    assert [(r["tag"], r["points_there_now"]) for r in q("digest_usage", digest=site["b"])] == [("v1.2.3", 1)]
    assert q("digest_usage") == []


def test_runs_with_problems_and_stale_coverage(site):
    q, ns = site["query"], site["ns"]
    problems = q("runs_with_problems")
    assert [(r["run_id"], r["status"], r["stage"], r["http_status"]) for r in problems] == [(3, "failed", "tags", 500)]
    assert q("runs_with_problems", since="2099-01-01T00:00:00Z") == []
    assert q("stale_coverage") == []  # everything was listed completely within a day
    stale = q("stale_coverage", since=site["times"][2])
    assert {r["repo"] for r in stale} == {f"{ns}/app", f"{ns}/tool"}
    assert {r["repo"] for r in q("stale_coverage", since=site["times"][0])} == {f"{ns}/tool"}


def test_the_changes_feed_is_valid_atom_and_filters_by_pattern(site):
    import xml.etree.ElementTree as ElementTree

    rows = site["query"]("changes_feed")
    titles = [r["atom_title"].split(":", 1)[0] for r in rows]
    assert set(titles[:2]) == {"removed", "moved"} and "new image" in titles
    assert all(r["atom_updated"].endswith("Z") for r in rows)
    assert site["query"]("changes_feed", pattern="*/nothing") == []

    async def atom(params):
        from datasette.app import Datasette
        from ledger.serving import serving_metadata
        path = site["path"]
        response = await Datasette([path], metadata=serving_metadata(path)).client.get(
            "/ledger/changes_feed.atom", params=params)
        return response
    response = asyncio.run(atom({"pattern": f"*/{site['ns']}/app"}))
    assert response.status_code == 200 and "xml" in response.headers["content-type"]
    feed = ElementTree.fromstring(response.content)
    assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
    namespace = {"a": "http://www.w3.org/2005/Atom"}
    entries = [e.find("a:title", namespace).text for e in feed.findall("a:entry", namespace)]
    assert f"moved: {site['host']}/{site['ns']}/app:v1.2.3" in entries
    assert all("/tool:" not in title for title in entries)
