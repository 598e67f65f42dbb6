"""The pictures as inline SVG, drawn from data's dataclasses alone: no SQL and no Datasette, so a drawing
depends only on what was read. Every name from the ledger is escaped, since registries choose them."""

import colorsys
import hashlib
import html
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from markupsafe import Markup

from ..findings import REGISTRY
from .data import COUNTED, LANE_EVENTS

WIDTH = 1100
MOVED, REMOVED, NEW, ADDED = "#b45309", "#dc2626", "#2563eb", "#15803d"
LANE_BACKGROUND, INK, MUTED = "#eef0f3", "#1f2328", "#59636e"


def colour_of(name):
    """A band's colour, the same for a digest on every page and every day: hue, lightness and saturation
    from its hash (any text: a digest, an image ID, even one an old ledger holds unchecked). No pure red:
    that is a removal's mark."""
    seed = hashlib.sha256(name.encode()).digest()
    hue = 0.05 + int.from_bytes(seed[:2], "big") / 65536 * 0.88
    lightness = 0.40 + seed[2] / 255 * 0.16
    saturation = 0.50 + seed[3] / 255 * 0.35
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#%02x%02x%02x" % (round(red * 255), round(green * 255), round(blue * 255))


def _ink_on(colour):
    red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return INK if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.55 else "#ffffff"


def short(name):
    """A digest or image ID as its first 12 hex digits."""
    return name.split(":", 1)[-1][:12] if name else "?"


def _e(text):
    return html.escape(str(text), quote=True)


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(delta):
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            rest = seconds % size
            below = {"d": (3600, "h"), "h": (60, "min"), "min": (1, "s")}[unit]
            return f"{seconds // size} {unit}" + (f" {rest // below[0]} {below[1]}" if rest // below[0] else "")
    return f"{seconds} s"


@dataclass(frozen=True)
class Scale:
    """Time to x, clamped to the drawing."""
    start: datetime
    end: datetime
    left: float
    right: float

    def x(self, moment):
        share = (moment - self.start) / (self.end - self.start)
        return round(self.left + min(max(share, 0.0), 1.0) * (self.right - self.left), 1)


@dataclass(frozen=True)
class Band:
    start: datetime
    end: datetime
    name: str | None
    current: bool


def bands(changes, end):
    """The stretches of time a key pointed to one image (by its name: a digest, a Docker host's image ID): a
    move starts a new band, a removal ends one, and an update (the same image, more facts) keeps it unless
    it names another."""
    found, start, name = [], None, None
    for change in changes:
        if change.kind == "updated" and start is not None and change.name == name:
            continue
        if start is not None:
            found.append(Band(start, change.at, name, False))
            start = None
        if change.kind != "removed":
            start, name = change.at, change.name
    if start is not None:
        found.append(Band(start, end, name, True))
    return found


_STEPS = [timedelta(seconds=s) for s in (1, 5, 15, 30)] + [timedelta(minutes=m) for m in (1, 5, 15, 30)] + [
    timedelta(hours=h) for h in (1, 3, 6, 12)] + [timedelta(days=d) for d in (1, 2, 7, 14)]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Steps of a longer axis, in months: up to 10,000 years, so any span datetime holds has one.
_MONTHS = (1, 3, 6) + tuple(12 * years for years in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000))


def ticks(start, end, most=8):
    """Round moments between start and end for an axis, at most `most`, with their labels."""
    span = end - start
    for step in _STEPS:
        if span / step <= most:
            label = "%Y-%m-%d" if step >= timedelta(days=1) else "%H:%M:%S" if step < timedelta(minutes=1) else (
                "%m-%d %H:%M")
            moment = _EPOCH + math.ceil((start - _EPOCH) / step) * step
            found = []
            while moment <= end:
                found.append((moment, moment.strftime(label)))
                moment += step
            return found
    months = next(m for m in _MONTHS if span.days / (30.44 * m) <= most)
    index = start.year * 12 + start.month - 1
    index += -index % months
    found = []
    while (moment := datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)) <= end:
        if moment >= start:
            found.append((moment, moment.strftime("%Y-%m" if months < 12 else "%Y")))
        index += months
    return found


def _axis(scale, y):
    parts = [f'<line x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" stroke="{MUTED}"/>']
    for moment, label in ticks(scale.start, scale.end):
        x = scale.x(moment)
        anchor = "end" if x > WIDTH - 45 else "middle"  # a label at the right edge stays in the picture
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x}" y2="{y + 5}" stroke="{MUTED}"/>'
                     f'<text x="{x}" y="{y + 18}" text-anchor="{anchor}" class="tick">{_e(label)}</text>')
    return "".join(parts)


