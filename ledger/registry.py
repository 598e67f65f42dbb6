"""Talk to one OCI / Docker v2 registry. Fetches only: nothing here decides or writes."""

import email.utils
import json
import random
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import __version__
from .auth import Authenticator, AuthError, Credentials
from .manifests import ACCEPT, ManifestError, compute_digest, parse_manifest, valid_digest, verify_digest
from .references import api_base

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_LIST_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100_000
MAX_RETRY_AFTER = 60.0
CATALOG_SCOPE = "registry:catalog:*"
USER_AGENT = f"registry-ledger/{__version__}"


@dataclass
class RegistryOptions:
    """How to reach one registry; the CLI and the config file fill these in."""

    plain_http: bool = False
    ca_file: str | None = None
    insecure: bool = False  # skip TLS verification
    credentials: Credentials = field(default_factory=Credentials)
    concurrency: int = 8
    rps: float | None = None  # requests per second, at most
    retries: int = 4
    backoff: float = 0.5  # seconds; doubles per retry, with jitter
    page_size: int = 1000
    timeout: tuple = (10, 60)
    include_tags: str | None = None
    exclude_tags: str | None = None


class RegistryError(Exception):
    """A typed failure talking to a registry; becomes a row in the errors table."""

    def __init__(self, message, *, registry, stage, repo=None, tag=None, digest=None, status=None, code=None):
        super().__init__(message)
        self.message = message
        self.registry = registry
        self.stage = stage
        self.repo = repo
        self.tag = tag
        self.digest = digest
        self.status = status
        self.code = code

    def __str__(self):
        where = self.registry + (f"/{self.repo}" if self.repo else "") + (f":{self.tag}" if self.tag else "")
        return f"{where}: {self.message}"


def _error_code(response):
    """The first registry error code and message of an error body, which may be absent or not JSON."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return first.get("code"), first.get("message")
    except (ValueError, AttributeError, IndexError, TypeError):
        return None, None


def next_link(header):
    """The URL of `rel="next"` in a `Link` header, or None (requests' parser, which never raises)."""
    if not header:
        return None
    for link in requests.utils.parse_header_links(header):
        if "next" in (link.get("rel") or "").split() and link.get("url"):
            return link["url"]
    return None


def retry_after(value, now=None):
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (now if now is not None else time.time()))


def _rate_number(value):
    """`100;w=21600` -> 100."""
    try:
        return int((value or "").split(";", 1)[0].strip())
    except ValueError:
        return None


