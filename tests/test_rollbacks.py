"""Rollbacks and platforms added, told apart from other moves, with real pushes to the registry: a tag moved
back to a digest it pointed to before, an index that only gained a platform, and an index rebuilt (other
children too), in `ledger changes`, the views, the `rollbacks` canned query, and a notification."""

import asyncio
import json

import pytest
from datasette.app import Datasette

from ledger.serving import serving_metadata
from test_notify import Receiver, short


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.stop()


def republish(pusher, repo, tag, body):
    """Point `tag` at an image pushed before, by its exact manifest bytes (the registry keeps its blobs)."""
    return pusher.manifest(repo, tag, body, json.loads(body)["mediaType"])


@pytest.fixture
def story(registry, pusher, ledger, ns, receiver):
    """run 1: app:1 = A, app:multi = index [amd64], app:rebuilt = index [amd64].
    run 2: app:1 = B, app:multi = [amd64 (same image), arm64], app:rebuilt = [amd64 (rebuilt), arm64].
    run 3, told to a webhook: app:1 = A again, app:multi back to its one-platform index."""
    repo, target = f"{ns}/app", f"{registry.host}/{ns}/app"
    a, _, a_body = pusher.image(repo, "1", seed=ns + "a")
    one, one_children = pusher.index(repo, "multi", [("amd64", None)], seed=ns + "m")
    old, _ = pusher.index(repo, "rebuilt", [("amd64", None)], seed=ns + "r")
    ledger.collect(target)
    b, _, _ = pusher.image(repo, "1", seed=ns + "b")
    two, two_children = pusher.index(repo, "multi", [("amd64", None), ("arm64", "v8")], seed=ns + "m")
    rebuilt, _ = pusher.index(repo, "rebuilt", [("amd64", None), ("arm64", None)], seed=ns + "r2")
    ledger.collect(target)
    assert two_children[("amd64", None)] == one_children[("amd64", None)]
    republish(pusher, repo, "1", a_body)
    back, _ = pusher.index(repo, "multi", [("amd64", None)], seed=ns + "m")
    assert back == one
    ledger.collect(target, "--notify", receiver.url())
    times = [r["finished_at"] for r in ledger.rows("SELECT finished_at FROM runs ORDER BY id")]
    return {"target": target, "ns": ns, "a": a, "b": b, "one": one, "two": two, "old": old, "rebuilt": rebuilt,
            "times": times, "receiver": receiver}


def test_each_move_is_told_as_what_it_is(story, ledger):
    s = story
    rows = json.loads(ledger("changes", "--since", "2000-01-01", "--json").output)
    moves = {(r["tag"], r["run_id"]): r for r in rows if r["kind"] == "moved"}
    assert {key: (r["change"], r["prev_digest"], r["digest"]) for key, r in moves.items()} == {
        ("1", 2): ("moved", s["a"], s["b"]),
        ("multi", 2): ("platforms_added", s["one"], s["two"]),
        ("rebuilt", 2): ("moved", s["old"], s["rebuilt"]),  # its amd64 image changed too: a rebuild
        ("1", 3): ("rollback", s["b"], s["a"]),
        ("multi", 3): ("rollback", s["two"], s["one"]),  # fewer platforms, but back: a rollback first
    }
    added = {r["tag"]: r for r in rows if r["kind"] == "added"}
    assert {r["change"] for r in added.values()} == {"added"}
    # A rollback names its earlier sighting: when the tag first pointed there, and that event.
    rollback = moves["1", 3]
    first = ledger.rows("SELECT id, observed_at FROM events WHERE tag = '1' AND kind = 'added'")[0]
    assert rollback["seen_before"] == added["1"]["observed_at"] == first["observed_at"]
    assert rollback["earlier_event_id"] == first["id"]
    assert all(r["seen_before"] is None and r["earlier_event_id"] is None for r in rows if r["change"] != "rollback")

    table = ledger("changes", "--since", "2000-01-01", s["target"] + ":1").output.splitlines()
    assert table[0].split()[:3] == ["observed_at", "kind", "change"] and "seen_before" in table[0]
    assert set(table[1]) <= {"-", " "}
    assert [line.split()[2] for line in table[2:]] == ["added", "moved", "rollback"]
    assert first["observed_at"] in table[4]
    replaced = ledger.rows("SELECT run_id, tag, change FROM replaced_tags ORDER BY run_id, tag")
    assert [r["change"] for r in replaced] == ["moved", "platforms_added", "moved", "rollback", "rollback"]


