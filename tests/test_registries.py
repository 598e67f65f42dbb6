"""Registries that are not distribution (issue 13, point 5): tags past distribution's grammar, filters
before name checks, permission denied on one repository, a catalog only a login may list, a named tag
that does not exist."""

import json

import pytest
from conftest import PASSWORD
from test_auth import basic_auth

from sandbox.hostile import HostileRegistry
from ledger.references import TAG_RE, TargetError, parse_target, storable_repo, storable_tag

LONG = "v" + "1" * 149  # 150 characters: Pulp serves it, distribution's grammar stops at 128
PAST_GRAMMAR = ["-lead", ".dot", LONG, "a+b=c", "~x"]
UNSAFE = ["bad tag", "tab\there", "esc\x1b[2J", "a:b", "..", "x" * 256, "caf\u00e9", "50%"]


@pytest.fixture
def pulp():
    """A loopback registry that serves what distribution refuses: app:1 and tags past its grammar."""
    with HostileRegistry() as running:
        running.add_image("team/app", "1", seed="one")
        yield running


def errors(ledger):
    return ledger.rows("SELECT stage, repo, tag, code, message FROM errors ORDER BY id")


def test_storable_names_are_what_a_url_path_and_a_terminal_can_carry():
    for tag in PAST_GRAMMAR:
        assert storable_tag(tag) and not TAG_RE.match(tag)
    assert storable_tag("x" * 255) and storable_tag("...")
    for tag in [*UNSAFE, "", ".", "a/b", "a?b", "a#b", "a@b", "a;b", "a\\b", "ok\n", "\ud800"]:
        assert not storable_tag(tag), tag
    assert storable_repo("Team/-x/App") and not storable_repo("a//b") and not storable_repo("a/../b")
    assert not storable_repo("/".join(["abcdefgh"] * 30))  # 269 characters


@pytest.mark.parametrize("tag", ["-lead", ".dot", LONG, "a+b=c"])
def test_a_target_may_name_a_tag_past_the_grammar(tag):
    assert parse_target(f"127.0.0.1:5000/app:{tag}").tag == tag


@pytest.mark.parametrize("tag", ["v*", "a[1]", "a;b", "x" * 256, "caf\u00e9"])
def test_a_target_with_an_unsafe_or_glob_tag_is_refused(tag):
    with pytest.raises(TargetError, match="invalid tag"):
        parse_target(f"127.0.0.1:5000/app:{tag}")


def test_filters_apply_before_names_are_checked(pulp, ledger):
    for tag in [*PAST_GRAMMAR, *UNSAFE]:
        pulp.add_image("team/app", tag, seed="odd")
    ledger.collect(f"{pulp.host}/team/app", "--include-tags", "^[0-9]+$")
    ledger.collect(f"{pulp.host}/team/app", "--exclude-tags", "[^0-9]")
    ledger.collect(f"{pulp.host}/team/app:1")
    assert errors(ledger) == []
    assert [r["status"] for r in ledger.rows("SELECT status FROM runs")] == ["ok", "ok", "ok"]
    assert ledger.rows("SELECT tag FROM current_tags") == [{"tag": "1"}]


def test_tags_past_the_grammar_are_recorded_and_unsafe_ones_are_warnings(pulp, ledger):
    digests = {tag: pulp.add_image("team/app", tag, seed=tag)[0] for tag in PAST_GRAMMAR}
    digests["1"] = pulp.repos["team/app"]["1"]
    for tag in UNSAFE:
        pulp.add_image("team/app", tag, seed="unsafe")
    result = ledger("collect", f"{pulp.host}/team/app")
    assert "run 1: ok" in result.output and "cannot be stored safely" in result.output
    assert {r["tag"]: r["digest"] for r in ledger.rows("SELECT tag, digest FROM current_tags")} == digests
    assert {(e["stage"], e["code"]) for e in errors(ledger)} == {("tags", "NAME_WARNING")}
    assert ledger.rows("SELECT count FROM errors") == [{"count": len(UNSAFE)}]  # one row for them all
    asked = [r.path for r in pulp.requests if r.method == "GET"]  # cold: each tag resolved with one GET
    assert "/v2/team/app/manifests/a%2Bb%3Dc" in asked and "/v2/team/app/manifests/-lead" in asked

    del pulp.repos["team/app"]["-lead"]
    ledger.collect(f"{pulp.host}/team/app")
    assert ledger.rows("SELECT kind, tag FROM events WHERE run_id = 2") == [{"kind": "removed", "tag": "-lead"}]
    assert [line.split()[2] for line in ledger("history", f"{pulp.host}/team/app:-lead").output.splitlines()[2:]] == [
        "added", "removed"]
    ledger.collect(f"{pulp.host}/team/app:.dot")
    assert ledger("verify").exit_code == 0


