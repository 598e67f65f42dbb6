"""Registry authentication from the `WWW-Authenticate` challenge: Basic and Bearer tokens.

parse_challenges is pure; Authenticator fetches tokens (from the realm, which
may be another host) and caches them per realm, service and scope set.
"""

import base64
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from .references import is_loopback
from .transport import TransportError
from .wire import WireError, json_number, loads

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=\s*(,|$))")
_RENEW_MARGIN = 0.1  # renew when less than this share of a token's lifetime is left
_MIN_LIFETIME = 60  # the distribution token spec's default when expires_in is absent
_MAX_LIFETIME = 86400  # a token said to live longer is renewed daily anyway
MAX_TOKEN_BYTES = 64 * 1024


@dataclass
class Challenge:
    scheme: str
    params: dict = field(default_factory=dict)


def parse_challenges(header):
    """Every challenge in a `WWW-Authenticate` value (RFC 7235).

    Scheme and parameter names are case-insensitive; values are tokens or
    quoted strings with backslash escapes and may contain commas; one header
    may carry several challenges (`Bearer realm=..., Basic realm=...`).
    """
    challenges, position, length = [], 0, len(header or "")
    while position < length:
        while position < length and header[position] in " \t,":
            position += 1
        match = _TOKEN.match(header, position)
        if not match:
            position += 1
            continue
        name, position = match.group(), match.end()
        after = position
        while after < length and header[after] in " \t":
            after += 1
        if after < length and header[after] == "=" and challenges:
            position = after + 1
            while position < length and header[position] in " \t":
                position += 1
            value, position = _value(header, position)
            challenges[-1].params[name.lower()] = value
        else:
            challenges.append(Challenge(scheme=name.lower()))
            position = after
            token68 = _TOKEN68.match(header, position)  # `Negotiate abc==`: not parameters
            if token68:
                position = token68.end()
    return challenges


def _value(header, position):
    if position < len(header) and header[position] == '"':
        position += 1
        out = []
        while position < len(header) and header[position] != '"':
            if header[position] == "\\" and position + 1 < len(header):
                position += 1
            out.append(header[position])
            position += 1
        return "".join(out), position + 1
    match = re.compile(r"[^,\s]*").match(header, position)
    return match.group(), match.end()


