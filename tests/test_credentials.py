"""Parsing challenges and finding credentials: pure, no registry needed."""

import base64
import json

import pytest

from ledger.auth import Credentials, parse_challenges
from ledger.credentials import CredentialsError, from_docker_config


@pytest.mark.parametrize("header,expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull,push"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:x:pull,push"})]),
    ('Bearer realm="r",scope="repository:foo/b:pull,push repository:foo/a:pull",error="insufficient_scope"',
     [("bearer", {"realm": "r", "scope": "repository:foo/b:pull,push repository:foo/a:pull",
                  "error": "insufficient_scope"})]),
    ('bearer Realm=r, Service=s, Basic realm="basic-realm"', [("bearer", {"realm": "r", "service": "s"}),
                                                              ("basic", {"realm": "basic-realm"})]),
    ('Negotiate abc==, Basic realm=x', [("negotiate", {}), ("basic", {"realm": "x"})]),
    ('Basic realm="say \\"hi\\", please"', [("basic", {"realm": 'say "hi", please'})]),
    ('', []),
    ('Bearer', [("bearer", {})]),
])
def test_challenges_parse_per_rfc_7235(header, expected):
    assert [(c.scheme, c.params) for c in parse_challenges(header)] == expected


def write(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def auth(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auths_entries_give_user_and_password(tmp_path):
    path = write(tmp_path, {"auths": {"https://ghcr.io": {"auth": auth("me", "pa:ss")},
                                      "quay.io": {"username": "u", "password": "p"}}})
    found = from_docker_config("ghcr.io", path)
    assert (found.username, found.password) == ("me", "pa:ss")  # split at the first colon
    assert str(path) in found.source
    assert (from_docker_config("quay.io", path).username, from_docker_config("quay.io", path).password) == ("u", "p")
    assert from_docker_config("gcr.io", path) is None


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io",
                                 "registry-1.docker.io"])
def test_every_docker_hub_key_maps_to_docker_io(tmp_path, key):
    path = write(tmp_path, {"auths": {key: {"auth": auth("hubuser", "x")}}})
    assert from_docker_config("docker.io", path).username == "hubuser"


def test_identity_and_registry_tokens_are_kept_apart(tmp_path):
    path = write(tmp_path, {"auths": {"a.io": {"identitytoken": "refresh"}, "b.io": {"registrytoken": "bearer"}}})
    assert from_docker_config("a.io", path).identity_token == "refresh"
    assert from_docker_config("b.io", path).registry_token == "bearer"


def test_a_missing_config_is_no_credentials_and_a_broken_one_is_an_error(tmp_path):
    assert from_docker_config("a.io", tmp_path / "none.json") is None
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="cannot read the Docker config"):
        from_docker_config("a.io", tmp_path / "broken.json")
    with pytest.raises(CredentialsError, match="not base64"):
        from_docker_config("a.io", write(tmp_path, {"auths": {"a.io": {"auth": "!!!"}}}))


def test_basic_header_needs_a_password():
    assert Credentials(username="u", password="p").basic() == "Basic " + base64.b64encode(b"u:p").decode()
    assert Credentials(username="u").basic() is None


@pytest.mark.parametrize("text,message", [
    ('{"auths":' * 100_000 + "{}" + "}" * 100_000, "nests deeper"),
    ('{"auths": {"r.example": {"auth": 123}}}', None),
    ('{"auths": {"r.example": {"username": 5, "password": ["x"]}}}', None),
    ('{"credHelpers": {"r.example": {"not": "a name"}}}', None),
    ("[1, 2]", "not a JSON object"),
    ("NaN", "not valid JSON"),
])
def test_a_hostile_docker_config_is_a_clear_error_or_no_credentials(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    if message is None:
        assert from_docker_config("r.example", path) is None
    else:
        with pytest.raises(CredentialsError, match=message):
            from_docker_config("r.example", path)
