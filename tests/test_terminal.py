"""Registry-supplied text reaches the terminal escaped: stored as said, printed inert."""

import json

import pytest

from ledger import store
from ledger.findings import RunResult, Sighting
from ledger.terminal import printable

# Clear the screen, retitle the window (OSC ... BEL), a C1 CSI, carriage return, backspace, a bidi override.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\rover\bwrite\u202eesrever\nsecond line\x7f"
RAW = ["\x1b", "\x07", "\x9b", "\r", "\b", "\u202e", "\x7f"]


def assert_inert(text):
    assert not [c for c in RAW if c in text], f"a raw control character reached the terminal: {text!r}"


@pytest.mark.parametrize("text, shown", [
    ("\x1b[2J", "\\x1b[2J"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("\x9b31m", "\\x9b31m"),
    ("a\rb\bc\td\ne\x00\x7f", "a\\x0db\\x08c\\x09d\\x0ae\\x00\\x7f"),
    ("\u202egnp.exe \u2066x\u2069 \u2028", "\\u202egnp.exe \\u2066x\\u2069 \\u2028"),
    ("plain v1.2.3 café 镜像 🐳 \u200d", "plain v1.2.3 café 镜像 🐳 \u200d"),
])
def test_printable_escapes_every_control_character_and_nothing_else(text, shown):
    assert printable(text) == shown


def test_a_registry_error_message_is_stored_raw_and_printed_escaped(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    body = json.dumps({"errors": [{"code": "\x1b[2J", "message": HOSTILE}]}).encode()
    proxy.alter_response = lambda m, path, s, h, b: (
        (500, [("Content-Type", "application/json")], body) if "/tags/list" in path else None)
    result = ledger("collect", f"{proxy.host}/{ns}/app", "--retries", "0", expect=1)
    assert "error: " in result.stderr and "\\x1b]0;pwned\\x07\\x9b31m\\x0dover" in result.stderr
    assert_inert(result.output)
    stored = ledger.rows("SELECT code, message FROM errors")
    assert stored[0]["code"] == "\x1b[2J" and HOSTILE in stored[0]["message"]  # recorded as the registry said it

    listed = ledger("runs")
    assert "run 1: " in listed.output and "\\u202eesrever\\x0asecond line\\x7f" in listed.output
    assert_inert(listed.output)
    with_errors = ledger("runs", "--errors")
    assert "\\x1b]0;pwned\\x07" in with_errors.output
    assert_inert(with_errors.output)
    as_json = ledger("runs", "--json")
    assert_inert(as_json.output)
    assert "\x1b[2J" in json.loads(as_json.output)[0]["error_summary"]  # JSON keeps the text, escaped by JSON


def test_tag_names_in_tables_are_printed_escaped(ledger):
    db = store.open_db(ledger.path)
    run_id = store.start_run(db, "registry", ["evil.example"])
    store.append_run(db, run_id, RunResult(observations=[Sighting(
        "evil.example", "team/app\x1b]0;pwned\x07", "v1\x1b[2J\r", "2026-01-01T00:00:00.000001Z",
        "sha256:" + "ab" * 32, "application/vnd.oci.image.manifest.v1+json")]))
    db.close()
    shown = ledger("tags")
    assert "team/app\\x1b]0;pwned\\x07" in shown.output and "v1\\x1b[2J\\x0d" in shown.output
    assert_inert(shown.output)
    assert json.loads(ledger("tags", "--json").output)[0]["tag"] == "v1\x1b[2J\r"
