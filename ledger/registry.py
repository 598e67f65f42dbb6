"""Talk to one OCI / Docker v2 registry. Fetches only: nothing here decides or writes."""

import json
import threading
from collections import Counter
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .manifests import ACCEPT, ManifestError, compute_digest, valid_digest, verify_digest
from .references import api_base

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_LIST_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100_000
TIMEOUT = (10, 60)


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


class RegistryClient:
    """One registry's v2 API, shared by the collector's worker threads."""

    def __init__(self, registry, *, plain_http=False, concurrency=8, page_size=1000, timeout=TIMEOUT):
        self.registry = registry
        self.base = api_base(registry, plain_http)
        self.page_size = page_size
        self.timeout = timeout
        self.requests = Counter()
        self._lock = threading.Lock()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(concurrency, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"registry-ledger/{__version__}"

    def close(self):
        self.session.close()

    def _fail(self, message, stage, **where):
        return RegistryError(message, registry=self.registry, stage=stage, **where)

    def _request(self, method, url, stage, *, headers=None, stream=False, **where):
        with self._lock:
            self.requests[stage] += 1
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                            stream=stream, allow_redirects=False)
        except requests.exceptions.SSLError as error:
            raise self._fail(f"TLS error: {error}", stage, **where) from None
        except requests.exceptions.ConnectionError:
            raise self._fail(f"cannot connect to {self.base}", stage, **where) from None
        except requests.exceptions.Timeout:
            raise self._fail(f"timed out after {self.timeout[1]}s", stage, **where) from None
        except requests.exceptions.RequestException as error:
            raise self._fail(f"request failed: {error.__class__.__name__}", stage, **where) from None
        if 300 <= response.status_code < 400 and response.headers.get("Location"):
            target = urljoin(response.url, response.headers["Location"])
            response.close()
            return self._redirected(method, url, target, stage, stream=stream, **where)
        if response.status_code >= 400:
            code, message = _error_code(response) if method != "HEAD" else (None, None)
            response.close()
            if response.status_code == 401:
                detail = "authentication required (this registry needs credentials)"
            else:
                detail = f"HTTP {response.status_code}"
            text = f"{stage}: {detail}" + (f" {code}" if code else "") + (f": {message}" if message else "")
            raise self._fail(text, stage, status=response.status_code, code=code, **where)
        return response

    def _redirected(self, method, url, target, stage, *, stream, **where):
        """Follow one redirect (blob storage); never send our headers to another host."""
        same_origin = urlsplit(target)[:2] == urlsplit(url)[:2]
        session = self.session if same_origin else requests
        try:
            response = session.request(method, target, timeout=self.timeout, stream=stream,
                                       headers=None if same_origin else {"User-Agent": self.session.headers["User-Agent"]})
        except requests.exceptions.RequestException as error:
            raise self._fail(f"redirect to {urlsplit(target).netloc} failed: {error.__class__.__name__}",
                             stage, **where) from None
        if response.status_code >= 400:
            response.close()
            raise self._fail(f"{stage}: HTTP {response.status_code} from redirect target", stage,
                             status=response.status_code, **where)
        return response

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

    def _pages(self, path, key, stage, **where):
        """Follow `Link: <...>; rel="next"` pages, refusing to leave the registry's origin."""
        url = f"{self.base}{path}?n={self.page_size}"
        seen = set()
        items = []
        while url:
            if url in seen or len(seen) >= MAX_PAGES:
                raise self._fail(f"{stage}: pagination loops at {url}", stage, **where)
            seen.add(url)
            response = self._request("GET", url, stage, stream=True, **where)
            nxt = response.links.get("next", {}).get("url")
            page = self._json(response, MAX_LIST_BYTES, stage, **where)
            values = page.get(key)
            if values is None:
                values = []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self._fail(f"{stage}: '{key}' is not a list of names", stage, **where)
            items.extend(values)
            url = None
            if nxt:
                url = urljoin(response.url, nxt)
                if urlsplit(url)[:2] != urlsplit(self.base)[:2]:
                    raise self._fail(f"{stage}: next page points to another origin", stage, **where)
        return items

    def fetch_ping(self):
        self._read(self._request("GET", f"{self.base}/v2/", "ping", stream=True), MAX_LIST_BYTES, "ping")

    def fetch_catalog(self):
        return self._pages("/v2/_catalog", "repositories", "catalog")

    def fetch_tags(self, repo):
        return self._pages(f"/v2/{repo}/tags/list", "tags", "tags", repo=repo)

    def fetch_head(self, repo, tag):
        """Resolve a tag: (digest, media type, size) from one HEAD."""
        url = f"{self.base}/v2/{repo}/manifests/{tag}"
        response = self._request("HEAD", url, "head", headers={"Accept": ACCEPT}, repo=repo, tag=tag)
        response.close()
        digest = response.headers.get("Docker-Content-Digest")
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip() or None
        size = response.headers.get("Content-Length")
        if digest is None:
            # Some registries omit the header on HEAD: the digest is then the hash of the body.
            body, media_type, digest = self.fetch_manifest(repo, tag, tag=tag)
            return digest, media_type, len(body)
        if not valid_digest(digest):
            raise self._fail(f"head: invalid Docker-Content-Digest {digest!r}", "head", repo=repo, tag=tag)
        return digest, media_type, int(size) if size and size.isdigit() else None

    def fetch_manifest(self, repo, reference, tag=None):
        """GET a manifest by digest (or tag) and verify the body: (body, media type, digest)."""
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        where = {"repo": repo, "tag": tag, "digest": reference if valid_digest(reference) else None}
        response = self._request("GET", url, "manifest", headers={"Accept": ACCEPT}, stream=True, **where)
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
        response = self._request("GET", url, "config", stream=True, repo=repo, digest=digest)
        body = self._read(response, limit, "config", repo=repo, digest=digest)
        try:
            verify_digest(body, digest)
        except ManifestError as error:
            raise self._fail(f"config: {error}", "config", repo=repo, digest=digest, code="DIGEST_MISMATCH") from None
        return body
