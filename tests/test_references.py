import pytest

from ledger.references import TargetError, Target, api_base, is_loopback, parse_target


@pytest.mark.parametrize("text,registry,repo,tag,pattern", [
    ("127.0.0.1:5000", "127.0.0.1:5000", None, None, None),
    ("localhost", "localhost", None, None, None),
    ("registry.example.com", "registry.example.com", None, None, None),
    ("myhost:5000/", "myhost:5000", None, None, None),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None),
    ("127.0.0.1:5000/team/app:v1.2.3", "127.0.0.1:5000", "team/app", "v1.2.3", None),
    ("127.0.0.1:5000/team/*", "127.0.0.1:5000", None, None, "team/*"),
    ("ghcr.io/owner/repo:latest", "ghcr.io", "owner/repo", "latest", None),
    ("alpine", "docker.io", "library/alpine", None, None),
    ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
    ("myorg/app:prod", "docker.io", "myorg/app", "prod", None),
    ("index.docker.io/library/alpine", "docker.io", "library/alpine", None, None),
    ("registry-1.docker.io/alpine", "docker.io", "library/alpine", None, None),
    ("[::1]:5000/app", "[::1]:5000", "app", None, None),
])
def test_targets_parse_like_docker_references(text, registry, repo, tag, pattern):
    assert parse_target(text) == Target(text=text, registry=registry, repo=repo, tag=tag, pattern=pattern)


@pytest.mark.parametrize("text,message", [
    ("", "empty"),
    ("127.0.0.1:5000/App", "invalid repository 'App'"),
    ("127.0.0.1:5000/app@sha256:" + "a" * 64, "digests are not tags"),
    ("http://127.0.0.1:5000/app", "not a URL"),
    ("127.0.0.1:5000/app:bad/tag", "invalid repository"),
    ("127.0.0.1:5000/app:v*", "invalid tag 'v*'"),
    ("127.0.0.1:99999/app", "invalid registry host"),
    ("127.0.0.1:5000/team/*:latest", "a glob names repositories"),
])
def test_bad_targets_are_refused_with_a_message_naming_them(text, message):
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    assert message in str(caught.value)


def test_globs_match_catalog_names():
    target = parse_target("127.0.0.1:5000/team/*")
    assert target.matches("team/app") and target.matches("team/a/b")
    assert not target.matches("other/app")
    assert parse_target("127.0.0.1:5000").matches("anything")
    assert not parse_target("127.0.0.1:5000/a").matches("b")


def test_loopback_registries_use_plain_http_like_docker():
    assert is_loopback("127.0.0.1:5000") and is_loopback("127.8.9.10") and is_loopback("localhost:5000")
    assert is_loopback("[::1]:5000")
    assert not is_loopback("ghcr.io") and not is_loopback("10.0.0.1:5000")
    assert api_base("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert api_base("ghcr.io") == "https://ghcr.io"
    assert api_base("ghcr.io", plain_http=True) == "http://ghcr.io"
    assert api_base("docker.io") == "https://registry-1.docker.io"
