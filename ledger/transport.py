"""The one HTTP path every request takes: registries, token servers, redirects, the Hub API, a daemon.

Not requests nor urllib3, so that this module decides everything a hostile server could abuse: every
body is read up to a limit, every request has an overall deadline (one watchdog thread shuts the socket
when it passes, so a server dripping a byte every few seconds, which no read timeout catches, cannot hold
a run), an answer's head is bounded (64 KiB a line, 100 lines, as http.client bounds it), numbers are
ASCII only, proxies come from the environment once per host, `~/.netrc` is never read, and connections
are kept alive per origin. It knows nothing about registries.

The request path is lean, for a run of thousands of HEADs (urllib3's pool costs three to four times its CPU
a HEAD: scripts/bench_collect.py): http.client connects (TCP, TLS, a proxy's tunnel: its public
`connect()` and `sock`), and the rest is here, on public socket and io calls only: a request's head is
written as bytes (its fixed lines made once per origin, with http.client's checks), an answer's status
line, headers and body framing (a length, chunks, or up to the close) are read from the connection's
one buffered reader, a URL of a known origin is split without urlsplit, and a request costs the
watchdog a queue entry, never a wake-up.
"""

import collections
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.request
from base64 import b64encode
from urllib.parse import unquote, urlsplit

from .limits import DEFAULT_DEADLINE
from .wire import ascii_int

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
    """One thread that ends the requests of a transport past their deadline, however many there are.

    Every request has the same allowance, so deadlines arrive in the order requests start and a queue
    (not a heap) holds them. Nothing wakes the thread when a request starts: it sleeps until the
    first deadline in the queue, or a whole allowance when the queue is empty, and any request
    started meanwhile has a deadline no earlier than that. A request costs a lock and a queue entry,
    never a thread switch."""

    def __init__(self, allowance):
        self.allowance = allowance
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._queue = collections.deque()
        self._thread = None

    def watch(self):
        entry = _Watch(time.monotonic() + self.allowance)
        with self.lock:
            queue = self._queue
            while queue and queue[0].done:
                queue.popleft()
            queue.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-deadlines", daemon=True)
                self._thread.start()
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
        queue = self._queue
        with self.lock:
            while True:
                while queue and queue[0].done:
                    queue.popleft()
                if not queue:
                    self._wake.wait(self.allowance)  # a request starting now is due no earlier than this wakes
                    continue
                entry = queue[0]
                left = entry.at - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                queue.popleft()
                entry.fired = True
                if entry.sock is not None:
                    _shut(entry.sock)


