"""`ledger serve`: Datasette on a live ledger, read-only, with the metadata keyed to the file's name."""

import subprocess
import sys

import requests


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


def test_serve_refuses_a_missing_ledger(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ledger", "serve", "--db", str(tmp_path / "none.db")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "no such ledger" in result.stderr
    assert not (tmp_path / "none.db").exists()
