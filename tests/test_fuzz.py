"""Property test (hypothesis): no hostile registry answer crashes a collect.

hypothesis draws whole hostile configurations (sandbox/hostile.py's FuzzCase): one to three endpoints
of a loopback HostileRegistry (ping, catalog, a tag list, a manifest HEAD or GET, a config blob,
the token realm), each answering with a drawn status (200, 206, 301, 307, 401, 404, 429, 500,
503), drawn headers with hostile values (Content-Length, Content-Type, Docker-Content-Digest,
Link, Retry-After, WWW-Authenticate, RateLimit-*, Location, Transfer-Encoding, ...), and a drawn
body (random JSON of bounded size, deep nesting, wrong types, huge numbers, non-UTF-8 bytes,
nothing), framed by a Content-Length, by closing, or chunked; plus the targets, Basic or Bearer
auth, and retries. Each runs as an in-process `ledger collect` (click's CliRunner), which must end
with no exception but SystemExit, exit 0, 1 or 3, no run left 'running', no raw terminal control
character printed, and a ledger `ledger verify` accepts.

Bodies are bounded (at most ~1.2 MiB, the deep-nesting ones), so an example stays cheap in this
process; tests/test_hostile.py checks memory and endless answers in subprocesses.
"""

import json
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.hostile import (FUZZ_ENDPOINTS, FUZZ_TARGETS, HOSTILE_HEADERS, HOSTILE_STATUSES, FuzzCase, ResponseSpec,
                     good_registry, hostile_bodies, run_in_process)
from ledger.cli import cli

pytestmark = pytest.mark.slow  # hundreds of hostile collects

# As in test_properties.py: locally every run explores new examples; in CI (CI set) the same
# examples run every time. Few examples: each is a whole collect.
FUZZ = settings(max_examples=150, deadline=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

KEYS = ["tags", "name", "repositories", "errors", "code", "message", "detail", "token", "access_token",
        "expires_in", "size", "digest", "config", "layers", "manifests", "mediaType", "schemaVersion", "created",
        "architecture", "os", "platform"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)

bodies = st.one_of(
    st.none(),  # what the endpoint would send
    st.sampled_from(hostile_bodies()),
    st.binary(max_size=512),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
)


def header_values(name):
    return st.one_of(st.sampled_from(HOSTILE_HEADERS[name]), st.binary(max_size=40), st.text(max_size=40))


headers = st.lists(st.sampled_from(sorted(HOSTILE_HEADERS)).flatmap(
    lambda name: st.tuples(st.just(name), header_values(name))), max_size=3)

specs = st.builds(ResponseSpec, base=st.sampled_from(["normal", "bare"]),
                  status=st.one_of(st.none(), st.sampled_from(HOSTILE_STATUSES)), headers=headers, body=bodies,
                  framing=st.sampled_from(["length", "close", "chunked"]))

cases = st.builds(FuzzCase,
                  targets=st.lists(st.sampled_from(FUZZ_TARGETS), min_size=1, max_size=len(FUZZ_TARGETS), unique=True),
                  answers=st.lists(st.tuples(st.sampled_from(FUZZ_ENDPOINTS), specs), min_size=1, max_size=3),
                  auth=st.sampled_from([None, "basic", "bearer"]), retries=st.sampled_from([0, 1]))


@pytest.fixture(scope="module")
def fuzz_server():
    running = good_registry()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dead_port():
    """A loopback port nobody listens on, for hostile URLs to point at."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@FUZZ
@given(case=cases)
def test_no_hostile_answer_crashes_a_collect(fuzz_server, dead_port, case):
    problems, result = run_in_process(cli, case, fuzz_server, dead_port)
    assert problems == [], "\n".join(problems) + f"\nwhen the hostile registry was set up as: {case.describe()}"
