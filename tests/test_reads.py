"""The terminal's read commands: tags, history, at, changes, runs."""

import csv
import io
import json
from datetime import date, timedelta

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
    run = as_json(ledger, "runs", "--errors")[0]
    assert run["status"] == "failed" and run["problems"][0]["http_status"] == 500
    assert "problems" not in as_json(ledger, "runs")[0]  # --errors asks for them, in every format
    cell = next(csv.DictReader(io.StringIO(ledger("runs", "--errors", "--csv").output)))["problems"]
    assert json.loads(cell)[0]["http_status"] == 500
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
    ("2026-11-20", "2026-11-20T00:00:00.000000Z"),
    ("2026-11-20T14:00:00Z", "2026-11-20T14:00:00.000000Z"),
    ("2026-11-20T14:00:00+02:00", "2026-11-20T12:00:00.000000Z"),
    ("700000 days ago", "0110-05-17T12:00:00.000000Z"),
])
def test_times_read_as_people_write_them(text, expected):
    assert parse_when(text) == expected


def test_a_time_before_the_year_1_is_a_clear_error():
    with pytest.raises(ValueError, match="before the year 1"):
        parse_when("99999999 weeks ago")


def test_a_date_until_is_the_end_of_that_day():
    assert parse_when("2026-11-20", end_of_day=True) == "2026-11-20T23:59:59.999999Z"
    assert parse_when("9999-12-31", end_of_day=True) == "9999-12-31T23:59:59.999999Z"
    assert parse_when("2026-11-20T14:00:00Z", end_of_day=True) == "2026-11-20T14:00:00.000000Z"  # a date alone


def test_a_date_is_its_whole_day_for_since_until_and_at(ledger, story):
    first = ledger.rows("SELECT min(observed_at) AS t FROM events")[0]["t"]
    day = first[:10]
    before = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    after = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    everything = as_json(ledger, "changes", "--since", "1 hour ago")
    assert len(everything) == 5
    assert as_json(ledger, "changes", "--since", day) == everything  # the day's events, from 00:00 UTC
    assert as_json(ledger, "changes", "--since", before, "--until", day) == everything  # --until: the whole day
    assert as_json(ledger, "changes", "--since", before, "--until", before) == []
    assert as_json(ledger, "changes", "--since", after) == []
    assert as_json(ledger, "at", day) == []  # the start of the day: before the ledger's first run
    assert len(as_json(ledger, "at", after)) == 2
    assert "00:00 UTC" in ledger("changes", "--help").output and "00:00 UTC" in ledger("at", "--help").output
    assert "whole day" in ledger("changes", "--help").output


def test_a_window_that_ends_before_it_starts_or_a_time_that_is_none_is_bad_usage(ledger, story):
    """Not an empty answer, which would read as "nothing changed": exit 2, naming both ends or the forms."""
    inverted = ledger("changes", "--since", "2026-11-20", "--until", "2026-11-19", expect=2).output
    assert "--until 2026-11-19" in inverted and "is before --since 2026-11-20" in inverted
    for command in (["changes", "--since", "yesterdayish"], ["at", "yesterdayish"]):
        assert "or a run id (42, run:42)" in ledger(*command, expect=2).output


def reading_commands(story):
    tag = f"{story['host']}/{story['ns']}/app:prod"
    return [["tags"], ["history", tag], ["at", "now"], ["changes", "--since", "1 hour ago"], ["runs"],
            ["platforms", tag], ["digest", story["a"]]]


def test_each_command_prints_one_column_list_in_json_csv_and_the_full_table(ledger, story):
    for command in reading_commands(story):
        rows = json.loads(ledger(*command, "--json").output)
        assert rows, command
        columns = list(rows[0])
        assert all(list(row) == columns for row in rows), command
        assert next(csv.reader(io.StringIO(ledger(*command, "--csv").output))) == columns, command
        assert ledger(*command, "--full").output.splitlines()[0].split() == columns, command
        brief = ledger(*command).output.splitlines()[0].split()
        assert [column for column in columns if column in brief] == brief, command  # a subset, in order
    assert "source" in json.loads(ledger("tags", "--json").output)[0]
    assert "source" not in ledger("tags").output.splitlines()[0]  # for people, only when a row has another