def test_warnings_about_names_are_bounded_per_listing(pulp, ledger):
    for n in range(30):
        pulp.add_image("team/app", f"bad tag {n:02d}", seed="unsafe")
    ledger.collect(f"{pulp.host}/team/app")
    [row] = ledger.rows("SELECT message, count FROM errors")
    assert row["count"] == 30 and row["message"].endswith("'bad tag 04' and 25 more like these")


def test_catalog_names_past_the_grammar_are_recorded_and_unsafe_ones_are_warnings(pulp, ledger):
    pulp.add_image("Team/App", "1", seed="upper")
    pulp.add_image("team/-odd", "1", seed="odd")
    pulp.add_image("team/bad repo", "1", seed="unsafe")
    pulp.add_image("other/bad repo", "1", seed="unsafe")
    result = ledger("collect", f"{pulp.host}/team/*")
    assert ledger.rows("SELECT repo FROM current_tags ORDER BY repo") == [
        {"repo": "team/-odd"}, {"repo": "team/app"}]
    assert "team/bad repo" in result.output and "other/bad repo" not in result.output
    ledger.collect(pulp.host)
    assert ledger.rows("SELECT repo FROM current_tags WHERE repo = 'Team/App'") == [{"repo": "Team/App"}]
    assert {(e["stage"], e["code"]) for e in errors(ledger)} == {("catalog", "NAME_WARNING")}
    assert [r["status"] for r in ledger.rows("SELECT status FROM runs")] == ["ok", "ok"]


@pytest.fixture
def refusing(tokens, monkeypatch):
    """The token server refuses `denied` repositories to alice: granting the rest of a request (as Harbor
    and distribution's own token servers do) or, with `deny_request`, answering 401."""
    original = tokens._answer
    settings = {"denied": set(), "deny_request": False}

    def answer(handler, query, user, oauth=False):
        scopes = list(query.get("scope", []))
        kept = [s for s in scopes if s.split(":")[1] not in settings["denied"]]
        if kept != scopes and settings["deny_request"]:
            return tokens._deny(handler)
        return original(handler, {**query, "scope": kept}, user, oauth)
    monkeypatch.setattr(tokens, "_answer", answer)
    return settings


@pytest.mark.parametrize("deny_request,said", [(False, "(insufficient_scope)"), (True, "answered HTTP 401)")])
def test_a_repository_the_login_may_not_pull_is_not_a_refused_login(token_registry, pusher, ledger, ns,
                                                                     docker_config, refusing, deny_request, said):
    pusher.image(f"{ns}/open", "1", seed=ns)
    pusher.image(f"{ns}/secret", "1", seed=ns + "s")
    refusing.update(denied={f"{ns}/secret"}, deny_request=deny_request)
    docker_config({"auths": {token_registry.host: {"auth": basic_auth()}}})
    result = ledger("collect", f"{token_registry.host}/{ns}/*", expect=3)
    assert f"{ns}/secret: tags: not permitted to pull {ns}/secret " in result.output and said in result.output
    assert "refused" not in result.output
    assert ledger.rows("SELECT repo FROM current_tags") == [{"repo": f"{ns}/open"}]
    assert ledger.rows("SELECT stage, repo, http_status FROM errors") == [
        {"stage": "tags", "repo": f"{ns}/secret", "http_status": 401}]


def test_an_anonymous_pull_of_a_private_repository_says_credentials_are_missing(token_registry, pusher, ledger, ns,
                                                                                docker_config, tokens):
    pusher.image(f"{ns}/public", "1", seed=ns)
    pusher.image(f"{ns}/private", "1", seed=ns + "p")
    tokens.public = {f"{ns}/public"}
    docker_config({"auths": {}})
    result = ledger("collect", f"{token_registry.host}/{ns}/public", f"{token_registry.host}/{ns}/private", expect=3)
    assert (f"{ns}/private: tags: not permitted to pull {ns}/private (insufficient_scope); no credentials were "
            "found for this registry (docker login, or --username/--password-stdin)") in result.output


