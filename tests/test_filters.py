"""Tag filters run with RE2: linear time whatever the pattern, and a pattern RE2 cannot run is bad usage."""

from pathlib import Path

import pytest

from ledger.semantics import Scope, tag_filter
from ledger.settings import SettingsError, check_regex

CATASTROPHIC = r"^(a+)+$"  # with a backtracking engine, 2**n steps on n a's and one character more


def test_a_catastrophic_filter_finishes_and_matches_what_it_should():
    tags = ["a" * n + "-1" for n in range(30, 61)] + ["aaaa", "v1.0"]
    assert [tag for tag in tags if Scope(include=CATASTROPHIC).covers(tag)] == ["aaaa"]
    assert [tag for tag in tags if Scope(exclude=CATASTROPHIC).covers(tag)] == tags[:31] + ["v1.0"]


def test_a_filter_is_compiled_once_for_every_tag():
    tag_filter.cache_clear()
    scope = Scope(include=r"^v\d", exclude="-rc")
    assert [scope.covers(tag) for tag in ("v1", "v2-rc1", "latest") * 100][:3] == [True, False, False]
    assert tag_filter.cache_info().misses == 2


@pytest.mark.parametrize("pattern, reason", [
    ("^(?=v)", "invalid perl operator: (?="),
    ("(?<!rc)$", "invalid perl operator: (?<"),
    (r"(a)\1", r"invalid escape sequence: \1"),
    ("(", "missing )"),
])
def test_a_pattern_re2_cannot_run_is_refused_naming_the_option(pattern, reason):
    with pytest.raises(SettingsError) as refused:
        check_regex(pattern, "--include-tags")
    message = str(refused.value)
    assert message.startswith(f"--include-tags: invalid regular expression {pattern!r}")
    assert reason in message and "RE2" in message


def test_collect_with_a_catastrophic_filter_records_only_its_tags(registry, pusher, ledger, ns):
    for tag in ("a" * 41 + "-1", "aaaa", "v1"):
        pusher.image(f"{ns}/app", tag, seed=ns + tag)
    ledger.collect(f"{registry.host}/{ns}/app", "--include-tags", CATASTROPHIC)
    assert [event["tag"] for event in ledger.events()] == ["aaaa"]


@pytest.mark.parametrize("option", ["--include-tags", "--exclude-tags"])
def test_a_lookahead_on_the_command_line_is_bad_usage(registry, ledger, ns, option):
    result = ledger("collect", f"{registry.host}/{ns}/app", option, "^(?!v)", expect=2)
    assert f"{option}: invalid regular expression '^(?!v)'" in result.output
    assert not Path(ledger.path).exists()  # refused before the ledger is opened
