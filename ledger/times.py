"""Timestamps as fixed-width UTC text, so they sort as text and freezegun can pin them."""

import re
from datetime import datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2}|UTC)?$"
)

def now():
    """The current time, to the microsecond: 2026-11-28T05:20:41.123456Z."""
    return format_instant(datetime.now(timezone.utc))

def format_instant(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

def normalise_created(value):
    """An image's `created` as UTC to the whole second (what the seed compares), or None.

    Configs carry RFC 3339 with nanoseconds and odd zones, or epoch numbers.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value)):
        try:
            moment = datetime.fromtimestamp(int(float(value)), timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
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
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
