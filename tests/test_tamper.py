"""An insider with write access to the file: every stored fact is covered, and nothing forged becomes an event."""

import sqlite3

import pytest

from test_verify import tamper


@pytest.fixture
def audited(registry, pusher, proxy, ledger, ns):
    """Two runs over a tag, an index with platforms, and a failing repo: every table has rows."""
    pusher.image(f"{ns}/app", "1", seed=ns)
    pusher.image(f"{ns}/broken", "1", seed=ns + "broken")
    pusher.index(f"{ns}/multi", "latest", [("amd64", None), ("arm64", "v8")], seed=ns)

    def broken(method, path, status, headers, body):
        if f"{ns}/broken/tags/list" in path:
            return 500, [("Content-Type", "application/json")], b'{"errors":[{"code":"UNKNOWN"}]}'
    proxy.alter_response = broken
    ledger.collect(f"{proxy.host}/{ns}/*", "--retries", "0", expect=3)
    pusher.image(f"{ns}/app", "1", seed=ns + "again")
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert ledger("verify").exit_code == 0
    return ledger


@pytest.mark.parametrize("statement,named", [
    ("UPDATE runs SET status = 'ok' WHERE id = 1", "runs id=1: changed after run 1 was sealed"),
    ("UPDATE runs SET targets = '[\"elsewhere\"]' WHERE id = 2", "runs id=2: changed"),
    ("UPDATE runs SET added = 0 WHERE id = 1", "runs id=1: changed"),
    ("UPDATE coverage_changes SET complete = 1, reason = NULL WHERE complete = 0",
     "coverage_changes run_id=1 source=registry registry="),
    ("DELETE FROM coverage_changes WHERE run_id = 2", "coverage_changes: a row of run 2 is missing"),
    ("INSERT INTO coverage_changes SELECT stream, source, registry, repo || '-forged', position, run_id, scope, "
     "complete, tags_listed, listed_at, reason FROM coverage_changes WHERE run_id = 2",
     "coverage_changes run_id=2 source=registry registry="),
    ("UPDATE coverage_runs SET position = 1 WHERE run_id = 2", "coverage_runs run_id=2: changed"),
    ("DELETE FROM coverage_runs WHERE run_id = 2", "coverage_runs: a row of run 2 is missing"),
    ("DROP TABLE coverage_changes", "coverage_changes: the table is gone"),
    ("UPDATE errors SET message = 'all fine' WHERE id = 1", "errors id=1: changed"),
    ("DELETE FROM errors", "errors: a row of run 1 is missing"),
    ("INSERT INTO errors (run_id, at, registry, stage, message) VALUES (2, 'x', 'r', 'tags', 'forged')",
     "errors id=2: added to run 2 after it was sealed"),
    ("UPDATE platforms SET architecture = 's390x' WHERE position = 0", "platforms index_digest="),
    ("UPDATE manifests SET first_run_id = 2 WHERE kind = 'index'", "manifests digest="),
    ("DELETE FROM run_seals WHERE id = 2", "run 2, which has no seal"),
    ("UPDATE run_seals SET rows = zeroblob(length(rows)) WHERE id = 1", "changed after run 1 was sealed"),
    ("CREATE TRIGGER sneaky AFTER INSERT ON manifests BEGIN SELECT 1; END", "schema: unknown trigger 'sneaky'"),
    ("CREATE VIEW my_view AS SELECT 1", "schema: unknown view 'my_view'"),
    ("CREATE TABLE extra (x)", "schema: unknown table 'extra'"),
])
def test_an_edit_to_any_table_is_named_by_verify(audited, statement, named):
    tamper(audited.path, statement)
    # tamper() drops every trigger, which verify reports too, but only once the data is checked
    result = audited("verify", expect=1)
    assert named in result.output, result.output


def test_dropped_triggers_alone_are_reported(audited):
    tamper(audited.path)
    assert "schema: trigger" in audited("verify", expect=1).output and "is missing" in audited("verify", expect=1).output


def test_a_run_row_deleted_with_its_seal_leaves_its_events_orphaned(audited):
    tamper(audited.path, "DELETE FROM run_seals WHERE run_id = 2", "DELETE FROM runs WHERE id = 2")
    assert "its run 2 is missing from runs" in audited("verify", expect=1).output