class AuthError(Exception):
    """Credentials refused, or a token could not be had; the message never holds a secret."""

    def __init__(self, message, status=None, code="UNAUTHORIZED"):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Credentials:
    """What a registry may be given. `source` says where it came from, for messages."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None
    source: str = "none"

    def basic(self):
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class Authenticator:
    """The auth state of one registry, shared by the collector's threads.

    Nothing is sent until the registry challenges (`learn`). A token realm is asked over the
    registry's own transport, never over plain HTTP for an HTTPS registry, and never over plain
    HTTP to a host that is not loopback unless the user said --plain-http.
    """

    def __init__(self, registry, credentials, transport, *, registry_scheme="https", plain_http=False):
        self.registry = registry
        self.credentials = credentials or Credentials()
        self.transport = transport
        self.registry_scheme = registry_scheme
        self.plain_http = plain_http
        self.scheme = None  # learnt from the first challenge
        self.realm = None
        self.service = None
        self.tokens = {}  # (realm, service, scopes) -> (token, expires at)
        self.token_requests = 0
        self._lock = threading.Lock()
        self._key_locks = {}

    def learn(self, header):
        """Take the registry's challenge; False when it offers nothing we can answer."""
        challenges = parse_challenges(header)
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.params.get("realm"):
                self.scheme, self.realm = "bearer", challenge.params["realm"]
                self.service = challenge.params.get("service")
                return True
        for challenge in challenges:
            if challenge.scheme == "basic":
                self.scheme = "basic"
                return True
        return False

    def header(self, scopes=()):
        """The Authorization header for a request needing `scopes`, or None before any challenge."""
        if self.scheme is not None and self._in_clear():
            if self.scheme == "bearer":
                self._check_realm()  # a realm that would leak is refused for that, first
            raise AuthError(f"{self.registry} answered only in plain HTTP (HTTPS failed, and --insecure falls back): "
                            f"the credentials from {self.credentials.source} are not sent in clear text to another "
                            "machine; give --plain-http for this registry to allow it", code="PLAIN_HTTP_REFUSED")
        if self.scheme == "basic":
            return self.credentials.basic()
        if self.scheme == "bearer":
            if self.credentials.registry_token:
                return "Bearer " + self.credentials.registry_token
            return "Bearer " + self.token(tuple(sorted(scopes)))
        return None

    def _in_clear(self):
        """Credentials (or a token made from them) would cross the network unencrypted without the user
        having said --plain-http: only an --insecure fallback to HTTP on a host that is not loopback."""
        return (self.registry_scheme == "http" and not self.plain_http and not is_loopback(self.registry)
                and self.credentials.source not in (None, "", "none"))

    def forget(self, scopes=()):
        with self._lock:
            self.tokens.pop((self.realm, self.service, tuple(sorted(scopes))), None)

    def token(self, scopes):
        key = (self.realm, self.service, scopes)
        cached = self.tokens.get(key)  # the common case, a token in force, takes no lock
        if cached and time.monotonic() < cached[1]:
            return cached[0]
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self.tokens.get(key)
            if cached and time.monotonic() < cached[1]:
                return cached[0]
            token, lifetime = self._fetch_token(scopes)
            self.tokens[key] = (token, time.monotonic() + lifetime * (1 - _RENEW_MARGIN))
            return token

    def _check_realm(self):
        """The realm's URL, refused when asking it would downgrade or leak the credentials."""
        parts = urlsplit(self.realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AuthError(f"the registry's token realm {self.realm[:100]!r} is not an HTTP(S) URL",
                            code="REALM_REFUSED")
        if parts.scheme == "http" and self.registry_scheme == "https":
            raise AuthError(f"the registry uses HTTPS but its token realm http://{parts.netloc} is plain HTTP: "
                            "refused, credentials would travel in clear text", code="REALM_REFUSED")
        if parts.scheme == "http" and not (self.plain_http or is_loopback(parts.netloc)):
            raise AuthError(f"token realm http://{parts.netloc} is plain HTTP to another machine: refused "
                            "(say --plain-http for this registry to allow it)", code="REALM_REFUSED")
        return parts

    def _fetch_token(self, scopes):
        """GET (or, with an identity token, POST) the realm for a token covering `scopes`."""
        parts = self._check_realm()
        realm_host = parts.netloc
        query = [("scope", scope) for scope in scopes]
        if self.service:
            query.insert(0, ("service", self.service))
        with self._lock:
            self.token_requests += 1
        try:
            if self.credentials.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": self.credentials.identity_token,
                        "client_id": "registry-ledger", "service": self.service or "", "scope": " ".join(scopes)}
                response = self.transport.request(
                    "POST", self.realm, {"Content-Type": "application/x-www-form-urlencoded"},
                    urlencode(form).encode())
                if response.status in (404, 405):
                    response.close()
                    pair = base64.b64encode(f"<token>:{self.credentials.identity_token}".encode()).decode()
                    response = self.transport.request("GET", _with_query(self.realm, query),
                                                      {"Authorization": "Basic " + pair})
            else:
                basic = self.credentials.basic()
                response = self.transport.request("GET", _with_query(self.realm, query),
                                                  {"Authorization": basic} if basic else {})
            status = response.status
            body = response.read(MAX_TOKEN_BYTES, "token answer") if status < 300 else None
            response.close()
        except TransportError as error:
            raise AuthError(f"token request to {realm_host} failed: {error.message}") from None
        if status in (401, 403):
            raise AuthError(f"token server {realm_host} refused the credentials from {self.credentials.source} "
                            f"(HTTP {status})", status)
        if status >= 300:
            raise AuthError(f"token server {realm_host} answered HTTP {status}", status)
        try:
            answer = loads(body, "token answer")
        except WireError as error:
            raise AuthError(f"token server {realm_host}: {error}") from None
        token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise AuthError(f"token server {realm_host} answered with no token")
        lifetime = json_number(answer.get("expires_in"), 1, _MAX_LIFETIME) or _MIN_LIFETIME
        return token, lifetime


def _with_query(url, query):
    if not query:
        return url
    return url + ("&" if urlsplit(url).query else "?") + urlencode(query)
