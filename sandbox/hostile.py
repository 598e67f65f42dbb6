"""A hostile registry on loopback: a tiny in-memory OCI / Docker v2 registry whose every endpoint
can be told to misbehave.

`HostileRegistry` serves `GET /v2/`, `/v2/_catalog`, `/v2/<name>/tags/list`, `HEAD|GET
/v2/<name>/manifests/<tag|digest>` and `GET /v2/<name>/blobs/<digest>` for images it builds itself
(valid Docker v2 / OCI manifests whose digests are the sha256 of the exact bytes served, configs
with created / architecture / os), and optionally `GET|POST /token` (the token server role). It can
demand Basic credentials or Bearer tokens from a token server (itself or another instance), and it
records every request with its headers, so a test can see where an `Authorization` header went.

Misbehaviour is a per-test hook, looked up by (method, kind, repo):

    server.misbehave[("GET", "tags", "bad/app")] = deep_json(200_000)
    server.misbehave[("*", "manifest", "bad/app")] = with_headers(("Content-Length", b"\\xb2"))

kind is one of ping, catalog, tags, manifest, blob, token, other; method and repo may be "*", and
repo is None for registry-wide endpoints. A hook gets the request handler and writes whatever raw
bytes it likes to the socket (`handler.raw`, `handler.respond`), or returns NORMAL to let the
endpoint answer as usual. After a hook's answer the connection is closed, so a client never waits
on a body the hook did not finish. The factories below cover what http.server's helpers cannot:
endless and dripped bodies, dripped or oversized headers, hostile header values, deep nesting,
endless distinct `Link` pages, redirects.

`ResponseSpec`, the value pools and `random_case` are what the property test (tests/test_fuzz.py)
and scripts/fuzz_registry.py draw hostile answers from.

Nothing here uses the ledger's code: the server must not share code with what it tests. Only
127.0.0.1 (and `localhost`) is ever used.
"""

import base64
import hashlib
import http
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.loopback import LoopbackServer, QuietHandler
from sandbox.media import CONFIG_TYPES, DOCKER_LIST, DOCKER_MANIFEST, LAYER_TYPES, OCI_INDEX, OCI_MANIFEST

NORMAL = object()  # a hook returning this lets the endpoint answer normally

# Options of `ledger collect` that the hostile tests rely on (added for issue 11). Tests build
# them through new_options() so that one place knows them.
DEADLINE = 3  # seconds, per request


def new_options(deadline=DEADLINE, max_tags=None):
    """`--deadline N` (and `--max-tags N`) for a hostile collect."""
    options = ["--deadline", str(deadline)]
    if max_tags is not None:
        options += ["--max-tags", str(max_tags)]
    return options


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _bytes(value):
    if isinstance(value, bytes):
        return value
    value = str(value)
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Whatever"


def _error(code, message="hostile"):
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


_ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?:(?P<tags>tags/list)|manifests/(?P<manifest>[^/]+)|blobs/(?P<blob>[^/]+)"
                    r"|referrers/(?P<referrers>[^/]+))$")


