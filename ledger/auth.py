"""Registry authentication from the `WWW-Authenticate` challenge: Basic and Bearer tokens.

parse_challenges is pure; Authenticator fetches tokens (from the realm, which
may be another host) and caches them per realm, service and scope set.
"""

import base64
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=\s*(,|$))")
_RENEW_MARGIN = 0.1  # renew when less than this share of a token's lifetime is left
_MIN_LIFETIME = 60  # the distribution token spec's default when expires_in is absent


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

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


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
    """The auth state of one registry, shared by the collector's threads."""

    def __init__(self, registry, credentials=None, *, timeout=(10, 60), verify=True, user_agent=None):
        self.registry = registry
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self.verify = verify
        self.user_agent = user_agent
        self.scheme = None  # learnt from the first challenge
        self.realm = None
        self.service = None
        self.tokens = {}  # (realm, service, scopes) -> (token, expires at)
        self.token_requests = 0
        self._lock = threading.Lock()
        self._key_locks = {}

    def learn(self, header):
        """Take the registry's challenge; False when it offers nothing we can answer."""
        for challenge in parse_challenges(header):
            if challenge.scheme == "bearer" and challenge.params.get("realm"):
                self.scheme, self.realm = "bearer", challenge.params["realm"]
                self.service = challenge.params.get("service")
                return True
        for challenge in parse_challenges(header):
            if challenge.scheme == "basic":
                self.scheme = "basic"
                return True
        return False

    def header(self, scopes=()):
        """The Authorization header for a request needing `scopes`, or None."""
        if self.credentials.registry_token:
            return "Bearer " + self.credentials.registry_token
        if self.scheme == "basic":
            return self.credentials.basic()
        if self.scheme == "bearer":
            return "Bearer " + self.token(tuple(sorted(scopes)))
        return None

    def forget(self, scopes=()):
        with self._lock:
            self.tokens.pop((self.realm, self.service, tuple(sorted(scopes))), None)

    def token(self, scopes):
        key = (self.realm, self.service, scopes)
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self.tokens.get(key)
            if cached and time.monotonic() < cached[1]:
                return cached[0]
            token, lifetime = self._fetch_token(scopes)
            self.tokens[key] = (token, time.monotonic() + lifetime * (1 - _RENEW_MARGIN))
            return token

    def _fetch_token(self, scopes):
        """GET (or, with an identity token, POST) the realm for a token covering `scopes`."""
        realm_host = urlsplit(self.realm).netloc
        params = [("scope", scope) for scope in scopes]
        if self.service:
            params.insert(0, ("service", self.service))
        headers = {"User-Agent": self.user_agent} if self.user_agent else {}
        with self._lock:
            self.token_requests += 1
        try:
            if self.credentials.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": self.credentials.identity_token,
                        "client_id": "registry-ledger", "service": self.service or "", "scope": " ".join(scopes)}
                response = requests.post(self.realm, data=form, headers=headers, timeout=self.timeout,
                                         verify=self.verify)
                if response.status_code in (404, 405):
                    response = requests.get(self.realm, params=params, headers=headers, timeout=self.timeout,
                                            verify=self.verify,
                                            auth=("<token>", self.credentials.identity_token))
            else:
                basic = self.credentials.basic()
                if basic:
                    headers["Authorization"] = basic
                response = requests.get(self.realm, params=params, headers=headers, timeout=self.timeout,
                                        verify=self.verify)
        except requests.exceptions.RequestException as error:
            raise AuthError(f"token request to {realm_host} failed ({error.__class__.__name__})") from None
        if response.status_code in (401, 403):
            raise AuthError(f"token server {realm_host} refused the credentials from {self.credentials.source} "
                            f"(HTTP {response.status_code})", response.status_code)
        if response.status_code >= 400:
            raise AuthError(f"token server {realm_host} answered HTTP {response.status_code}", response.status_code)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = int(body.get("expires_in") or _MIN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            raise AuthError(f"token server {realm_host} answered with no token") from None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token server {realm_host} answered with no token")
        return token, max(lifetime, 1)
