"""Talk to one OCI / Docker v2 registry. Fetches only: nothing here decides or writes.

Every request goes through one Transport (bounded reads, a deadline, no .netrc) and through
`_request` here (auth, pacing, retries); what a registry says is parsed strictly.
"""

import email.utils
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urljoin, urlsplit

from . import __version__
from .auth import Authenticator, AuthError, Credentials, parse_challenges
from .manifests import (ACCEPT, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, ManifestError, compute_digest, parse_manifest,
                        valid_digest, verify_digest)
from .findings import SourceError
from .references import api_base, is_loopback
from .referrers import Descriptor
from .limits import (DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, DEFAULT_RETRIES, MAX_PAGES, MAX_REFERRERS,
                     MAX_RUN_REFERRERS, MAX_TAGS)
from .transport import Transport, TransportError, answered_in_plain_http
from .wire import WireError, ascii_int, bare_media_type, loads

MAX_PAGE_BYTES = 8 * 1024 * 1024  # one page of a catalog or tag list
MAX_LISTING_BYTES = 64 * 1024 * 1024  # every page of one listing together
MAX_ERROR_BYTES = 64 * 1024  # an error body is read for its code and message only
MAX_REPOSITORIES = 200_000  # from one catalog
REFERRERS_PAGE = 10_000  # descriptors one page may hold: a page past --max-referrers is read, then cut
MAX_RETRY_AFTER = 60.0
STALL_LIMIT = 8  # requests in a row past their deadline before the rest of a registry's run is skipped
MAX_MESSAGE = 300  # characters of a registry's error message kept
CATALOG_SCOPE = "registry:catalog:*"
LOGIN_HINT = "docker login, or --username/--password-stdin"
_ACCEPT = MappingProxyType({"Accept": ACCEPT})  # every manifest request's headers, shared
USER_AGENT = f"registry-ledger/{__version__}"


@dataclass
class RegistryOptions:
    """How to reach one registry; the CLI and the config file fill these in."""

    plain_http: bool = False
    ca_file: str | None = None
    insecure: bool = False  # skip TLS verification
    credentials: Credentials = field(default_factory=Credentials)
    concurrency: int = DEFAULT_CONCURRENCY
    rps: float | None = None  # requests per second, at most
    retries: int = DEFAULT_RETRIES
    backoff: float = 0.5  # seconds; doubles per retry, with jitter
    page_size: int = 1000
    timeout: tuple = (10, 60)  # connect, and each read
    deadline: float = DEFAULT_DEADLINE  # one whole request
    max_tags: int = MAX_TAGS
    max_referrers: int = MAX_REFERRERS  # followed per digest
    max_run_referrers: int = MAX_RUN_REFERRERS  # followed per run
    include_tags: str | None = None
    exclude_tags: str | None = None
    referrers: str = "auto"  # auto | always | never: when to ask the OCI referrers API
    allow_empty: bool = False  # a glob (or a catalog) that matches no repository is expected, not an error


def reach(registry, options):
    """How a registry is spoken to with these options, in words (the dry run's plan): the table of
    --plain-http, --insecure and --ca-file in the README, for one registry."""
    if options.plain_http:
        return "plain HTTP (--plain-http)"
    if options.insecure:
        return "HTTPS, certificate not checked (--insecure); plain HTTP if HTTPS fails"
    if options.ca_file:
        return f"HTTPS, certificate checked against {options.ca_file} (--ca-file)"
    if api_base(registry).startswith("http://"):
        return "plain HTTP (a loopback registry, as Docker)"
    return "HTTPS, certificate checked against the system's CAs"


class RegistryError(SourceError):
    """A typed failure talking to a registry; becomes a row in the errors table."""


class ListingTruncated(RegistryError):
    """A listing stopped at a cap: `items` are the names read so far, never a complete listing."""

    def __init__(self, message, items, **where):
        super().__init__(message, code="LISTING_TRUNCATED", **where)
        self.items = items


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


def next_link(header):
    """The URL of `rel="next"` in a `Link` header (RFC 8288), or None; never raises."""
    if not isinstance(header, str):
        return None
    position = 0
    while True:
        start = header.find("<", position)
        end = header.find(">", start + 1) if start >= 0 else -1
        if end < 0:
            return None
        url = header[start + 1:end].strip()
        following = header.find("<", end + 1)
        params = header[end + 1:following if following >= 0 else len(header)]
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip(",").strip().strip('"').split():
                return url or None
        position = end + 1


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