def test_json_and_csv_together_are_bad_usage(ledger, story):
    for command in reading_commands(story):
        result = ledger(*command, "--json", "--csv", expect=2)
        assert "--json and --csv" in result.output, command


def test_platforms_of_an_index_a_single_image_and_a_digest(registry, pusher, ledger, ns):
    index, children = pusher.index(f"{ns}/multi", "1", [("amd64", None), ("arm64", "v8")], seed=ns)
    single, _, _ = pusher.image(f"{ns}/multi", "single", seed=ns + "s", architecture="arm", variant="v7")
    ledger.collect(f"{registry.host}/{ns}/multi")
    rows = as_json(ledger, "platforms", f"{registry.host}/{ns}/multi:1")
    assert [(r["os"], r["architecture"], r["variant"], r["digest"]) for r in rows] == [
        ("linux", "amd64", None, children[("amd64", None)]), ("linux", "arm64", "v8", children[("arm64", "v8")])]
    assert as_json(ledger, "platforms", index) == rows  # by digest, attestations left out
    assert [(r["architecture"], r["variant"], r["digest"]) for r in as_json(
        ledger, "platforms", f"{registry.host}/{ns}/multi:single")] == [("arm", "v7", single)]
    table = ledger("platforms", f"{registry.host}/{ns}/multi:1").output
    assert "arm64" in table and children[("arm64", "v8")][:19] in table and children[("arm64", "v8")] not in table
    assert "multi:nope is not in the ledger" in ledger("platforms", f"{registry.host}/{ns}/multi:nope", expect=1).output
    assert "names no tag or digest" in ledger("platforms", f"{registry.host}/{ns}/multi", expect=2).output


def test_platforms_of_a_digest_the_ledger_never_held_or_a_shortened_one(ledger, story):
    """As `digest` does: a shortened digest (what the tables print) is bad usage, an unknown one exits 1."""
    result = ledger("platforms", "sha256:" + "0" * 64, expect=1)
    assert "sha256:" + "0" * 64 + " is not in the ledger" in result.output
    assert "not a whole digest" in ledger("platforms", story["a"][:19], expect=2).output
    assert "None" not in ledger("platforms", story["a"][:19], expect=2).output


def test_digest_names_the_tags_that_point_to_it_now_and_ever(ledger, story):
    rows = as_json(ledger, "digest", story["a"])
    assert [(r["tag"], r["points_there_now"]) for r in rows] == [("1", 1), ("prod", 0)]
    assert as_json(ledger, "digest", story["a"].split(":", 1)[1].upper()) == rows
    assert [(r["tag"], r["points_there_now"]) for r in as_json(ledger, "digest", story["b"])] == [("prod", 1)]
    moved = ledger.rows("SELECT observed_at FROM tag_history WHERE tag = 'prod' AND kind = 'moved'")[0]["observed_at"]
    added = {r["tag"]: r["observed_at"] for r in ledger.rows("SELECT tag, observed_at FROM tag_history "
                                                             "WHERE repo LIKE '%/app' AND kind = 'added'")}
    assert [(r["tag"], r["first_seen"], r["left_at"]) for r in rows] == [
        ("1", added["1"], None), ("prod", added["prod"], moved)]  # prod pointed at A from run 1 until run 2 moved it
    tool = as_json(ledger, "digest", story["tool"])
    removed = ledger.rows("SELECT observed_at FROM tag_history WHERE kind = 'removed'")[0]["observed_at"]
    assert [(r["tag"], r["points_there_now"], r["left_at"]) for r in tool] == [("latest", 0, removed)]
    table = ledger("digest", story["a"]).output
    assert "yes" in table and "prod" in table
    assert "no tag ever pointed to" in ledger("digest", "sha256:" + "0" * 64, expect=1).output
    assert "not a whole digest" in ledger("digest", story["a"][:19], expect=2).output