def _shut(sock):
    """Unblock whatever thread reads this socket (the socket's own shutdown, even under TLS)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Headers(dict):
    """A response's headers by lower-case name, the first of a repeated name winning (as email.message's
    `get` does); `.get(name)` in any case."""

    __slots__ = ("lines",)

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):  # as email.message's: None when absent
        return dict.get(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def get_all(self, name, failobj=None):
        name = name.lower()
        values = [value for key, value in self.lines if key.lower() == name]
        return values or failobj

    def items(self):
        return list(self.lines)


# Bounds of an answer's head, the same as http.client keeps (but ours: its constants are private).
_MAX_LINE = 65536  # a status, header, chunk-size or trailer line
_MAX_HEADERS = 100  # lines of one answer's head (and of a chunked body's trailer)
_MAX_INTERIM = 10  # 1xx answers before the real one
_FIELD_NAME = re.compile(r"[!-9;-~]*")  # visible ASCII but ':' (what email's parser takes as a name)
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")
_EOL = (b"\r\n", b"\n")


def _line(reader, what):
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise http.client.LineTooLong(what)
    return line


def _read_headers(reader):
    """The header lines up to the blank one, bounded (a line of 64 KiB, 100 lines), parsed as email.message
    would for `get`: `Name: value`, a line starting with a space or tab continuing the one before, the first
    line that is neither ending the headers."""
    headers, lines, count, parsing = _Headers(), [], 0, True
    while True:
        line = _line(reader, "header line")
        count += 1
        if count > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
        if not parsing:
            continue
        text = line.decode("iso-8859-1")
        if text[0] in " \t":  # a continuation line (email's parser drops one with nothing to continue)
            if lines:
                name, value = lines[-1]
                lines[-1] = (name, value + "\r\n" + text.rstrip("\r\n"))
            continue
        name, colon, value = text.partition(":")
        if count == 1 and not colon and text.startswith("From "):
            continue  # email's parser skips an mbox `From ` line first
        if not colon or not _FIELD_NAME.fullmatch(name):
            parsing = False  # email's parser takes the rest for a body: no header of it counts
            continue
        lines.append((name, value.lstrip(" \t").rstrip("\r\n")))
    for name, value in lines:
        headers.setdefault(name.lower(), value)
    headers.lines = lines
    return headers


def _status(reader):
    """(version, status) of a status line, as http.client takes one: `HTTP/1.x NNN reason`."""
    line = _line(reader, "status line")
    if not line:
        raise http.client.RemoteDisconnected("the server closed the connection without an answer")
    parts = line.decode("iso-8859-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isascii() and parts[1].isdigit()
                                                                      and len(parts[1]) == 3):
        raise http.client.BadStatusLine(line[:200].decode("iso-8859-1"))
    if parts[0] not in ("HTTP/1.0", "HTTP/1.1"):
        raise http.client.UnknownProtocol(parts[0][:50])
    return parts[0], int(parts[1])


class _Answer:
    """An answer's head and how its body is framed (RFC 9112 6.3): none, chunks, a length, or up to the close."""

    __slots__ = ("status", "headers", "chunked", "left", "will_close")

    def __init__(self, reader, method):
        for _ in range(_MAX_INTERIM + 1):
            version, status = _status(reader)
            headers = _read_headers(reader)
            if status >= 200 or status == 101:
                break
        else:
            raise http.client.HTTPException(f"more than {_MAX_INTERIM} interim answers")
        self.status, self.headers = status, headers
        tokens = (headers.get("connection") or "").lower()
        self.will_close = "close" in tokens if version == "HTTP/1.1" else "keep-alive" not in tokens
        encoding = headers.get("transfer-encoding")
        self.chunked = encoding is not None and encoding.strip().lower() == "chunked"
        if method == "HEAD" or status in (204, 304) or status < 200:
            self.chunked, self.left = False, 0
        elif encoding is not None:
            self.left = None  # chunked, or an encoding we do not decode: then up to the close
        else:
            self.left = ascii_int(headers.get("content-length"))
        if self.left is None and not self.chunked:
            self.will_close = True

    def pieces(self, reader):
        """The body's bytes as they come, one read at most a piece (so the watchdog's shutdown ends it)."""
        if self.chunked:
            yield from self._chunks(reader)
        elif self.left is None:
            while piece := reader.read1(READ_CHUNK):
                yield piece
        else:
            while self.left:
                piece = reader.read1(min(self.left, READ_CHUNK))
                if not piece:
                    return  # short: the caller says by how much
                self.left -= len(piece)
                yield piece

    def _chunks(self, reader):
        while True:
            match = _CHUNK_SIZE.fullmatch(_line(reader, "chunk size"))
            if match is None:
                raise http.client.HTTPException("a chunk size that is not one")
            size = int(match.group(1), 16)
            if size == 0:
                break
            while size:
                piece = reader.read1(min(size, READ_CHUNK))
                if not piece:
                    raise http.client.IncompleteRead(b"")
                size -= len(piece)
                yield piece
            if _line(reader, "chunk end") not in _EOL:
                raise http.client.HTTPException("a chunk longer than its size")
        for _ in range(_MAX_HEADERS):  # the trailer, up to its blank line
            line = _line(reader, "trailer line")
            if line in _EOL:
                return
            if not line:
                raise http.client.IncompleteRead(b"")
        raise http.client.HTTPException(f"got more than {_MAX_HEADERS} trailer lines")


class _Connection:
    """One kept-alive connection: http.client connects it (TCP, TLS, a proxy's CONNECT tunnel, a Unix
    socket); requests are written as bytes and answers read by _Answer on one buffered reader."""

    __slots__ = ("http", "sock", "reader")

    def __init__(self, http_connection):
        self.http = http_connection
        self.sock = None
        self.reader = None

    def connect(self, read_timeout):
        self.http.connect()
        self.sock = self.http.sock
        self.sock.settimeout(read_timeout)
        self.reader = self.sock.makefile("rb")

    def close(self):
        reader, self.reader, self.sock = self.reader, None, None
        if reader is not None:
            reader.close()
        self.http.close()


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

    __slots__ = ("_transport", "_origin", "_conn", "_answer", "_watch", "url", "status", "headers")

    def __init__(self, transport, origin, conn, answer, watch, url):
        self._transport = transport
        self._origin = origin
        self._conn = conn
        self._answer = answer
        self._watch = watch
        self.url = url
        self.status = answer.status
        self.headers = answer.headers  # case-insensitive .get()

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
        if self._conn is None:
            return b""  # an answer without a body, done already
        chunks, total = [], 0
        try:
            for chunk in self._answer.pieces(self._conn.reader):
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
        if self._answer.left:  # the server hung up before its Content-Length
            self.close()
            raise TransportError("broken", f"the {what} ended after {total} bytes, {self._answer.left} short")
        self._finish()
        return b"".join(chunks)

    def close(self):
        """Abandon the body: the connection cannot be reused."""
        if self._conn is not None:
            self._transport.release(self._watch)
            self._conn.close()
            self._conn = None

    def _finish(self):
        """The body is read (or there is none): the connection serves the next request, unless it closes."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._transport.release(self._watch)
        if not self._answer.will_close and not self._watch.fired:
            self._transport.give_back(self._origin, conn)
        else:
            conn.close()


class _Origin:
    """Where the requests for one scheme://netloc go, worked out once: the route (direct, or which
    proxy), what a request line names, and the fixed lines of every request's head."""

    __slots__ = ("key", "scheme", "netloc", "route", "absolute", "head")

    def __init__(self, key, scheme, netloc, route, absolute, head):
        self.key = key
        self.scheme = scheme
        self.netloc = netloc
        self.route = route
        self.absolute = absolute  # a plain-HTTP proxy: the request line names the whole URL
        self.head = head  # b"Host: ...\r\nUser-Agent: ...\r\nAccept-Encoding: identity\r\n"


