"""Notifications through apprise: one message per run that changed something or failed, to every
`--notify` URL (Slack, Teams, Discord, Matrix, email, JSON webhooks and 100+ more), sent in parallel
within one deadline. A message that cannot be delivered is a warning of the run, never its failure.

Secrets stay out of everything written: a URL names them as `${VAR}`, expanded from the environment
only in the thread that sends it; what is shown or stored of a target is its scheme and, when that is
an address, its host (`shown`). Nothing apprise logs is passed on: only an HTTP status is read from it.
apprise is imported on first use, so `ledger --help` and the reading commands never load it.
"""

import functools
import logging
import os
import re
import threading
import time
from dataclasses import dataclass

from .findings import NOTIFY_FAILED, REGISTRY, Problem, identity
from .limits import NOTIFY_ITEMS, NOTIFY_KINDS
from .terminal import printable, short_digest
from .times import now

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
# A host worth showing: a DNS name with a dot, localhost, an IP address, or a ${VAR}; with a port. Anything
# else in a URL's host place is shown as "...".
_ADDRESS = re.compile(r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\]|\$\{\w+\})(?::\d{1,5})?")
# The schemes whose host place holds a server's address. Most of apprise's services keep a token there
# instead (slack://T/B/C, discord://ID/TOKEN, pbul://o.TOKEN, which looks like a host name): for them only
# the scheme is shown.
_HOST_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "apprise",
                           "apprises", "ntfy", "ntfys", "gotify", "gotifys", "matrix", "matrixs", "mmost",
                           "mmosts", "rocket", "rockets", "ncloud", "nclouds", "mastodon", "mastodons"})
# Messages carry text a registry chose (its error messages, repository and tag names), and chat services read
# messages as markup: @everyone, @here, @channel and @room notify a whole channel; <!channel>, <!here>, <@id>,
# <@&id>, <#id> and <at> are Slack's, Discord's and Teams' mentions, and <url> and <url|text> Slack's links;
# [text](url) is Markdown's, which shows other words than where it goes. So a zero-width space follows every
# @, every < becomes a lookalike (each of those begins with one), and `](` is broken by a zero-width space:
# the words still read, and nothing in them is a mention or a link.
_INERT = str.maketrans({"@": "@\u200b", "<": "\u2039"})
_HTTP_STATUS = re.compile(r"\berror=(\d{3})\b")  # how apprise's plugins log a refused request
_LINE = 300  # characters of one listed change or error


class NotifyError(ValueError):
    """A --notify setting that cannot be used; the message names the target as `shown` does."""


def shown(url):
    """A target as it may be printed and stored: scheme and host only, never a user, password, path or
    query, where services keep their tokens."""
    if _VARIABLE.fullmatch(url):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "..."
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if scheme.lower() not in _HOST_SCHEMES or not _ADDRESS.fullmatch(host):
        return f"{scheme}://..."
    return f"{scheme}://{host}" + ("/..." if len(rest) > len(authority) else "")


def expand(url):
    """The URL with each ${VAR} replaced by the environment's value, as it is (percent-encode it in the
    variable if it holds `/`, `@` or `?`). An unset variable is a NotifyError."""
    def value(match):
        name = match.group(1)
        if name not in os.environ:
            raise NotifyError(f"environment variable {name} is not set")
        return os.environ[name]
    return _VARIABLE.sub(value, url)


def kinds(values):
    """The kinds named by texts such as `--notify-on`'s (each comma-separated), checked."""
    chosen = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = [kind for kind in chosen if kind not in NOTIFY_KINDS]
    if unknown:
        raise NotifyError(f"--notify-on: {unknown[0]!r} is not one of {', '.join(NOTIFY_KINDS)}")
    if not chosen:
        raise NotifyError(f"--notify-on: name at least one of {', '.join(NOTIFY_KINDS)}")
    return frozenset(chosen)


