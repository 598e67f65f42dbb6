"""`--notify`: one message per run that changed something or failed, through apprise, to a JSON webhook
receiver on 127.0.0.1; a delivery that fails is a sealed warning row, and secrets stay in the environment."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox import free_port
from sandbox.loopback import LoopbackServer


class Receiver:
    """A JSON webhook on a free loopback port: /ok answers 204, /fail 500, /hang holds its answer until
    the test ends. It keeps every request it read, and with `ledger` set, the runs that ledger held
    finished when the request came (what someone told would find)."""

    def __init__(self):
        self.received = []
        self.release = threading.Event()
        self.ledger = None
        self.server = LoopbackServer({"POST": self._receive}).start()
        self.port = self.server.port

    def _receive(self, request):
        self.received.append({"path": request.path.split("?")[0], "query": request.path.partition("?")[2],
                              "headers": dict(request.headers), "json": json.loads(request.body()),
                              "finished": self.finished_runs()})
        if request.path.startswith("/hang"):
            self.release.wait(30)
        request.send(500 if request.path.startswith("/fail") else 204)

    def finished_runs(self):
        if self.ledger is None:
            return None
        conn = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)
        try:
            return [run_id for (run_id,) in conn.execute("SELECT id FROM runs WHERE finished_at IS NOT NULL")]
        finally:
            conn.close()

    def url(self, path="/ok", prefix=""):
        return f"json://{prefix}127.0.0.1:{self.port}{path}"

    def messages(self, path="/ok"):
        return [request["json"] for request in self.received if request["path"] == path]

    def stop(self):
        self.release.set()
        self.server.stop()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.stop()


def short(digest):
    return digest[:19]  # sha256: and 12 hex digits


def test_a_move_a_removal_and_a_new_image_are_one_message_with_short_digests(registry, pusher, ledger, ns, receiver):
    old, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "old")
    gone, _, _ = pusher.image(f"{ns}/app", "old", seed=ns + "gone")
    pusher.image(f"{ns}/app", "keep", seed=ns + "keep")
    target = f"{registry.host}/{ns}/app"
    ledger.collect(target, "--notify", receiver.url())
    first = receiver.messages()
    assert len(first) == 1 and first[0]["title"] == "registry ledger: run 1 ok: 3 new images"
    assert f"new image {target}:prod {short(old)}" in first[0]["message"].splitlines()

    new, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "new")
    pusher.delete(f"{ns}/app", gone)
    ledger.collect(target, "--notify", receiver.url())
    second = receiver.messages()[1]
    assert second["title"] == "registry ledger: run 2 ok: 1 moved, 1 removed, 1 new image"
    assert second["type"] == "info"
    assert sorted(second["message"].splitlines()) == [
        f"moved {target}:prod {short(old)} -> {short(new)} (new image)", f"removed {target}:old was {short(gone)}"]
    assert new not in second["message"] and old not in second["message"]  # digests shortened

    ledger.collect(target, "--notify", receiver.url())  # nothing changed: nothing sent
    assert len(receiver.messages()) == 2
    assert ledger.rows("SELECT count(*) AS n FROM errors")[0]["n"] == 0


def test_notify_on_chooses_what_is_worth_a_message(registry, pusher, ledger, ns, receiver):
    old, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "old")
    gone, _, _ = pusher.image(f"{ns}/app", "old", seed=ns + "gone")
    target = f"{registry.host}/{ns}/app"
    ledger.collect(target, "--notify", receiver.url(), "--notify-on", "removed")
    assert receiver.messages() == []  # only added tags and new images
    pusher.image(f"{ns}/app", "prod", seed=ns + "new")
    pusher.delete(f"{ns}/app", gone)
    ledger.collect(target, "--notify", receiver.url(), "--notify-on", "removed")
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 2 ok: 1 removed"
    assert message["message"] == f"removed {target}:old was {short(gone)}"


def test_a_long_message_lists_the_first_20_and_counts_the_rest(registry, pusher, ledger, ns, receiver):
    for n in range(23):
        pusher.image(f"{ns}/app", f"t{n:02}", seed=f"{ns}{n}")
    ledger.collect(f"{registry.host}/{ns}/app", "--notify", receiver.url(), "--notify-on", "added")
    [message] = receiver.messages()
    lines = message["message"].splitlines()
    assert message["title"] == "registry ledger: run 1 ok: 23 added"
    assert len(lines) == 21 and lines[-1] == "... and 3 more (run 1 in the ledger)"
    # Listed in the order the run appended them (the order the HEADs came back): 20 different tags.
    listed = [re.fullmatch(rf"added {re.escape(registry.host)}/{ns}/app:(t\d\d) sha256:[0-9a-f]{{12}}", line)
              for line in lines[:20]]
    assert all(listed) and len({match.group(1) for match in listed}) == 20, lines


@pytest.mark.parametrize("path,reason", [("/fail", "HTTP 500"), ("/hang", "no answer within 1 s")])
def test_a_receiver_that_fails_or_hangs_is_a_sealed_warning_and_the_run_goes_on(registry, pusher, ledger, ns,
                                                                                receiver, tmp_path, path, reason):
    pusher.image(f"{ns}/app", "1", seed=ns)
    metrics = tmp_path / "ledger.prom"
    receiver.ledger = ledger.path
    started = time.monotonic()
    result = ledger.collect(f"{registry.host}/{ns}/app", "--notify", receiver.url(path), "--notify", receiver.url(),
                            "--notify-deadline", "1", "--metrics-file", str(metrics))
    elapsed = time.monotonic() - started
    assert elapsed < 3.5  # the deadline, not apprise's own 4 s read timeout, ended the wait
    [told] = [request for request in receiver.received if request["path"] == "/ok"]  # in parallel
    assert told["finished"] == [1]  # sent once run 1 was committed: whoever is told finds it
    shown = f"json://127.0.0.1:{receiver.port}/..."
    line = f"warning: notify: {shown} (target 1): not delivered: {reason}"
    assert result.stderr.splitlines() == [line]  # nothing of apprise's own log
    assert ledger.rows("SELECT id, source, targets, status, errors, error_summary FROM runs ORDER BY id") == [
        {"id": 1, "source": "registry", "targets": json.dumps([f"{registry.host}/{ns}/app"]), "status": "ok",
         "errors": 0, "error_summary": None},
        {"id": 2, "source": "notify", "targets": json.dumps(["the notification of run 1"]), "status": "ok",
         "errors": 0, "error_summary": None}]
    assert ledger.rows("SELECT run_id, stage, code, source, message FROM errors") == [
        {"run_id": 2, "stage": "notify", "code": "NOTIFY_FAILED", "source": "notify",
         "message": f"{shown} (target 1): not delivered: {reason}"}]
    ledger("verify")  # the errors row is sealed, with a run of its own
    assert f'ledger_errors_total{{severity="warning",stage="notify"}} 1.0' in metrics.read_text()


def test_a_watcher_skips_a_target_whose_last_delivery_still_hangs(registry, pusher, ns, receiver, tmp_path):
    """One thread per hanging target at most, however long the watcher lives."""
    pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "w.db")
    process = subprocess.Popen([sys.executable, "-m", "ledger", "watch", f"{registry.host}/{ns}/app:missing", "--db",
                                db, "-q", "--every", "1s", "--jitter", "0", "--notify", receiver.url("/hang"),
                                "--notify-on", "failed", "--notify-deadline", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # failed every time

    def messages():
        try:
            conn = sqlite3.connect(db, timeout=10)
            try:
                return [message for (message,) in conn.execute(
                    "SELECT message FROM errors WHERE stage = 'notify' ORDER BY id")]
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(messages()) < 2:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    shown = f"json://127.0.0.1:{receiver.port}/... (target 1)"
    assert messages()[:2] == [f"{shown}: not delivered: no answer within 1 s",
                              f"{shown}: not sent: the previous notification to it is still going"]
    sent = [message for message in messages() if "not delivered" in message]
    assert len(receiver.received) == len(sent)  # a skipped target was sent nothing
    conn = sqlite3.connect(db)
    statuses = dict(conn.execute("SELECT source, group_concat(DISTINCT status) FROM runs GROUP BY source"))
    assert statuses == {"registry": "failed", "notify": "ok"}  # as they were; deliveries' warnings apart


def test_a_secret_from_the_environment_reaches_the_receiver_and_nowhere_else(registry, pusher, ns, receiver,
                                                                             tmp_path):
    secret = "hook-S3CRET-value-never-stored"
    pusher.image(f"{ns}/app", "1", seed=ns)
    db = tmp_path / "ledger.db"
    env = {**os.environ, "LEDGER_TEST_HOOK_TOKEN": secret}
    ran = subprocess.run(
        [sys.executable, "-m", "ledger", "collect", f"{registry.host}/{ns}/app", "--db", str(db),
         "--notify", receiver.url("/ok?+X-Token=${LEDGER_TEST_HOOK_TOKEN}"),
         "--notify", receiver.url("/fail?-token=${LEDGER_TEST_HOOK_TOKEN}", prefix="hook:${LEDGER_TEST_HOOK_TOKEN}@")],
        capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 0, ran.stderr
    [ok] = [request for request in receiver.received if request["path"] == "/ok"]
    [failed] = [request for request in receiver.received if request["path"] == "/fail"]
    assert ok["headers"]["X-Token"] == secret
    assert failed["query"] == f"token={secret}" and failed["headers"]["Authorization"].startswith("Basic ")
    assert "not delivered: HTTP 500" in ran.stderr
    runs = subprocess.run([sys.executable, "-m", "ledger", "runs", "--errors", "--db", str(db)], capture_output=True,
                          text=True, timeout=60)
    assert "not delivered: HTTP 500" in runs.stdout
    written = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("ledger.db"))
    assert b"not delivered" in written
    for text in (ran.stdout, ran.stderr, runs.stdout, runs.stderr):
        assert secret not in text
    assert secret.encode() not in written


def test_a_failed_run_is_told_with_its_errors(ledger, receiver):
    down = f"127.0.0.1:{free_port()}"
    ledger.collect(f"{down}/team/app", "--retries", "0", "--notify", receiver.url(), expect=1)
    [message] = receiver.messages()
    errors = ledger.rows("SELECT message FROM errors")
    assert message["type"] == "failure"
    assert message["title"] == f"registry ledger: run 1 failed: {len(errors)} error{'s' * (len(errors) != 1)}"
    lines = message["message"].splitlines()
    assert len(lines) == len(errors) and all(line.startswith(f"error {down}") for line in lines)


def test_a_run_that_cannot_be_appended_is_still_told(ledger, receiver, tmp_path, registry):
    Path(ledger.path).write_bytes(b"not a ledger at all" * 100)
    result = ledger("collect", "-q", f"{registry.host}/nothing/here", "--notify", receiver.url(), "--notify",
                    receiver.url("/fail"), expect=1)
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: a run failed" and message["type"] == "failure"
    assert ledger.path in message["message"]
    assert f"warning: notify: json://127.0.0.1:{receiver.port}/... (target 2): not delivered: HTTP 500" in result.stderr
    assert Path(ledger.path).read_bytes() == b"not a ledger at all" * 100


def test_the_config_file_names_targets_and_kinds(registry, pusher, ledger, ns, receiver, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    config = tmp_path / "ledger.toml"
    config.write_text(f'notify = ["{receiver.url()}"]\nnotify_on = ["added", "failed"]\n'
                      f'[registries."{registry.host}"]\ntargets = ["{registry.host}/{ns}/app"]\n')
    ledger.collect("--config", str(config))
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 1 ok: 1 added"
    assert message["message"].startswith(f"added {registry.host}/{ns}/app:1 sha256:")


@pytest.mark.parametrize("args,config,message", [
    (["--notify", "json://127.0.0.1:9/x?t=${LEDGER_TEST_UNSET_VARIABLE}"], None,
     "--notify json://127.0.0.1:9/... (target 1): environment variable LEDGER_TEST_UNSET_VARIABLE is not set"),
    (["--notify", "nosuchservice://token-abc/x"], None,
     "--notify nosuchservice://... (target 1): not a URL apprise can send to"),
    (["--notify", "json://127.0.0.1:9/", "--notify-on", "moved,renamed"], None,
     "--notify-on: 'renamed' is not one of added, moved, rollback, updated, removed, new_images, partial, failed"),
    (["--notify-on", "moved"], None, "--notify-on and --notify-deadline need a --notify URL"),
    ([], '[registries."a.io"]\nnotify = ["json://127.0.0.1:9/"]\n',
     '[registries."a.io"]: notify belongs at the top level'),
    ([], 'notify_deadline = 60\n[registries."a.io"]\n', "top level: notify_deadline must be from 1 to 20 (not 60)"),
    ([], 'notify = ["json://127.0.0.1:9/"]\nnotify_on = ["moved", 3]\n[registries."a.io"]\n',
     "top level: notify_on must be a list of kinds"),
])
def test_bad_notify_settings_are_bad_usage_in_one_line(ledger, tmp_path, args, config, message):
    if config is not None:
        path = tmp_path / "c.toml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    result = ledger("collect", "127.0.0.1:9/app", *args, expect=2)
    assert message in result.stderr
    assert "Traceback" not in result.output and "token-abc" not in result.output


@pytest.mark.parametrize("url,expected", [
    ("jsons://hooks.example.com/ledger?+X-Token=abc", "jsons://hooks.example.com/..."),
    ("json://user:pass@127.0.0.1:8080/hook", "json://127.0.0.1:8080/..."),
    ("mailto://me:app-password@gmail.com", "mailto://gmail.com"),
    ("pbul://o.gn5kj6nfhv736I7jC3cj3QLRiyhgl98b", "pbul://..."),  # a token that looks like a host name
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#registry", "slack://..."),
    ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "discord://..."),
    ("tgram://123456789:AABx8iXjE5C-vG4SDhf6ARgdFgxYxhuHb4A/-123", "tgram://..."),
    ("json://secret.token.value/path", "json://secret.token.value/..."),  # json's host is its server
    ("not a url", "..."),
    ("${HOOK_URL}", "${HOOK_URL}"),
])
def test_a_target_is_shown_by_its_scheme_and_only_a_server_address(url, expected):
    from ledger.notify import shown
    assert shown(url) == expected


HOSTILE_WORDS = ("@everyone @here @channel @room <!channel> <!here> <@U024BE7LH> <@&123456> <#C0123> <at>boss</at> "
                 "[your password expired](http://evil.example/login) <http://evil.example|the docs> "
                 "<https://evil.example/raw>")
LIVE = re.compile(r"@(?:everyone|here|channel|room)|<[!@#a-z]|<https?:|\]\(")


def test_a_hostile_registrys_words_reach_the_receiver_as_words_never_mentions_or_links(ledger, receiver):
    """A registry's error message is told as it reads, with no live mention or link in it for Slack, Discord,
    Teams or Matrix to act on."""
    from sandbox import hostile
    server = hostile.good_registry()
    try:
        server.misbehave[("GET", "tags", "bad/app")] = hostile.answer(
            400, json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE_WORDS}]}).encode())
        ledger.collect(f"{server.host}/bad/app", "--retries", "0", "--notify", receiver.url(), "--notify-on",
                       "failed,partial", expect=1)
    finally:
        server.stop()
    [message] = receiver.messages()
    assert HOSTILE_WORDS in ledger.rows("SELECT message FROM errors")[0]["message"]  # the ledger keeps it as said
    told = message["title"] + "\n" + message["message"]
    assert "DENIED" in told and not LIVE.search(told), told
    readable = told.replace("\u200b", "")  # what people see: every word still there
    for word in ("@everyone", "@here", "!channel", "@&123456", "#C0123", "[your password expired]",
                 "(http://evil.example/login)", "http://evil.example|the docs"):
        assert word in readable, word