def _svg(height, title, body):
    return Markup(f'<svg class="ledger-picture" role="img" width="{WIDTH}" height="{height}" '
                  f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">'
                  f'<title>{_e(title)}</title>{body}</svg>')


def _band(band, scale, y, height, links, what):
    """One band, linking to where its digest (`what`: or image ID) is used, its label inside when it fits."""
    x1, x2 = scale.x(band.start), scale.x(band.end)
    width = round(max(x2 - x1, 2.0), 1)
    colour = colour_of(band.name or "")
    until = "now" if band.current else _when(band.end)
    tip = (f"{band.name or 'no ' + what}\nfrom {_when(band.start)} to {until} ({_span(band.end - band.start)})"
           f"\nclick: where this {what} is used")
    text = ""
    if width > 96:
        text = (f'<text x="{x1 + 6}" y="{y + height / 2 + 4}" fill="{_ink_on(colour)}" '
                f'pointer-events="none">{_e(short(band.name))}</text>')
    return (f'<a href="{_e(links.digest(band.name or ""))}"><title>{_e(tip)}</title>'
            f'<rect class="band" x="{x1}" y="{y}" width="{width}" height="{height}" fill="{colour}" '
            f'stroke="#ffffff" stroke-width="1"/>{text}</a>')


def _change_marker(previous, change, scale, y, height):
    """A move, removal or (re-)addition, at its time on a lane."""
    x = scale.x(change.at)
    if change.kind == "moved":
        tip = f"moved {_when(change.at)}: {previous or '?'} → {change.name}"
        shape = (f'<line x1="{x}" y1="{y - 3}" x2="{x}" y2="{y + height + 3}" stroke="{INK}" stroke-width="2"/>'
                 f'<path d="M{x - 5} {y - 8} L{x + 5} {y - 8} L{x} {y - 2} Z" fill="{MOVED}"/>')
    elif change.kind == "removed":
        tip = f"removed {_when(change.at)} (it pointed to {change.name or previous or '?'})"
        r = min(6, height / 2 - 1)
        middle = y + height / 2
        shape = (f'<line x1="{x}" y1="{y - 3}" x2="{x}" y2="{y + height + 3}" stroke="{REMOVED}" stroke-width="2"/>'
                 f'<path d="M{x - r} {middle - r} L{x + r} {middle + r} M{x - r} {middle + r} L{x + r} {middle - r}" '
                 f'stroke="{REMOVED}" stroke-width="2.5"/>')
    elif change.kind == "added":
        tip = f"added {_when(change.at)}: {change.name}"
        shape = f'<path d="M{x} {y + height - 7} L{x + 6} {y + height} L{x} {y + height} Z" fill="{ADDED}"/>'
    else:
        return ""
    return f'<g class="marker {change.kind}"><title>{_e(tip)}</title>{shape}</g>'


def _lane_drawing(lane, scale, now, y, height, links):
    """A lane's background, bands to `now` and markers (changes before the window carry its state in,
    unmarked)."""
    parts = [f'<rect x="{scale.left}" y="{y}" width="{round(scale.right - scale.left, 1)}" height="{height}" '
             f'fill="{LANE_BACKGROUND}"/>']
    what = "digest" if lane.source == REGISTRY else "image ID"
    parts += [_band(band, scale, y, height, links, what) for band in bands(lane.changes, now)]
    previous = None
    for change in lane.changes:
        if change.at >= scale.start:
            parts.append(_change_marker(previous, change, scale, y, height))
        previous = change.name if change.kind != "removed" else None
    return "".join(parts)


_GLYPHS = {
    "signature": lambda x, y, r: f'<path d="M{x} {y - r} L{x + r} {y} L{x} {y + r} L{x - r} {y} Z"/>',
    "attestation": lambda x, y, r: f'<circle cx="{x}" cy="{y}" r="{r - 0.5}"/>',
    "sbom": lambda x, y, r: f'<rect x="{x - r + 1}" y="{y - r + 1}" width="{2 * r - 2}" height="{2 * r - 2}"/>',
    "artifact": lambda x, y, r: f'<path d="M{x} {y - r} L{x + r} {y + r - 1} L{x - r} {y + r - 1} Z"/>',
}
_REFERRER_COLOURS = {"added": ADDED, "removed": REMOVED, "moved": MOVED, "updated": MOVED}


