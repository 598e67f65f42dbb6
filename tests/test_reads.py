"""The terminal's read commands: tags, history, at, changes, runs."""

import csv
import io
import json

import pytest
from freezegun import freeze_time

from ledger.times import parse_when


@pytest.fixture
def story(registry, pusher, ledger, ns):
    """Run 1: app:1, app:prod (image A), tool:latest. Run 2: prod moved to B, tool:latest removed."""
    a, _, _ = pusher.image(f"{ns}/app", "1", seed=ns + "a")
    pusher.image(f"{ns}/app", "prod", seed=ns + "a")
    tool, _, _ = pusher.image(f"{ns}/tool", "latest", seed=ns + "t")
    ledger.collect(f"{registry.host}/{ns}/*")
    b, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "b")
    pusher.delete(f"{ns}/tool", tool)
    ledger.collect(f"{registry.host}/{ns}/*")
    return {"a": a, "b": b, "tool": tool, "host": registry.host, "ns": ns}


def as_json(ledger, *args):
    return json.loads(ledger(*args, "--json").output)


def test_tags_shows_the_current_state_and_filters_by_pattern(ledger, story):
    rows = as_json(ledger, "tags")
    assert [(r["repo"], r["tag"], r["digest"]) for r in rows] == [
        (f"{story['ns']}/app", "1", story["a"]), (f"{story['ns']}/app", "prod", story["b"])]
    assert [r["tag"] for r in as_json(ledger, "tags", f"*/{story['ns']}/app:p*")] == ["prod"]
    assert json.loads(ledger("tags", "*/nothing-*", "--json", expect=1).stdout) == []  # a name never held
    table = ledger("tags").output
    assert story["b"][:19] in table and story["b"] not in table  # short digests for people
    assert story["b"] in ledger("tags", "--full").output


def test_history_lists_a_tags_events_with_what_came_before(ledger, story):
    rows = as_json(ledger, "history", f"{story['host']}/{story['ns']}/app:prod")
    assert [(r["kind"], r["prev_digest"], r["digest"]) for r in rows] == [
        ("added", None, story["a"]), ("moved", story["a"], story["b"])]
    result = ledger("history", f"{story['host']}/{story['ns']}/app", expect=2)
    assert "names no tag" in result.output


def test_at_a_run_or_a_time_gives_the_state_then(ledger, story):
    then = {(r["repo"], r["tag"]): r["digest"] for r in as_json(ledger, "at", "1")}
    assert then == {(f"{story['ns']}/app", "1"): story["a"], (f"{story['ns']}/app", "prod"): story["a"],
                    (f"{story['ns']}/tool", "latest"): story["tool"]}
    moment = ledger.rows("SELECT finished_at FROM runs WHERE id = 1")[0]["finished_at"]
    assert {(r["repo"], r["tag"]) for r in as_json(ledger, "at", moment)} == set(then)
    assert as_json(ledger, "at", "2000-01-01") == []
    now = {(r["repo"], r["tag"]): r["digest"] for r in as_json(ledger, "at", "now")}
    assert now == {(f"{story['ns']}/app", "1"): story["a"], (f"{story['ns']}/app", "prod"): story["b"]}
    assert "run 99 is not a finished run" in ledger("at", "run:99", expect=2).output
    assert "'yesterday' is not a time" in ledger("at", "yesterday", expect=2).output


def test_changes_since_a_run_as_csv(ledger, story):
    rows = list(csv.DictReader(io.StringIO(ledger("changes", "--since", "1", "--csv").output)))
    assert sorted((r["kind"], r["tag"]) for r in rows) == [("moved", "prod"), ("removed", "latest")]
    everything = as_json(ledger, "changes", "--since", "1 hour ago")
    assert len(everything) == 5
    assert as_json(ledger, "changes", "--since", "1 hour ago", "--until", "1") == everything[:3]


def test_runs_as_json_include_their_errors(registry, ledger, proxy, ns, pusher):
    pusher.image(f"{ns}/app", "1", seed=ns)
    proxy.alter_response = lambda m, p, s, h, b: (500, [], b"") if "/tags/list" in p else None
    ledger("collect", f"{proxy.host}/{ns}/app", "--retries", "0", expect=1)
    run = as_json(ledger, "runs")[0]
    assert run["status"] == "failed" and run["problems"][0]["http_status"] == 500
    assert "tags: HTTP 500" in ledger("runs", "--errors").output
    plain, full = ledger("runs").output, ledger("runs", "--full").output
    assert "error_summary" not in plain.splitlines()[0] and "finished_at" in full.splitlines()[0]
    assert "error_summary" in full.splitlines()[0] and run["error_summary"] in full


@freeze_time("2026-11-28 12:00:00")
@pytest.mark.parametrize("text,expected", [
    ("now", "2026-11-28T12:00:00.000000Z"),
    ("2 days ago", "2026-11-26T12:00:00.000000Z"),
    ("90 minutes ago", "2026-11-28T10:30:00.000000Z"),
    ("1 week ago", "2026-11-21T12:00:00.000000Z"),
    ("2026-11-20", "2026-11-20T23:59:59.999999Z"),
    ("2026-11-20T14:00:00Z", "2026-11-20T14:00:00.000000Z"),
    ("2026-11-20T14:00:00+02:00", "2026-11-20T12:00:00.000000Z"),
    ("700000 days ago", "0110-05-17T12:00:00.000000Z"),
])
def test_times_read_as_people_write_them(text, expected):
    assert parse_when(text) == expected


def test_a_time_before_the_year_1_is_a_clear_error():
    with pytest.raises(ValueError, match="before the year 1"):
        parse_when("99999999 weeks ago")
