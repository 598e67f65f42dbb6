"""`ledger serve`: Datasette on a live ledger, read-only, with the metadata keyed to the file's name."""

import subprocess
import sys
import time

import requests

from ledger.sandbox import free_port


def test_serve_answers_on_its_port_read_only_with_metadata(registry, pusher, ns, tmp_path):
    digest, _, _ = pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "audit.db")
    subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", f"{registry.host}/{ns}/app", "--db", db],
                   check=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ledger", "serve", "--db", db, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/-/versions.json", timeout=1).status_code == 200:
                    break
            except requests.exceptions.ConnectionError:
                time.sleep(0.1)
        rows = requests.get(f"{base}/audit/current_tags.json", params={"_shape": "array"}).json()
        assert [(r["tag"], r["digest"]) for r in rows] == [("1", digest)]
        refused = requests.get(f"{base}/audit.json", params={"sql": "DELETE FROM events"})
        assert refused.status_code == 400 and "must be a SELECT" in refused.json()["error"]
        metadata = requests.get(f"{base}/-/metadata.json").json()
        assert metadata["title"] == "registry ledger"
        assert metadata["databases"]["audit"]["tables"]["tag_state"]["hidden"] is True
        assert 'href="/audit/current_tags"' in metadata["description_html"]
        assert requests.get(f"{base}/audit/events.json", params={"_shape": "array"}).json()[0]["kind"] == "added"
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"serving {db} at http://127.0.0.1:{port}/audit" in err


def test_serve_refuses_a_missing_ledger(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ledger", "serve", "--db", str(tmp_path / "none.db")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "no such ledger" in result.stderr
    assert not (tmp_path / "none.db").exists()