class RegistryClient:
    """One registry's v2 API, shared by the collector's worker threads."""

    def __init__(self, registry, options=None):
        self.registry = registry
        self.options = options or RegistryOptions()
        self.base = api_base(registry, self.options.plain_http,
                             tls=bool(self.options.ca_file or self.options.insecure))
        self.verify = self.options.ca_file or not self.options.insecure
        if self.options.insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the CLI warns once
        self.requests = Counter()
        self.rate_limit = {}  # Docker Hub's RateLimit-Limit / -Remaining, as last seen
        self.exhausted = False
        self._lock = threading.Lock()
        self._next_slot = 0.0
        # verify= and proxies= go on every request. With trust_env requests would read ~/.netrc on
        # each one (a third of its CPU here, and netrc credentials have no business going to a
        # registry), so proxies are taken from the environment once per host instead.
        self.session = requests.Session()
        self.session.trust_env = False
        self._proxies = {}
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(self.options.concurrency, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.auth = Authenticator(registry, self.options.credentials, timeout=self.options.timeout,
                                  verify=self.verify, user_agent=USER_AGENT)

    def close(self):
        self.session.close()

    def _proxies_for(self, url):
        """HTTP(S)_PROXY / NO_PROXY from the environment, looked up once per scheme and host."""
        origin = "/".join(url.split("/", 3)[:3])
        if origin not in self._proxies:
            self._proxies[origin] = requests.utils.get_environ_proxies(origin)
        return self._proxies[origin]

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

    def _send(self, method, url, stage, headers, stream, scopes, where):
        """One attempt, with auth; a 401 that brings a usable challenge is answered once."""
        for attempt in (1, 2):
            sent = dict(headers or {})
            try:
                authorization = self.auth.header(scopes)
            except AuthError as error:
                raise self._fail(f"{stage}: {error}", stage, status=error.status, code="UNAUTHORIZED",
                                 **where) from None
            if authorization:
                sent["Authorization"] = authorization
            self._pace()
            with self._lock:
                self.requests[stage] += 1
            response = self.session.request(method, url, headers=sent, timeout=self.options.timeout,
                                            stream=stream, allow_redirects=False, verify=self.verify,
                                            proxies=self._proxies_for(url))
            self._note_rate_limit(response)
            if response.status_code != 401 or attempt == 2:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            if not self.auth.learn(challenge):
                return response
            self.auth.forget(scopes)

    def _request(self, method, url, stage, *, headers=None, stream=False, scopes=(), **where):
        """A request with retries on connection errors, 5xx and 429; errors become RegistryError."""
        if self.exhausted:
            raise self._fail(f"{stage}: skipped, the registry's rate limit is exhausted", stage,
                             code="RATE_LIMIT_EXHAUSTED", **where)
        attempt = 0
        while True:
            attempt += 1
            wait = None
            try:
                response = self._send(method, url, stage, headers, stream, scopes, where)
            except requests.exceptions.SSLError as error:
                raise self._fail(f"TLS error talking to {self.base}: {tls_reason(error)}", stage, code="TLS",
                                 **where) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
                kind = "timed out" if isinstance(error, requests.exceptions.Timeout) else "cannot connect to"
                if attempt > self.options.retries:
                    text = f"{kind} {self.base}" + (f" (after {attempt} attempts)" if attempt > 1 else "")
                    raise self._fail(text, stage, code="UNREACHABLE", **where) from None
            except requests.exceptions.RequestException as error:
                raise self._fail(f"request failed: {error.__class__.__name__}", stage, **where) from None
            else:
                status = response.status_code
                if (status >= 500 or status == 429) and attempt <= self.options.retries:
                    wait = retry_after(response.headers.get("Retry-After"))
                    response.close()
                else:
                    return self._checked(method, url, response, stage, stream, scopes, where)
            delay = self.options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            time.sleep(min(wait if wait is not None else delay, MAX_RETRY_AFTER))

    def _checked(self, method, url, response, stage, stream, scopes, where):
        if 300 <= response.status_code < 400 and response.headers.get("Location"):
            target = urljoin(response.url, response.headers["Location"])
            response.close()
            return self._redirected(method, url, target, stage, stream, scopes, where)
        if response.status_code < 400:
            return response
        code, message = _error_code(response) if method != "HEAD" else (None, None)
        response.close()
        status = response.status_code
        if status == 401:
            detail = ("authentication required: no credentials found for this registry"
                      if not self.auth.credentials.source or self.auth.credentials.source == "none"
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

    def _redirected(self, method, url, target, stage, stream, scopes, where):
        """Follow one redirect (blob storage); credentials never go to another host."""
        same_origin = urlsplit(target)[:2] == urlsplit(url)[:2]
        headers = {"User-Agent": USER_AGENT}
        if same_origin:
            authorization = self.auth.header(scopes)
            if authorization:
                headers["Authorization"] = authorization
        with self._lock:
            self.requests["redirect"] += 1
        try:
            response = requests.request(method, target, headers=headers, timeout=self.options.timeout,
                                        stream=stream, verify=self.verify, allow_redirects=False)
        except requests.exceptions.RequestException as error:
            raise self._fail(f"redirect to {urlsplit(target).netloc} failed: {error.__class__.__name__}",
                             stage, **where) from None
        if response.status_code >= 300:
            response.close()
            raise self._fail(f"{stage}: HTTP {response.status_code} from redirect target "
                             f"{urlsplit(target).netloc}", stage, status=response.status_code, **where)
        return response

    def _note_rate_limit(self, response):
        limit = _rate_number(response.headers.get("RateLimit-Limit"))
        remaining = _rate_number(response.headers.get("RateLimit-Remaining"))
        if remaining is None:
            return
        with self._lock:
            self.rate_limit = {"limit": limit, "remaining": remaining}
            if remaining <= 0:
                self.exhausted = True

    def _read(self, response, limit, stage, **where):
        """Read a body of at most `limit` bytes."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._fail(f"{stage}: body of {declared} bytes exceeds the {limit}-byte limit", stage, **where)
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(65536):
                total += len(chunk)
                if total > limit:
                    raise self._fail(f"{stage}: body exceeds the {limit}-byte limit", stage, **where)
                chunks.append(chunk)
        except requests.exceptions.RequestException as error:
            raise self._fail(f"{stage}: connection broke while reading ({error.__class__.__name__})",
                             stage, **where) from None
        finally:
            response.close()
        return b"".join(chunks)

    def _json(self, response, limit, stage, **where):
        body = self._read(response, limit, stage, **where)
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._fail(f"{stage}: response is not JSON", stage, **where) from None
        if not isinstance(document, dict):
            raise self._fail(f"{stage}: response is not a JSON object", stage, **where)
        return document

    def _pages(self, url, key, stage, scopes, **where):
        """Follow `Link: <...>; rel="next"` pages, refusing to leave the first page's origin."""
        origin = urlsplit(url)[:2]
        seen, items = set(), []
        while url:
            if url in seen or len(seen) >= MAX_PAGES:
                raise self._fail(f"{stage}: pagination loops at {url}", stage, **where)
            seen.add(url)
            response = self._request("GET", url, stage, stream=True, scopes=scopes, **where)
            nxt = next_link(response.headers.get("Link"))
            page = self._json(response, MAX_LIST_BYTES, stage, **where)
            values = page.get(key)
            if values is None:
                values = []  # "tags": null means none
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self._fail(f"{stage}: '{key}' is not a list of names", stage, **where)
            items.extend(values)
            url = urljoin(response.url, nxt) if nxt else None
            if url and urlsplit(url)[:2] != origin:
                raise self._fail(f"{stage}: next page points to another origin", stage, **where)
        return items

    def fetch_ping(self):
        """GET /v2/: reachability, and the auth challenge. With credentials, check them now."""
        creds = self.options.credentials
        basic = creds.basic()
        headers = {"Authorization": basic} if basic else {}
        with self._lock:
            self.requests["ping"] += 1
        try:
            response = self.session.request("GET", f"{self.base}/v2/", headers=headers, timeout=self.options.timeout,
                                            allow_redirects=False, verify=self.verify,
                                            proxies=self._proxies_for(self.base))
        except requests.exceptions.SSLError as error:
            raise self._fail(f"TLS error talking to {self.base}: {tls_reason(error)}", "ping",
                             code="TLS") from None
        except requests.exceptions.RequestException:
            raise self._fail(f"cannot connect to {self.base}", "ping", code="UNREACHABLE") from None
        if response.status_code >= 500 or response.status_code == 429:
            response.close()
            self._read(self._request("GET", f"{self.base}/v2/", "ping", stream=True), MAX_LIST_BYTES, "ping")
            return
        self._note_rate_limit(response)
        status, challenge = response.status_code, response.headers.get("WWW-Authenticate", "")
        response.close()
        if status == 401:
            if not self.auth.learn(challenge):
                raise self._fail("ping: HTTP 401 with no challenge this client can answer", "ping", status=401,
                                 code="UNAUTHORIZED")
            if self.auth.scheme == "basic" and basic:
                raise self._fail(f"ping: credentials from {creds.source} were refused (HTTP 401)", "ping",
                                 status=401, code="UNAUTHORIZED")
            if self.auth.scheme == "bearer" and (basic or creds.identity_token):
                try:
                    self.auth.token(())  # a token with no scope: checks the credentials, as docker login does
                except AuthError as error:
                    raise self._fail(f"ping: {error}", "ping", status=error.status, code="UNAUTHORIZED") from None
        elif status >= 400:
            raise self._fail(f"ping: HTTP {status} from {self.base}/v2/ (is this a registry?)", "ping", status=status)
        elif basic and not self.auth.scheme:
            self.auth.scheme = "basic"  # it took our Basic credentials

    def fetch_catalog(self):
        try:
            return self._pages(f"{self.base}/v2/_catalog?n={self.options.page_size}", "repositories", "catalog",
                               (CATALOG_SCOPE,))
        except RegistryError as error:
            if error.status in (401, 403, 404, 405):
                error.message = (f"catalog: this registry does not offer its catalog (HTTP {error.status}); "
                                 f"name repositories instead, e.g. {self.registry}/OWNER/REPO")
            raise

    def fetch_tags(self, repo):
        return self._pages(f"{self.base}/v2/{repo}/tags/list?n={self.options.page_size}", "tags", "tags",
                           (f"repository:{repo}:pull",), repo=repo)

    def fetch_head(self, repo, tag):
        """Resolve a tag: (digest, media type, size) from one HEAD."""
        url = f"{self.base}/v2/{repo}/manifests/{tag}"
        response = self._request("HEAD", url, "head", headers={"Accept": ACCEPT}, scopes=(f"repository:{repo}:pull",),
                                 repo=repo, tag=tag)
        response.close()
        digest = response.headers.get("Docker-Content-Digest")
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip() or None
        size = response.headers.get("Content-Length")
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
            raise self._fail(f"head: invalid Docker-Content-Digest {digest!r}", "head", repo=repo, tag=tag)
        return digest, media_type, int(size) if size and size.isdigit() else None

    def fetch_manifest(self, repo, reference, tag=None):
        """GET a manifest by digest (or tag) and verify the body: (body, media type, digest)."""
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        where = {"repo": repo, "tag": tag, "digest": reference if valid_digest(reference) else None}
        response = self._request("GET", url, "manifest", headers={"Accept": ACCEPT}, stream=True,
                                 scopes=(f"repository:{repo}:pull",), **where)
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip() or None
        header_digest = response.headers.get("Docker-Content-Digest")
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

    def fetch_blob(self, repo, digest, limit=MAX_CONFIG_BYTES):
        """GET a blob (an image config) and verify it against its digest."""
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        response = self._request("GET", url, "config", stream=True, scopes=(f"repository:{repo}:pull",),
                                 repo=repo, digest=digest)
        body = self._read(response, limit, "config", repo=repo, digest=digest)
        try:
            verify_digest(body, digest)
        except ManifestError as error:
            raise self._fail(f"config: {error}", "config", repo=repo, digest=digest, code="DIGEST_MISMATCH") from None
        return body


def tls_reason(error):
    """The ssl module's own words under requests' wrappers: 'certificate verify failed: ...'."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return current.reason or str(current)
        pending += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        pending += [x for x in (getattr(current, "reason", None), current.__cause__, current.__context__)
                    if isinstance(x, BaseException)]
    return error.__class__.__name__
