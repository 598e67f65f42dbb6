"""Credentials, tokens and TLS against the real registry (htpasswd, token auth, TLS)."""

import base64
import os
import stat

import requests
from conftest import PASSWORD

from sandbox import Proxy
from sandbox.loopback import LoopbackServer


def basic_auth(user="alice", password=PASSWORD):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_config_json_auth_opens_an_htpasswd_registry(htpasswd_registry, pusher, ledger, ns, docker_config):
    digest, _, _ = pusher.image(f"{ns}/app", "1", seed=ns)
    docker_config({"auths": {f"http://{htpasswd_registry.host}": {"auth": basic_auth()}}})
    ledger.collect(f"{htpasswd_registry.host}/{ns}/app")
    assert ledger.rows("SELECT tag, digest FROM current_tags") == [{"tag": "1", "digest": digest}]


def test_a_wrong_password_is_a_clear_error_and_appends_nothing(htpasswd_registry, token_registry, pusher, ledger, ns,
                                                                docker_config, tokens):
    pusher.image(f"{ns}/app", "1", seed=ns)
    config = docker_config({"auths": {htpasswd_registry.host: {"auth": basic_auth(password="not-it-77")},
                                      token_registry.host: {"username": "alice", "password": "not-it-77"}}})
    for host in (htpasswd_registry.host, token_registry.host):
        result = ledger("collect", f"{host}/{ns}/app", expect=1)
        assert f"error: {host}: " in result.output and "refused" in result.output
        assert str(config) in result.output  # names where the credentials came from
        assert "not-it-77" not in result.output
    assert ledger.events() == []
    assert [r["status"] for r in ledger.rows("SELECT status FROM runs")] == ["failed", "failed"]
    assert {r["code"] for r in ledger.rows("SELECT code FROM errors")} == {"UNAUTHORIZED"}


def test_no_credentials_for_a_private_registry_says_so(htpasswd_registry, pusher, ledger, ns, docker_config):
    pusher.image(f"{ns}/app", "1", seed=ns)
    docker_config({"auths": {}})
    result = ledger("collect", f"{htpasswd_registry.host}/{ns}/app", expect=1)
    assert "authentication required: no credentials found for this registry" in result.output


def helper(tmp_path, monkeypatch, name, script):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    program = bindir / f"docker-credential-{name}"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_a_credential_helper_supplies_the_password(htpasswd_registry, pusher, ledger, ns, docker_config, tmp_path,
                                                   monkeypatch):
    pusher.image(f"{ns}/app", "1", seed=ns)
    helper(tmp_path, monkeypatch, "ledgertest", f"""read server
[ "$1" = get ] || exit 2
[ "$server" = "{htpasswd_registry.host}" ] || {{ echo "credentials not found" >&2; exit 1; }}
echo '{{"ServerURL": "'$server'", "Username": "alice", "Secret": "{PASSWORD}"}}'
""")
    docker_config({"credHelpers": {htpasswd_registry.host: "ledgertest"}, "auths": {}})
    ledger.collect(f"{htpasswd_registry.host}/{ns}/app")
    docker_config({"credsStore": "ledgertest"})
    ledger.collect(f"{htpasswd_registry.host}/{ns}/app")
    assert [r["status"] for r in ledger.rows("SELECT status FROM runs")] == ["ok", "ok"]


def test_a_missing_credential_helper_is_one_clear_line(htpasswd_registry, ledger, docker_config):
    docker_config({"credsStore": "nosuchhelper"})
    result = ledger("collect", f"{htpasswd_registry.host}/x", expect=1)
    assert result.output.strip() == (f"Error: credential helper docker-credential-nosuchhelper (for "
                                      f"{htpasswd_registry.host}) is not on PATH")


def test_token_auth_asks_for_catalog_and_pull_scopes_with_basic_credentials(token_registry, pusher, ledger, ns,
                                                                            docker_config, tokens):
    pusher.image(f"{ns}/app", "1", seed=ns)
    docker_config({"auths": {token_registry.host: {"auth": basic_auth()}}})
    ledger.collect(f"{token_registry.host}/{ns}/*")
    scopes = [tuple(r["scopes"]) for r in tokens.requests]
    assert ("registry:catalog:*",) in scopes and (f"repository:{ns}/app:pull",) in scopes
    assert all(r["user"] == "alice" for r in tokens.requests)
    assert ledger.rows("SELECT repo FROM current_tags") == [{"repo": f"{ns}/app"}]
    assert ledger.rows("SELECT requests FROM runs")[0]["requests"].count('"token"') == 1


def test_anonymous_pull_tokens_work_for_a_public_repository(token_registry, pusher, ledger, ns, docker_config, tokens):
    pusher.image(f"{ns}/public", "1", seed=ns)
    docker_config({"auths": {}})
    tokens.public = {f"{ns}/public"}
    ledger.collect(f"{token_registry.host}/{ns}/public")
    assert ledger.rows("SELECT tag FROM current_tags") == [{"tag": "1"}]
    assert tokens.requests and all(r["authorization"] is None for r in tokens.requests)


def test_an_anonymous_catalog_is_refused_with_advice(token_registry, ledger, docker_config, tokens):
    docker_config({"auths": {}})
    result = ledger("collect", token_registry.host, expect=1)
    assert "name repositories instead, e.g." in result.output


