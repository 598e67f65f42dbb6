"""Timestamps as fixed-width UTC text, so they sort as text and freezegun can pin them."""

import re
from datetime import datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2}|UTC)?$", re.ASCII
)

def now():
    """The current time, to the microsecond: 2026-11-28T05:20:41.123456Z."""
    return format_instant(datetime.now(timezone.utc))

def format_instant(moment):
    return _whole_seconds(moment.astimezone(timezone.utc))[:19] + f".{moment.microsecond:06d}Z"


ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's time.Time{}: what cosign writes in its signature configs


def normalise_created(value):
    """An image's `created` as UTC to the whole second (what the seed compares), or None.

    Go's zero time means "never set", not a time, so it is None too: stored as a time it would read
    as the oldest image of all.
    """
    moment = normalise_time(value)
    return None if moment == ZERO_TIME else moment


def normalise_time(value):
    """A time as UTC to the whole second, Go's zero time included, or None.

    Configs carry RFC 3339 with nanoseconds and odd zones, or epoch numbers.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value)):
        try:
            moment = datetime.fromtimestamp(int(float(value)), timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
        return _whole_seconds(moment)
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, _, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59),
                          tzinfo=timezone.utc)
    except ValueError:
        return None
    if zone and zone not in ("Z", "z", "UTC"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))

        try:
            moment = moment - timedelta(minutes=offset)
        except OverflowError:
            return None
    return _whole_seconds(moment)


def _whole_seconds(moment):
    """Fixed width for every year (strftime's %Y does not pad years before 1000)."""
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|second|m|min|minute|h|hour|d|day|w|week)s?\s+ago\s*$", re.I | re.ASCII)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}  # every duration people type, in one table
_LONG_UNITS = {"sec": "s", "second": "s", "min": "m", "minute": "m", "hour": "h", "day": "d", "week": "w"}
_INTERVAL = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.ASCII)


MAX_INTERVAL = 366 * 86400  # a year: longer waits are a typo, and past threading's limit they raise


def parse_interval(text):
    """`90`, `30s`, `15m`, `1h`, `1d` -> seconds (more than 0, at most MAX_INTERVAL); ValueError otherwise."""
    match = _INTERVAL.fullmatch(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an interval like 30s, 15m, 1h")
    seconds = float(match.group(1)) * _SECONDS[match.group(2) or "s"]
    if seconds > MAX_INTERVAL:
        raise ValueError(f"{text!r} is longer than a year ({MAX_INTERVAL // 86400}d)")
    return seconds


def parse_when(text, end_of_day=False, also=None):
    """A moment people type, as fixed-width UTC text: 'now', '2 days ago', '2026-11-20', or RFC 3339.

    A bare date means the start of that day (00:00 UTC), or with `end_of_day` (the end of a window) its last
    microsecond, so that the window holds the whole day. Raises ValueError with the text in it, naming the
    forms a time may take (and `also`, one the caller takes besides).
    """
    value = (text or "").strip()
    if value.lower() == "now":
        return now()
    match = _AGO.match(value)
    if match:
        unit = match.group(2).lower()
        seconds = float(match.group(1)) * _SECONDS[_LONG_UNITS.get(unit, unit)]
        try:
            return format_instant(datetime.now(timezone.utc) - timedelta(seconds=seconds))
        except OverflowError:
            raise ValueError(f"{text!r} is before the year 1") from None
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            raise ValueError(f"{text!r} is not a date") from None
        return format_instant(day.replace(hour=23, minute=59, second=59, microsecond=999999) if end_of_day else day)
    match = _RFC3339.match(value)
    if match and match.group(8):
        whole = normalise_time(value)
        if whole:
            fraction = (match.group(7) or "")[:6].ljust(6, "0")
            return whole[:19] + f".{fraction}Z" if match.group(8) in ("Z", "z", "UTC") else whole[:19] + ".000000Z"
    forms = ["'now'", "'3 days ago'", "2026-11-20", "2026-11-20T14:00:00Z", *([also] if also else [])]
    raise ValueError(f"{text!r} is not a time: use {', '.join(forms[:-1])} or {forms[-1]}")