@dataclass(frozen=True)
class Notifications:
    """Where a run's notification goes (URLs as given, ${VAR} unexpanded), what it tells, and how long
    all deliveries together may take."""

    urls: tuple
    on: frozenset
    deadline: float

    def check(self):
        """Every URL must expand and be one apprise can send to: a typo fails before any run."""
        apprise = _apprise()
        for number, url in enumerate(self.urls, 1):
            try:
                service = apprise.Apprise.instantiate(expand(url), asset=_asset())
            except NotifyError as error:
                raise NotifyError(f"--notify {shown(url)} (target {number}): {error}") from None
            if service is None:
                raise NotifyError(f"--notify {shown(url)} (target {number}): not a URL apprise can send to "
                                  "(https://github.com/caronc/apprise/wiki lists them)")
        return self

    def appended(self, changes):
        """Notify about a run as the ledger now holds it (store.changes.RunChanges, read once committed);
        returns the warnings of deliveries that failed."""
        message = _message(changes, self.on)
        return self._send(*message) if message else []

    def failed(self, reason):
        """A run that could not be appended: best effort, with what made it fail."""
        if "failed" not in self.on:
            return []
        return self._send("registry ledger: a run failed", printable(reason)[:_LINE], "failure")

    def _send(self, title, body, kind):
        try:
            return _deliver(self.urls, inert(title), inert(body), kind, self.deadline)
        except Exception as error:  # a notification never costs the run it tells about
            return [_problem("every target", f"not sent ({error.__class__.__name__})")]


def inert(text):
    """`text` with no mention and no link in it, as people still read it (see _INERT)."""
    return text.translate(_INERT).replace("](", "]\u200b(")


def _message(changes, on):
    """(title, body, notify type) of a run, or None when it has nothing `on` asks for."""
    def chosen(kind, new):
        return kind in on or (new and "new_images" in on)

    # A rollback is a move back to a digest the key held before, so never a new image: told with the moves,
    # or alone when `on` names it and not them.
    rollbacks = changes.rollbacks if "rollback" in on and "moved" not in on else 0
    total = sum(count for (kind, new), count in changes.counts.items() if chosen(kind, new)) + rollbacks
    told = changes.status in on
    errors = changes.errors if told else []
    if not total and not told:
        return None
    parts = []
    for kind in ("added", "moved", "updated", "removed"):
        count = changes.counts[kind, False] + changes.counts[kind, True]
        if kind in on and count:
            back = f" ({changes.rollbacks} rolled back)" if kind == "moved" and changes.rollbacks else ""
            parts.append(f"{count} {kind}{back}")
    if rollbacks:
        parts.append(f"{rollbacks} rolled back")
    new_images = sum(count for (_, new), count in changes.counts.items() if new)
    if "new_images" in on and new_images:
        parts.append(f"{new_images} new image{'s' * (new_images != 1)}")
    failures = sum(problem.count for problem in errors)  # a row stands for every failure of its kind
    if failures:
        parts.append(f"{failures} error{'s' * (failures != 1)}")
    title = f"registry ledger: run {changes.run_id} {changes.status}" + (f": {', '.join(parts)}" if parts else "")
    told_first = sorted(changes.changes, key=lambda change: change.change != "rollback")  # never crowded out
    lines = [_change_line(change, on) for change in told_first
             if chosen(change.kind, change.new_image) or (change.change == "rollback" and "rollback" in on)]
    lines += [f"error {printable(str(problem))[:_LINE]}" for problem in errors]
    listed = lines[:NOTIFY_ITEMS]
    more = total + len(errors) - len(listed)
    body = "\n".join(listed + ([f"... and {more} more (run {changes.run_id} in the ledger)"] if more > 0 else []))
    kind = "failure" if changes.status == "failed" else "warning" if changes.status == "partial" else "info"
    return title, body or title, kind


