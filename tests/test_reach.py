"""Reaching a registry: what --plain-http, --insecure and --ca-file mean, against the real registry over
plain HTTP and over TLS with a private CA, and what each failure to reach one says."""

import json
import re
import subprocess
import sys

import pytest

from ledger.auth import Authenticator, AuthError, Credentials
from ledger.transport import Transport
from sandbox import Proxy, free_port
from test_cli import run_on_a_terminal

CREDS = Credentials(username="me", password="pw", source="test")


def test_insecure_on_a_plain_http_registry_falls_back_to_http_like_docker(registry, pusher, ledger, ns):
    """`docker run registry:2` is plain HTTP: --insecure tries HTTPS, and falls back (it used to fail with
    'TLS error (WRONG_VERSION_NUMBER)')."""
    pusher.image(f"{ns}/app", "1", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app", "--insecure")
    assert [(e["kind"], e["tag"]) for e in ledger.events()] == [("added", "1")]


def test_insecure_on_a_tls_registry_skips_the_certificate_check(tls_registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    result = ledger("collect", f"{tls_registry.host}/{ns}/app", "--insecure")
    assert f"warning: TLS certificates are not verified for {tls_registry.host}" in result.output
    assert [(e["kind"], e["tag"]) for e in ledger.events()] == [("added", "1")]


def test_a_private_ca_says_self_signed_and_names_ca_file(tls_registry, pusher, ledger, ns, tls):
    pusher.image(f"{ns}/app", "1", seed=ns)
    refused = ledger("collect", "--quiet", f"{tls_registry.host}/{ns}/app", "--ca-file", "/etc/ssl/certs/ca-certificates.crt",
                     expect=1).output
    assert f"TLS error talking to https://{tls_registry.host}" in refused
    assert "not signed by the CA in --ca-file /etc/ssl/certs/ca-certificates.crt (self-signed, or a private CA)" in refused
    assert "give its CA with --ca-file PEM" in refused
    ledger.collect(f"{tls_registry.host}/{ns}/app", "--ca-file", tls[0])
    assert [(e["kind"], e["tag"]) for e in ledger.events()] == [("added", "1")]


def test_tls_spoken_to_a_plain_http_registry_says_it_answered_in_plain_http(registry, ledger, ns, tls):
    output = ledger("collect", "--quiet", f"{registry.host}/{ns}/app", "--ca-file", tls[0], expect=1).output
    assert f"TLS error talking to https://{registry.host}" in output
    assert "it answered in plain HTTP, so it does not speak TLS there: drop --ca-file" in output


def test_plain_http_spoken_to_a_tls_registry_says_it_looks_like_tls(tls_registry, ledger, ns):
    output = ledger("collect", "--quiet", f"{tls_registry.host}/{ns}/app", expect=1).output
    assert (f"ping: HTTP 400 from http://{tls_registry.host}/v2/: this looks like a TLS (HTTPS) port spoken to in "
            "plain HTTP; give --ca-file PEM") in output
    assert "is this a registry?" not in output
    output = ledger("collect", "--quiet", f"{tls_registry.host}/{ns}/app", "--plain-http", expect=1).output
    assert "this looks like a TLS (HTTPS) port spoken to in plain HTTP; drop --plain-http" in output


def test_a_refused_connection_says_so_with_the_address(ledger):
    port = free_port()
    output = ledger("collect", "--quiet", f"127.0.0.1:{port}/team/app", expect=1).output
    assert f"cannot connect to http://127.0.0.1:{port}: connection refused (nothing listens at 127.0.0.1:{port})" \
        in output
    output = ledger("collect", "--quiet", f"127.0.0.1:{port}/team/app", "--insecure", expect=1).output
    assert re.search(rf"connection refused \(nothing listens at 127.0.0.1:{port}\) \(after HTTPS failed: cannot "
                     rf"connect to https://127.0.0.1:{port}: connection refused", output), output


@pytest.mark.parametrize("registry,plain_http,credentials,refused", [
    ("registry.example", False, CREDS, True),  # --insecure fell back to HTTP on another machine
    ("registry.example", True, CREDS, False),  # the user said --plain-http
    ("127.0.0.1:5000", False, CREDS, False),  # loopback, as Docker
    ("registry.example", False, Credentials(), False),  # nothing to leak: an anonymous token
])
def test_credentials_never_go_in_clear_text_after_a_fallback(registry, plain_http, credentials, refused):
    auth = Authenticator(registry, credentials, Transport(), registry_scheme="http", plain_http=plain_http)
    auth.learn('Basic realm="r"')
    if not refused:
        assert auth.header(()) == credentials.basic()
        return
    with pytest.raises(AuthError, match="not sent in clear text to another machine; give --plain-http") as caught:
        auth.header(())
    assert caught.value.code == "PLAIN_HTTP_REFUSED"
    assert "pw" not in str(caught.value)


def test_verbose_prints_each_request_and_never_a_credential_or_token(token_registry, pusher, ledger, ns,
                                                                    docker_config, tokens):
    from conftest import PASSWORD
    from test_auth import basic_auth

    pusher.image(f"{ns}/app", "1", seed=ns)
    docker_config({"auths": {token_registry.host: {"auth": basic_auth()}}})
    output = ledger("collect", "-v", f"{token_registry.host}/{ns}/app").output
    lines = [line for line in output.splitlines() if re.match(r"(GET|HEAD|POST) ", line)]
    assert re.fullmatch(rf"GET http://{token_registry.host}/v2/ 401 \d+ms", lines[0]), lines
    assert any(re.fullmatch(r"GET http://127\.0\.0\.1:\d+/\S+\?\.\.\. 200 \d+ms", line) for line in lines), lines
    assert any(re.fullmatch(rf"GET http://{token_registry.host}/v2/{ns}/app/manifests/1 200 \d+ms", line)
               for line in lines), lines  # a tag new to the ledger: resolved with one GET
    assert len(lines) == sum(json.loads(ledger.rows("SELECT requests FROM runs")[0]["requests"]).values())
    assert tokens.issued
    for secret in (PASSWORD, basic_auth(), "Bearer", "Authorization", "account=", "scope=", *tokens.issued):
        assert secret not in output


def test_verbose_names_the_https_attempt_a_fallback_began_with(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    output = ledger("collect", "-v", "--insecure", f"{registry.host}/{ns}/app").output
    assert re.search(rf"^GET https://{registry.host}/v2/ failed \(TLS error \(WRONG_VERSION_NUMBER\)\) \d+ms\n"
                     rf"GET http://{registry.host}/v2/ 200 \d+ms$", output, re.M), output


@pytest.mark.slow
def test_the_progress_bar_counts_tags_with_a_rate_and_a_countdown_on_a_terminal_only(registry, pusher, ns,
                                                                                       tmp_path):
    for n in range(12):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns + str(n))
    with Proxy(registry.host, latency=0.05) as slow:
        args = ["collect", f"{slow.host}/{ns}/app", "--db", str(tmp_path / "l.db"), "--concurrency", "1"]
        code, stdout, shown = run_on_a_terminal(args, tmp_path)
        assert code == 0
        frames = [frame.rstrip("\r\n") for frame in re.split(r"\r\x1b\[K", shown) if frame.startswith("collecting")]
        assert frames, repr(shown)
        assert not any("0/0" in frame for frame in frames)
        counted = [re.fullmatch(r"collecting (\d+)/12 tags  \d+ req/s  ETA (\d+):(\d\d)", frame) for frame in frames]
        counted = [match for match in counted if match]
        assert counted, frames
        done = [int(match.group(1)) for match in counted]
        assert done == sorted(done) and done[0] < 12, frames
        left = [int(match.group(2)) * 60 + int(match.group(3)) for match in counted]
        assert left[-1] < left[0], frames  # a countdown
        assert shown.endswith("\r\n") and "run 1: ok" in stdout  # the bar's last count stays, on its own line
        piped = subprocess.run([sys.executable, "-m", "ledger", *args], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0
    assert "collecting" not in piped.stderr and "\x1b" not in piped.stderr


def test_dry_run_prints_the_plan_and_sends_nothing(ledger, tmp_path, docker_config, tls):
    """The registry named here does not exist: a request would fail the run; the ledger is never made."""
    port = free_port()
    docker_config({"auths": {f"127.0.0.1:{port}": {"auth": "YWxpY2U6c2VjcmV0LXB3"}}})  # alice:secret-pw
    config = tmp_path / "ledger.toml"
    config.write_text(f'concurrency = 3\n[registries."ghcr.io"]\ntargets = ["ghcr.io/acme/app"]\n'
                      f'ca_file = "{tls[0]}"\ninclude_tags = \'^v\\d\'\ncredentials = "none"\n'
                      '[registries."evil.example"]\ntargets = ["evil.example/x\\u001b[2J"]\n')
    result = ledger("collect", "--dry-run", "--config", str(config), f"127.0.0.1:{port}/team/*")
    assert result.output.splitlines()[0] == f"ledger: {ledger.path}"
    assert f"registry 127.0.0.1:{port}\n  reach      plain HTTP (a loopback registry, as Docker)\n" in result.output
    assert f"  auth       {tmp_path}/docker/config.json (127.0.0.1:{port})\n" in result.output
    assert f"  targets    127.0.0.1:{port}/team/*\n" in result.output
    assert (f"registry ghcr.io\n  reach      HTTPS, certificate checked against {tls[0]} (--ca-file)\n"
            "  auth       anonymous: no credentials\n  targets    ghcr.io/acme/app\n"
            "  tags       include '^v\\d'; at most 100000 per repository\n"
            "  limits     concurrency 3, no rate limit, 4 retries, deadline 300s\n") in result.output
    assert "evil.example/x\\x1b[2J" in result.output and "\x1b" not in result.output
    assert "secret-pw" not in result.output
    assert not (tmp_path / "ledger.db").exists()


def test_dry_run_names_both_variables_of_env_credentials(ledger, tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGER_TEST_USER", "alice")
    monkeypatch.setenv("LEDGER_TEST_PW", "secret-pw")
    config = tmp_path / "ledger.toml"
    config.write_text('[registries."ghcr.io"]\ntargets = ["ghcr.io/acme/app"]\ncredentials = "env"\n'
                      'username_env = "LEDGER_TEST_USER"\npassword_env = "LEDGER_TEST_PW"\n')
    result = ledger("collect", "--dry-run", "--config", str(config))
    assert "  auth       $LEDGER_TEST_USER and $LEDGER_TEST_PW\n" in result.output
    assert "alice" not in result.output and "secret-pw" not in result.output


def test_dry_run_names_a_misspelt_key_with_exit_2(ledger, tmp_path):
    config = tmp_path / "ledger.toml"
    config.write_text('[registries."ghcr.io"]\ntargets = ["ghcr.io/acme/app"]\nca_flie = "/ca.pem"\n')
    result = ledger("collect", "--dry-run", "--config", str(config), expect=2)
    assert f"{config}: [registries.\"ghcr.io\"]: unknown setting 'ca_flie' (did you mean 'ca_file'?)" in result.output
    assert not (tmp_path / "ledger.db").exists()


def test_a_ca_file_that_holds_no_certificate_is_bad_usage_before_any_request(ledger, tmp_path, tls_registry):
    """Not a TLS error at the registry ('could not handle the answer (SSLError ...)'), and not one at run
    time for a config file's missing ca_file that --dry-run had passed: exit 2 naming the option and file."""
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    result = ledger("collect", "--ca-file", str(not_pem), f"{tls_registry.host}/x", expect=2)
    assert f"--ca-file {not_pem}: no PEM certificate in it" in result.output
    for value, says in ((not_pem, "no PEM certificate in it"), (tmp_path / "missing.pem", "no such file")):
        config = tmp_path / "ledger.toml"
        config.write_text(f'[registries."{tls_registry.host}"]\nca_file = "{value}"\n')
        result = ledger("collect", "--dry-run", "--config", str(config), expect=2)
        assert f'{config}: [registries."{tls_registry.host}"]: ca_file {value}: {says}' in result.output
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize("url,shown", [
    ("https://auth.example/token?service=s&scope=repository:a:pull&account=alice", "https://auth.example/token?..."),
    ("https://alice:pw@blobs.example/x/y?X-Amz-Signature=abc#frag", "https://blobs.example/x/y?..."),
    ("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/"),
])
def test_verbose_shows_a_url_without_credentials_or_query(url, shown):
    from ledger.progress import shown_url

    assert shown_url(url) == shown