_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]+")  # what quote() leaves as it is


def _tag_path(tag):
    """A tag (or digest) as one URL path segment, quoted as quote(tag, safe="") does."""
    return tag if _UNQUOTED.fullmatch(tag) else quote(tag, safe="")


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


def _descriptor(value):
    """A referrers list entry as a Descriptor, or None when it names no valid digest."""
    if not isinstance(value, dict) or not valid_digest(value.get("digest")):
        return None
    media_type = value.get("mediaType")
    return Descriptor(value["digest"], media_type[:200] if isinstance(media_type, str) and media_type else None)


def follow_pages(url, read_page, before, refuse):
    """Walk a listing's pages from `url`: the one way a registry's `Link` pages and the Hub API's `next`
    pages are followed. `read_page(url)` reads one page and returns the next page's reference as that
    page gave it (None on the last), which is resolved against the page's own URL; `before(pages)` runs
    before each page is asked with the number already read, to stop at a cap by raising;
    `refuse(reason, url)` makes what is raised when the listing loops back to a page already read
    ('loop') or its next page is on another origin than the first ('origin')."""
    origin = urlsplit(url)[:2]
    seen = set()
    while url:
        if url in seen:
            raise refuse("loop", url)
        before(len(seen))
        seen.add(url)
        link = read_page(url)
        url = urljoin(url, link) if link else None
        if url and urlsplit(url)[:2] != origin:
            raise refuse("origin", url)


