"""`ledger serve`: Datasette on a live ledger, read-only, with the metadata keyed to the file's name."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from datasette.utils import tilde_encode

from ledger import store
from sandbox import free_port
from ledger.references import is_loopback_host as is_loopback


def test_serve_answers_on_its_port_read_only_with_metadata(registry, pusher, ns, tmp_path, serve):
    digest, _, _ = pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "audit.db")
    subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", f"{registry.host}/{ns}/app", "--db", db],
                   check=True)
    served = serve(db)
    base, port = served.base, served.port
    try:
        rows = requests.get(f"{base}/audit/current_tags.json", params={"_shape": "array"}).json()
        assert [(r["tag"], r["digest"]) for r in rows] == [("1", digest)]
        refused = requests.get(f"{base}/audit.json", params={"sql": "DELETE FROM events"})
        assert refused.status_code == 400 and "must be a SELECT" in refused.json()["error"]
        metadata = requests.get(f"{base}/-/metadata.json").json()
        assert metadata["title"] == "registry ledger"
        assert requests.get(f"{base}/-/settings.json").json()["suggest_facets"] is False  # seconds a page at 1M
        assert metadata["databases"]["audit"]["tables"]["event_log"]["hidden"] is True
        assert 'href="/audit/current_tags"' in metadata["description_html"]
        assert requests.get(f"{base}/audit/events.json", params={"_shape": "array"}).json()[0]["kind"] == "added"
    finally:
        served.stop()
    assert f"serving {db} at http://127.0.0.1:{port}/audit" in served.stderr
    assert "warning" not in served.stderr  # loopback: this machine only, arbitrary SQL on


def test_serve_refuses_a_missing_ledger(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ledger", "serve", "--db", str(tmp_path / "none.db")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and f"no ledger at {tmp_path / 'none.db'}" in result.stderr
    assert not (tmp_path / "none.db").exists()


def answering(base, process):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return requests.get(f"{base}/-/versions.json", timeout=1).status_code == 200
        except requests.exceptions.ConnectionError:
            time.sleep(0.1)
    return False


def serve_with(db, *args):
    """`ledger serve` with more options than the `serve` fixture gives; returns (base URL, stop -> stderr)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ledger", "serve", "--db", db, "--port", str(port), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop():
        process.terminate()
        return process.communicate(timeout=30)[1]
    base = f"http://127.0.0.1:{port}"
    assert answering(base, process), stop()
    return base, stop


@pytest.fixture
def empty_ledger(tmp_path):
    path = str(tmp_path / "audit.db")
    store.open_db(path).close()
    return path


@pytest.mark.parametrize("args, sql", [(["--host", "0.0.0.0"], False), (["--host", "0.0.0.0", "--sql"], True)])
def test_a_non_loopback_bind_warns_and_turns_arbitrary_sql_off_unless_asked(empty_ledger, args, sql):
    base, stop = serve_with(empty_ledger, *args)
    try:
        arbitrary = requests.get(f"{base}/audit.json", params={"sql": "SELECT 1 AS one", "_shape": "array"})
        assert arbitrary.status_code == (200 if sql else 403)
        where = requests.get(f"{base}/audit/runs.json", params={"_where": "1 = 1"})
        assert where.status_code == (200 if sql else 403)
        assert requests.get(f"{base}/audit/state_at.json").status_code == 200  # canned queries always run
        assert requests.get(f"{base}/audit/runs.json").status_code == 200
    finally:
        stderr = stop()
    assert "warning: listening on 0.0.0.0, not loopback: the ledger is readable by anyone who can reach" in stderr
    assert ("arbitrary SQL is off" in stderr) is not sql


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.20", False), ("ledger.example.com", False)])
def test_only_loopback_addresses_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_no_sql_on_loopback_leaves_canned_queries(empty_ledger):
    base, stop = serve_with(empty_ledger, "--no-sql")
    try:
        assert requests.get(f"{base}/audit.json", params={"sql": "SELECT 1"}).status_code == 403
        assert requests.get(f"{base}/audit/history_of_tag.json", params={"ref": "a.io/b:c"}).status_code == 200
    finally:
        assert "warning" not in stop()


def peak_rss_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) // 1024


def test_one_query_cannot_allocate_unbounded_memory(empty_ledger, serve):
    served = serve(empty_ledger)
    sql = f"{served.base}/audit.json"
    huge = requests.get(sql, params={"sql": "SELECT randomblob(900000000)"}, timeout=60)
    assert huge.status_code == 400 and huge.json()["error"] == "string or blob too big"
    wide = requests.get(sql, params={"sql": "SELECT " + ", ".join(["randomblob(30000000)"] * 60)}, timeout=60)
    assert wide.status_code == 500  # one row of 1.8 GB: SQLite's heap in the server is capped
    normal = requests.get(sql, params={"sql": "SELECT length(randomblob(1000000)) AS n", "_shape": "array"})
    assert normal.json() == [{"n": 1000000}]
    assert peak_rss_mib(served.process.pid) < 512


def test_the_ledger_file_name_is_escaped_in_the_index_page(tmp_path, serve):
    name = 'q"><img src=x onerror=alert(1)>'
    path = str(tmp_path / f"{name}.db")
    store.open_db(path).close()
    served = serve(path)
    page = requests.get(f"{served.base}/").text
    assert "<img" not in page and "onerror=alert(1)&gt;" in page
    assert f'href="/{tilde_encode(name)}/current_tags"' in page
    assert requests.get(f"{served.base}/{tilde_encode(name)}/current_tags").status_code == 200


def test_serve_leaves_the_ledger_file_as_it_was(empty_ledger, serve):
    before = Path(empty_ledger).read_bytes()
    served = serve(empty_ledger)
    for path in ("/", "/audit/runs", "/audit/current_tags.json", "/audit/state_at"):
        assert requests.get(f"{served.base}{path}").status_code == 200
    served.stop()
    assert Path(empty_ledger).read_bytes() == before


def test_serve_reads_the_file_it_was_given_whatever_its_name(registry, pusher, ns, tmp_path, serve):
    """Datasette's own `file:{path}?mode=ro` would stop at the `#` and read the clean `ledger` beside it."""
    pusher.image(f"{ns}/app", "1", seed=ns)
    wanted = str(tmp_path / "ledger#2026-11.db")
    subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", f"{registry.host}/{ns}/app", "--db", wanted],
                   check=True)
    store.open_db(str(tmp_path / "ledger")).close()  # an empty ledger where the unquoted URI would point
    served = serve(wanted)
    rows = requests.get(f"{served.base}/{tilde_encode('ledger#2026-11')}/current_tags.json",
                        params={"_shape": "array"}).json()
    assert [row["tag"] for row in rows] == ["1"]
