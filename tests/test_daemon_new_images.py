"""A Docker daemon's new images, as the seed's local mode decides them: the image ID tells a daemon's
images apart, so an image ID seen before is never new, whatever RepoDigests it gains or loses and
wherever it is tagged. Each case is a table of passes, served by a scripted Docker API on 127.0.0.1;
after every pass the run's count, the new_images view, tag_history's first sightings, the changes
feed, the notification and the metrics file must all say the same number."""

import json
import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sandbox.loopback import LoopbackServer
from test_notify import Receiver

ROOT = Path(__file__).resolve().parent.parent

I1, I2, I3 = (f"sha256:{n * 64}" for n in "123")
C0, C1 = (f"sha256:{n * 64}" for n in "cd")
HOST = "r.example"


class ScriptedDaemon:
    """The Docker Engine API's three reads the ledger makes, answering from `images`:
    {image ID: [(repo, tag, RepoDigest or None), ...]} for the pass being served."""

    def __init__(self):
        self.images = {}
        self.server = LoopbackServer({"GET": self._get}).start()
        self.host = f"tcp://{self.server.host}"

    def _get(self, request):
        if request.path == "/_ping":
            body = b"OK"
        elif request.path.startswith("/images/json"):
            body = json.dumps(self.listing()).encode()
        elif request.path.startswith("/images/sha256:"):
            body = json.dumps({"Id": request.path.split("/")[2], "Config": {"Labels": {}},
                               "Architecture": "amd64", "Os": "linux"}).encode()
        else:
            return request.send(404)
        request.send(200, body, [("Content-Type", "application/json")])

    def listing(self):
        return [{"Id": image, "Created": 1700000000, "Size": 1000,
                 "RepoTags": [f"{HOST}/{repo}:{tag}" for repo, tag, _ in keys],
                 "RepoDigests": [f"{HOST}/{repo}@{digest}" for repo, _, digest in keys if digest]}
                for image, keys in self.images.items()]

    def close(self):
        self.server.stop()


# (name, passes): each pass is {image ID: [(repo, tag, RepoDigest)]} and the new images it must count.
CASES = [
    ("gains a digest (pushed after a local build)", [
        ({I1: [("r1", "t1", None)]}, 1),
        ({I1: [("r1", "t1", C0)]}, 0),
        ({I1: [("r1", "t1", C0)]}, 0)]),
    ("loses its digest", [
        ({I1: [("r1", "t1", C0)]}, 1),
        ({I1: [("r1", "t1", None)]}, 0)]),
    ("tagged into another repository with a digest", [
        ({I1: [("r1", "t1", None)]}, 1),
        ({I1: [("r1", "t1", None), ("r2", "t1", C0)]}, 0),
        ({I1: [("r2", "t9", C1)]}, 0)]),
    ("the same digest on two image IDs", [
        ({I1: [("r1", "t1", C0)]}, 1),
        ({I2: [("r1", "t1", C0)]}, 1),
        ({I1: [("r2", "t2", C0)], I2: [("r1", "t1", C0)]}, 0)]),
    ("removed, then back", [
        ({I1: [("r1", "t1", C0)], I3: [("r1", "t2", None)]}, 2),
        ({I3: [("r1", "t2", None)]}, 0),
        ({I1: [("r1", "t1", C1)]}, 0)]),
]


def _counted(ledger, run_id, metrics_file, received):
    """The new images of run `run_id` as each place that tells of them says it."""
    conn = sqlite3.connect(f"file:{ledger.path}?mode=ro", uri=True)
    try:
        one = lambda sql: conn.execute(sql, [run_id]).fetchone()[0]  # noqa: E731
        said = {
            "runs.new_images": one("SELECT new_images FROM runs WHERE id = ?"),
            "new_images view": one("SELECT count(*) FROM new_images WHERE run_id = ?"),
            "tag_history.first_sighting": one("SELECT count(*) FROM tag_history WHERE run_id = ? AND first_sighting"),
        }
    finally:
        conn.close()
    samples = {sample.name: sample.value for family in text_string_to_metric_families(metrics_file.read_text())
               for sample in family.samples}
    said["metrics"] = int(samples["ledger_last_run_new_images"])
    titles = [message["json"]["title"] for message in received if f"run {run_id} " in message["json"]["title"]]
    match = re.search(r"(\d+) new images?", titles[0]) if titles else None
    said["notification"] = int(match.group(1)) if match else 0
    return said


@pytest.mark.parametrize("name, passes", CASES, ids=[name for name, _ in CASES])
def test_a_daemon_image_id_seen_before_is_never_new(ledger, tmp_path, name, passes):
    daemon, receiver = ScriptedDaemon(), Receiver()
    metrics_file = tmp_path / "ledger.prom"
    try:
        for run_id, (images, expected) in enumerate(passes, 1):
            daemon.images = images
            ledger("collect", "--quiet", "--daemon", "--docker-host", daemon.host, "--metrics-file", str(metrics_file),
                   "--notify", f"json://127.0.0.1:{receiver.port}/ok", "--notify-on", "new_images")
            said = _counted(ledger, run_id, metrics_file, receiver.received)
            assert said == dict.fromkeys(said, expected), f"{name}, pass {run_id - 1}"
        feed = yaml.safe_load((ROOT / "metadata.yml").read_text())["databases"]["ledger"]["queries"]["changes_feed"]
        rows = ledger.rows(feed["sql"], {"pattern": ""})
        told = [row["atom_content"] for row in rows if row["atom_title"].startswith("new image: ")]
        assert told and all(content.split(": ")[1] in (I1, I2, I3) for content in told)  # by image ID, never a digest
        assert ledger("verify").exit_code == 0
    finally:
        daemon.close()
        receiver.stop()