def test_identity_and_registry_tokens_from_the_docker_config(token_registry, pusher, ledger, ns, docker_config,
                                                             tokens):
    pusher.image(f"{ns}/app", "1", seed=ns)
    docker_config({"auths": {token_registry.host: {"identitytoken": "refresh-token-never-stored"}}})
    ledger.collect(f"{token_registry.host}/{ns}/app")
    assert any(r["path"] == "/token" and r["user"] == "alice" for r in tokens.requests)  # the OAuth2 POST
    access = [{"type": "repository", "name": f"{ns}/app", "actions": ["pull"]}]
    docker_config({"auths": {token_registry.host: {"registrytoken": tokens.sign("alice", access)}}})
    tokens.requests.clear()
    ledger.collect(f"{token_registry.host}/{ns}/app")
    assert tokens.requests == []  # a registry token is sent as it is


def test_a_short_lived_token_is_renewed_mid_run(token_registry, pusher, ledger, ns, docker_config, tokens):
    for n in range(8):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns)
    tokens.expires_in = 1
    with Proxy(token_registry.host, latency=0.25) as slow:
        docker_config({"auths": {slow.host: {"auth": basic_auth()}}})
        ledger.collect(f"{slow.host}/{ns}/app", "--concurrency", "2")
    renewals = [r for r in tokens.requests if r["scopes"] == [f"repository:{ns}/app:pull"]]
    assert len(renewals) >= 2
    assert ledger.rows("SELECT count(*) AS n FROM current_tags")[0]["n"] == 8


def test_tls_with_an_untrusted_certificate_is_refused_and_with_its_ca_works(tls_registry, pusher, ledger, ns, tls,
                                                                            auth_dir):
    from authserver import make_tls

    pusher.image(f"{ns}/app", "1", seed=ns)
    other = auth_dir / "other"
    other.mkdir(exist_ok=True)
    wrong_ca, _, _ = make_tls(other)
    result = ledger("collect", f"{tls_registry.host}/{ns}/app", "--ca-file", wrong_ca, expect=1)
    assert f"{tls_registry.host}: TLS error talking to https://{tls_registry.host}" in result.output
    assert "certificate verify failed" in result.output
    assert ledger.events() == []
    ledger.collect(f"{tls_registry.host}/{ns}/app", "--ca-file", tls[0])
    ledger.collect(f"{tls_registry.host}/{ns}/app", "--insecure")
    assert [r["status"] for r in ledger.rows("SELECT status FROM runs")] == ["failed", "ok", "ok"]


class BlobStore:
    """Another loopback origin that serves blobs (as S3 would) and records the headers it gets."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.headers = []
        self.server = LoopbackServer({"GET": self._get}).start()
        self.url = self.server.url

    def _get(self, request):
        self.headers.append(dict(request.headers))
        request.send(200, requests.get(f"{self.upstream}{request.path}", auth=("alice", PASSWORD)).content)


def test_a_blob_redirect_to_another_host_never_carries_authorization(htpasswd_registry, pusher, ledger, ns,
                                                                     docker_config):
    pusher.image(f"{ns}/app", "1", seed=ns)
    blobs = BlobStore(htpasswd_registry.url)
    seen_auth = []
    with Proxy(htpasswd_registry.host) as proxy:
        docker_config({"auths": {proxy.host: {"auth": basic_auth()}}})
        def record(method, path, headers):
            seen_auth.append(headers.get("Authorization"))

        def redirect(method, path, status, headers, body):
            if "/blobs/" in path:
                return 307, [("Location", f"{blobs.url}{path}"), ("Content-Type", "text/plain")], b""
        proxy.alter_request = record
        proxy.alter_response = redirect
        ledger.collect(f"{proxy.host}/{ns}/app")
    assert len(blobs.headers) == 1 and "Authorization" not in blobs.headers[0]
    # the registry got nothing before it challenged, and credentials on every request after
    assert seen_auth[0] is None and all(seen_auth[1:])
    assert ledger.rows("SELECT image FROM current_tags")[0]["image"].startswith("sha256:")
    blobs.server.stop()


def test_no_password_or_token_is_ever_written_or_printed(htpasswd_registry, token_registry, pusher, ledger, ns,
                                                         docker_config, tokens, tmp_path, monkeypatch):
    pusher.image(f"{ns}/app", "1", seed=ns)
    docker_config({"auths": {htpasswd_registry.host: {"auth": basic_auth()},
                             token_registry.host: {"auth": basic_auth()}}})
    outputs = [ledger("collect", f"{htpasswd_registry.host}/{ns}/app").output,
               ledger("collect", f"{token_registry.host}/{ns}/*").output]
    docker_config({"auths": {htpasswd_registry.host: {"auth": basic_auth(password=PASSWORD + "x")}}})
    outputs.append(ledger("collect", f"{htpasswd_registry.host}/{ns}/app", expect=1).output)
    monkeypatch.setenv("LEDGER_PASSWORD", PASSWORD)
    outputs.append(ledger("collect", f"{token_registry.host}/{ns}/app", "--username", "alice").output)
    outputs.append(ledger.runner.invoke(__import__("ledger.cli").cli.cli, ["collect", "--help"]).output)
    secrets = [PASSWORD, basic_auth(), *tokens.issued]
    assert tokens.issued
    stored = b"".join(open(ledger.path + suffix, "rb").read() for suffix in ("", "-wal")
                      if os.path.exists(ledger.path + suffix))
    for secret in secrets:
        assert secret.encode() not in stored
        assert all(secret not in output for output in outputs)
    assert ledger.rows("SELECT count(*) AS n FROM runs")[0]["n"] == 4