_PLAIN_URL = re.compile(r"(https?)://([!-~]*?)([/?#][!-~]*)?")  # printable ASCII: what urlsplit leaves as is
_DISALLOWED_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")  # as http.client refuses in a request line
_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")  # as http.client's putheader takes a name
_HEADER_LINES = 512  # encoded header lines kept (Accept, Authorization tokens): a bound on the memo


class Transport:
    """Kept-alive connections per origin with bounded reads and a deadline on every request.

    `verify`: True, a CA bundle path, or False (no TLS verification). `timeout`: (connect, read)
    seconds for each blocking step; `deadline`: seconds for a whole request. `unix_socket`: send
    every request over this Unix socket (a Docker daemon) whatever the URL's host. `observe`, when set, is
    told of every request once its answer's headers are in (or it failed): `observe(method, url, status,
    seconds, failure)`, status None and `failure` the reason when it failed; it sees no header.
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
        self._watchdog = _Watchdog(deadline)
        self._proxies = urllib.request.getproxies_environment()
        self._routes = {}
        self._origins = {}  # "scheme://netloc" -> _Origin
        self._lines = {}  # (name, value) -> b"Name: value\r\n", checked once
        self.observe = None

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

    def _locate(self, url):
        """(origin, request target) of a URL: printable ASCII URLs, all a registry's own, are split here
        and their origin looked up; anything else goes through urlsplit."""
        match = _PLAIN_URL.fullmatch(url)
        if match is not None and "[" not in match.group(2) and "@" not in match.group(2):
            scheme, netloc, rest = match.groups()
            rest = (rest or "").split("#", 1)[0]
            path, _, query = rest.partition("?")
        else:
            try:
                parts = urlsplit(url)
            except ValueError:
                parts = None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise TransportError("broken", f"not an http(s) URL: {url[:200]!r}")
            scheme, netloc, path, query = parts.scheme, parts.netloc, parts.path, parts.query
        if not netloc:
            raise TransportError("broken", f"not an http(s) URL: {url[:200]!r}")
        origin = self._origins.get(f"{scheme}://{netloc}")
        if origin is None:
            origin = self._origin(scheme, netloc)
        if origin.absolute:
            return origin, url
        return origin, (path or "/") + (f"?{query}" if query else "")

    def _origin(self, scheme, netloc):
        route = self._route(scheme, netloc)
        absolute = route is not None and scheme == "http"
        if self.unix_socket is not None:
            host = "localhost"
        elif absolute:
            host = netloc  # as http.client names an absolute URL's host
        else:
            try:
                parts = urlsplit(f"//{netloc}")
                hostname, port = parts.hostname or "", parts.port
            except ValueError as error:
                raise TransportError("broken", f"not an http(s) URL: {netloc[:200]!r} ({error})") from None
            host = f"[{hostname.split('%', 1)[0]}]" if ":" in hostname else hostname
            if port is not None and port != (443 if scheme == "https" else 80):
                host = f"{host}:{port}"
        if _DISALLOWED_IN_TARGET.search(host):  # as http.client checks a host
            raise TransportError("broken", f"not an http(s) URL: {netloc[:200]!r}")
        lines = [("Host", host)] + ([("User-Agent", self.user_agent)] if self.user_agent else [])
        lines.append(("Accept-Encoding", "identity"))  # as http.client says it: no compressed bodies
        if absolute and route[2]:
            lines.append(("Proxy-Authorization", route[2]))
        try:
            head = b"".join(_header_line(name, value) for name, value in lines)
        except ValueError as error:
            raise TransportError("broken", f"not an http(s) URL: {netloc[:200]!r} ({error})") from None
        origin = _Origin((scheme, netloc, route), scheme, netloc, route, absolute, head)
        with self._lock:
            return self._origins.setdefault(f"{scheme}://{netloc}", origin)

    def _connect(self, origin):
        scheme, netloc, route = origin.scheme, origin.netloc, origin.route
        connect_timeout = min(self.timeout[0], self.deadline)  # the watchdog only sees a connected socket
        if self.unix_socket is not None:
            return _Connection(_UnixConnection(self.unix_socket, connect_timeout))
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
        if route is not None:
            proxy_host, proxy_port, login = route
            if scheme == "https":
                conn = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=connect_timeout,
                                                   context=self._tls())
                conn.set_tunnel(host, port or 443, headers={"Proxy-Authorization": login} if login else None)
                return _Connection(conn)
            return _Connection(http.client.HTTPConnection(proxy_host, proxy_port, timeout=connect_timeout))
        if scheme == "https":
            return _Connection(http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=self._tls()))
        return _Connection(http.client.HTTPConnection(host, port, timeout=connect_timeout))

    def give_back(self, origin, conn):
        with self._lock:
            idle = self._idle[origin.key]
            if len(idle) < self.pool_size:
                idle.append(conn)
                return
        conn.close()

    def release(self, watch):
        self._watchdog.release(watch)

    def _take(self, origin):
        with self._lock:
            idle = self._idle.get(origin.key)
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

    def _head(self, method, origin, target, headers, body):
        """The request's head as bytes: what http.client would send, its checks included (no control
        character or space in the target, no line break in a header)."""
        if _DISALLOWED_IN_TARGET.search(target) or not method.isalpha():
            raise http.client.InvalidURL(f"can't send {method} {target[:200]!r}: a control character or space")
        parts = [f"{method} {target} HTTP/1.1\r\n".encode("ascii"), origin.head]
        lines = self._lines
        for name, value in (headers or {}).items():
            line = lines.get((name, value))
            if line is None:
                line = _header_line(name, value)
                if len(lines) >= _HEADER_LINES:
                    lines.clear()
                lines[(name, value)] = line
            parts.append(line)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(b"Content-Length: %d\r\n" % len(body or b""))
        parts.append(b"\r\n")
        return b"".join(parts)

    def request(self, method, url, headers=None, body=None):
        """Send one request and return its Response once the headers are in; the body is read later
        with a limit. A kept-alive connection the server has closed meanwhile is replaced once."""
        if self.observe is None:
            return self._request(method, url, headers, body)
        started = time.monotonic()
        try:
            response = self._request(method, url, headers, body)
        except TransportError as error:
            self.observe(method, url, None, time.monotonic() - started, error.message)
            raise
        self.observe(method, url, response.status, time.monotonic() - started, None)
        return response

    def _request(self, method, url, headers, body):
        origin, target = self._locate(url)
        watch = self._watchdog.watch()
        try:
            return self._exchange(method, url, origin, target, headers, body, watch)
        except BaseException:
            self._watchdog.release(watch)
            raise

    def _exchange(self, method, url, origin, target, headers, body, watch):
        try:
            head = self._head(method, origin, target, headers, body)
        except (http.client.HTTPException, ValueError) as error:
            raise self.failed(watch, error, f"on {method} {_origin_text(url)}") from None
        while True:
            conn, reused = self._take(origin)
            try:
                if conn.sock is None:
                    conn.connect(self.timeout[1])
                self._watchdog.attach(watch, conn.sock)
                conn.sock.sendall(head + body if body else head)
                answer = _Answer(conn.reader, method)
            except (OSError, http.client.HTTPException, ValueError) as error:
                conn.close()
                stale = reused and isinstance(error, (ConnectionError, http.client.RemoteDisconnected,
                                                      http.client.BadStatusLine)) and not watch.fired
                if stale:
                    continue
                raise self.failed(watch, error, f"on {method} {_origin_text(url)}") from None
            response = Response(self, origin, conn, answer, watch, url)
            if answer.left == 0:  # no body (HEAD, 204, 304, or a length of 0): the connection is free now
                response._finish()
            return response


def _header_line(name, value):
    """`Name: value\r\n` as http.client's putheader writes it, refusing what it refuses (a name that is
    not one, a value with a bare line break) and anything that is not Latin-1."""
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"invalid header name {name[:50]!r}")
    value = str(value)
    if "\r" in value or "\n" in value:
        raise ValueError(f"invalid value of header {name}: a line break")
    return f"{name}: {value}\r\n".encode("latin-1")


def _origin_text(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # never a user:password a redirect named


# What OpenSSL says when the server answered a TLS hello in plain HTTP (3.0; 3.2 and later; a long HTTP line).
_PLAIN_ANSWER = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")


def answered_in_plain_http(error):
    """A TLS failure that means the server speaks plain HTTP on that port (`docker run registry:2`)."""
    return error.kind == "tls" and any(name in error.message for name in _PLAIN_ANSWER)


def tls_reason(error):
    """The ssl module's own words: 'certificate verify failed: ...'."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return f"TLS error ({getattr(error, 'reason', None) or error.__class__.__name__})"