def route(path):
    """(kind, repo, reference) of a request path."""
    path = unquote(path)
    if path in ("/v2", "/v2/"):
        return "ping", None, None
    if path == "/v2/_catalog":
        return "catalog", None, None
    if path == "/token":
        return "token", None, None
    match = _ROUTE.match(path)
    if not match:
        return "other", None, None
    if match.group("tags"):
        return "tags", match.group("name"), None
    if match.group("manifest"):
        return "manifest", match.group("name"), match.group("manifest")
    if match.group("referrers"):
        return "referrers", match.group("name"), match.group("referrers")
    return "blob", match.group("name"), match.group("blob")


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    kind: str
    repo: str | None
    ref: str | None
    headers: list  # (name, value) as sent
    body: bytes = b""

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def authorization(self):
        return self.header("Authorization")


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # an idle keep-alive connection, or a client that stopped reading, is dropped after this

    # -- what hooks use ------------------------------------------------------------------------

    @property
    def hostile(self):
        return self.server.hostile

    def raw(self, data):
        """Write bytes to the socket as they are; False once the client is gone."""
        try:
            self.wfile.write(data)
            return True
        except OSError:
            self.close_connection = True
            return False

    def sleep(self, seconds):
        """Wait; False when the server is stopping."""
        return not self.hostile.stopping.wait(seconds)

    def head_bytes(self, status, headers=(), body=b"", *, length=True, reason=None):
        """The status line and headers, raw. Adds Content-Length (unless `length` is False or the
        headers have one) and `Connection: close` when the connection will close."""
        lines = [b"HTTP/1.1 %d %s" % (status, _bytes(reason if reason is not None else _reason(status)))]
        names = set()
        for name, value in headers:
            names.add(_bytes(name).lower())
            lines.append(_bytes(name) + b": " + _bytes(value))
        if length and b"content-length" not in names and b"transfer-encoding" not in names:
            lines.append(b"Content-Length: %d" % len(body))
        if self.close_connection and b"connection" not in names:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def respond(self, status, headers=(), body=b"", *, length=True, reason=None):
        """A whole answer, raw: no body after a HEAD."""
        head = self.head_bytes(status, headers, body, length=length, reason=reason)
        return self.raw(head if self.command == "HEAD" else head + body)

    def normal(self):
        """(status, headers, body) this endpoint answers when it behaves."""
        return self.hostile._normal(self)

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self):
        hostile = self.hostile
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.kind, self.repo, self.ref = route(split.path)
        length = self.headers.get("Content-Length")
        body = b""
        if length and length.isascii() and length.isdigit():
            body = self.rfile.read(min(int(length), 1 << 20))
        self.request_body = body
        hostile._record(Request(self.command, self.path, self.kind, self.repo, self.ref,
                                list(self.headers.items()), body))
        hook = hostile._hook(self.command, self.kind, self.repo)
        if hook is not None:
            self.close_connection = True
            with hostile._lock:
                hostile.hostile_served += 1  # counted now: an endless answer never returns
            if hook(self) is not NORMAL:
                return
            with hostile._lock:
                hostile.hostile_served -= 1
            self.close_connection = False
        status, headers, body = self.normal()
        self.respond(status, headers, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


@dataclass
class _Auth:
    scheme: str  # basic | bearer
    user: str | None = None
    password: str | None = None
    token_server: "HostileRegistry | None" = None
    realm: str | None = None
    service: str = "hostile"


class HostileRegistry(LoopbackServer):
    """An in-memory registry on 127.0.0.1 whose endpoints misbehave on demand (see the module doc).

    `tls=(certificate, key)` serves HTTPS. `token_users` makes `/token` demand Basic credentials
    ({user: password}); without it tokens are anonymous.
    """

    def __init__(self, *, tls=None, token_users=None, host="127.0.0.1"):
        self.repos = {}  # repo -> {tag: digest}
        self.manifests = {}  # digest -> (media type, body)
        self.blobs = {}  # digest -> bytes
        self.misbehave = {}
        self.requests = []
        self.auth = None
        self.token_users = token_users
        self.token_answer = None  # a document to answer /token with instead of a fresh token
        self.referrers = None  # subject digest -> its referrers list (bytes) or None; unset: no referrers API
        self.issued = set()
        self.hostile_served = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        super().__init__(_Handler, tls=tls)
        self.server.hostile = self
        self.scheme = "https" if tls else "http"
        self.host = f"{host}:{self.port}"
        self.url = f"{self.scheme}://{self.host}"

    # -- life ----------------------------------------------------------------------------------

    def stop(self):
        self.stopping.set()
        super().stop()

    def reset(self):
        """Behave again: no hooks, no auth, no request log."""
        with self._lock:
            self.misbehave.clear()
            self.requests.clear()
            self.auth = None
            self.token_answer = None
            self.hostile_served = 0

    # -- content -------------------------------------------------------------------------------

    def put_blob(self, data):
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

    def put_manifest(self, repo, tag, body, media_type=DOCKER_MANIFEST):
        """Serve these exact bytes as REPO:TAG (and by digest); returns the digest."""
        digest = digest_of(body)
        self.manifests[digest] = (media_type, body)
        self.repos.setdefault(repo, {})
        if tag is not None:
            self.repos[repo][tag] = digest
        return digest

    def add_image(self, repo, tag, *, seed=None, media_type=DOCKER_MANIFEST, created="2024-01-01T00:00:00Z",
                  architecture="amd64", os_name="linux"):
        """A valid single-platform image (the same seed gives the same bytes): (digest, config digest)."""
        seed = seed if seed is not None else f"{repo}:{tag}"
        layer = f"layer of {seed}\n".encode() * 16
        config = {"architecture": architecture, "os": os_name, "created": created,
                  "config": {"Labels": {"seed": seed}, "Env": ["PATH=/usr/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
                  "history": [{"created": created, "created_by": f"hostile {seed}"}]}
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = self.put_blob(config_bytes)
        layer_digest = self.put_blob(layer)
        manifest = {"schemaVersion": 2, "mediaType": media_type,
                    "config": {"mediaType": CONFIG_TYPES[media_type], "size": len(config_bytes),
                               "digest": config_digest},
                    "layers": [{"mediaType": LAYER_TYPES[media_type], "size": len(layer), "digest": layer_digest}]}
        body = json.dumps(manifest, indent=3).encode()
        return self.put_manifest(repo, tag, body, media_type), config_digest

    def manifest_of(self, repo, tag):
        digest = self.repos[repo][tag]
        media_type, body = self.manifests[digest]
        return digest, media_type, body

    # -- auth ----------------------------------------------------------------------------------

    @property
    def realm(self):
        return f"{self.url}/token"

    def require_basic(self, user, password):
        self.auth = _Auth("basic", user=user, password=password)

    def require_bearer(self, token_server, service="hostile", realm=None):
        """Every /v2/ request needs a token `token_server` issued; the challenge names `realm`
        (default: the token server's /token)."""
        self.auth = _Auth("bearer", token_server=token_server, realm=realm or token_server.realm, service=service)

    def authorizations(self):
        """(kind, path, Authorization) of every request that carried one."""
        return [(r.kind, r.path, r.authorization) for r in list(self.requests) if r.authorization is not None]

    # -- internals -----------------------------------------------------------------------------

    def _record(self, request):
        with self._lock:
            self.requests.append(request)

    def _hook(self, method, kind, repo):
        for key in ((method, kind, repo), ("*", kind, repo), (method, kind, "*"), ("*", kind, "*")):
            hook = self.misbehave.get(key)
            if hook is not None:
                return hook
        return None

    def _challenge(self, handler):
        auth = self.auth
        if auth.scheme == "basic":
            return 'Basic realm="hostile"'
        scope = ""
        if handler.kind == "catalog":
            scope = ',scope="registry:catalog:*"'
        elif handler.repo:
            scope = f',scope="repository:{handler.repo}:pull"'
        return f'Bearer realm="{auth.realm}",service="{auth.service}"{scope}'

    def _authorized(self, handler):
        auth = self.auth
        if auth is None or handler.kind == "token":
            return True
        given = handler.headers.get("Authorization") or ""
        if auth.scheme == "basic":
            return given == basic(auth.user, auth.password)
        return given.startswith("Bearer ") and given[7:] in auth.token_server.issued

    def _normal(self, handler):
        json_type = ("Content-Type", "application/json")
        if not self._authorized(handler):
            return 401, [json_type, ("WWW-Authenticate", self._challenge(handler))], _error("UNAUTHORIZED",
                                                                                          "authentication required")
        kind, repo, ref = handler.kind, handler.repo, handler.ref
        if kind == "ping":
            return 200, [json_type, ("Docker-Distribution-Api-Version", "registry/2.0")], b"{}"
        if kind == "catalog":
            return 200, [json_type], json.dumps({"repositories": sorted(self.repos)}).encode()
        if kind == "tags":
            if repo not in self.repos:
                return 404, [json_type], _error("NAME_UNKNOWN", "repository name not known to registry")
            return 200, [json_type], json.dumps({"name": repo, "tags": sorted(self.repos[repo])}).encode()
        if kind == "manifest":
            digest = ref if ref and ref.startswith("sha256:") else (self.repos.get(repo) or {}).get(ref)
            if repo not in self.repos or digest not in self.manifests:
                return 404, [json_type], _error("MANIFEST_UNKNOWN", "manifest unknown")
            media_type, body = self.manifests[digest]
            return 200, [("Content-Type", media_type), ("Docker-Content-Digest", digest),
                         ("Etag", f'"{digest}"')], body
        if kind == "blob":
            if ref not in self.blobs:
                return 404, [json_type], _error("BLOB_UNKNOWN", "blob unknown to registry")
            return 200, [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", ref)], self.blobs[ref]
        if kind == "token":
            return self._token(handler)
        if kind == "referrers" and self.referrers is not None:
            answer = self.referrers(ref)
            if answer is not None:
                return 200, [("Content-Type", OCI_INDEX)], answer
        return 404, [json_type], _error("NOT_FOUND", "no such endpoint")

    def _token(self, handler):
        json_type = ("Content-Type", "application/json")
        if self.token_users is not None:
            given = handler.headers.get("Authorization") or ""
            if given not in {basic(u, p) for u, p in self.token_users.items()}:
                return 401, [json_type], b'{"details":"incorrect username or password"}'
        if self.token_answer is not None:
            return 200, [json_type], _bytes(self.token_answer)
        token = secrets.token_hex(16)
        with self._lock:
            self.issued.add(token)
        document = {"token": token, "access_token": token, "expires_in": 300,
                    "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return 200, [json_type], json.dumps(document).encode()


# -- referrers ----------------------------------------------------------------------------------

FLOOD_TYPE = "application/vnd.example.flood"


def referrer_manifest(subject, note):
    """An artifact manifest (bytes) that names `subject`, made unique by `note`."""
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": FLOOD_TYPE,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                           "digest": digest_of(b"{}")},
                "layers": [], "subject": {"mediaType": DOCKER_MANIFEST, "digest": subject, "size": 1},
                "annotations": {"note": note}}
    return json.dumps(manifest).encode()


def referrers_list(server, repo, bodies):
    """Serve each artifact body in `repo` by digest; the referrers list (bytes) that names them all."""
    entries = []
    for body in bodies:
        digest = server.put_manifest(repo, None, body, OCI_MANIFEST)
        entries.append({"mediaType": OCI_MANIFEST, "artifactType": FLOOD_TYPE, "digest": digest, "size": len(body)})
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


def referrer_flood(server, repo, count):
    """A registry that answers every referrers request with the same `count` referrers, each of whose
    manifest names another subject: (the list's bytes, the subject they name). Set
    `server.referrers = lambda _subject: answer` to serve it."""
    elsewhere = digest_of(b"the subject the flood's referrers really name")
    server.put_blob(b"{}")
    return referrers_list(server, repo, (referrer_manifest(elsewhere, f"flood {n}") for n in range(count))), elsewhere


# -- hooks ---------------------------------------------------------------------------------------

def when(predicate, hook):
    """`hook` for requests where `predicate(handler)`, else the normal answer."""
    return lambda handler: hook(handler) if predicate(handler) else NORMAL


def by_digest(handler):
    return (handler.ref or "").startswith("sha256:")


def answer(status, body=b"", headers=(), *, content_type="application/json", length=True):
    """A fixed answer; `body` may be bytes or a function of the handler."""
    def hook(handler):
        sent = list(headers)
        if content_type and not any(_bytes(n).lower() == b"content-type" for n, _ in sent):
            sent.insert(0, ("Content-Type", content_type))
        handler.respond(status, sent, body(handler) if callable(body) else body, length=length)
    return hook


def with_headers(*pairs, status=None, body=None, length=True):
    """The normal answer with these headers replacing those of the same names (values may be raw
    bytes), and optionally another status or body."""
    def hook(handler):
        normal_status, headers, normal_body = handler.normal()
        names = {_bytes(name).lower() for name, _ in pairs}
        sent = [(n, v) for n, v in headers if _bytes(n).lower() not in names] + list(pairs)
        handler.respond(normal_status if status is None else status, sent,
                        normal_body if body is None else (body(handler) if callable(body) else body), length=length)
    return hook


def nested(depth, shape="list"):
    """`[[[...]]]` or `{"a":{"a":...}}`, `depth` deep."""
    if shape == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def deep_json(depth=200_000, shape="list", status=200, wrap=(b"", b"")):
    """A body nested `depth` deep, inside `wrap` (e.g. (b'{"tags":', b'}'))."""
    body = wrap[0] + nested(depth, shape) + wrap[1]
    return answer(status, body)


def endless(status=200, *, chunked=False, content_type="application/json", headers=(),
            prefix=b'{"errors":[', piece=b'{"code":"UNKNOWN","message":"more"},'):
    """Headers, then a body that never ends (no Content-Length, or chunked), as fast as the client reads."""
    def hook(handler):
        sent = [("Content-Type", content_type), *headers]
        if chunked:
            sent.append(("Transfer-Encoding", "chunked"))
        if not handler.raw(handler.head_bytes(status, sent, length=False)) or handler.command == "HEAD":
            return
        block = piece * max(1, 65536 // len(piece))
        first = prefix + block
        frames = [b"%x\r\n%s\r\n" % (len(first), first), b"%x\r\n%s\r\n" % (len(block), block)] if chunked else [
            first, block]
        if not handler.raw(frames[0]):
            return
        while not handler.hostile.stopping.is_set():
            if not handler.raw(frames[1]):
                return
    return hook


def drip(every=20.0, *, status=None, headers=(), body=None):
    """The normal answer (or `body`), its headers at once, then its body one byte every `every` seconds."""
    def hook(handler):
        normal_status, normal_headers, normal_body = handler.normal()
        payload = normal_body if body is None else body
        head = handler.head_bytes(normal_status if status is None else status, [*normal_headers, *headers], payload)
        if not handler.raw(head) or handler.command == "HEAD":
            return
        for position in range(len(payload)):
            if not handler.raw(payload[position:position + 1]) or not handler.sleep(every):
                return
    return hook


def drip_headers(every=1.0):
    """A status line, then one header whose value arrives one byte every `every` seconds, forever."""
    def hook(handler):
        if not handler.raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Drip: "):
            return
        while handler.sleep(every):
            if not handler.raw(b"a"):
                return
    return hook


def many_headers(count=100_000):
    """The normal answer after `count` extra headers."""
    def hook(handler):
        status, headers, body = handler.normal()
        extra = [(f"X-Hostile-{n}", "v") for n in range(count)]
        handler.respond(status, [*headers, *extra], body)
    return hook


def long_header(size=1 << 20):
    """The normal answer with one header line of `size` bytes."""
    def hook(handler):
        status, headers, body = handler.normal()
        handler.respond(status, [*headers, ("X-Long", b"a" * size)], body)
    return hook


def redirect(location, status=307):
    """A redirect; `location` is text or a function of the handler."""
    def hook(handler):
        target = location(handler) if callable(location) else location
        handler.respond(status, [("Location", target), ("Content-Type", "text/plain")], b"")
    return hook


def with_link(url):
    """The normal answer with `Link: <url>; rel="next"`."""
    return with_headers(("Link", f'<{url}>; rel="next"'))


def endless_links(page_bytes=1 << 20, tag_length=120):
    """Tag list pages of about `page_bytes` of distinct, valid tag names, each linking to a next one, forever."""
    per_page = max(1, page_bytes // (tag_length + 3))
    filler = "x" * max(0, tag_length - 17)

    def hook(handler):
        last = (handler.query.get("last") or ["p00000000"])[0]
        page = int(last[1:9]) + 1 if re.match(r"p\d{8}", last) else 1
        tags = [f"p{page:08d}-{n:06d}-{filler}" for n in range(per_page)]
        body = json.dumps({"name": handler.repo, "tags": tags}).encode()
        link = f'</v2/{handler.repo}/tags/list?n={per_page}&last={tags[-1]}>; rel="next"'
        handler.respond(200, [("Content-Type", "application/json"), ("Link", link)], body)
    return hook


# -- drawn hostile answers (the property test and scripts/fuzz_registry.py) -----------------------

HOSTILE_STATUSES = [200, 206, 301, 307, 401, 404, 429, 500, 503]

# Values may hold {self} (this server's URL), {origin} (host:port) and {other} (a port nobody listens on).
HOSTILE_HEADERS = {
    "Content-Length": ["\u00b2".encode("latin-1"), "\u00b2".encode("utf-8"), "-1", "99999999999999999999999", "1e3",
                       " 12", "0", "12, 13", "", "0x10", "٣", "1" * 400, "4194305"],
    "Content-Type": ["", OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, "text/html", "application/json; charset=\xff",
                     "\x1b[2J", "a" * 5000, DOCKER_MANIFEST + "; x=" + "y" * 100],
    "Docker-Content-Digest": ["sha256:" + "0" * 64, "sha256:xyz", "md5:d41d8cd98f00b204e9800998ecf8427e", "",
                              "sha512:" + "a" * 128, "sha256:" + "A" * 64, "sha256:" + "0" * 64 + "\x1b[2J",
                              "../../../etc/passwd"],
    "Link": ['<http://127.0.0.1:{other}/v2/x/tags/list>; rel="next"', '<//localhost:{other}/v2/x>; rel="next"',
             '<?n=1>; rel="next"', "<" * 1000, 'rel="next"', '<\x00>; rel=next', '<file:///etc/passwd>; rel="next"',
             '<{self}/v2/_catalog?last=\xff>; rel="next"', '<http://[::1>; rel="next"'],
    "Retry-After": ["²", "99999999999999999999", "-1", "1e9", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT",
                    "Fri, 31 Dec 9999 23:59:59 GMT", "0", "1" * 300],
    "WWW-Authenticate": ['Bearer realm="{self}/token",service="hostile"', 'Bearer realm="file:///etc/passwd"',
                         'Bearer realm=""', "Basic", 'Bearer realm="http://localhost:{other}/t",service="\x1b[2J"',
                         '"' * 1000, "Bearer " + "a=b," * 2000, "Negotiate abc==",
                         'Bearer realm="https://127.0.0.1:{other}/token"', 'Bearer realm="{self}/token",scope="' +
                         "repository:x:pull " * 500 + '"'],
    "RateLimit-Limit": ["0", "-1", "²", "99999999999999999999999;w=1", ";", "0;w=nan", "1e9"],
    "RateLimit-Remaining": ["0", "-1", "²", "99999999999999999999999;w=1", ";", "0;w=nan", "1e9"],
    "Location": ["http://localhost:{other}/", "/v2/", "//127.0.0.1:{other}/x", "\x00", "", "http://[::1", "ftp://x",
                 "{self}/v2/_catalog"],
    "Transfer-Encoding": ["chunked", "gzip, chunked", "identity", "\xff"],
    "Content-Encoding": ["gzip", "br", "deflate", "x"],
}

_ESCAPES = '{"errors":[{"code":"\\u001b[2J","message":"\\u001b]0;pwned\\u0007"}]}'


def hostile_bodies():
    """Bodies worth trying on any endpoint (bytes)."""
    return [
        b"", b"{}", b"[]", b"null", b"0", b'"x"', b"<html><body>login</body></html>",
        nested(200_000, "list"), nested(100_000, "dict"), b'{"tags":' + nested(50_000) + b"}",
        b'{"errors":' + nested(200_000) + b"}",
        b'{"size": 1e999}', b'{"tags": [1e999]}', b"123456789012345678901234567890",
        b'{"token": "t", "expires_in": 1e400}', b'{"token": 12}', b'{"token": "t", "expires_in": "soon"}',
        b'{"token": "t", "expires_in": -5}', b'{"repositories": {"a": 1}}', b'{"repositories": [1, null, "\xff"]}',
        b'{"name": "x", "tags": "latest"}', b'{"name": "x", "tags": ["\xff\xfe"]}', b'["1", "2"]',
        _ESCAPES.encode(), b'{"errors": [{"code": 1e999, "message": ["x"]}]}', b"\xff\xfe{\x00\"\x00",
        b'{"schemaVersion": 2, "config": {"digest": "sha256:' + b"0" * 64
        + b'", "size": 123456789012345678901234567890}, "layers": [{"size": 1e999}]}',
        b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:' + b"0" * 64 + b'", "size": -1, "platform": []}]}',
        b'{"architecture": 1, "os": [], "created": 1e999, "config": {"Labels": []}}',
        b'{"created": "99999-99-99T99:99:99Z", "architecture": "\\u001b[2J"}',
    ]


FUZZ_ENDPOINTS = [("GET", "ping", None), ("GET", "catalog", None), ("GET", "tags", "bad/app"),
                  ("HEAD", "manifest", "bad/app"), ("GET", "manifest", "bad/app"), ("GET", "blob", "bad/app"),
                  ("*", "token", None)]
FUZZ_TARGETS = ["", "/bad/app", "/good/app", "/bad/app:1"]


@dataclass
class ResponseSpec:
    """One drawn answer. `base` "normal" starts from what the endpoint would send (status, headers,
    body), "bare" from nothing; `status`, `headers` and `body` then replace parts of it. `framing`
    is "length" (a correct Content-Length unless a drawn header gives one), "close" (none: the body
    ends when the connection does) or "chunked"."""

    base: str = "normal"
    status: int | None = None
    headers: list = field(default_factory=list)  # (name, str or bytes)
    body: bytes | None = None
    framing: str = "length"

    def hook(self, other_port):
        def answer_it(handler):
            status, headers, body = handler.normal() if self.base == "normal" else (200, [], b"")
            drawn = [(name, _expand(value, handler, other_port)) for name, value in self.headers]
            names = {_bytes(name).lower() for name, _ in drawn}
            headers = [(n, v) for n, v in headers if _bytes(n).lower() not in names] + drawn
            status = self.status if self.status is not None else status
            body = self.body if self.body is not None else body
            if self.framing == "chunked":
                if b"transfer-encoding" not in names:
                    headers.append(("Transfer-Encoding", "chunked"))
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            handler.respond(status, headers, body, length=self.framing == "length")
        return answer_it

    def describe(self):
        body = None if self.body is None else (self.body[:80] + (b"...(%d bytes)" % len(self.body)
                                                                  if len(self.body) > 80 else b""))
        headers = [(n, v[:80] if isinstance(v, (str, bytes)) else v) for n, v in self.headers]
        return f"ResponseSpec(base={self.base!r}, status={self.status}, headers={headers!r}, body={body!r}, " \
               f"framing={self.framing!r})"


def _expand(value, handler, other_port):
    hostile = handler.hostile
    if isinstance(value, bytes):
        return value
    return value.replace("{self}", hostile.url).replace("{origin}", hostile.host).replace("{other}", str(other_port))


@dataclass
class FuzzCase:
    """A whole drawn configuration: targets (suffixes of the server's host), auth, retries, answers."""

    targets: list
    answers: list  # ((method, kind, repo), ResponseSpec)
    auth: str | None = None  # None | "basic" | "bearer"
    retries: int = 0

    def apply(self, server, other_port, options=None):
        """Set the server up; returns (collect arguments without --db, stdin text or None).
        `options` replaces new_options(max_tags=1000)."""
        server.reset()
        if self.auth == "basic":
            server.require_basic("me", "secret")
        elif self.auth == "bearer":
            server.require_bearer(server)
        for key, spec in self.answers:
            server.misbehave[key] = spec.hook(other_port)
        options = new_options(max_tags=1000) if options is None else options
        args = ["collect", "--quiet", "--retries", str(self.retries), *options,
                *[server.host + suffix for suffix in self.targets]]
        stdin = None
        if self.auth == "basic":
            args += ["--username", "me", "--password-stdin"]
            stdin = "secret\n"
        return args, stdin

    def describe(self):
        answers = "\n".join(f"    {key}: {spec.describe()}" for key, spec in self.answers)
        return f"targets={self.targets} auth={self.auth} retries={self.retries}\n{answers}"


def random_spec(rng, bodies=None):
    """A random ResponseSpec from the pools (and some random bytes)."""
    bodies = bodies if bodies is not None else hostile_bodies()
    headers = []
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(sorted(HOSTILE_HEADERS))
        value = rng.choice(HOSTILE_HEADERS[name]) if rng.random() < 0.85 else bytes(
            rng.randrange(256) for _ in range(rng.randint(0, 40)))
        headers.append((name, value))
    roll = rng.random()
    if roll < 0.25:
        body = None
    elif roll < 0.8:
        body = rng.choice(bodies)
    elif roll < 0.9:
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 512)))
    else:
        body = json.dumps(_random_json(rng, 3)).encode()
    return ResponseSpec(base=rng.choice(["normal", "normal", "bare"]),
                        status=rng.choice([None, None, *HOSTILE_STATUSES]), headers=headers, body=body,
                        framing=rng.choice(["length", "length", "close", "chunked"]))


def _random_json(rng, depth):
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return rng.choice([None, True, 0, -1, 2 ** 70, 1.5, float("inf"), "", "latest", "\x1b[2J"])
    if roll < 0.7:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    keys = ["tags", "name", "repositories", "errors", "code", "message", "token", "expires_in", "size", "digest",
            "config", "layers", "manifests", "mediaType", "schemaVersion", "created", "architecture", "os"]
    return {rng.choice(keys): _random_json(rng, depth - 1) for _ in range(rng.randint(0, 5))}


def random_case(rng, bodies=None):
    """A random FuzzCase: one to three hostile endpoints, some targets, maybe auth."""
    targets = rng.sample(FUZZ_TARGETS, rng.randint(1, len(FUZZ_TARGETS)))
    answers = [(rng.choice(FUZZ_ENDPOINTS), random_spec(rng, bodies)) for _ in range(rng.randint(1, 3))]
    return FuzzCase(targets=targets, answers=answers, auth=rng.choice([None, None, "basic", "bearer"]),
                    retries=rng.choice([0, 0, 1]))


class Hung(Exception):
    """A run that did not end within its watchdog's time."""


def run_in_process(cli, case, server, other_port, *, options=None, timeout=60):
    """Run a FuzzCase as an in-process `ledger collect` (click's CliRunner) against `server`, in a
    fresh ledger, with no credentials, Docker config or netrc of the machine's. Returns (problems,
    result): what went wrong (an exception other than SystemExit, an exit status other than 0, 1
    or 3, a traceback or a raw terminal control character in the output, a run left 'running', a
    ledger `verify` refuses, or no end within `timeout` seconds), empty when nothing did."""
    import os
    import signal
    import sqlite3
    import tempfile
    import traceback

    from click.testing import CliRunner

    args, stdin = case.apply(server, other_port, options)
    problems = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as directory:
        db = os.path.join(directory, "ledger.db")
        runner = CliRunner(env={"HOME": directory, "DOCKER_CONFIG": directory, "NETRC": None,
                                "LEDGER_USERNAME": None, "LEDGER_PASSWORD": None, "LEDGER_DB": None})

        def ring(signum, frame):
            raise Hung(f"did not end within {timeout}s")
        previous = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = runner.invoke(cli, [*args, "--db", db], input=stdin, catch_exceptions=True)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            error = result.exception
            problems.append(f"exception {type(error).__name__}: {str(error)[:300]}\n"
                            + "".join(traceback.format_exception(*result.exc_info)))
        elif result.exit_code not in (0, 1, 3):
            problems.append(f"exit status {result.exit_code}: {result.output[-2000:]}")
        if "Traceback" in result.output:
            problems.append(f"a traceback was printed: {result.output[-4000:]}")
        if any(c in result.output for c in "\x1b\x07\x9b"):
            problems.append(f"a raw terminal control character was printed: {result.output[-2000:]!r}")
        if os.path.exists(db):
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                running = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
            finally:
                conn.close()
            if running:
                problems.append(f"{running} run(s) left 'running'")
            verified = runner.invoke(cli, ["verify", "--db", db], catch_exceptions=True)
            if verified.exit_code != 0:
                problems.append(f"ledger verify exit {verified.exit_code}: {verified.output[-2000:]}")
    return problems, result


def good_registry(**kwargs):
    """A started HostileRegistry with good/app:1 and bad/app:1 (distinct images), behaving until told."""
    server = HostileRegistry(**kwargs)
    server.add_image("good/app", "1", seed="good")
    server.add_image("bad/app", "1", seed="bad")
    return server.start()