def test_manifest_bytes_that_do_not_hash_to_the_digest_are_named(audited):
    tamper(audited.path, "UPDATE manifests SET body = zeroblob(10) WHERE kind = 'image'")
    assert "its stored bytes do not hash to its digest" in audited("verify", expect=1).output


def test_a_forged_manifest_never_becomes_an_event(registry, pusher, ledger, ns):
    """The attack: forge the image ID and created of the digest a tag points to, then let the next run
    classify against it. The registry did not change, so no event may be appended."""
    digest, image, _ = pusher.image(f"{ns}/app", "prod", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    fake = "sha256:" + "f" * 64
    tamper(ledger.path, f"UPDATE manifests SET config_digest = '{fake}', created = '2001-01-01T00:00:00Z' "
                        f"WHERE digest = '{digest}'")
    ledger.collect(f"{registry.host}/{ns}/app")
    assert ledger.events() == [{"kind": "added", "repo": f"{ns}/app", "tag": "prod", "digest": digest,
                                "image": image}]
    result = ledger("verify", expect=1)
    assert f"manifests digest={digest}" in result.output and "was sealed" in result.output


def test_a_manifest_without_its_bytes_is_fetched_again_not_believed(registry, pusher, proxy, ledger, ns):
    """A row whose bytes are gone (a ledger from before they were kept, or an edit) is not classified from;
    the next run that meets the digest fetches it and fills the bytes in."""
    digest, image, _ = pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{proxy.host}/{ns}/app")
    conn = sqlite3.connect(ledger.path)
    conn.execute("DROP TRIGGER manifests_append_only_update")
    conn.execute("UPDATE manifests SET body = NULL, config_body = NULL")
    conn.commit()
    conn.close()
    proxy.reset()
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert proxy.counts["manifest"] == 1 and proxy.counts["config"] == 1
    assert ledger.rows("SELECT count(*) AS n FROM manifests WHERE body IS NOT NULL")[0]["n"] == 1
    assert [e["kind"] for e in ledger.events()] == ["added"]


def test_an_event_appended_by_hand_is_caught_even_with_its_hash_right(audited):
    """A forged event at the end, hash computed correctly and credited to a sealed run: no seal covers it."""
    from ledger import store

    last = audited.rows("SELECT * FROM events ORDER BY id DESC LIMIT 1")[0]
    key_id = audited.rows("SELECT key_id FROM event_log WHERE id = ?", [last["id"]])[0]["key_id"]
    new_id = last["id"] + 1
    forged = store.event_hash(last["hash"], store.encoding._canonical(
        new_id, last["run_id"], last["observed_at"], "moved", last["registry"], last["repo"], last["tag"],
        "sha256:" + "ab" * 32, None, None, None, None, None, last["source"]))
    tamper(audited.path, "INSERT INTO digests (id, digest) VALUES (999, x'" + "ab" * 32 + "')",
           f"INSERT INTO event_log (id, run_id, observed_at, kind, key_id, digest_id, hash) VALUES "
           f"({new_id}, {last['run_id']}, '{last['observed_at']}', 'moved', {key_id}, 999, x'{forged}')")
    assert f"event {new_id}: no run seal covers it" in audited("verify", expect=1).output


def test_an_edited_tag_state_never_becomes_a_false_event(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    tamper(ledger.path, "UPDATE tag_keys SET kind = 'removed'")
    ledger.collect(f"{registry.host}/{ns}/app")  # the registry did not change
    assert [e["kind"] for e in ledger.events()] == ["added"]


@pytest.mark.parametrize("statement,named", [
    ("INSERT INTO manifests (digest, media_type, kind) VALUES ('sha256:" + "c" * 64 + "', 'text/evil', 'legacy')",
     "belongs to no run"),
    ("INSERT INTO images (id) VALUES ('sha256:" + "d" * 64 + "')", "images sha256:"),
    ("INSERT INTO platforms (index_digest, position, digest) VALUES ('sha256:" + "e" * 64 + "', 0, 'x')",
     "platforms sha256:"),
    ("UPDATE manifests SET body = NULL, config_body = NULL WHERE kind = 'image'", "its bytes were removed"),
    ("INSERT INTO runs (started_at, status, source, targets, tool_version, added) "
     "VALUES ('2020-01-01T00:00:00.000000Z', 'running', 'x', '[]', '0', 42)", "a run still going that already has"),
    ("UPDATE run_seals SET counts = '[]' WHERE id = 1", "its counts are not what a seal writes"),
    ("UPDATE event_log SET hash = 'text' WHERE id = 1", "event 1: content does not match its hash"),
    ("UPDATE event_log SET created = x'00ff' WHERE id = 1", "event 1: a column holds a value of the wrong type"),
    ("UPDATE manifests SET body = 'not bytes' WHERE kind = 'index'", "manifests digest="),
    ("UPDATE tag_keys SET kind = 'removed' WHERE id = 1", "tag_keys does not match the events"),
])
def test_rows_no_seal_covers_and_values_of_the_wrong_type_are_named_not_a_traceback(audited, statement, named):
    tamper(audited.path, statement)
    result = audited("verify", expect=1)
    assert named in result.output and "Traceback" not in result.output, result.output


def test_a_forged_schema_version_is_refused_by_verify(audited):
    tamper(audited.path, "PRAGMA user_version = 5")
    assert "ledger schema version 5, not" in audited("verify", expect=1).output


def test_read_commands_show_an_edited_row_without_a_traceback(audited):
    tamper(audited.path, "UPDATE runs SET targets = '{notjson' WHERE id = 1")
    for args in (["runs"], ["runs", "--errors"], ["runs", "--json"]):
        result = audited(*args)
        assert "{notjson" in result.output


def test_a_writer_refuses_to_append_through_a_trigger_it_did_not_make(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    conn = sqlite3.connect(ledger.path)
    conn.execute("CREATE TRIGGER sneaky AFTER INSERT ON event_log BEGIN "
                 "INSERT INTO errors (run_id, at, registry, stage, message) VALUES (NEW.run_id, 'x', 'r', 's', 'm'); END")
    conn.commit()
    conn.close()
    result = ledger("collect", f"{registry.host}/{ns}/app", expect=1)
    assert "it has a trigger the ledger did not make (sneaky)" in result.output
    assert ledger.rows("SELECT count(*) AS n FROM runs")[0]["n"] == 1


def test_an_edited_digest_is_not_classified_against(registry, pusher, ledger, ns):
    """With a digest's stored bytes changed, the latest event no longer matches its hash: the next run
    refuses to append (it would record a false 'moved') and says so in one line."""
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    tamper(ledger.path, "UPDATE digests SET digest = 42 WHERE id = 1")
    result = ledger("collect", f"{registry.host}/{ns}/app", expect=1)
    assert "no longer matches its hash" in result.output and "Traceback" not in result.output
    assert [e["kind"] for e in ledger.rows("SELECT kind FROM event_log")] == ["added"]


def test_a_view_made_to_lie_is_put_back_before_an_append(registry, pusher, ledger, ns):
    from ledger import store

    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    conn = sqlite3.connect(ledger.path)
    conn.execute("DROP VIEW digest_names")
    conn.execute("CREATE VIEW digest_names AS SELECT id, 'sha256:' || hex(randomblob(32)) AS digest, "
                 "first_event_id FROM digests")
    conn.execute("UPDATE ledger_meta SET value = ? WHERE name = 'schema'", [store.database._fingerprint(conn)])
    conn.commit()
    conn.close()
    ledger.collect(f"{registry.host}/{ns}/app")
    assert [e["kind"] for e in ledger.events()] == ["added"]
    ledger("verify")


def test_a_sealed_run_set_back_to_running_is_one_line_not_a_traceback(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    tamper(ledger.path, "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = 1")
    from ledger.cli import cli

    result = ledger.runner.invoke(cli, ["collect", "-q", f"{registry.host}/{ns}/app", "--db", ledger.path],
                                  catch_exceptions=False)  # a traceback would raise here
    assert result.exit_code in (0, 1), result.output
    assert "runs id=1" in ledger("verify", expect=1).output
