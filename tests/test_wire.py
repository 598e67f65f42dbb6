"""Strict readers for hostile input: ASCII numbers only, JSON of bounded depth, no NaN."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.registry import retry_after
from ledger.wire import MAX_JSON_DEPTH, WireError, ascii_int, json_depth, json_number, loads


@pytest.mark.parametrize("text,expected", [("12", 12), (" 7 ", 7), ("0", 0), ("²", None), ("٣", None), ("-1", None),
                                           ("1e3", None), ("", None), ("9" * 19, None), (None, None)])
def test_ascii_int_takes_ascii_digits_only(text, expected):
    assert ascii_int(text) == expected


@pytest.mark.parametrize("value,expected", [(60, 60), (1.5, 1), (float("inf"), None), (float("nan"), None),
                                            (True, None), ("60", None), (-5, None), (10 ** 400, None)])
def test_json_numbers_are_finite_and_in_range(value, expected):
    assert json_number(value, 1, 86400) == expected


@pytest.mark.parametrize("body", [b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 200_000 + b"1" + b"}" * 200_000,
                                  b"[" * 200_000, b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)])
def test_deep_json_is_refused_not_a_recursion_error(body):
    with pytest.raises(WireError, match="nests deeper"):
        loads(body)


def test_json_at_the_depth_bound_parses():
    body = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(loads(body)) == MAX_JSON_DEPTH


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b"-Infinity", b"\xff\xfe", b"{", b""])
def test_what_is_not_json_is_a_wire_error(body):
    with pytest.raises(WireError):
        loads(body)


def test_huge_numbers_parse_without_overflow():
    assert loads(b'{"expires_in": 1e400}')["expires_in"] == float("inf")
    assert json_number(loads(b'{"n": 1e400}')["n"], 0, 10) is None


@pytest.mark.parametrize("value", ["²", "99999999999999999999", "Wed, 99 Foo 99999 99:99:99 GMT", "\x00", "-3"])
def test_hostile_retry_after_values_are_ignored(value):
    assert retry_after(value) is None


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_a_wire_error(body):
    try:
        loads(body)
    except WireError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children,
                                                                                        max_size=3), max_leaves=30))
def test_json_that_is_shallow_enough_reads_back_as_written(document):
    text = json.dumps(document)
    if json_depth(document) <= MAX_JSON_DEPTH:
        assert loads(text.encode()) == document


def test_millions_of_tiny_values_are_refused_before_they_fill_memory():
    for value in (b"{}", b"[]", b"0"):
        with pytest.raises(WireError, match="more than 250000 JSON values"):
            loads(b"[" + b",".join([value] * 300_000) + b"]")
    assert len(loads(b"[" + b",".join([b"{}"] * 1000) + b"]")) == 1000


@pytest.mark.parametrize("body", [b'{"message": "\\ud800"}', b'{"\\udfff": 1}', b'["a", ["\\uDBFF"]]'])
def test_an_unpaired_surrogate_is_not_text(body):
    with pytest.raises(WireError, match="unpaired UTF-16 surrogate"):
        loads(body)


def test_a_surrogate_pair_is_text():
    assert loads(b'{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001F600"}
