"""Where credentials may go: only after a challenge, never downgraded to plain HTTP, one registry per password."""

import re

import pytest

from ledger.auth import Authenticator, AuthError, Credentials
from ledger.transport import Transport

CREDS = Credentials(username="me", password="pw", registry_token="rt", source="test")


def authenticator(registry_scheme="https", plain_http=False):
    return Authenticator("registry.example", CREDS, Transport(), registry_scheme=registry_scheme,
                         plain_http=plain_http)


def test_nothing_is_sent_before_the_registry_challenges():
    auth = authenticator()
    assert auth.header(("repository:x:pull",)) is None
    assert auth.learn('Basic realm="r"')
    assert auth.header(()) == CREDS.basic()


def test_a_registry_token_goes_only_to_a_bearer_challenge():
    auth = authenticator()
    auth.learn('Bearer realm="https://auth.example/token",service="s"')
    assert auth.header(("repository:x:pull",)) == "Bearer rt"


@pytest.mark.parametrize("registry_scheme,plain_http,realm,refused", [
    ("https", False, "http://auth.example/token", "the registry uses HTTPS but its token realm"),
    ("https", True, "http://127.0.0.1:1/token", "the registry uses HTTPS but its token realm"),
    ("http", False, "http://auth.example/token", "plain HTTP to another machine"),
    ("http", False, "ftp://auth.example/token", "is not an HTTP(S) URL"),
    ("http", False, "token", "is not an HTTP(S) URL"),
])
def test_a_realm_that_would_downgrade_or_leak_is_refused_before_any_request(registry_scheme, plain_http, realm,
                                                                             refused):
    auth = Authenticator("registry.example", Credentials(username="me", password="pw", source="test"), Transport(),
                         registry_scheme=registry_scheme, plain_http=plain_http)
    auth.learn(f'Bearer realm="{realm}"')
    with pytest.raises(AuthError, match=re.escape(refused)) as caught:
        auth.header(("repository:x:pull",))
    assert caught.value.code == "REALM_REFUSED"
    assert auth.token_requests == 0


def test_one_password_on_the_command_line_is_for_one_registry(ledger):
    result = ledger.runner.invoke(__import__("ledger.cli").cli.cli,
                                  ["collect", "a.example/x", "b.example/y", "--username", "me", "--password-stdin",
                                   "--db", ledger.path], input="secret\n")
    assert result.exit_code == 2
    assert "give credentials for one registry" in result.output and "--config" in result.output
    assert "2 registries (a.example, b.example)" in result.output
