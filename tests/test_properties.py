"""Property-based tests (hypothesis) for the event classification and every parser."""

import base64
import json
import os
import string
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.auth import parse_challenges
from ledger.credentials import CredentialsError, from_docker_config
from ledger.manifests import ManifestError, compute_digest, valid_digest, verify_digest
from ledger.references import TargetError, parse_target
from ledger.registry import next_link
from ledger.semantics import Observation, classify, clean_image_id, contradicts
from ledger.times import normalise_created

# Locally, every run explores new examples; in CI the same examples run every time, so a
# submission's result does not depend on a random draw.
settings.register_profile("ledger", max_examples=300, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "ledger")

hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
digests = st.one_of(st.none(), hexes.map(lambda h: "sha256:" + h))
images = st.one_of(st.none(), hexes.map(lambda h: "sha256:" + h), hexes)
times = st.one_of(st.none(), st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")))
observations = st.builds(Observation, digest=digests, image=images, media_type=st.sampled_from([None, "a", "b"]),
                         created=times, author=st.sampled_from([None, "x", "y"]),
                         size=st.one_of(st.none(), st.integers(0, 10)))


@given(observations)
def test_the_first_observation_of_a_key_is_added(obs):
    assert classify(None, obs) == "added"


@given(observations)
def test_an_observation_of_the_current_state_appends_nothing(obs):
    assert classify(obs, obs) is None


@given(observations, observations)
def test_moved_exactly_when_digest_or_image_contradict(state, obs):
    assert (classify(state, obs) == "moved") == contradicts(state, obs)
    assert contradicts(state, obs) == contradicts(obs, state)
    assert classify(state, obs) in (None, "moved", "updated")


@given(observations, observations)
def test_the_image_algorithm_prefix_never_matters(state, obs):
    bare = Observation(**{**obs.__dict__, "image": clean_image_id(obs.image) or None})
    assert classify(state, obs) == classify(state, bare)


@given(observations, observations)
def test_nothing_is_appended_only_when_nothing_new_is_learnt(state, obs):
    if classify(state, obs) is None:
        for name in ("media_type", "created", "author", "size"):
            assert getattr(state, name) == getattr(obs, name)
        assert not (obs.digest and not state.digest) and not (obs.image and not state.image)


components = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
repos = st.lists(components, min_size=1, max_size=3).map("/".join)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
hosts = st.one_of(st.from_regex(r"[a-z]([a-z0-9-]{0,9}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True),
                  st.tuples(st.integers(1, 255), st.integers(1, 65535)).map(lambda t: f"127.0.0.{t[0]}:{t[1]}"))


@given(hosts, repos, st.one_of(st.none(), tags))
def test_a_reference_parses_back_to_its_parts(host, repo, tag):
    assume(host not in ("docker.io", "index.docker.io", "registry-1.docker.io"))
    target = parse_target(f"{host}/{repo}" + (f":{tag}" if tag else ""))
    assert (target.registry, target.repo, target.tag) == (host, repo, tag)


@given(st.text(max_size=80))
def test_any_text_is_a_target_or_a_reference_error(text):
    try:
        target = parse_target(text)
    except TargetError as error:
        assert repr(text) in str(error) or text.strip() in str(error) or "invalid" in str(error)
    else:
        assert target.registry


param_names = st.sampled_from(["realm", "service", "scope", "error"])
param_values = st.text(string.ascii_letters + string.digits + " ,:/=.\"\\-_*", max_size=30)


@given(st.sampled_from(["Bearer", "Basic", "bearer"]), st.dictionaries(param_names, param_values, max_size=4))
def test_challenge_parameters_round_trip_through_quoting(scheme, params):
    quoted = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                      for k, v in params.items())
    parsed = parse_challenges(f"{scheme} {quoted}")
    assert [(c.scheme, c.params) for c in parsed] == [(scheme.lower(), params)]


@given(st.text(max_size=120))
def test_any_challenge_header_parses_without_raising(header):
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower()


@given(st.from_regex(r"/v2/[a-z/]{1,20}\?n=[0-9]{1,4}&last=[a-z0-9%]{0,20}", fullmatch=True),
       st.sampled_from(['rel="next"', "rel=next", 'rel="next prev"']))
def test_link_headers_give_the_next_url(url, rel):
    assert next_link(f"<{url}>; {rel}") == url
    assert next_link(f'<{url}>; rel="prev"') is None


@given(st.text(max_size=100))
def test_any_link_header_parses_without_raising(header):
    assert next_link(header) is None or isinstance(next_link(header), str)


@given(st.binary(max_size=200), st.sampled_from(["sha256", "sha512"]))
def test_a_body_verifies_against_its_own_digest_and_no_other(body, algorithm):
    digest = compute_digest(body, algorithm)
    assert valid_digest(digest)
    verify_digest(body, digest)
    with pytest.raises(ManifestError):
        verify_digest(body + b"x", digest)


@given(st.text(max_size=60))
def test_any_digest_text_is_valid_or_refused(text):
    if not valid_digest(text):
        with pytest.raises(ManifestError):
            verify_digest(b"", text)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=10)


@given(st.dictionaries(st.sampled_from(["auths", "credHelpers", "credsStore", "other"]), json_values, max_size=3))
def test_any_docker_config_gives_credentials_none_or_a_clear_error(tmp_path_factory, config):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(config))
    try:
        found = from_docker_config("a.io", path)
    except CredentialsError as error:
        assert "a.io" in str(error) or str(path) in str(error) or "docker-credential" in str(error)
    else:
        assert found is None or found.password or found.identity_token or found.registry_token


@given(st.text(string.printable.replace(":", ""), min_size=1, max_size=20), st.text(string.printable, min_size=1,
                                                                                  max_size=20))
def test_auth_entries_split_user_and_password_at_the_first_colon(tmp_path_factory, user, password):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {"a.io": {"auth": encoded}}}))
    found = from_docker_config("a.io", path)
    assert (found.username, found.password) == (user, password)


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)),
       st.integers(-14 * 60, 14 * 60), st.integers(0, 999_999_999))
def test_created_times_normalise_to_utc_whole_seconds(moment, offset_minutes, nanos):
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(microsecond=0, tzinfo=zone)
    sign = "+" if offset_minutes >= 0 else "-"
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}{sign}{abs(offset_minutes) // 60:02d}:" \
        f"{abs(offset_minutes) % 60:02d}"
    assert normalise_created(text) == local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=True), st.none()))
def test_any_created_value_is_normalised_or_dropped(value):
    result = normalise_created(value)
    assert result is None or (len(result) == 20 and result.endswith("Z"))


_HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=68)


@given(st.one_of(_HEX.map(lambda h: "sha256:" + h), st.text(max_size=80)))
def test_a_stored_digest_reads_back_as_the_same_text(text):
    from ledger.store.encoding import _hex_prefix, digest_key, digest_text

    stored = digest_key(text)
    assert digest_text(stored) == text
    assert isinstance(stored, bytes) == (len(text) == 71 and text.startswith("sha256:")
                                         and all(c in "0123456789abcdef" for c in text[7:]))
    assert len(_hex_prefix(stored)) <= 12
