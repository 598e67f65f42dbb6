"""What a terminal is shown while a run goes: the progress bar on stderr, and -v's line per HTTP request.
Both are told of each request by the transport (`Plan.observe`, through `observer`)."""

import sys
import threading
import time

import click

from .terminal import printable


class Progress:
    """One line on a terminal's stderr, redrawn at most ten times a second: tags resolved out of tags
    known, requests per second, and once every tag list is in (the total is known) a countdown to the
    end. Nothing until the first tags are known, so never '0/0'."""

    EVERY = 0.1

    def __init__(self, enabled):
        self.enabled = enabled
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.drawn = 0.0
        self.tags = self.done = self.lists = self.requests = 0
        self.resolving = None  # when the first tags were known: the countdown's rate is from then
        self.shown = False

    def __call__(self, tags=0, done=0, lists=0):
        with self.lock:
            self.tags += tags
            if self.tags and self.resolving is None:
                self.resolving = time.monotonic()
            self.done += done
            self.lists += lists
            self._draw()

    def request(self):
        with self.lock:
            self.requests += 1
            self._draw()

    def _draw(self, final=False):
        now = time.monotonic()
        if not self.enabled or (now - self.drawn < self.EVERY and not final):
            return
        self.drawn = now
        elapsed = max(now - self.started, 1e-3)
        rate = f"{self.requests / elapsed:.0f} req/s"
        if not self.tags:
            line = f"collecting: listing ({self.requests} requests, {rate})"
        else:
            line = f"collecting {self.done}/{self.tags}{'+' if self.lists else ''} tags  {rate}"
            if not self.lists and self.done:
                left = round((self.tags - self.done) * (now - self.resolving) / self.done)
                line += f"  ETA {left // 60}:{left % 60:02d}"
        sys.stderr.write(f"\r\x1b[K{line}")
        sys.stderr.flush()
        self.shown = True

    def close(self):
        """The last count stays on its line, as a finished bar does; what follows starts below it."""
        with self.lock:
            if self.shown:
                self._draw(final=True)
                sys.stderr.write("\n")
                sys.stderr.flush()
            self.enabled = self.shown = False


class Trace:
    """-v: one line on stderr per HTTP request, as it is answered: method, URL, status, milliseconds. The
    URL without its query (a token server's carries the account and scopes) or any user:password in it,
    and never a header; through printable, since a redirect's URL is a server's word."""

    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, method, url, status, seconds, failure):
        shown = shown_url(url)
        outcome = str(status) if failure is None else f"failed ({failure})"
        line = printable(f"{method} {shown} {outcome} {seconds * 1000:.0f}ms")
        with self.lock:
            click.echo(line, err=True)


def shown_url(url):
    """A URL as -v prints it: no user:password, no query (it may carry an account or a token), no
    fragment; `?...` says a query was dropped."""
    base, query, _ = url.partition("#")[0].partition("?")
    scheme, sep, rest = base.partition("://")
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}" + ("?..." if query else "")


def observer(progress, trace):
    """What the transport tells of each request: the progress bar's rate, and -v's line."""
    if trace is None:
        return lambda *request: progress.request()
    return lambda *request: (progress.request(), trace(*request))
