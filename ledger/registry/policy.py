"""The request policy: the one place a registry request is made (through the Transport) and answered for.

Every endpoint (ping.py, catalog.py, tags.py, manifests.py, blobs.py, referrers.py) asks through
`Policy.request`: pacing (--rps), retries with backoff and Retry-After, auth on a challenge, redirects, the
rate limit's headers, stalls, and every failure worded as a RegistryError. Nothing here knows an endpoint.
"""

import email.utils
import random
import threading
import time
from collections import Counter
from urllib.parse import quote, urljoin, urlsplit

from .. import __version__
from ..auth import Authenticator, AuthError, parse_challenges
from ..references import api_base, is_loopback
from ..transport import Transport, TransportError, answered_in_plain_http
from ..wire import WireError, ascii_int, loads
from .errors import RegistryError
from .options import RegistryOptions

MAX_ERROR_BYTES = 64 * 1024  # an error body is read for its code and message only
MAX_RETRY_AFTER = 60.0
STALL_LIMIT = 8  # requests in a row past their deadline before the rest of a registry's run is skipped
MAX_MESSAGE = 300  # characters of a registry's error message kept
LOGIN_HINT = "docker login, or --username/--password-stdin"
USER_AGENT = f"registry-ledger/{__version__}"


def error_code(body):
    """The first registry error code and message of an error body, which may be absent or not JSON."""
    try:
        first = loads(body, "error body")["errors"][0]
    except (WireError, KeyError, IndexError, TypeError):
        return None, None
    if not isinstance(first, dict):
        return None, None
    code, message = first.get("code"), first.get("message")
    code = code[:64] if isinstance(code, str) and code else None
    message = message[:MAX_MESSAGE] if isinstance(message, str) and message else None
    return code, message