def _referrer_markers(referrers, scale, y):
    """Signature, attestation and SBOM changes on a row above the bands; ones at the same x side by side."""
    parts, last = [], None
    for change in referrers:
        x = scale.x(change.at)
        if last is not None and x < last + 10:
            x = last + 10
        last = x
        glyph = _GLYPHS.get(change.what, _GLYPHS["artifact"])
        tip = (f"{change.what} {change.kind} {_when(change.at)}\n{change.referrer or '?'}\nof {change.subject}")
        parts.append(f'<g class="marker referrer {_e(change.what)} {_e(change.kind)}" '
                     f'fill="{_REFERRER_COLOURS.get(change.kind, MUTED)}"><title>{_e(tip)}</title>'
                     f'{glyph(x, y, 5)}</g>')
    return "".join(parts)


def _marker_legend(x, y, referrers=True):
    """What the marks mean, on one row."""
    entries = [(f'<path d="M{x} {y - 6} L{x + 10} {y - 6} L{x + 5} {y} Z" fill="{MOVED}"/>'
                f'<line x1="{x + 5}" y1="{y - 6}" x2="{x + 5}" y2="{y + 6}" stroke="{INK}" stroke-width="2"/>', "moved"),
               (f'<path d="M{x} {y - 5} L{x + 10} {y + 5} M{x} {y + 5} L{x + 10} {y - 5}" stroke="{REMOVED}" '
                f'stroke-width="2.5"/>', "removed"),
               (f'<path d="M{x + 2} {y - 5} L{x + 9} {y + 4} L{x + 2} {y + 4} Z" fill="{ADDED}"/>', "added")]
    if referrers:
        entries += [(f'<g fill="{MUTED}">{_GLYPHS[what](x + 5, y, 5)}</g>', label) for what, label in (
            ("signature", "signature"), ("attestation", "attestation"), ("sbom", "SBOM"), ("artifact", "other"))]
        entries.append(("", "(green: added, red: removed, amber: a cosign tag changed)"))
    parts, offset = [], 0
    for shape, label in entries:
        parts.append(f'<g transform="translate({offset} 0)">{shape}'
                     f'<text x="{x + 16}" y="{y + 4}" fill="{INK}">{_e(label)}</text></g>')
        offset += 38 + 7 * len(label)
    return "".join(parts)


