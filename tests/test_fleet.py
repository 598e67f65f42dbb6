"""`ledger serve a.db b.db`: several ledgers at once, each under its name with its own metadata and canned
queries, and the fleet-wide queries across them all (Datasette's `_memory` with every ledger attached)."""

import asyncio
import hashlib
import html
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from datasette.utils import tilde_encode
from datasette.views.base import DatasetteError

from ledger import store
from ledger.findings import RunResult, Sighting
from ledger.serving import attach_limit, ledger_datasette
from ledger.times import format_instant
from sandbox import free_port
from test_artifacts import cosign_signature, helm_chart, push
from test_readonly import UNPRIVILEGED, fingerprint
from test_serve import answering

HOSTILE = "it's \"team b\" [eu] #2"  # quotes, spaces, brackets and a '#', all from a file name


class Serving:
    """`ledger serve ARGS...` as a subprocess on a free loopback port, ready when it answers."""

    def __init__(self, *args, prefix=()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([*prefix, sys.executable, "-m", "ledger", "serve", *args, "--port",
                                         str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert answering(self.base, self.process), self.stop()

    def get(self, path, **params):
        response = requests.get(f"{self.base}{path}", params={"_shape": "array", **params}, timeout=30)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def stop(self):
        """Stops it; its stderr."""
        if not hasattr(self, "stderr"):
            self.process.terminate()
            self.stderr = self.process.communicate(timeout=30)[1]
        return self.stderr


@pytest.fixture
def serving():
    started = []

    def start(*args, **kwargs):
        started.append(Serving(*args, **kwargs))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def collect(db, *targets):
    subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", *targets, "--db", db], check=True)


def last_finished(db):
    ledger = store.open_readonly(db)
    try:
        return ledger.execute("SELECT max(finished_at) FROM runs").fetchone()[0]
    finally:
        ledger.close()


@pytest.fixture
def fleet(registry, pusher, ns, tmp_path):
    """Two ledgers of one registry, as two teams would keep them: `ops` (a-app and shared) and a hostile
    name (b-app and shared). After both first collects (`between`), a-app:1 moves and b-app:old is deleted."""
    host = registry.host
    found = {"a1": pusher.image(f"{ns}/a-app", "1", seed=ns + "a1")[0],
             "shared": pusher.image(f"{ns}/shared", "1", seed=ns + "s")[0],
             "b1": pusher.image(f"{ns}/b-app", "1", seed=ns + "b1")[0],
             "old": pusher.image(f"{ns}/b-app", "old", seed=ns + "bo")[0]}
    ops, team = str(tmp_path / "ops.db"), str(tmp_path / f"{HOSTILE}.db")
    collect(ops, f"{host}/{ns}/a-app", f"{host}/{ns}/shared")
    collect(team, f"{host}/{ns}/b-app", f"{host}/{ns}/shared")
    found["between"] = last_finished(team)
    found["a2"] = pusher.image(f"{ns}/a-app", "1", seed=ns + "a2")[0]
    pusher.delete(f"{ns}/b-app", found["old"])
    collect(ops, f"{host}/{ns}/a-app", f"{host}/{ns}/shared")
    collect(team, f"{host}/{ns}/b-app", f"{host}/{ns}/shared")
    return {"ops": ops, "team": team, "ns": ns, "host": host, **found}


def test_each_ledger_is_served_under_its_name_with_its_own_metadata_and_queries(fleet, serving):
    ns, team = fleet["ns"], f"/{tilde_encode(HOSTILE)}"
    before = [fingerprint(fleet["ops"]), fingerprint(fleet["team"])]
    served = serving("--db", fleet["ops"], fleet["team"])  # --db adds one, as DB does
    try:
        assert [(r["repo"], r["tag"], r["digest"]) for r in served.get("/ops/current_tags.json", _sort="repo")] == [
            (f"{ns}/a-app", "1", fleet["a2"]), (f"{ns}/shared", "1", fleet["shared"])]
        assert [(r["repo"], r["tag"]) for r in served.get(f"{team}/current_tags.json", _sort="repo")] == [
            (f"{ns}/b-app", "1"), (f"{ns}/shared", "1")]
        history = served.get("/ops/history_of_tag.json", ref=f"{fleet['host']}/{ns}/a-app:1")
        assert [(r["kind"], r["digest"]) for r in history] == [("added", fleet["a1"]), ("moved", fleet["a2"])]
        assert [(r["tag"], r["last_digest"]) for r in served.get(f"{team}/removed_in_window.json")] == [
            ("old", fleet["old"])]
        assert served.get("/ops/removed_in_window.json") == []
        metadata = requests.get(f"{served.base}/-/metadata.json").json()
        assert set(metadata["databases"]) == {"ops", HOSTILE, "_memory"}
        for name in ("ops", HOSTILE):
            assert metadata["databases"][name]["tables"]["event_log"]["hidden"] is True
            assert "tag_keys k" in metadata["databases"][name]["queries"]["state_at"]["sql"]
        home = requests.get(f"{served.base}/").text
        assert f'<a href="{team}">{html.escape(HOSTILE)}</a>' in home and HOSTILE not in home
        assert '<a href="/_memory/fleet_current_tags">' in home
        assert requests.get(f"{served.base}{team}/events").status_code == 200
        huge = requests.get(f"{served.base}/_memory.json", params={"sql": "SELECT randomblob(900000000)"})
        assert huge.status_code == 400 and huge.json()["error"] == "string or blob too big"  # the limits hold there too
    finally:
        stderr = served.stop()
    assert [fingerprint(fleet["ops"]), fingerprint(fleet["team"])] == before
    assert f"serving {fleet['ops']} at {served.base}/ops, its tlog tiles at {served.base}/ops/-/tlog\n" in stderr
    assert f"serving {fleet['team']} at {served.base}{team}, its tlog tiles at {served.base}{team}/-/tlog\n" in stderr
    assert f"queries across all 2 ledgers at {served.base}/_memory\n" in stderr


def test_the_fleet_queries_read_every_ledger_with_its_name(fleet, serving):
    ns, shared = fleet["ns"], fleet["shared"]
    served = serving(fleet["ops"], fleet["team"])
    current = served.get("/_memory/fleet_current_tags.json")
    assert [(r["ledger"], r["repo"], r["tag"], r["digest"]) for r in current] == [
        ("ops", f"{ns}/a-app", "1", fleet["a2"]), (HOSTILE, f"{ns}/b-app", "1", fleet["b1"]),
        (HOSTILE, f"{ns}/shared", "1", shared), ("ops", f"{ns}/shared", "1", shared)]
    assert {r["kind"] for r in current} == {"image"}
    assert [r["ledger"] for r in served.get("/_memory/fleet_current_tags.json", pattern=f"*/{ns}/b-app:*")] == [
        HOSTILE]

    since = served.get("/_memory/fleet_changes.json", since=fleet["between"])
    assert [(r["ledger"], r["change"], r["tag"], r["digest"], r["prev_digest"]) for r in since] == [
        (HOSTILE, "removed", "old", fleet["old"], fleet["old"]), ("ops", "moved", "1", fleet["a2"], fleet["a1"])]
    everything = served.get("/_memory/fleet_changes.json")  # the last day: the first collects' new images too
    assert {(r["ledger"], r["repo"]) for r in everything if r["change"] == "new image"} == {
        ("ops", f"{ns}/a-app"), ("ops", f"{ns}/shared"), (HOSTILE, f"{ns}/b-app"), (HOSTILE, f"{ns}/shared")}
    assert served.get("/_memory/fleet_changes.json", since=fleet["between"], until=fleet["between"]) == []

    usage = served.get("/_memory/fleet_digest_usage.json", digest=shared)
    assert sorted((r["ledger"], r["repo"], r["points_there_now"]) for r in usage) == [
        (HOSTILE, f"{ns}/shared", 1), ("ops", f"{ns}/shared", 1)]
    bare = served.get("/_memory/fleet_digest_usage.json", digest=fleet["a1"].split(":", 1)[1])
    assert [(r["ledger"], r["tag"], r["points_there_now"]) for r in bare] == [("ops", "1", 0)]
    assert served.get("/_memory/fleet_digest_usage.json") == []
    page = requests.get(f"{served.base}/_memory/fleet_changes").text
    assert all(f'name="{param}"' in page for param in ("since", "until", "pattern"))  # its form, whatever the names


def test_fleet_changes_says_new_image_of_what_the_new_images_view_holds(registry, pusher, ns, tmp_path, serving):
    """A Helm chart or a signature first seen under a plain tag is a new digest, not a new image: as the
    new_images view, the timelines chart and notifications say."""
    host = registry.host
    image = pusher.image(f"{ns}/app", "1", seed=ns)[0]
    push(pusher, f"{ns}/app", "signature", cosign_signature(image))
    push(pusher, f"{ns}/charts/mychart", "0.1.0", helm_chart())
    charts, apps = str(tmp_path / "charts.db"), str(tmp_path / "apps.db")
    collect(charts, f"{host}/{ns}/app", f"{host}/{ns}/charts/mychart")
    collect(apps, f"{host}/{ns}/app")
    served = serving(charts, apps)
    assert {(r["tag"], r["kind"]) for r in served.get("/charts/new_digests.json")} == {
        ("1", "image"), ("signature", "signature"), ("0.1.0", "helm-chart")}
    changes = served.get("/_memory/fleet_changes.json")
    assert sorted((r["ledger"], r["tag"], r["change"], r["digest"]) for r in changes) == [
        ("apps", "1", "new image", image), ("charts", "1", "new image", image)]
    for name in ("apps", "charts"):
        assert {(r["tag"], r["digest"]) for r in served.get(f"/{name}/new_images.json")} == {("1", image)}


def busy_and_quiet(directory):
    """`busy`: 1,500 tags added two hours ago and three of them moved an hour ago (more changes than a page
    of fleet_changes); `quiet`: two tags added two hours ago. Appended through the store's own API."""
    now = datetime.now(timezone.utc)
    added, moved = (format_instant(now - timedelta(hours=hours)) for hours in (2, 1))
    runs = {"busy": [(added, [f"v{n}" for n in range(1500)], "1"), (moved, ["v0", "v1", "v2"], "2")],
            "quiet": [(added, ["a", "b"], "1")]}
    paths = {}
    for name, appends in runs.items():
        paths[name] = str(directory / f"{name}.db")
        db = store.open_db(paths[name])
        for at, tags, version in appends:
            seen = [Sighting("r.example", name, tag, at, "sha256:" + hashlib.sha256(f"{name}{tag}{version}".encode())
                             .hexdigest(), "application/vnd.oci.image.manifest.v1+json") for tag in tags]
            store.append_run(db, store.start_run(db, "registry", [f"r.example/{name}"]), RunResult(observations=seen))
        db.close()
    return {**paths, "added": added, "moved": moved}


def test_fleet_changes_reads_a_page_per_ledger_newest_first(tmp_path):
    """A window of more changes than Datasette shows: its newest page, said to be cut short; a narrower one,
    every change in it."""
    ledgers = busy_and_quiet(tmp_path)
    datasette = ledger_datasette([ledgers["busy"], ledgers["quiet"]])

    def changes(**params):
        async def get():
            response = await datasette.client.get("/_memory/fleet_changes.json", params={"_shape": "objects",
                                                                                        **params})
            assert response.status_code == 200, response.text
            return response.json()
        return asyncio.run(get())

    page = changes()
    assert (len(page["rows"]), page["truncated"]) == (1000, True)
    assert sorted((r["ledger"], r["tag"], r["change"]) for r in page["rows"][:3]) == [
        ("busy", tag, "moved") for tag in ("v0", "v1", "v2")]
    assert {r["observed_at"] for r in page["rows"][3:]} == {ledgers["added"]}
    narrow = changes(since=ledgers["added"])
    assert (sorted((r["ledger"], r["tag"], r["change"]) for r in narrow["rows"]), narrow["truncated"]) == (
        [("busy", tag, "moved") for tag in ("v0", "v1", "v2")], False)
    quiet = changes(pattern="r.example/quiet:*")
    assert sorted((r["ledger"], r["tag"], r["change"]) for r in quiet["rows"]) == [
        ("quiet", "a", "new image"), ("quiet", "b", "new image")]
    assert changes(since=ledgers["moved"])["rows"] == []


def test_a_ledger_file_gone_while_served_is_an_error_page_naming_it(tmp_path):
    """Datasette opens connections as its threads need them: one to a file deleted since, the fleet's
    included, says which file, not SQLite's `unable to open database file`."""
    kept, gone = empty_ledgers(tmp_path, "kept", HOSTILE)
    datasette = ledger_datasette([kept, gone])
    for path in (gone, f"{gone}-wal", f"{gone}-shm"):
        if os.path.exists(path):
            os.remove(path)
    response = asyncio.run(datasette.client.get("/_memory/fleet_current_tags"))
    assert response.status_code == 500
    assert f"{gone}: the file is gone (moved or deleted since ledger serve started)" in html.unescape(response.text)
    assert gone not in response.text and "unable to open database file" not in response.text  # escaped
    with pytest.raises(DatasetteError, match="the file is gone") as raised:
        datasette.databases["_memory"].connect()
    assert raised.value.message.startswith(f"{gone}: ")


@pytest.mark.slow
def test_a_missing_ledger_among_several_is_one_line_before_anything_is_served(fleet, tmp_path):
    missing = str(tmp_path / "typo.db")
    result = subprocess.run([sys.executable, "-m", "ledger", "serve", fleet["ops"], missing, "--port",
                             str(free_port())], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (1, f"Error: no ledger at {missing}\n")
    assert not os.path.exists(missing)


def empty_ledgers(directory, *names):
    for name in names:
        store.open_db(str(directory / f"{name}.db")).close()
    return [str(directory / f"{name}.db") for name in names]


@pytest.mark.slow
def test_two_ledgers_with_one_name_are_refused(tmp_path):
    (tmp_path / "eu").mkdir()
    (tmp_path / "us").mkdir()
    paths = empty_ledgers(tmp_path / "eu", "prod") + empty_ledgers(tmp_path / "us", "prod")
    for args in (paths, ["--db", paths[0], paths[1]]):
        result = subprocess.run([sys.executable, "-m", "ledger", "serve", *args], capture_output=True, text=True,
                                timeout=60)
        assert (result.returncode, result.stderr) == (
            1, f"Error: {paths[0]} and {paths[1]} would both be served as /prod: copy or link one of them under "
               "another name\n")
    memory = empty_ledgers(tmp_path, "_memory")[0]
    result = subprocess.run([sys.executable, "-m", "ledger", "serve", paths[0], memory], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "cannot be served as /_memory" in result.stderr


@pytest.mark.slow
def test_more_ledgers_than_sqlite_attaches_are_served_without_the_fleet_queries(tmp_path, serving):
    names = [f"team-{n}" for n in range(attach_limit() + 1)]
    served = serving(*empty_ledgers(tmp_path, *names))
    try:
        for name in names:
            assert served.get(f"/{name}/current_tags.json") == []
        assert requests.get(f"{served.base}/_memory/fleet_current_tags.json").status_code == 404
        assert "_memory" not in requests.get(f"{served.base}/-/metadata.json").json()["databases"]
    finally:
        stderr = served.stop()
    assert (f"warning: no fleet-wide queries: they attach every ledger to one SQLite connection, which takes at "
            f"most {attach_limit()}, and there are {len(names)}") in stderr


def test_no_sql_holds_for_the_fleet_database_and_its_queries_still_run(tmp_path, serving):
    served = serving(*empty_ledgers(tmp_path, "a", "b"), "--no-sql")
    assert requests.get(f"{served.base}/_memory.json", params={"sql": "SELECT 1"}).status_code == 403
    assert served.get("/_memory/fleet_current_tags.json") == []
    assert served.get("/_memory/fleet_digest_usage.json", digest="sha256:" + "0" * 64) == []


@pytest.mark.slow
def test_a_fleet_in_a_read_only_directory_is_read_without_writing(fleet, tmp_path, serving):
    """Both copies attached as the store opens them: `immutable` where SQLite cannot make its side files."""
    directory = tmp_path / "ro"
    directory.mkdir()
    copies = [str(directory / "ops.db"), str(directory / f"{HOSTILE}.db")]
    for source, copy in zip((fleet["ops"], fleet["team"]), copies):
        shutil.copy(source, copy)
    directory.chmod(0o555)
    try:
        served = serving(*copies, prefix=UNPRIVILEGED if os.geteuid() == 0 else ())
        assert len(served.get("/_memory/fleet_current_tags.json")) == 4
        assert len(served.get(f"/{tilde_encode(HOSTILE)}/current_tags.json")) == 2
        served.stop()
        assert sorted(os.listdir(directory)) == sorted(os.path.basename(path) for path in copies)  # no side files
        assert [Path(path).read_bytes() for path in copies] == [Path(fleet[k]).read_bytes() for k in ("ops", "team")]
    finally:
        directory.chmod(0o755)


@pytest.mark.parametrize("env, args, expect", [({}, [], "ledger.db"), ({"LEDGER_DB": "mine.db"}, [], "mine.db"),
                                               ({"LEDGER_DB": "mine.db"}, ["given.db"], "given.db")])
def test_with_no_db_given_it_serves_ledger_db_or_LEDGER_DB(tmp_path, env, args, expect):
    result = subprocess.run([sys.executable, "-m", "ledger", "serve", *args], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "LEDGER_DB": "", **env}, timeout=60)
    assert (result.returncode, result.stderr) == (1, f"Error: no ledger at {expect}\n")


def test_ledgers_named_as_sqlite_names_its_own_schemas_are_served_under_their_names(tmp_path, serving):
    """`main` and `temp` are the connection's own schemas, and schema names are case-insensitive: such
    ledgers are attached under aliases, and still served, and named in the `ledger` column, as their stems."""
    names = ["main", "temp", "other", "Other", "sqlite_master"]
    paths = []
    for name in names:
        paths.append(str(tmp_path / f"{name}.db"))
        db = store.open_db(paths[-1])
        seen = [Sighting("r.example", name, "1", format_instant(datetime.now(timezone.utc)),
                         "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                         "application/vnd.oci.image.manifest.v1+json")]
        store.append_run(db, store.start_run(db, "registry", [f"r.example/{name}"]), RunResult(observations=seen))
        db.close()
    assert store.schema_names(names) == store.schema_names(list(reversed(names)))  # not the arguments' order
    served = serving(*paths)
    for path in ["/", *(f"/{name}" for name in names), "/main/-/timelines", "/_memory"]:
        assert requests.get(f"{served.base}{path}", timeout=30).status_code == 200, path
    for name in names:
        assert [(row["repo"], row["tag"]) for row in served.get(f"/{name}/current_tags.json")] == [(name, "1")]
    fleet_rows = served.get("/_memory/fleet_current_tags.json")
    assert sorted((row["ledger"], row["repo"]) for row in fleet_rows) == sorted((name, name) for name in names)
    usage = served.get("/_memory/fleet_digest_usage.json", digest=hashlib.sha256(b"temp").hexdigest())
    assert [(row["ledger"], row["points_there_now"]) for row in usage] == [("temp", 1)]
    assert {row["ledger"] for row in served.get("/_memory/fleet_changes.json")} == set(names)