def test_a_403_denied_on_one_repository_names_what_the_registry_said(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/open", "1", seed=ns)
    pusher.image(f"{ns}/locked", "1", seed=ns + "l")

    def deny(method, path, status, headers, body):
        if path.startswith(f"/v2/{ns}/locked/"):
            return 403, [("Content-Type", "application/json")], json.dumps({"errors": [
                {"code": "DENIED", "message": "requested access to the resource is denied"}]}).encode()
    proxy.alter_response = deny
    result = ledger("collect", f"{proxy.host}/{ns}/*", expect=3)
    assert (f"{ns}/locked: tags: not permitted to pull {ns}/locked (DENIED: requested access to the resource is "
            "denied)") in result.output
    assert ledger.rows("SELECT code, http_status FROM errors") == [{"code": "DENIED", "http_status": 403}]


def test_an_anonymous_catalog_that_needs_a_login_says_so(token_registry, ledger, docker_config, tokens,
                                                         monkeypatch):
    docker_config({"auths": {}})
    result = ledger("collect", token_registry.host, expect=1)
    assert (f"{token_registry.host}: catalog: this registry lists its repositories only to a logged-in user: give "
            "credentials (docker login, or --username/--password-stdin), or name repositories instead, e.g. "
            f"{token_registry.host}/OWNER/REPO") in result.output
    monkeypatch.setitem(tokens.users, "bob", PASSWORD)  # bob may pull, but not list the catalog
    config = docker_config({"auths": {token_registry.host: {"auth": basic_auth("bob")}}})
    result = ledger("collect", token_registry.host, expect=1)
    assert (f"catalog: the credentials from {config} ({token_registry.host}) may not list the catalog "
            "(insufficient_scope); name "
            f"repositories instead, e.g. {token_registry.host}/OWNER/REPO") in result.output


def test_a_named_tag_that_does_not_exist_is_an_error_and_a_failed_target(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/app:nosuchtag", f"{registry.host}/{ns}/gone:1", expect=1)
    assert f"{ns}/app:nosuchtag: tag nosuchtag is not in {ns}/app's tag list" in result.output
    assert ledger.rows("SELECT repo, tag, stage, code FROM errors ORDER BY repo") == [
        {"repo": f"{ns}/app", "tag": "nosuchtag", "stage": "tags", "code": "TAG_UNKNOWN"},
        {"repo": f"{ns}/gone", "tag": None, "stage": "tags", "code": "NAME_UNKNOWN"}]  # no such repository
    assert f"{ns}/gone: no such repository" in result.output
    assert ledger.rows("SELECT status FROM runs") == [{"status": "failed"}]  # neither target was read


def test_a_named_tag_that_is_gone_is_removed_and_an_error(registry, pusher, ledger, ns):
    digest, _, _ = pusher.image(f"{ns}/app", "old", seed=ns)
    pusher.image(f"{ns}/app", "kept", seed=ns + "k")
    ledger.collect(f"{registry.host}/{ns}/app:old")
    pusher.delete(f"{ns}/app", digest)
    ledger.collect(f"{registry.host}/{ns}/app:old", expect=3)
    assert ledger.rows("SELECT kind, tag, run_id FROM events") == [
        {"kind": "added", "tag": "old", "run_id": 1}, {"kind": "removed", "tag": "old", "run_id": 2}]
    assert ledger.rows("SELECT code FROM errors") == [{"code": "TAG_UNKNOWN"}]


def test_a_listed_tag_whose_head_is_404_is_tag_unknown(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)

    def ghost(method, path, status, headers, body):
        if "/tags/list" in path:
            return status, headers, json.dumps({"name": f"{ns}/app", "tags": ["1", "ghost"]}).encode()
    proxy.alter_response = ghost
    result = ledger("collect", f"{proxy.host}/{ns}/app:ghost", expect=3)
    assert f"tag ghost is in {ns}/app's tag list, but its manifest is unknown (HTTP 404)" in result.output
    assert ledger.rows("SELECT stage, code, http_status FROM errors") == [  # a tag new to the ledger: a GET
        {"stage": "manifest", "code": "TAG_UNKNOWN", "http_status": 404}]