def draw_timeline(timeline, now, links):
    """One tag: a lane per source, bands of the digests it pointed to, marks where it changed, an axis of
    dates and a legend of the digests."""
    moments = [change.at for lane in timeline.lanes for change in lane.changes] + [r.at for r in timeline.referrers]
    first, last = min(moments), max(moments + [now])
    margin = max((last - first) / 50, timedelta(milliseconds=1))
    scale = Scale(first - margin, last, 150, WIDTH - 20)
    parts = [f'<text x="10" y="22" font-size="15" font-weight="bold" fill="{INK}">'
             f'{_e(timeline.name)}</text>']
    y, height = 56, 30
    for lane in timeline.lanes:
        parts.append(f'<text x="{scale.left - 8}" y="{y + height / 2 + 4}" text-anchor="end" fill="{INK}">'
                     f'{_e(lane.source)}</text>')
        if lane.source == REGISTRY and timeline.referrers:
            parts.append(_referrer_markers(timeline.referrers, scale, y - 13))
        parts.append(_lane_drawing(lane, scale, last, y, height, links))
        y += height + 34
    parts.append(_axis(scale, y - 22))
    y += 14
    names = list(dict.fromkeys(band.name for lane in timeline.lanes for band in bands(lane.changes, last)))
    hosts = any(lane.source != REGISTRY for lane in timeline.lanes)
    parts.append(f'<text x="10" y="{y}" font-weight="bold" fill="{INK}">'
                 f'{"Digests and image IDs" if hosts else "Digests"}</text>')
    listed = names[:32]
    for index, name in enumerate(listed):
        x, row_y = 10 + (index % 4) * 270, y + 12 + (index // 4) * 22
        parts.append(f'<a href="{_e(links.digest(name or ""))}"><title>{_e(name or "no digest")}</title>'
                     f'<rect class="swatch" x="{x}" y="{row_y}" width="14" height="14" fill="{colour_of(name or "")}"/>'
                     f'<text x="{x + 20}" y="{row_y + 11}" fill="{INK}">{_e(short(name))}</text></a>')
    y += 12 + math.ceil(len(listed) / 4) * 22
    if len(names) > len(listed):
        parts.append(f'<text x="10" y="{y + 6}" fill="{MUTED}">and {len(names) - len(listed)} more</text>')
        y += 20
    parts.append(_marker_legend(10, y + 14))
    return _svg(y + 30, f"Timeline of {timeline.name}", "".join(parts))


def _nice_step(largest):
    """A round step for a count axis, with at most four steps to `largest`."""
    magnitude = 10 ** max(0, math.floor(math.log10(max(largest, 1))))
    return next(m * magnitude for m in (1, 2, 5, 10) if largest / (m * magnitude) <= 4)


def _day_chart(overview, scale, top, height):
    """Moves, removals and new images per UTC day, stacked bars on the lanes' time scale."""
    parts = []
    largest = max((d.moved + d.removed + d.new_images for d in overview.days), default=0)
    step = _nice_step(largest)
    ceiling = step * max(1, math.ceil(largest / step))
    bottom = top + height
    for value in range(0, ceiling + 1, step):
        y = round(bottom - value / ceiling * height, 1)
        parts.append(f'<line x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" stroke="#d8dee4"/>'
                     f'<text x="{scale.left - 6}" y="{y + 4}" text-anchor="end" class="tick">{value}</text>')
    if overview.counted_since is not None:
        x = scale.x(overview.counted_since)
        parts.append(f'<g class="not-counted"><title>{_e(f"not counted: more than {COUNTED:,} changes match")}'
                     f'</title><rect x="{scale.left}" y="{top}" width="{round(x - scale.left, 1)}" height="{height}" '
                     f'fill="#f6f8fa" stroke="#d8dee4" stroke-dasharray="4 3"/></g>')
    for day in overview.days:
        start = datetime(day.day.year, day.day.month, day.day.day, tzinfo=timezone.utc)
        x1, x2 = scale.x(start), scale.x(start + timedelta(days=1))
        if x2 - x1 < 0.5:
            continue
        width = round(max(x2 - x1 - 1, 1), 1)
        y = bottom
        for count, kind, colour in ((day.moved, "moved", MOVED), (day.removed, "removed", REMOVED),
                                    (day.new_images, "new images", NEW)):
            if not count:
                continue
            bar = count / ceiling * height
            y -= bar
            parts.append(f'<rect class="bar {kind.split()[0]}" x="{x1}" y="{round(y, 1)}" width="{width}" '
                         f'height="{round(bar, 1)}" fill="{colour}"><title>{day.day}: {count} {kind}</title></rect>')
    return "".join(parts)


def draw_overview(overview, title, start, end, now, links):
    """Changes per day, then one lane per tag drawn, on one time scale: whole UTC days from start to end."""
    scale = Scale(start, end, 330, WIDTH - 20)
    parts = [f'<text x="10" y="22" font-size="15" font-weight="bold" fill="{INK}">{_e(title)}</text>']
    x = scale.right - 330
    for colour, label in ((MOVED, "moved"), (REMOVED, "removed"), (NEW, "new images")):
        parts.append(f'<rect x="{x}" y="11" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 17}" y="22" fill="{INK}">{label}</text>')
        x += 110
    parts.append(f'<text x="10" y="60" fill="{MUTED}">changes per day</text>')
    parts.append(_day_chart(overview, scale, 44, 140))
    parts.append(_axis(scale, 190))
    y, height = 232, 18
    for lane in overview.lanes:
        label = str(lane.name) + ("" if lane.source == REGISTRY else f" [{lane.source}]")
        cut = label if len(label) <= 46 else "…" + label[-45:]
        tip = label + (f"\nthe latest {LANE_EVENTS} changes are drawn, {lane.left_off} before them are not"
                       if lane.left_off else "")
        parts.append(f'<a href="{_e(links.timeline(lane.name))}"><title>{_e(tip)}</title>'
                     f'<text x="{scale.left - 8}" y="{y + 13}" text-anchor="end" fill="{INK}">{_e(cut)}</text></a>')
        parts.append(_lane_drawing(lane, scale, now, y, height, links))
        y += height + 6
    if overview.lanes:
        parts.append(_axis(scale, y + 2))
        y += 30
    parts.append(_marker_legend(10, y + 10, referrers=False))
    return _svg(y + 26, title, "".join(parts))