def test_the_rollbacks_view_and_canned_query_say_when_and_for_how_long(story, ledger):
    s = story
    [moved_away] = ledger.rows("SELECT observed_at FROM events WHERE tag = '1' AND kind = 'moved' AND run_id = 2")
    view = ledger.rows("SELECT * FROM rollbacks ORDER BY tag")
    assert [(r["tag"], r["digest"], r["from_digest"]) for r in view] == [("1", s["a"], s["b"]),
                                                                        ("multi", s["one"], s["two"])]
    assert view[0]["left_at"] == moved_away["observed_at"] and view[0]["away_seconds"] >= 0

    datasette = Datasette([ledger.path], metadata=serving_metadata(ledger.path))

    def query(**params):
        async def get():
            response = await datasette.client.get("/ledger/rollbacks.json", params={"_shape": "array", **params})
            assert response.status_code == 200, response.text
            return response.json()
        return asyncio.run(get())

    rows = query()
    assert sorted((r["tag"], r["digest"], r["first_seen"]) for r in rows) == [
        ("1", s["a"], view[0]["first_seen"]), ("multi", s["one"], view[1]["first_seen"])]
    assert rows == sorted(rows, key=lambda r: r["rolled_back_at"], reverse=True)  # newest first
    assert all(isinstance(r["away_days"], float) and r["away_days"] >= 0 for r in rows)
    assert [r["tag"] for r in query(pattern=f"*/{s['ns']}/app:1")] == ["1"]
    assert query(since=s["times"][2]) == []  # none after the last run
    assert len(query(since=s["times"][1])) == 2


def test_the_notification_says_rolled_back_and_platforms_added(story, ledger, registry, pusher, ns):
    s, receiver = story, story["receiver"]
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 3 ok: 2 moved (2 rolled back)"
    added = ledger.rows("SELECT observed_at FROM events WHERE tag = '1' ORDER BY id")
    lines = message["message"].splitlines()
    assert f"rolled back {s['target']}:1 {short(s['b'])} -> {short(s['a'])} (back to what it pointed to from " \
           f"{added[0]['observed_at']} to {added[1]['observed_at']})" in lines
    assert len(lines) == 2 and any(line.startswith(f"rolled back {s['target']}:multi ") for line in lines)

    # --notify-on rollback: rollbacks only, not other moves.
    pusher.index(f"{ns}/app", "multi", [("amd64", None), ("arm64", "v8")], seed=ns + "m")  # back again
    pusher.image(f"{ns}/app", "1", seed=ns + "c")  # a new image: an ordinary move
    ledger.collect(s["target"], "--notify", receiver.url(), "--notify-on", "rollback")
    message = receiver.messages()[1]
    assert message["title"] == "registry ledger: run 4 ok: 1 rolled back"
    assert message["message"].startswith(f"rolled back {s['target']}:multi {short(s['one'])} -> {short(s['two'])}")
    assert len(message["message"].splitlines()) == 1


def test_a_platforms_added_notification_names_the_new_platforms(registry, pusher, ledger, ns, receiver):
    target = f"{registry.host}/{ns}/app"
    one, _ = pusher.index(f"{ns}/app", "multi", [("amd64", None)], seed=ns)
    ledger.collect(target)
    two, _ = pusher.index(f"{ns}/app", "multi", [("amd64", None), ("arm64", "v8"), ("s390x", None)], seed=ns)
    ledger.collect(target, "--notify", receiver.url(), "--notify-on", "moved")
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 2 ok: 1 moved"
    assert message["message"] == (f"platforms added {target}:multi {short(one)} -> {short(two)} "
                                  "(+linux/arm64/v8, +linux/s390x)")


def test_a_rollback_is_listed_before_many_other_moves(registry, pusher, ledger, ns, receiver):
    target, repo = f"{registry.host}/{ns}/app", f"{ns}/app"
    a, _, a_body = pusher.image(repo, "zz", seed=ns + "a")
    for n in range(21):
        pusher.image(repo, f"t{n:02}", seed=f"{ns}{n}")
    ledger.collect(target)
    pusher.image(repo, "zz", seed=ns + "b")
    ledger.collect(target)
    republish(pusher, repo, "zz", a_body)
    for n in range(21):
        pusher.image(repo, f"t{n:02}", seed=f"{ns}{n}-new")
    ledger.collect(target, "--notify", receiver.url(), "--notify-on", "moved")
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 3 ok: 22 moved (1 rolled back)"
    lines = message["message"].splitlines()
    assert lines[0].startswith(f"rolled back {target}:zz ") and short(a) in lines[0]
    assert len(lines) == 21 and lines[-1] == "... and 2 more (run 3 in the ledger)"