class RegistryClient:
    """One registry's v2 API, shared by the collector's worker threads."""

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

    def _fail(self, message, stage, **where):
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

    def _repo(self, repo):
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
                    f"{error.status}", self.login_checked or self._anonymous(), where)
                raise self._fail(f"{stage}: {refusal or error}", stage, status=error.status, code=error.code,
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

    def _request(self, method, url, stage, *, headers=None, scopes=(), retry_unreachable=True, **where):
        """A request with retries on connection errors, 5xx and 429; errors become RegistryError."""
        if self.exhausted:
            raise self._fail(f"{stage}: skipped, the registry's rate limit is exhausted", stage,
                             code="RATE_LIMIT_EXHAUSTED", **where)
        attempt = 0
        while True:
            attempt += 1
            wait = None
            try:
                response = self._send(method, url, stage, headers, scopes, where)
            except TransportError as error:
                if error.kind == "tls":
                    raise self._fail(self._tls_failure(error), stage, code="TLS", **where) from None
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

    def _answered(self):
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
            return self._fail(f"cannot connect to {self.base}{after}: {_unreachable(error.reason, self.base)}", stage,
                              code="UNREACHABLE", **where)
        if error.kind == "timeout":
            return self._fail(f"timed out talking to {self.base}{after}", stage, code="UNREACHABLE", **where)
        if error.kind == "deadline":
            return self._fail(f"{stage}: {error.message}", stage, code="DEADLINE", **where)
        return self._fail(f"{stage}: {error.message}", stage, code="BROKEN_ANSWER", **where)

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
            raise self._fail(f"{stage}: {refusal}", stage, status=status,
                             code=code or ("UNAUTHORIZED" if status == 401 else "DENIED"), **where)
        if status == 401:
            detail = ("authentication required: no credentials found for this registry" if self._anonymous()
                      else f"credentials from {self.auth.credentials.source} were refused")
            code = code or "UNAUTHORIZED"
        elif status == 429:
            detail = "too many requests (HTTP 429), retries exhausted"
            code = code or "TOOMANYREQUESTS"
        else:
            detail = f"HTTP {status}"
        text = f"{stage}: {detail}" + (f" {code}" if code and status != 401 else "") + (
            f": {message}" if message else "")
        raise self._fail(text, stage, status=status, code=code, **where)

    def _anonymous(self):
        return self.auth.credentials.source in (None, "", "none")

    def _refusal(self, stage, status, said, scope_refused, where):
        """What a 401 or 403 on the catalog or one repository means, or None where it means what it does at
        the ping (no credentials, or wrong ones). A login that works for one repository may still not be
        permitted on another, or on the catalog: saying its credentials were refused would send the user
        after the wrong problem."""
        anonymous = self._anonymous()
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
            raise self._fail(f"{stage}: redirect to something that is not HTTP(S)", stage, **where)
        if source.scheme == "https" and destination.scheme == "http":
            raise self._fail(f"{stage}: redirect from HTTPS to plain HTTP ({destination.netloc}) refused", stage,
                             code="DOWNGRADE", **where)
        headers = {}
        if destination[:2] == source[:2]:
            try:
                authorization = self.auth.header(scopes)
            except AuthError as error:
                raise self._fail(f"{stage}: {error}", stage, status=error.status, code=error.code, **where) from None
            if authorization:
                headers["Authorization"] = authorization
        self._count("redirect")
        try:
            response = self.transport.request(method, target, headers)
        except TransportError as error:
            raise self._fail(f"redirect to {destination.netloc} failed: {error.message}", stage, **where) from None
        if response.status >= 300:
            response.close()
            raise self._fail(f"{stage}: HTTP {response.status} from redirect target {destination.netloc}", stage,
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

    def _read(self, response, limit, stage, **where):
        """A body of at most `limit` bytes."""
        try:
            body = response.read(limit, "body")
        except TransportError as error:
            self._stall(error.kind)
            if error.kind in ("too_large", "deadline"):
                raise self._fail(f"{stage}: {error.message}", stage,
                                 code="TOO_LARGE" if error.kind == "too_large" else "DEADLINE", **where) from None
            raise self._fail(f"{stage}: connection broke while reading ({error.message})", stage,
                             code="BROKEN_ANSWER", **where) from None
        self._answered()
        return body

    def _object(self, body, stage, where, max_values):
        """A JSON object from a body, or the registry's error for this stage."""
        try:
            document = loads(body, "response", max_values=max_values)
        except WireError as error:
            message = "response is not JSON" if "not valid JSON" in error.args[0] else error.args[0]
            raise self._fail(f"{stage}: {message}", stage, code="INVALID_ANSWER", **where) from None
        if not isinstance(document, dict):
            raise self._fail(f"{stage}: response is not a JSON object", stage, code="INVALID_ANSWER", **where)
        return document

    def _pages(self, url, key, stage, scopes, most, *, item=None, on_page=None,
               hint="raise --max-tags if the repository is that large", **where):
        """Follow `Link: <...>; rel="next"` pages on the first page's origin, up to `most` names, MAX_PAGES
        pages and MAX_LISTING_BYTES; past a cap, ListingTruncated with what was read. Items are names, or
        what `item` makes of each (None: not one); `on_page` sees each page's answer."""
        items, total = [], 0
        # A descriptor holds a few values; a page of them is read whole, then cut to `most`.
        values_at_most = (2 * most if item is None else 50 * max(most, REFERRERS_PAGE)) + 1000

        def before(pages):
            if pages >= MAX_PAGES or len(items) > most or total > MAX_LISTING_BYTES:
                cap = (f"{most} names" if len(items) > most else f"{MAX_PAGES} pages" if pages >= MAX_PAGES
                       else f"{MAX_LISTING_BYTES} bytes")
                raise ListingTruncated(f"{stage}: the listing goes past {cap}; it is incomplete, so nothing is "
                                       f"removed ({hint})", items[:most], registry=self.registry, stage=stage,
                                       **where)

        def read_page(url):
            nonlocal total
            response = self._request("GET", url, stage, scopes=scopes, **where)
            if on_page:
                on_page(response)
            link = next_link(response.header("Link"))
            body = self._read(response, MAX_PAGE_BYTES, stage, **where)
            total += len(body)
            values = self._object(body, stage, where, max_values=values_at_most).get(key)
            if values is None:
                values = []  # "tags": null means none
            if item is not None and isinstance(values, list):
                values = [item(value) for value in values]
                if None in values:
                    raise self._fail(f"{stage}: '{key}' has an entry without a valid digest", stage,
                                     code="INVALID_ANSWER", **where)
            elif not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self._fail(f"{stage}: '{key}' is not a list of names", stage, code="INVALID_ANSWER", **where)
            items.extend(values)
            return link

        def refuse(reason, url):
            problem = f"pagination loops at {url[:200]}" if reason == "loop" else "next page points to another origin"
            return self._fail(f"{stage}: {problem}", stage, code="INVALID_ANSWER", **where)

        follow_pages(url, read_page, before, refuse)
        if len(items) > most:
            raise ListingTruncated(f"{stage}: the listing has more than {most} names; it is incomplete, so nothing "
                                   f"is removed ({hint})", items[:most], registry=self.registry, stage=stage, **where)
        return items

    def fetch_ping(self):
        """GET /v2/: reachability, and the auth challenge. Credentials go only in answer to a challenge,
        and are checked at once, as docker login does. With --insecure, HTTPS that fails (a registry
        that speaks plain HTTP, or none on 443) falls back to plain HTTP, as Docker does for an
        insecure registry; credentials still never go in clear text to another machine (auth.py)."""
        try:
            self._ping()
        except RegistryError as error:
            if not (self.options.insecure and self.base.startswith("https://") and error.code in ("TLS", "UNREACHABLE")):
                raise
            self.base = "http://" + self.base.removeprefix("https://")
            self.auth.registry_scheme = "http"
            self._repos.clear()
            try:
                self._ping()
            except RegistryError as second:
                second.message += f" (after HTTPS failed: {error.message})"
                raise

    def _ping(self):
        try:
            response = self._request("GET", f"{self.base}/v2/", "ping", retry_unreachable=False)
        except RegistryError as error:
            if error.status == 401 and not self.auth.scheme:
                error.message = "ping: HTTP 401 with no challenge this client can answer"
            elif error.status == 400 and self.base.startswith("http://"):
                fix = ("give --ca-file PEM to speak HTTPS and trust its CA (or --insecure not to check it)" if
                       is_loopback(self.registry) and not self.options.plain_http else "drop --plain-http")
                error.message = (f"ping: HTTP 400 from {self.base}/v2/: this looks like a TLS (HTTPS) port spoken "
                                 f"to in plain HTTP; {fix}")
            elif error.status is not None and 400 <= error.status < 500 and error.status not in (401, 429):
                error.message = f"ping: HTTP {error.status} from {self.base}/v2/ (is this a registry?)"
            raise
        response.close()
        self.login_checked = self.auth.scheme is not None

    def fetch_catalog(self):
        try:
            return self._pages(f"{self.base}/v2/_catalog?n={self.options.page_size}", "repositories", "catalog",
                               (CATALOG_SCOPE,), MAX_REPOSITORIES)
        except ListingTruncated:
            raise
        except RegistryError as error:
            if error.status in (404, 405) or (error.status == 403 and self._anonymous()):
                error.message = (f"catalog: this registry does not offer its catalog (HTTP {error.status}); "
                                 f"name repositories instead, e.g. {self.registry}/OWNER/REPO")
            raise

    def fetch_tags(self, repo):
        prefix, scopes = self._repo(repo)
        return self._pages(f"{prefix}/tags/list?n={self.options.page_size}", "tags", "tags", scopes,
                           self.options.max_tags, repo=repo)

    def fetch_head(self, repo, tag):
        """Resolve a tag: (digest, media type, size) from one HEAD. The tag is quoted: a registry may serve
        tags past distribution's grammar."""
        prefix, scopes = self._repo(repo)
        try:
            response = self._request("HEAD", f"{prefix}/manifests/{_tag_path(tag)}", "head", headers=_ACCEPT,
                                     scopes=scopes, repo=repo, tag=tag)
        except RegistryError as error:
            if error.status == 404:
                error.code = "TAG_UNKNOWN"
                error.message = f"head: tag {tag} is in {repo}'s tag list, but its manifest is unknown (HTTP 404)"
            raise
        response.close()
        self._answered()
        digest = response.header("Docker-Content-Digest")
        media_type = bare_media_type(response.header("Content-Type"))
        size = ascii_int(response.header("Content-Length"))
        if digest is None:
            # Some registries omit the header on HEAD: the digest is then the hash of the body,
            # but only of a body that is a manifest (not a login page or an error in disguise).
            body, media_type, digest = self.fetch_manifest(repo, tag, tag=tag)
            try:
                parse_manifest(body, digest, media_type)
            except ManifestError as error:
                raise self._fail(f"head: no Docker-Content-Digest, and the manifest is not one ({error})", "head",
                                 repo=repo, tag=tag, code="MANIFEST_INVALID") from None
            return digest, media_type, len(body)
        if not valid_digest(digest):
            raise self._fail(f"head: invalid Docker-Content-Digest {digest[:80]!r}", "head", repo=repo, tag=tag,
                             code="DIGEST_INVALID")
        return digest, media_type, size

    def fetch_tag(self, repo, tag):
        """Resolve a tag with one GET instead of a HEAD, for a tag whose manifest is wanted anyway (one the
        ledger never held): (body, media type, digest, problem). The digest is the registry's
        Docker-Content-Digest, as a HEAD's; a body that cannot be read or does not hash to it is the
        problem (the sighting stands, the bytes do not, as when a GET after a HEAD fails). With no header,
        the digest is the body's hash, and only of a body that is a manifest (as fetch_head)."""
        prefix, scopes = self._repo(repo)
        where = {"repo": repo, "tag": tag}
        try:
            response = self._request("GET", f"{prefix}/manifests/{_tag_path(tag)}", "manifest", headers=_ACCEPT,
                                     scopes=scopes, **where)
        except RegistryError as error:
            if error.status == 404:
                error.code = "TAG_UNKNOWN"
                error.message = f"manifest: tag {tag} is in {repo}'s tag list, but its manifest is unknown (HTTP 404)"
            raise
        media_type = bare_media_type(response.header("Content-Type"))
        said = response.header("Docker-Content-Digest")
        if said is not None and not valid_digest(said):
            response.close()
            raise self._fail(f"manifest: invalid Docker-Content-Digest {said[:80]!r}", "manifest",
                             code="DIGEST_INVALID", **where)
        try:
            body = self._read(response, MAX_MANIFEST_BYTES, "manifest", **where)
        except RegistryError as error:
            if said is None:
                raise
            error.digest = said
            return None, media_type, said, error
        if said is None:
            digest = compute_digest(body)
            try:
                parse_manifest(body, digest, media_type)
            except ManifestError as error:
                raise self._fail(f"manifest: no Docker-Content-Digest, and the manifest is not one ({error})",
                                 "manifest", code="MANIFEST_INVALID", **where) from None
            return body, media_type, digest, None
        try:
            verify_digest(body, said, media_type)
        except ManifestError as error:
            return None, media_type, said, self._fail(f"manifest: {error}", "manifest", code="DIGEST_MISMATCH",
                                                      digest=said, **where)
        return body, media_type, said, None

    def fetch_manifest(self, repo, reference, tag=None):
        """GET a manifest by digest (or tag) and verify the body: (body, media type, digest)."""
        prefix, scopes = self._repo(repo)
        url = f"{prefix}/manifests/{quote(reference, safe=':')}"
        where = {"repo": repo, "tag": tag, "digest": reference if valid_digest(reference) else None}
        response = self._request("GET", url, "manifest", headers=_ACCEPT, scopes=scopes, **where)
        media_type = bare_media_type(response.header("Content-Type"))
        header_digest = response.header("Docker-Content-Digest")
        body = self._read(response, MAX_MANIFEST_BYTES, "manifest", **where)
        expected = reference if valid_digest(reference) else header_digest
        try:
            if expected:
                verify_digest(body, expected, media_type)
            else:
                expected = compute_digest(body)
        except ManifestError as error:
            raise self._fail(f"manifest: {error}", "manifest", code="DIGEST_MISMATCH", **where) from None
        return body, media_type, expected

    def fetch_referrers(self, repo, digest):
        """The referrers of a digest from the OCI 1.1 API, every page: (descriptors, complete). A list the
        registry says it filtered (`OCI-Filters-Applied`, though we ask for no filter) is not complete. A
        registry without the API answers 404 (or 400, 405, 501: `referrers.UNSERVED`)."""
        filtered = []
        prefix, scopes = self._repo(repo)
        try:
            descriptors = self._pages(
                f"{prefix}/referrers/{digest}", "manifests", "referrers", scopes, self.options.max_referrers,
                item=_descriptor, on_page=lambda response: filtered.append(response.header("OCI-Filters-Applied")),
                hint="the referrers read are followed; raise --max-referrers if a digest has that many", repo=repo,
                digest=digest)
        except ListingTruncated as error:
            error.items = list(dict.fromkeys(error.items))
            raise
        return list(dict.fromkeys(descriptors)), not any(filtered)

    def fetch_blob(self, repo, digest, limit=MAX_CONFIG_BYTES, stage="config"):
        """GET a blob (an image config, or with stage 'signature' a signature layer) and verify it against
        its digest."""
        prefix, scopes = self._repo(repo)
        response = self._request("GET", f"{prefix}/blobs/{digest}", stage, scopes=scopes, repo=repo, digest=digest)
        body = self._read(response, limit, stage, repo=repo, digest=digest)
        try:
            verify_digest(body, digest)
        except ManifestError as error:
            raise self._fail(f"{stage}: {error}", stage, repo=repo, digest=digest, code="DIGEST_MISMATCH") from None
        return body
