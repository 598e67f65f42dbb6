"""The one HTTP path every request takes: registries, token servers, redirects, the Hub API, a daemon.

Built on http.client rather than requests so that this module decides everything a hostile
server could abuse: every body is read up to a limit, every request has an overall deadline
(a watchdog shuts the socket when it passes, so a server dripping a byte a minute cannot hold
a run), response headers are bounded by http.client (64 KiB a line, 100 lines), numbers are
ASCII only, proxies come from the environment once per host, `~/.netrc` is never read, and
connections are kept alive per origin. It knows nothing about registries.
"""

import collections
import http.client
import socket
import ssl
import threading
import time
import urllib.request
from base64 import b64encode
from urllib.parse import unquote, urlsplit

from .wire import ascii_int

DEFAULT_DEADLINE = 300.0  # seconds for one request, from connecting to the last byte of its body
READ_CHUNK = 65536


class TransportError(Exception):
    """A request that did not complete. `kind`: tls, unreachable, timeout, deadline, broken, too_large."""

    def __init__(self, kind, message, reason=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.reason = reason or message  # the cause alone: 'No such file or directory'



class _Watch:
    """One request's deadline; the watchdog shuts its socket if it is still open by then."""

    __slots__ = ("at", "sock", "done", "fired")

    def __init__(self, at):
        self.at = at
        self.sock = None
        self.done = False
        self.fired = False


class _Watchdog:
    """A thread that ends requests past their deadline. Every request of a transport has the same
    allowance, so deadlines arrive in order and a queue (not a heap) holds them."""

    def __init__(self):
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._queue = collections.deque()
        self._thread = None

    def watch(self, seconds):
        entry = _Watch(time.monotonic() + seconds)
        with self.lock:
            while self._queue and self._queue[0].done:
                self._queue.popleft()
            self._queue.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-deadlines", daemon=True)
                self._thread.start()
            elif len(self._queue) == 1:
                self._wake.notify()
        return entry

    def attach(self, entry, sock):
        with self.lock:
            entry.sock = sock
            if entry.fired:
                _shut(sock)

    def release(self, entry):
        with self.lock:
            entry.done = True

    def _run(self):
        with self.lock:
            while True:
                while self._queue and self._queue[0].done:
                    self._queue.popleft()
                if not self._queue:
                    self._wake.wait()
                    continue
                entry = self._queue[0]
                left = entry.at - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._queue.popleft()
                entry.fired = True
                if entry.sock is not None:
                    _shut(entry.sock)


def _shut(sock):
    """Unblock whatever thread reads this socket (the socket's own shutdown, even under TLS)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Response:
    """Status and headers of an answer whose body is still on the wire: read it with a limit, or close it."""

    def __init__(self, transport, origin, conn, raw, watch, url):
        self._transport = transport
        self._origin = origin
        self._conn = conn
        self._raw = raw
        self._watch = watch
        self.url = url
        self.status = raw.status
        self.headers = raw.headers  # case-insensitive .get()

    def header(self, name):
        return self.headers.get(name)

    def read(self, limit, what="body"):
        """The whole body, refusing one over `limit` bytes (declared or actual); then the connection
        goes back to the pool."""
        declared = self.headers.get("Content-Length")
        size = ascii_int(declared) if declared is not None else None
        if size is not None and size > limit:
            self.close()
            raise TransportError("too_large", f"{what} of {size} bytes exceeds the {limit}-byte limit")
        chunks, total = [], 0
        try:
            while True:
                chunk = self._raw.read1(READ_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise TransportError("too_large", f"{what} exceeds the {limit}-byte limit")
                chunks.append(chunk)
        except TransportError:
            self.close()
            raise
        except (OSError, http.client.HTTPException, ValueError) as error:
            self.close()
            raise self._transport.failed(self._watch, error, f"reading the {what}") from None
        if self._watch.fired:  # the watchdog's shutdown looks like the end of a body without a length
            self.close()
            raise self._transport.failed(self._watch, None, f"reading the {what}")
        if self._raw.length:  # read1 ends quietly where the server hung up before its Content-Length
            self.close()
            raise TransportError("broken", f"the {what} ended after {total} bytes, {self._raw.length} short")
        self._raw.close()  # read1 leaves a response whose length ran out open; the connection is free again
        self._finish()
        return b"".join(chunks)

    def _empty(self):
        """An answer that has no body (HEAD, 204, 304): done as soon as its headers are."""
        try:
            self._raw.read()
        except (OSError, http.client.HTTPException, ValueError) as error:
            self.close()
            raise self._transport.failed(self._watch, error, "reading the answer") from None
        self._finish()

    def close(self):
        """Abandon the body: the connection cannot be reused."""
        if self._conn is not None:
            self._transport.release(self._watch)
            self._conn.close()
            self._conn = None

    def _finish(self):
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._transport.release(self._watch)
        if self._raw.isclosed() and not self._raw.will_close and not self._watch.fired:
            self._transport.give_back(self._origin, conn)
        else:
            conn.close()


class Transport:
    """Kept-alive connections per origin with bounded reads and a deadline on every request.

    `verify`: True, a CA bundle path, or False (no TLS verification). `timeout`: (connect, read)
    seconds for each blocking step; `deadline`: seconds for a whole request. `unix_socket`: send
    every request over this Unix socket (a Docker daemon) whatever the URL's host.
    """

    def __init__(self, *, verify=True, timeout=(10, 60), deadline=DEFAULT_DEADLINE, user_agent=None,
                 pool_size=8, unix_socket=None):
        self.timeout = timeout
        self.deadline = deadline
        self.user_agent = user_agent
        self.pool_size = pool_size
        self.unix_socket = unix_socket
        self._verify = verify
        self._context = None
        self._idle = collections.defaultdict(list)
        self._lock = threading.Lock()
        self._watchdog = _Watchdog()
        self._proxies = urllib.request.getproxies_environment()
        self._routes = {}

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, collections.defaultdict(list)
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _tls(self):
        if self._context is None:
            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=self._verify if isinstance(self._verify, str) else None)
            self._context = context
        return self._context

    def _route(self, scheme, netloc):
        """(proxy host, proxy port, Proxy-Authorization) for this origin, or None: the environment's
        HTTP(S)_PROXY and NO_PROXY, read once per origin."""
        key = (scheme, netloc)
        if key not in self._routes:
            host = urlsplit(f"//{netloc}").hostname or ""
            proxy = self._proxies.get(scheme)
            route = None
            if proxy and self.unix_socket is None and not urllib.request.proxy_bypass_environment(host, self._proxies):
                parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
                if parts.scheme != "http" or not parts.hostname:
                    raise TransportError("unreachable", f"unsupported proxy {parts.scheme}://{parts.hostname} "
                                                        "(only http:// proxies are supported)")
                login = None
                if parts.username is not None:
                    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                    login = "Basic " + b64encode(pair.encode()).decode()
                route = (parts.hostname, parts.port or 80, login)
            self._routes[key] = route
        return self._routes[key]

    def _connect(self, origin):
        scheme, netloc, route = origin
        connect_timeout = min(self.timeout[0], self.deadline)  # the watchdog only sees a connected socket
        if self.unix_socket is not None:
            return _UnixConnection(self.unix_socket, connect_timeout)
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
        if route is not None:
            proxy_host, proxy_port, login = route
            if scheme == "https":
                conn = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=connect_timeout,
                                                   context=self._tls())
                conn.set_tunnel(host, port or 443, headers={"Proxy-Authorization": login} if login else None)
                return conn
            return http.client.HTTPConnection(proxy_host, proxy_port, timeout=connect_timeout)
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=self._tls())
        return http.client.HTTPConnection(host, port, timeout=connect_timeout)

    def give_back(self, origin, conn):
        with self._lock:
            idle = self._idle[origin]
            if len(idle) < self.pool_size:
                idle.append(conn)
                return
        conn.close()

    def release(self, watch):
        self._watchdog.release(watch)

    def _take(self, origin):
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self._connect(origin), False

    def failed(self, watch, error, doing):
        """A TransportError for what went wrong while `doing` something."""
        if watch.fired:
            return TransportError("deadline", f"gave up after {self.deadline:g}s (the request's deadline) {doing}")
        if isinstance(error, ssl.SSLError):
            return TransportError("tls", tls_reason(error))
        if isinstance(error, TimeoutError):
            return TransportError("timeout", f"timed out {doing}")
        if isinstance(error, http.client.HTTPException):
            return TransportError("broken", f"broken answer {doing} ({error.__class__.__name__})")
        if isinstance(error, ValueError):
            return TransportError("broken", f"broken answer {doing}")
        reason = getattr(error, "strerror", None) or error.__class__.__name__
        return TransportError("unreachable", f"connection failed {doing} ({reason})", reason)

    def request(self, method, url, headers=None, body=None):
        """Send one request and return its Response once the headers are in; the body is read later
        with a limit. A kept-alive connection the server has closed meanwhile is replaced once."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TransportError("broken", f"not an http(s) URL: {url[:200]!r}")
        route = self._route(parts.scheme, parts.netloc)
        origin = (parts.scheme, parts.netloc, route)
        target = url if route is not None and parts.scheme == "http" else (parts.path or "/") + (
            f"?{parts.query}" if parts.query else "")
        sent = {"User-Agent": self.user_agent} if self.user_agent else {}
        sent.update(headers or {})
        if route is not None and parts.scheme == "http" and route[2]:
            sent["Proxy-Authorization"] = route[2]
        watch = self._watchdog.watch(self.deadline)
        try:
            return self._exchange(method, url, target, sent, body, origin, watch)
        except BaseException:
            self._watchdog.release(watch)
            raise

    def _exchange(self, method, url, target, headers, body, origin, watch):
        while True:
            conn, reused = self._take(origin)
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.settimeout(self.timeout[1])
                self._watchdog.attach(watch, conn.sock)
                conn.request(method, target, body=body, headers=headers)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException, ValueError) as error:
                conn.close()
                stale = reused and isinstance(error, (ConnectionError, http.client.RemoteDisconnected,
                                                      http.client.BadStatusLine)) and not watch.fired
                if stale:
                    continue
                raise self.failed(watch, error, f"on {method} {_origin_text(url)}") from None
            response = Response(self, origin, conn, raw, watch, url)
            if method == "HEAD" or raw.status in (204, 304) or raw.status < 200:
                response._empty()
            return response


def _origin_text(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def tls_reason(error):
    """The ssl module's own words: 'certificate verify failed: ...'."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return f"TLS error ({getattr(error, 'reason', None) or error.__class__.__name__})"
