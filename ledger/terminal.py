"""Text from registries on a terminal: shown, never obeyed.

A registry chooses its error codes and messages, its repository and tag
names; the ledger stores them as said, but printed raw an escape sequence
in them would clear the screen, retitle the window, rewrite the line above
or reorder what is read. So every control character becomes a visible
escape like `\\x1b`.
"""

import re

# C0 (newline too: each error is one line), DEL, C1, the line and paragraph separators, and the
# bidirectional marks, embeddings, overrides and isolates that make text read in another order.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match):
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text):
    """`text` with every control character escaped, safe to print whoever wrote it."""
    return _CONTROL.sub(_escape, text)


def short_digest(digest):
    """The algorithm and the first 12 hex digits (`sha256:1a2b3c4d5e6f`): a digest as people are shown it,
    in tables and in notifications; anything else, its first 19 characters."""
    algorithm, colon, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}" if colon else digest[:19]


def table(rows, headers):
    """Rows as aligned columns under their headers and a rule (the "simple" layout of tabulate, which
    took a tenth of a read command's start to import): numbers right-aligned, everything else left,
    nothing for None."""
    shown = [["" if value is None else str(value) for value in row] for row in rows]
    numeric = [any(row[i] is not None for row in rows) and all(
        isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows if row[i] is not None)
        for i in range(len(headers))]
    widths = [max([len(header)] + [len(row[i]) for row in shown]) for i, header in enumerate(headers)]

    def line(values):
        return "  ".join(value.rjust(width) if right else value.ljust(width)
                         for value, width, right in zip(values, widths, numeric)).rstrip()
    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in shown)])