def retry_after(value, now=None):
    """Seconds to wait from a `Retry-After` header (ASCII seconds or an HTTP date), or None."""
    if not value or not isinstance(value, str):
        return None
    seconds = ascii_int(value)
    if seconds is not None:
        return float(seconds)
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
        return max(0.0, moment.timestamp() - (now if now is not None else time.time()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _rate_number(value):
    """`100;w=21600` -> 100; anything but ASCII digits -> None."""
    return ascii_int((value or "").split(";", 1)[0])


def _path(repo):
    """A repository name in a URL path. Names past distribution's grammar (from a catalog) are quoted;
    the grammar's own are unchanged."""
    return quote(repo, safe="/")


_UNKNOWN_ISSUER = ("self-signed", "self signed", "local issuer", "first certificate")  # OpenSSL's verify messages


def _unreachable(reason, base):
    """Why a connection failed, in lower case, with the address a refusal came from."""
    reason = reason[:1].lower() + reason[1:]
    if reason != "connection refused":
        return reason
    parts = urlsplit(base)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hint = "; if it serves plain HTTP, give --plain-http" if parts.scheme == "https" and parts.port is None else ""
    return f"connection refused (nothing listens at {parts.hostname}:{port}){hint}"


def _said(challenge, code, message, status):
    """Why a 401 or 403 refused: the challenge's `error` and `error_description` (the token server's word,
    RFC 6750), else the error body's code and message (the registry's), else the status."""
    error, description = challenge.get("error"), challenge.get("error_description")
    reason, detail = (error, description) if error else (code, message) if code else (f"HTTP {status}", None)
    return (reason + (f": {detail}" if detail else ""))[:MAX_MESSAGE]


class Policy:
    """How every request to one registry is made and answered for, shared by the collector's worker threads;
    the endpoints (client.RegistryClient) ask through `request`."""

    def __init__(self, registry, options=None, observe=None):
        self.registry = registry
        self.options = options or RegistryOptions()
        self.base = api_base(registry, self.options.plain_http,
                             tls=bool(self.options.ca_file or self.options.insecure))
        verify = False if self.options.insecure else (self.options.ca_file or True)
        self.transport = Transport(verify=verify, timeout=self.options.timeout, deadline=self.options.deadline,
                                   user_agent=USER_AGENT, pool_size=max(self.options.concurrency, 1))
        self.transport.observe = observe  # -v, and the progress bar's rate: every request, token servers' too
        self.requests = Counter()
        self.rate_limit = {}  # Docker Hub's RateLimit-Limit / -Remaining, as last seen
        self.rate_limited = False  # it sent a RateLimit header: a manifest GET may count as a pull there
        self.exhausted = False
        self.stalls = 0  # requests in a row that hit their deadline or timed out, with nothing answered between
        self.login_checked = False  # the ping's challenge was answered: a later 401 is about a scope, not a login
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._repos = {}  # repo -> (its URL prefix, its pull scope), made once
        self.auth = Authenticator(registry, self.options.credentials, self.transport,
                                  registry_scheme=urlsplit(self.base).scheme, plain_http=self.options.plain_http)

    def close(self):
        self.transport.close()

    def speak_plain_http(self):
        """From now on, plain HTTP (--insecure, after HTTPS failed at the ping)."""
        self.base = "http://" + self.base.removeprefix("https://")
        self.auth.registry_scheme = "http"
        self._repos.clear()

    def fail(self, message, stage, **where):
        return RegistryError(message, registry=self.registry, stage=stage, **where)

    def _pace(self):
        """At most `rps` requests per second, across threads."""
        if not self.options.rps:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.options.rps
        if slot > now:
            time.sleep(slot - now)

    def _count(self, kind):
        with self._lock:
            self.requests[kind] += 1

    def repo(self, repo):
        """`{base}/v2/{repo}` and the pull scope of a repository, made once per repository."""
        made = self._repos.get(repo)
        if made is None:
            made = self._repos[repo] = (f"{self.base}/v2/{_path(repo)}", (f"repository:{repo}:pull",))
        return made

    def _send(self, method, url, stage, headers, scopes, where):
        """One attempt, with auth; a 401 that brings a usable challenge is answered once."""
        for attempt in (1, 2):
            try:
                authorization = self.auth.header(scopes)
            except AuthError as error:
                # After a login the ping accepted (or with none to be wrong), a refused token is a refused scope.
                refusal = error.status in (401, 403) and self._refusal(
                    stage, error.status, f"token server {urlsplit(self.auth.realm).netloc} answered HTTP "
                    f"{error.status}", self.login_checked or self.anonymous(), where)
                raise self.fail(f"{stage}: {refusal or error}", stage, status=error.status, code=error.code,
                                 **where) from None
            sent = {**headers, "Authorization": authorization} if authorization and headers else \
                {"Authorization": authorization} if authorization else headers
            if self.options.rps:
                self._pace()
            self._count(stage)
            response = self.transport.request(method, url, sent)
            self._note_rate_limit(response)
            if response.status != 401 or attempt == 2:
                return response
            challenge = response.header("WWW-Authenticate") or ""
            response.close()
            if not self.auth.learn(challenge):
                return response
            self.auth.forget(scopes)

    def request(self, method, url, stage, *, headers=None, scopes=(), retry_unreachable=True, **where):
        """A request with retries on connection errors, 5xx and 429; errors become RegistryError."""
        if self.exhausted:
            raise self.fail(f"{stage}: skipped, the registry's rate limit is exhausted", stage,
                             code="RATE_LIMIT_EXHAUSTED", **where)
        attempt = 0
        while True:
            attempt += 1
            wait = None
            try:
                response = self._send(method, url, stage, headers, scopes, where)
            except TransportError as error:
                if error.kind == "tls":
                    raise self.fail(self._tls_failure(error), stage, code="TLS", **where) from None
                if error.kind not in ("unreachable", "timeout") or not retry_unreachable \
                        or attempt > self.options.retries:
                    raise self._transport_failure(error, stage, attempt, where) from None
            else:
                status = response.status
                if (status >= 500 or status == 429) and attempt <= self.options.retries:
                    wait = retry_after(response.header("Retry-After"))
                    response.close()
                else:
                    return self._checked(method, url, response, stage, scopes, where)
            delay = self.options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            time.sleep(min(wait if wait is not None else delay, MAX_RETRY_AFTER))

    @property
    def stalled(self):
        """The registry has stopped answering: so many requests in a row hit their deadline that asking on
        would hold the run for hours (thousands of children of an index, each hanging)."""
        return self.stalls >= max(STALL_LIMIT, 2 * self.options.concurrency)

    def _stall(self, kind):
        with self._lock:
            self.stalls = self.stalls + 1 if kind in ("deadline", "timeout") else self.stalls

    def answered(self):
        if self.stalls:  # most answers come with none to reset: no lock then
            with self._lock:
                self.stalls = 0

    def _tls_failure(self, error):
        """What a failed TLS handshake means, where, and the flag that fixes it."""
        said = f"TLS error talking to {self.base}: {error.message}"
        if answered_in_plain_http(error):
            fix = ("drop --ca-file: a loopback registry is spoken to in plain HTTP unless it is given" if
                   is_loopback(self.registry) else "give --plain-http (or --insecure, which falls back to plain HTTP)")
            return f"{said}; it answered in plain HTTP, so it does not speak TLS there: {fix}"
        if any(sign in error.message for sign in _UNKNOWN_ISSUER):
            trusted = f"the CA in --ca-file {self.options.ca_file}" if self.options.ca_file else "a CA this machine trusts"
            return (f"{said}; its certificate is not signed by {trusted} (self-signed, or a private CA): give "
                    "its CA with --ca-file PEM (or --insecure not to check the certificate)")
        return f"{said}; --insecure would not check the certificate" if "certificate" in error.message else said

    def _transport_failure(self, error, stage, attempt, where):
        self._stall(error.kind)
        after = f" (after {attempt} attempts)" if attempt > 1 else ""
        if error.kind == "unreachable":
            return self.fail(f"cannot connect to {self.base}{after}: {_unreachable(error.reason, self.base)}", stage,
                              code="UNREACHABLE", **where)
        if error.kind == "timeout":
            return self.fail(f"timed out talking to {self.base}{after}", stage, code="UNREACHABLE", **where)
        if error.kind == "deadline":
            return self.fail(f"{stage}: {error.message}", stage, code="DEADLINE", **where)
        return self.fail(f"{stage}: {error.message}", stage, code="BROKEN_ANSWER", **where)

    def _checked(self, method, url, response, stage, scopes, where):
        if 300 <= response.status < 400 and response.header("Location"):
            target = urljoin(url, response.header("Location"))
            response.close()
            return self._redirected(method, url, target, stage, scopes, where)
        if response.status < 400:
            return response
        status = response.status
        code = message = None
        if method != "HEAD":
            try:
                code, message = error_code(response.read(MAX_ERROR_BYTES, "error body"))
            except TransportError:
                pass  # an error body too long or broken says nothing more than its status
        challenges = parse_challenges(response.header("WWW-Authenticate") or "") if status in (401, 403) else []
        challenge = next((c.params for c in challenges if c.params.get("error")), {})
        response.close()
        refusal = status in (401, 403) and self._refusal(
            stage, status, _said(challenge, code, message, status),
            challenge.get("error", "").lower() == "insufficient_scope", where)
        if refusal:
            raise self.fail(f"{stage}: {refusal}", stage, status=status,
                             code=code or ("UNAUTHORIZED" if status == 401 else "DENIED"), **where)
        if status == 401:
            detail = ("authentication required: no credentials found for this registry" if self.anonymous()
                      else f"credentials from {self.auth.credentials.source} were refused")
            code = code or "UNAUTHORIZED"
        elif status == 429:
            detail = "too many requests (HTTP 429), retries exhausted"
            code = code or "TOOMANYREQUESTS"
        else:
            detail = f"HTTP {status}"
        text = f"{stage}: {detail}" + (f" {code}" if code and status != 401 else "") + (
            f": {message}" if message else "")
        raise self.fail(text, stage, status=status, code=code, **where)

    def anonymous(self):
        return self.auth.credentials.source in (None, "", "none")

    def _refusal(self, stage, status, said, scope_refused, where):
        """What a 401 or 403 on the catalog or one repository means, or None where it means what it does at
        the ping (no credentials, or wrong ones). A login that works for one repository may still not be
        permitted on another, or on the catalog: saying its credentials were refused would send the user
        after the wrong problem."""
        anonymous = self.anonymous()
        if stage == "catalog" and status == 401 and anonymous:
            return ("this registry lists its repositories only to a logged-in user: give credentials "
                    f"({LOGIN_HINT}), or name repositories instead, e.g. {self.registry}/OWNER/REPO")
        if not (status == 403 or scope_refused or (self.login_checked and not anonymous)):
            return None
        if stage == "catalog" and not anonymous:
            return (f"the credentials from {self.auth.credentials.source} may not list the catalog ({said}); "
                    f"name repositories instead, e.g. {self.registry}/OWNER/REPO")
        if stage == "catalog" or not where.get("repo"):
            return None
        return f"not permitted to pull {where['repo']} ({said})" + (
            f"; no credentials were found for this registry ({LOGIN_HINT})" if anonymous else "")

    def _redirected(self, method, url, target, stage, scopes, where):
        """Follow one redirect (blob storage); credentials go only to the same origin, never downgraded."""
        source, destination = urlsplit(url), urlsplit(target)
        if destination.scheme not in ("http", "https"):
            raise self.fail(f"{stage}: redirect to something that is not HTTP(S)", stage, **where)
        if source.scheme == "https" and destination.scheme == "http":
            raise self.fail(f"{stage}: redirect from HTTPS to plain HTTP ({destination.netloc}) refused", stage,
                             code="DOWNGRADE", **where)
        headers = {}
        if destination[:2] == source[:2]:
            try:
                authorization = self.auth.header(scopes)
            except AuthError as error:
                raise self.fail(f"{stage}: {error}", stage, status=error.status, code=error.code, **where) from None
            if authorization:
                headers["Authorization"] = authorization
        self._count("redirect")
        try:
            response = self.transport.request(method, target, headers)
        except TransportError as error:
            raise self.fail(f"redirect to {destination.netloc} failed: {error.message}", stage, **where) from None
        if response.status >= 300:
            response.close()
            raise self.fail(f"{stage}: HTTP {response.status} from redirect target {destination.netloc}", stage,
                             status=response.status, **where)
        return response

    def _note_rate_limit(self, response):
        said = response.header("RateLimit-Remaining")
        if said is None and response.header("RateLimit-Limit") is None:
            return
        self.rate_limited = True
        remaining = _rate_number(said)
        if remaining is None:
            return
        limit = _rate_number(response.header("RateLimit-Limit"))
        with self._lock:
            self.rate_limit = {"limit": limit, "remaining": remaining}
            if remaining <= 0:
                self.exhausted = True

    def read(self, response, limit, stage, **where):
        """A body of at most `limit` bytes."""
        try:
            body = response.read(limit, "body")
        except TransportError as error:
            self._stall(error.kind)
            if error.kind in ("too_large", "deadline"):
                raise self.fail(f"{stage}: {error.message}", stage,
                                 code="TOO_LARGE" if error.kind == "too_large" else "DEADLINE", **where) from None
            raise self.fail(f"{stage}: connection broke while reading ({error.message})", stage,
                             code="BROKEN_ANSWER", **where) from None
        self.answered()
        return body

    def json_object(self, body, stage, where, max_values):
        """A JSON object from a body, or the registry's error for this stage."""
        try:
            document = loads(body, "response", max_values=max_values)
        except WireError as error:
            message = "response is not JSON" if "not valid JSON" in error.args[0] else error.args[0]
            raise self.fail(f"{stage}: {message}", stage, code="INVALID_ANSWER", **where) from None
        if not isinstance(document, dict):
            raise self.fail(f"{stage}: response is not a JSON object", stage, code="INVALID_ANSWER", **where)
        return document
