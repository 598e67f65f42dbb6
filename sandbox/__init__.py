"""A throwaway local registry, an image pusher and a loopback proxy.

For the demo, the tests and the benchmarks: the real CNCF distribution
registry (`docker-registry` from Debian) on a free loopback port, images
pushed with plain HTTP calls, and a proxy that counts (and can alter) what
passes through it. sandbox.hostile is a registry that misbehaves on demand,
sandbox.loopback the one HTTP server every loopback stand-in is served by.

Not in the installed package (pyproject's packages.find takes ledger only):
a top-level package of the source tree, which the tests import with the
repository root on sys.path (pyproject's pytest `pythonpath`), and scripts/
by putting the repository root (not tests/) on sys.path first.
"""

import gzip
import hashlib
import io
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections import Counter

import requests

from sandbox.loopback import LoopbackServer, QuietHandler
from sandbox.media import CONFIG_TYPES, DOCKER_LIST, DOCKER_MANIFEST, LAYER_TYPES, OCI_INDEX, OCI_MANIFEST


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRegistry:
    """`docker-registry serve CONFIG` with temporary storage and deletes enabled."""

    def __init__(self, root=None, extra_config="", data_dir=None, tls=None, ca_file=None, cache=False):
        """`data_dir` lets several registries (open, htpasswd, token, TLS) serve one storage;
        `tls` is (certificate, key), with `ca_file` to trust it when waiting for the start.
        `cache` turns on the in-memory blob descriptor cache of Debian's default config (not for
        registries sharing a storage: one would not see another's deletes)."""
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="ledger-registry-")
        self.data_dir = data_dir or os.path.join(self.root, "data")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.extra_config = extra_config
        self.tls = tls
        self.ca_file = ca_file
        self.cache = cache
        self.process = None

    def start(self, timeout=20):
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (apt-get install -y docker-registry)")
        config = os.path.join(self.root, f"config-{self.port}.yml")
        tls = f", tls: {{certificate: {self.tls[0]}, key: {self.tls[1]}}}" if self.tls else ""
        with open(config, "w") as handle:
            handle.write(
                "version: 0.1\n"
                "log: {level: error, accesslog: {disabled: true}}\n"
                f"storage: {{filesystem: {{rootdirectory: {self.data_dir}}}, delete: {{enabled: true}}"
                f"{', cache: {blobdescriptor: inmemory}' if self.cache else ''}}}\n"
                f"http: {{addr: {self.host}{tls}}}\n" + self.extra_config)
        self.log = open(os.path.join(self.root, f"registry-{self.port}.log"), "wb")
        self.process = subprocess.Popen([binary, "serve", config], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.process.returncode}; see {self.log.name}")
            try:
                if requests.get(f"{self.url}/v2/", timeout=1, verify=self.ca_file or True).status_code in (200, 401):
                    return self
            except requests.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer on {self.url} within {timeout}s")

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()
            self.process = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar(content):
    """A real (reproducible) layer: a tar with one file, so container engines can pull and unpack it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("layer.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class Pusher:
    """Push synthetic images, indexes and raw manifests to a registry over plain HTTP."""

    def __init__(self, base_url):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.configs = {}  # manifest digest -> config digest, for every image pushed

    def blob(self, repo, data):
        digest = _digest(data)
        if self.session.head(f"{self.base}/v2/{repo}/blobs/{digest}").status_code == 200:
            return digest
        started = self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/")
        started.raise_for_status()
        location = requests.compat.urljoin(self.base + "/", started.headers["Location"])
        separator = "&" if "?" in location else "?"
        done = self.session.put(f"{location}{separator}digest={digest}", data=data,
                                headers={"Content-Type": "application/octet-stream"})
        done.raise_for_status()
        return digest

    def manifest(self, repo, reference, body, media_type):
        """PUT raw manifest bytes; returns their digest."""
        response = self.session.put(f"{self.base}/v2/{repo}/manifests/{reference}", data=body,
                                    headers={"Content-Type": media_type})
        if response.status_code >= 400:
            raise RuntimeError(f"push {repo}:{reference} failed: {response.status_code} {response.text}")
        return _digest(body)

    def image(self, repo, tag=None, *, seed="", architecture="amd64", os_name="linux", variant=None,
              created="2024-01-01T00:00:00Z", author=None, labels=None, media_type=DOCKER_MANIFEST, layers=1):
        """Push a small synthetic image; returns (manifest digest, config digest, manifest bytes)."""
        tars = [_layer_tar(f"layer {seed} {n} {architecture}".encode() * 64) for n in range(layers)]
        layer_blobs = [gzip.compress(tar, mtime=0) for tar in tars]
        config = {"architecture": architecture, "os": os_name, "created": created,
                  "config": {"Labels": labels or {}, "Env": ["PATH=/usr/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": [_digest(tar) for tar in tars]},
                  "history": [{"created": created, "created_by": f"synthetic {seed}"}]}
        if variant:
            config["variant"] = variant
        if author:
            config["author"] = author
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = self.blob(repo, config_bytes)
        descriptors = [{"mediaType": LAYER_TYPES[media_type], "size": len(b), "digest": self.blob(repo, b)}
                       for b in layer_blobs]
        manifest = {"schemaVersion": 2, "mediaType": media_type,
                    "config": {"mediaType": CONFIG_TYPES[media_type], "size": len(config_bytes),
                               "digest": config_digest},
                    "layers": descriptors}
        body = json.dumps(manifest, indent=3).encode()
        digest = self.manifest(repo, tag or _digest(body), body, media_type)
        self.configs[digest] = config_digest
        return digest, config_digest, body

    def index(self, repo, tag, platforms, *, seed="", attestations=True, media_type=DOCKER_LIST):
        """Push one image per (architecture, variant) and an index over them, with attestation
        manifests like BuildKit's when asked. Returns (index digest, {platform: child digest})."""
        child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
        entries, children = [], {}
        for architecture, variant in platforms:
            digest, _, body = self.image(repo, seed=f"{seed}-{architecture}{variant or ''}",
                                         architecture=architecture, variant=variant, media_type=child_type)
            platform = {"architecture": architecture, "os": "linux"}
            if variant:
                platform["variant"] = variant
            entries.append({"mediaType": child_type, "size": len(body), "digest": digest, "platform": platform})
            children[(architecture, variant)] = digest
            if attestations:
                att_digest, _, att_body = self.image(repo, seed=f"attestation-{seed}-{architecture}{variant or ''}",
                                                     architecture="unknown", os_name="unknown",
                                                     media_type=OCI_MANIFEST)
                entries.append({"mediaType": OCI_MANIFEST, "size": len(att_body), "digest": att_digest,
                                "platform": {"architecture": "unknown", "os": "unknown"},
                                "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                                "vnd.docker.reference.digest": digest}})
        body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, indent=3).encode()
        return self.manifest(repo, tag, body, media_type), children

    def delete(self, repo, digest):
        """Delete a manifest by digest: every tag pointing at it goes."""
        response = self.session.delete(f"{self.base}/v2/{repo}/manifests/{digest}")
        if response.status_code != 202:
            raise RuntimeError(f"delete {repo}@{digest} failed: {response.status_code} {response.text}")


RESET = "reset"
TRUNCATE = "truncate"
REFERRERS_PATH = re.compile(r"/v2/(.+)/referrers/([^/]+)")
MANIFEST_PATH = re.compile(r"/v2/(.+)/manifests/([^/]+)")
VALID_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


def request_kind(method, path):
    """What a registry request is for, as the collector counts it."""
    path = path.split("?", 1)[0]
    if path in ("/v2/", "/v2"):
        return "ping"
    if path.startswith("/v2/_catalog"):
        return "catalog"
    if path.endswith("/tags/list"):
        return "tags"
    if REFERRERS_PATH.fullmatch(path):
        return "referrers"
    if "/manifests/" in path:
        return "head" if method == "HEAD" else "manifest"
    if "/blobs/" in path:
        return "config" if method in ("GET", "HEAD") else "blob-upload"
    return "other"


class Proxy(LoopbackServer):
    """A loopback reverse proxy in front of a registry that counts requests by kind and injects faults.

    `alter_request(method, path, headers)` may return new forwarded headers;
    `alter_response(method, path, status, headers, body)` may return a new
    (status, headers, body), or RESET (drop the connection without an
    answer) or TRUNCATE (promise the whole body, send half, hang up).
    Both default to passing things through.
    """

    def __init__(self, upstream, latency=0.0):
        self.upstream = upstream  # "127.0.0.1:PORT"
        self.latency = latency
        self.counts = Counter()
        self.log = []
        self.alter_request = None
        self.alter_response = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes; Nagle would hold the body ~40 ms

            upstream = None

            def finish(self):
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def _forward(self):
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        super().__init__(Handler)

    def reset(self):
        with self._lock:
            self.counts.clear()
            self.log.clear()

    def _forward(self, handler, method, path, body, headers):
        """Send upstream on the client connection's own keep-alive connection; a reused one that the
        registry has closed meanwhile is reopened once."""
        while True:
            reused = handler.upstream is not None
            if not reused:
                handler.upstream = http.client.HTTPConnection(self.upstream, timeout=60)
            try:
                handler.upstream.request(method, path, body=body, headers=headers)
                upstream = handler.upstream.getresponse()
                payload = upstream.read()
            except (OSError, http.client.HTTPException):
                handler.upstream.close()
                handler.upstream = None
                if reused:
                    continue
                raise
            out_headers = [(k, v) for k, v in upstream.getheaders()
                           if k.lower() not in ("connection", "transfer-encoding", "keep-alive")]
            return upstream.status, out_headers, payload

    def _handle(self, handler):
        method, path = handler.command, handler.path
        with self._lock:
            self.counts[request_kind(method, path)] += 1
            self.log.append((method, path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        if self.alter_request:
            headers = self.alter_request(method, path, headers) or headers
        if self.latency:
            time.sleep(self.latency)
        status, out_headers, payload = self._forward(handler, method, path, body, headers)
        action = self.alter_response(method, path, status, out_headers, payload) if self.alter_response else None
        if action == RESET:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        if action not in (None, TRUNCATE):
            status, out_headers, payload = action
        handler.send_response(status)
        for key, value in out_headers:
            if method != "HEAD" and key.lower() == "content-length":
                continue
            handler.send_header(key, value)
        if method != "HEAD":
            handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if action == TRUNCATE:
            handler.wfile.write(payload[: len(payload) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif method != "HEAD":
            handler.wfile.write(payload)


class ReferrersProxy(Proxy):
    """A Proxy that makes the distribution 2.8 registry behind it look like an OCI 1.1 registry.

    distribution 2.8 stores manifests with a `subject` but has no referrers API. This proxy learns
    the referrers from the manifest PUTs and DELETEs that the registry accepts through it (so it
    knows nothing pushed around it), answers such PUTs with `OCI-Subject`, and serves
    `GET`/`HEAD /v2/<name>/referrers/<digest>` itself. `page_size` splits long lists into pages
    chained by `Link` (`last` = entries on the pages before). `serve_referrers = False` makes it a
    registry without the API again: referrers requests go to the registry, which answers 404,
    and no `OCI-Subject` is sent; it goes on learning meanwhile.
    """

    def __init__(self, upstream, latency=0.0, page_size=None, serve_referrers=True):
        super().__init__(upstream, latency)
        self.page_size = page_size
        self.serve_referrers = serve_referrers
        self._referrers = {}  # (repo, subject digest) -> [descriptor, ...] in push order

    def _forward(self, handler, method, path, body, headers):
        """Answer the referrers API here, after Proxy._handle has counted the request and before
        alter_response; learn from the manifest writes that the registry accepts."""
        route, _, query = path.partition("?")
        referrers = REFERRERS_PATH.fullmatch(route)
        if referrers and method in ("GET", "HEAD") and self.serve_referrers:
            return self._list(method, *referrers.groups(), urllib.parse.parse_qs(query))
        status, out_headers, payload = super()._forward(handler, method, path, body, headers)
        manifest = MANIFEST_PATH.fullmatch(route)
        if manifest and method == "PUT" and status == 201:
            subject = self._learn(manifest.group(1), body, headers)
            if subject and self.serve_referrers:
                out_headers.append(("OCI-Subject", subject))
        elif manifest and method == "DELETE" and status == 202:
            self._forget(*manifest.groups())
        return status, out_headers, payload

    def _learn(self, repo, body, headers):
        """Remember a pushed manifest with a `subject` as the descriptor that the referrers API lists
        (distribution-spec "Listing Referrers"); returns the subject digest, or None."""
        try:
            manifest = json.loads(body)
        except (TypeError, ValueError):
            return None
        subject = manifest.get("subject") if isinstance(manifest, dict) else None
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
            return None
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        descriptor = {"mediaType": manifest.get("mediaType") or content_type, "digest": _digest(body),
                      "size": len(body)}
        # An index has no config: its descriptor then carries no artifactType.
        artifact_type = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if manifest.get("annotations"):
            descriptor["annotations"] = manifest["annotations"]
        with self._lock:
            listed = self._referrers.setdefault((repo, subject["digest"]), [])
            if all(known["digest"] != descriptor["digest"] for known in listed):
                listed.append(descriptor)
        return subject["digest"]

    def _forget(self, repo, digest):
        with self._lock:
            for (name, _), listed in self._referrers.items():
                if name == repo:
                    listed[:] = [known for known in listed if known["digest"] != digest]

    def _list(self, method, repo, digest, params):
        """One page of the referrers index: unknown repos and subjects have an empty one."""
        if not VALID_DIGEST.fullmatch(digest):
            return _json_answer(method, 400, {"errors": [{
                "code": "DIGEST_INVALID", "message": "provided digest did not match uploaded content",
                "detail": {"digest": digest}}]})
        last = params.get("last", ["0"])[0]
        if not re.fullmatch(r"[0-9]{1,9}", last):
            return _json_answer(method, 400, {"errors": [{
                "code": "PAGINATION_NUMBER_INVALID", "message": "invalid number of results requested",
                "detail": {"last": last}}]})
        wanted = params.get("artifactType", [None])[0]
        with self._lock:
            listed = list(self._referrers.get((repo, digest), ()))
        headers = [("Content-Type", OCI_INDEX)]
        if wanted:
            listed = [known for known in listed if known.get("artifactType") == wanted]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        start = int(last)
        end = start + self.page_size if self.page_size else len(listed)
        if end < len(listed):
            following = urllib.parse.urlencode({"last": end, **({"artifactType": wanted} if wanted else {})})
            headers.append(("Link", f'</v2/{repo}/referrers/{digest}?{following}>; rel="next"'))
        return _json_answer(method, 200, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": listed[start:end]}, headers)


def _json_answer(method, status, document, headers=(("Content-Type", "application/json; charset=utf-8"),)):
    """(status, headers, body) as Proxy._forward returns them; HEAD gets the length but no body."""
    body = json.dumps(document).encode()
    return status, [*headers, ("Content-Length", str(len(body)))], b"" if method == "HEAD" else body
