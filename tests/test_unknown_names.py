"""Honest answers: a name that exists nowhere is never a quiet success. A collect target the registry does
not know (and the ledger never held) fails; a glob that matches nothing is an error unless --allow-empty; a
read of a name the ledger never held exits 1 with the closest name it holds."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from test_watch import runs, wait_for, watch


def test_a_typo_in_a_named_repository_fails_the_run_and_suggests_the_catalog_name(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/ap", expect=1)
    assert (f"error: {registry.host}/{ns}/ap: no such repository: the registry answers 404 NAME_UNKNOWN and the "
            f"ledger never held it; did you mean {registry.host}/{ns}/app") in result.output
    assert ledger.rows("SELECT status, tags_seen, errors FROM runs") == [{"status": "failed", "tags_seen": 0,
                                                                          "errors": 1}]
    assert ledger.rows("SELECT stage, repo, http_status, code FROM errors") == [
        {"stage": "tags", "repo": f"{ns}/ap", "http_status": 404, "code": "NAME_UNKNOWN"}]
    assert ledger.rows("SELECT complete FROM coverage") == [{"complete": 0}]  # it proves nothing


def test_a_typo_beside_a_good_target_makes_the_run_partial_and_the_tag_form_fails_too(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/app", f"{registry.host}/{ns}/aap:1", expect=3)
    assert f"{registry.host}/{ns}/aap: no such repository" in result.output
    assert f"did you mean {registry.host}/{ns}/app" in result.output
    assert ledger.rows("SELECT kind, repo, tag FROM events") == [{"kind": "added", "repo": f"{ns}/app", "tag": "1"}]
    assert ledger.rows("SELECT status FROM runs") == [{"status": "partial"}]


def test_a_typo_in_a_named_tag_fails_the_run_and_suggests_the_listed_tag(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "prod", seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/app:prdo", expect=1)
    assert (f"error: {registry.host}/{ns}/app:prdo: tag prdo is not in {ns}/app's tag list; did you mean "
            f"{registry.host}/{ns}/app:prod?") in result.output
    assert ledger.rows("SELECT status, errors FROM runs") == [{"status": "failed", "errors": 1}]
    assert ledger.rows("SELECT complete FROM coverage") == [{"complete": 0}]  # it proves nothing
    ledger.collect(f"{registry.host}/{ns}/app:prod")
    result = ledger("collect", f"{registry.host}/{ns}/app:prod", f"{registry.host}/{ns}/app:prdo", expect=3)
    assert ledger.rows("SELECT status FROM runs WHERE id = 3") == [{"status": "partial"}]


def test_a_name_with_nothing_close_in_the_catalog_suggests_nothing(registry, ledger, ns):
    result = ledger("collect", f"{registry.host}/{ns}/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", expect=1)
    assert "no such repository" in result.output and "did you mean" not in result.output


@pytest.mark.parametrize("answer", [(500, [("Content-Type", "text/plain")], b"down"),
                                    (200, [("Content-Type", "application/json")], b'{"repositories": [1, {"x": '),
                                    (200, [("Content-Type", "application/json")], b'{"repositories": ["../../x"]}')])
def test_a_catalog_that_cannot_suggest_leaves_the_missing_repository_its_own_error(pusher, proxy, ledger, ns, answer):
    pusher.image(f"{ns}/app", "1", seed=ns)
    proxy.alter_response = lambda method, path, *rest: answer if "/_catalog" in path else None
    result = ledger("collect", "--retries", "0", f"{proxy.host}/{ns}/ap", expect=1)
    assert f"error: {proxy.host}/{ns}/ap: no such repository" in result.output
    assert "did you mean" not in result.output and "../../x" not in result.output
    assert ledger.rows("SELECT code FROM errors") == [{"code": "NAME_UNKNOWN"}]
    assert proxy.counts["catalog"] == 1


def test_a_repository_the_ledger_held_that_is_gone_is_still_removed_not_an_error(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/gone", "1", seed=ns)
    pusher.image(f"{ns}/gone", "2", seed=ns + "2")
    ledger.collect(f"{registry.host}/{ns}/gone")
    shutil.rmtree(os.path.join(registry.root, "data", "docker", "registry", "v2", "repositories", ns, "gone"))
    result = ledger("collect", f"{registry.host}/{ns}/gone")
    assert "removed            2" in result.output and "error:" not in result.output
    assert ledger.rows("SELECT tag FROM removed_tags ORDER BY tag") == [{"tag": "1"}, {"tag": "2"}]
    assert ledger.rows("SELECT status, errors FROM runs WHERE id = 2") == [{"status": "ok", "errors": 0}]
    # Its tags all removed, the ledger still knows it: naming it again is no typo.
    ledger.collect(f"{registry.host}/{ns}/gone")
    assert ledger.rows("SELECT status FROM runs WHERE id = 3") == [{"status": "ok"}]


def test_a_glob_that_matches_nothing_is_an_error_naming_it(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/nomatch*", expect=1)
    assert f"error: {registry.host}: target {registry.host}/{ns}/nomatch* matches no repository" in result.output
    assert "--allow-empty if that is expected" in result.output
    assert ledger.rows("SELECT status FROM runs") == [{"status": "failed"}]
    assert ledger.rows("SELECT stage, code FROM errors") == [{"stage": "catalog", "code": "NO_MATCH"}]
    both = ledger("collect", f"{registry.host}/{ns}/nomatch*", f"{registry.host}/{ns}/a*", expect=3)
    assert "nomatch* matches no repository" in both.output
    assert ledger.rows("SELECT count(*) AS n FROM events") == [{"n": 1}]


def test_allow_empty_makes_an_empty_glob_ok(registry, ledger, ns, tmp_path):
    result = ledger("collect", "--allow-empty", f"{registry.host}/{ns}/nomatch*")
    assert "error:" not in result.output and "repos listed       0" in result.output
    config = tmp_path / "ledger.toml"
    config.write_text(f'[registries."{registry.host}"]\ntargets = ["{registry.host}/{ns}/nomatch*"]\n'
                      "allow_empty = true\n")
    ledger.collect("--config", str(config))
    assert ledger.rows("SELECT status FROM runs") == [{"status": "ok"}, {"status": "ok"}]
    config.write_text(f'[registries."{registry.host}"]\nallow_empty = "yes"\n')
    assert "allow_empty has the wrong type (str)" in ledger.collect("--config", str(config), expect=2).output


def test_a_glob_still_matches_a_repository_only_the_ledger_holds(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/gone", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/go*")
    shutil.rmtree(os.path.join(registry.root, "data", "docker", "registry", "v2", "repositories", ns, "gone"))
    ledger.collect(f"{registry.host}/{ns}/go*")  # the removal is proven, and the run is ok
    assert ledger.rows("SELECT tag, run_id FROM removed_tags") == [{"tag": "1", "run_id": 2}]


def test_watch_records_a_missing_repository_as_a_failed_target_every_run(registry, pusher, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    db = str(tmp_path / "w.db")
    process = watch(f"{registry.host}/{ns}/ap", db, "--every", "0.2s")
    try:
        assert wait_for(lambda: len(runs(db)) >= 2 and all(finished for _, finished in runs(db)[:2]))
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert {status for status, _ in runs(db)} == {"failed"}
    assert err.count(f"did you mean {registry.host}/{ns}/app") >= 2 and "Traceback" not in err


@pytest.fixture
def held(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "prod", seed=ns)
    pusher.image(f"{ns}/app", "1.0", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    return f"{registry.host}/{ns}/app"


@pytest.mark.parametrize("command", [["tags"], ["at", "now"], ["changes", "--since", "1 day ago"]])
def test_a_read_of_a_repository_the_ledger_never_held_exits_1_with_the_closest(ledger, held, command):
    result = ledger(*command, f"{held[:-1]}", expect=1)
    assert result.output == f"Error: {held[:-1]} is not in the ledger; did you mean {held}?\n"
    assert json.loads(ledger(*command, held[:-1], "--json", expect=1).stdout) == []
    assert ledger(*command, "*/nothing-*", expect=1).output == "Error: */nothing-* is not in the ledger\n"
    assert ledger(*command, held).output  # held: its answer, exit 0


def test_history_of_a_tag_the_ledger_never_held_suggests_its_tags_or_its_repository(ledger, held):
    result = ledger("history", f"{held}:prdo", expect=1)
    assert result.output == f"Error: {held}:prdo is not in the ledger; did you mean {held}:prod?\n"
    assert f"did you mean {held}:prod?" in ledger("history", f"{held[:-1]}:prod", expect=1).output
    assert f"did you mean {held}?" in ledger("history", f"{held[:-1]}:nosuchtag", expect=1).output
    # The registry left out reads as Docker Hub: the same repository on another registry is offered.
    repo = held.split("/", 1)[1]
    assert f"did you mean {held}:prod?" in ledger("history", f"{repo}:prod", expect=1).output


def test_an_empty_answer_for_a_name_the_ledger_holds_is_still_exit_0(registry, pusher, ledger, held, ns):
    assert "no changes" in ledger("changes", "--since", "2000-01-01", "--until", "2000-01-02", held).output
    assert "no tags at that time" in ledger("at", "2000-01-01", held).output
    assert "no events" in ledger("history", f"{held}:prod", "--source", "daemon:*").output


def test_a_read_without_a_ledger_says_how_to_make_one(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ledger", "tags", "--db", "typo.db"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("Error: no ledger at typo.db (make one with `ledger collect TARGET`, or name another "
                             "with --db PATH or LEDGER_DB)\n")
    assert list(tmp_path.iterdir()) == []
