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
    ("UPDATE coverage SET complete = 1, reason = NULL WHERE complete = 0", "coverage run_id=1"),
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