def _change_line(change, on):
    def told(digest, image):
        name = identity(digest, image, change.source)  # a daemon's copy is told by its image ID
        return short_digest(name) if name else "-"
    key = f"{change.registry}/{change.repo}:{change.tag}" + ("" if change.source == REGISTRY else f" [{change.source}]")
    before, after = told(change.prev_digest, change.prev_image), told(change.digest, change.image)
    what = {"moved": f"{before} -> {after}", "removed": f"was {after}"}.get(change.kind, after)
    label = change.kind if change.kind in on else "new image"
    if change.change == "rollback" and ("moved" in on or "rollback" in on):
        label, what = "rolled back", f"{what} (back to what it pointed to from {change.seen_before or '?'} " \
                                     f"to {change.left_at or '?'})"
    elif change.change == "platforms_added" and label == "moved":
        label, what = "platforms added", f"{what} (+{', +'.join(change.platforms_added) or '?'})"
    also = " (new image)" if label != "new image" and change.new_image and "new_images" in on else ""
    return printable(f"{label} {key} {what}{also}")[:_LINE]


def _problem(where, message):
    return Problem(at=now(), registry="", stage="notify", message=f"{where}: {message}", code=NOTIFY_FAILED,
                   source="notify")


_in_flight = {}  # URL as given -> the thread still sending to it (a receiver that holds its answer)
_in_flight_lock = threading.Lock()


def _deliver(urls, title, body, kind, deadline):
    """Send to every URL at once, wait for all of them until the deadline, and return a warning for each
    that failed or is still going (its thread goes on, daemonic, until apprise's own timeouts end it; the
    next run skips that target until then, so a receiver that never answers cannot pile threads up)."""
    problems, sending = [], []
    with _in_flight_lock:
        for number, url in enumerate(urls, 1):
            where = f"{shown(url)} (target {number})"
            previous = _in_flight.get(url)
            if previous is not None and previous.is_alive():
                problems.append(_problem(where, "not sent: the previous notification to it is still going"))
                continue
            attempt = _Attempt(url)
            thread = threading.Thread(target=attempt.send, args=(title, body, kind), name="ledger-notify",
                                      daemon=True)
            _in_flight[url] = thread
            sending.append((where, attempt, thread))
            thread.start()
    end = time.monotonic() + deadline
    for _, _, thread in sending:
        thread.join(max(0.0, end - time.monotonic()))
    for where, attempt, thread in sending:
        if thread.is_alive():
            problems.append(_problem(where, f"not delivered: no answer within {deadline:g} s"))
        elif attempt.reason:
            problems.append(_problem(where, f"not delivered: {attempt.reason}"))
    return problems


class _Attempt:
    """One delivery, in its own thread. `reason` says why it failed, in words of our own."""

    def __init__(self, url):
        self.url = url
        self.reason = "it ended without an answer"

    def send(self, title, body, kind):
        _reasons.status = None
        try:
            apprise = _apprise()
            service = apprise.Apprise.instantiate(expand(self.url), asset=_asset())
            if service is None:
                self.reason = "not a URL apprise can send to"
            elif service.notify(body=body, title=title, notify_type=apprise.NotifyType(kind),
                                body_format=apprise.NotifyFormat.TEXT):
                self.reason = None
            else:
                self.reason = f"HTTP {_reasons.status}" if _reasons.status else "refused or unreachable"
        except NotifyError as error:
            self.reason = str(error)
        except Exception as error:  # apprise's words may hold the URL: only the kind of failure is kept
            self.reason = f"apprise failed ({error.__class__.__name__})"


class _Reasons(logging.Handler):
    """apprise's log, read for one thing: the HTTP status a service refused with, kept per thread. Its
    messages are never printed (some name the host or URL, and so a token)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.local = threading.local()

    @property
    def status(self):
        return getattr(self.local, "status", None)

    @status.setter
    def status(self, value):
        self.local.status = value

    def emit(self, record):
        try:
            found = _HTTP_STATUS.search(str(record.msg % record.args if record.args else record.msg))
        except (TypeError, ValueError):
            return
        if found:
            self.status = found.group(1)


_reasons = _Reasons()


@functools.cache
def _apprise():
    """apprise, with its logger kept to itself: nothing it logs reaches stderr."""
    import apprise
    logger = logging.getLogger("apprise")
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    logger.addHandler(_reasons)
    return apprise


def _asset():
    """apprise's settings for one send: in this thread, and nothing stored on disk."""
    return _apprise().AppriseAsset(async_mode=False, storage_mode="memory")
