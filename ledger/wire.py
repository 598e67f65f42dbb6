"""Strict readers for what comes off the wire or out of a file: JSON of bounded depth, ASCII numbers.

Pure code. Everything a registry, token server, the Hub API, a daemon or a config file says is
hostile input: Python's `str.isdigit()` accepts '²' that `int()` refuses, `json` turns `1e400`
into infinity and recurses until RecursionError on `[[[[...`. These helpers say no instead.
"""

import json
import math
import re

MAX_JSON_DEPTH = 128  # manifests, indexes, configs and error bodies nest a handful of levels
MAX_JSON_VALUES = 250_000  # arrays, objects and commas: a page of 100,000 tags fits
_ASCII_INT = re.compile(r"[0-9]{1,18}")


class WireError(ValueError):
    """Input that is not what it must be; the message says how, never quoting a secret."""


def ascii_int(text, maximum=None):
    """A non-negative integer written in ASCII digits only (at most 18 of them), else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not _ASCII_INT.fullmatch(text):
        return None
    value = int(text)
    return value if maximum is None or value <= maximum else None


def bare_media_type(value, lower=False):
    """A Content-Type (or a document's mediaType) without its parameters (`; charset=...`) and the space
    around it, lower-cased with `lower` (for comparing: media types are case-insensitive); None when
    there is none. The one place a media type is stripped, for the registry's answers and the bodies."""
    if not isinstance(value, str):
        return None
    bare = value.split(";", 1)[0].strip()
    return (bare.lower() if lower else bare) or None


def json_number(value, low, high):
    """A JSON number within [low, high] as an int (finite, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value) if low <= value <= high else None


def json_depth(document):
    """How deeply arrays and objects nest in a parsed document, walked without recursion."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in value if isinstance(child, (dict, list)))
    return deepest


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def loads(body, what="answer", max_depth=MAX_JSON_DEPTH, max_values=MAX_JSON_VALUES):
    """Parse JSON bytes (or text) with bounds: nesting depth, number of values (counted on the raw bytes,
    before a few MiB of `[],[],...` become millions of objects), no NaN or Infinity, no unpaired
    surrogate (SQLite cannot store one, and it would fail the whole run's append). Raises WireError."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if raw.count(b",") + raw.count(b"[") + raw.count(b"{") > max_values:
        raise WireError(f"{what} has more than {max_values} JSON values")
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:  # the parser's own bound, far past ours
        raise WireError(f"{what} nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise WireError(f"{what} is not valid JSON ({_short(error)})") from None
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(document) > max_depth:
        raise WireError(f"{what} nests deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(raw) and not _encodable(document):
        raise WireError(f"{what} holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text")
    return document


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(document):
    """Every string (keys too) is valid Unicode text, walked without recursion."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _short(error):
    text = str(error)
    return text if len(text) <= 120 else text[:117] + "..."
