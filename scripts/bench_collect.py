"""Collection benchmark: ledger collect against the request minimum, the concurrency bound and a skopeo loop.

Starts a local registry, pushes REPOS x TAGS tags (pairs of tags share a digest, every tenth tag is the same
image in every repo, every fifth is a two-platform index with attestations), and puts a loopback proxy adding
LATENCY to every request in front of it. Then it runs, through the proxy, a cold and a warm `ledger collect`
and a skopeo loop doing the same job (`skopeo list-tags` per repo, `skopeo inspect` per tag), and prints
requests by kind beside the minimum, wall times, the ratios and peak memory.

CPU per request (skip it with --floor-tags 0): FLOOR_TAGS more tags (100 a repo), collected straight from
the registry (no proxy) by a warm `ledger collect`, beside the floor for a Python client over the same tags
in the same run: a bare HEAD loop on one keep-alive http.client connection (the four manifest media types
in Accept, Docker-Content-Digest read). Both are whole processes, interpreter start included, their CPU
(user + system) from wait4; it prints ms per request of each, best of FLOOR_RUNS, and the ratio. Then the
HTTP engine alone, in this process over the same HEADs: the bare loop, the ledger's Transport, and urllib3's
connection pool as the ledger would use it (no preloading, retries, redirects or decoding). Last, it
collects MEMORY_TAGS tags straight from the registry and prints the collector's peak RSS. A summary ends
the output: cold and warm against the skopeo loop, warm against the concurrency bound, CPU against the floor.

The supply-chain section (skip it with --no-referrers) measures what following each tracked digest's
referrers costs, on two more registries of REFERRER_REPOS x REFERRER_TAGS tags (plus a `latest` alias):
the tag-schema path, where some images carry cosign `.sig`/`.att`/`.sbom` tags and a referrers tag schema
index (`sha256-<hex>`, listing a cosign v3 bundle and a Notation signature pushed by digest) behind a
registry without the OCI referrers API; and the API path, where untagged referrers with a `subject` (some
on index children) are served by the referrers API. It prints requests by kind, cold and warm, beside
the minimum, and exits 1 if a count is off it (any count above it, or a warm run not exactly at it).

    .venv/bin/python scripts/bench_collect.py --repos 20 --tags 50 --latency 0.02 --floor-tags 5000 --memory-tags 10000
"""

import argparse
import base64
import http.client
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

from ledger.manifests import ACCEPT, OCI_INDEX, OCI_MANIFEST, compute_digest
from ledger.registry import RegistryOptions
from ledger.transport import Transport
# sandbox/ is a package of this source tree, not installed (see ARCHITECTURE.md): the repository root goes on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sandbox import LocalRegistry, Proxy, Pusher, ReferrersProxy, request_kind  # noqa: E402

LEDGER = [sys.executable, "-m", "ledger"]
DEFAULT_CONCURRENCY = RegistryOptions().concurrency
PAGE_SIZE = RegistryOptions().page_size


class Layout:
    """What was pushed, and so the fewest requests that can collect it."""

    def __init__(self):
        self.tags = {}  # repo -> [tag]
        self.manifests = set()  # top-level and platform-child manifest digests
        self.tagged = set()  # the manifests some tag points at: a cold run's GET of the tag brings them
        self.configs = set()

    def minimum(self, cold, mode="auto"):
        """Warm: one HEAD per tag. Cold: one GET per tag (the ledger never held it: its manifest is wanted),
        one per manifest no tag points at (platform children, untagged referrers), one per config."""
        repos = len(self.tags)
        tags = sum(len(tags) for tags in self.tags.values())
        counts = {"ping": 1, "catalog": max(1, math.ceil(repos / PAGE_SIZE)),
                  "tags": sum(max(1, math.ceil(len(tags) / PAGE_SIZE)) for tags in self.tags.values())}
        if cold:
            counts.update(manifest=tags + len(self.manifests - self.tagged), config=len(self.configs))
        else:
            counts["head"] = tags
        if mode != "never":
            counts["referrers"] = 1  # --referrers auto probes the registry once: distribution answers 404
        return counts


def push(registry, repos, tags, prefix="bench"):
    """Push the layout with a few threads (pushing is not what is measured)."""
    layout = Layout()
    jobs = []
    for r in range(repos):
        repo = f"{prefix}/app{r:03d}"
        layout.tags[repo] = [f"1.{t}" for t in range(tags)]
        for t in range(tags):
            seed = f"common-{t}" if t % 10 == 0 else f"{repo}-{t // 2}"
            jobs.append((repo, f"1.{t}", seed, t % 5 == 4))

    def one(job, attempts=3):
        try:
            return push_one(job)
        except RuntimeError:
            if attempts == 1:
                raise
            return one(job, attempts - 1)  # two threads committing the same blob at once can fail one push

    def push_one(job):
        repo, tag, seed, multi = job
        pusher = Pusher(registry.url)
        if multi:
            digest, children = pusher.index(repo, tag, [("amd64", None), ("arm64", "v8")], seed=seed)
            return digest, {digest, *children.values()}, {pusher.configs[child] for child in children.values()}
        digest, config, _ = pusher.image(repo, tag, seed=seed)
        return digest, {digest}, {config}

    with ThreadPoolExecutor(8) as pool:
        for tagged, manifests, configs in pool.map(one, jobs):
            layout.tagged.add(tagged)
            layout.manifests |= manifests
            layout.configs |= configs
    return layout


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collect(db, host, concurrency, registry, extra=(), counted=False):
    """One `ledger collect` as a subprocess: (run seconds as it reports them, process wall seconds, peak MB,
    CPU seconds of ledger, of the registry and of this process, which runs the proxy), and with `counted`
    the requests it says it made."""
    registry_cpu, own_cpu = cpu_seconds(registry.process.pid), time.process_time()
    started = time.monotonic()
    process = subprocess.Popen([*LEDGER, "collect", host, "--db", db, "--concurrency", str(concurrency), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    out, err = process.stdout.read(), process.stderr.read()
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"ledger collect {host} failed: {err.strip()[-500:]}")
    reported = float(re.search(r"\bin ([0-9.]+)s", out).group(1))
    cpu = (usage.ru_utime + usage.ru_stime, cpu_seconds(registry.process.pid) - registry_cpu,
           time.process_time() - own_cpu)
    if counted:
        requests = int(re.search(r"^  requests +([0-9]+)", out, re.M).group(1))
        return reported, wall, usage.ru_maxrss / 1024, cpu, requests
    return reported, wall, usage.ru_maxrss / 1024, cpu


# The floor for a Python client: one keep-alive http.client connection, HEADs in a row, nothing else. Run
# as a process of its own, so that its CPU, like the ledger's, includes the interpreter's start.
FLOOR_LOOP = """
import http.client, sys
host, accept, paths = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().split()
conn, headers, resolved = http.client.HTTPConnection(host), {"Accept": accept}, 0
for path in paths:
    conn.request("HEAD", path, headers=headers)
    response = conn.getresponse()
    response.read()
    resolved += response.getheader("Docker-Content-Digest") is not None
sys.exit(0 if resolved == len(paths) else 1)
"""


def floor_loop(host, layout, work):
    """The bare HEAD loop over the layout's tags as a process: (CPU seconds, requests)."""
    paths = [f"/v2/{repo}/manifests/{tag}" for repo, tags in layout.tags.items() for tag in tags]
    listing = work / "floor-paths.txt"
    listing.write_text("\n".join(paths))
    process = subprocess.Popen([sys.executable, "-c", FLOOR_LOOP, host, ACCEPT, str(listing)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"the floor loop failed: {process.stderr.read().strip()[-500:]}")
    return usage.ru_utime + usage.ru_stime, len(paths)


def cpu_floor(args, registry, work):
    """CPU per request of a warm `ledger collect` beside the floor loop's, over the same FLOOR_TAGS tags
    straight from the registry (no proxy), both whole processes, interpreter start included."""
    repos = max(1, args.floor_tags // 100)
    layout = push(registry, repos, args.floor_tags // repos, prefix="floor")
    tags = sum(map(len, layout.tags.values()))
    db = str(work / "floor.db")
    target = f"{registry.host}/floor/*"
    collect(db, target, args.concurrency, registry)  # cold: the ledger is warm from here on
    print(f"CPU per request  {repos} repos x {tags // repos} tags = {tags} tags straight from the registry "
          f"(no proxy); whole processes, interpreter start included; best of {args.floor_runs}")
    ledger, loop = [], []
    for _ in range(args.floor_runs):  # interleaved, so that both see the same machine
        reported, wall, peak, (cpu, *_), requests = collect(db, target, args.concurrency, registry, counted=True)
        ledger.append((cpu, requests, reported))
        loop.append(floor_loop(registry.host, layout, work))
    cpu, requests, reported = min(ledger)
    floor_cpu, floor_requests = min(loop)
    mine, least = cpu * 1000 / requests, floor_cpu * 1000 / floor_requests
    print(f"  ledger warm      {cpu:.2f}s CPU for {requests} requests = {mine:.3f} ms per request "
          f"(run {reported:.2f}s)")
    print(f"  bare HEAD loop   {floor_cpu:.2f}s CPU for {floor_requests} requests = {least:.3f} ms per request "
          "(one keep-alive http.client connection)")
    print(f"  ratio            {mine / least:.2f}x the floor (bound 2x)")
    engine_cpu(registry, layout, args.floor_runs)
    return mine / least


def engine_cpu(registry, layout, runs):
    """CPU per HEAD of the HTTP engine alone (no interpreter start, no ledger around it): why the transport is
    the ledger's own code and not urllib3 (issue 23)."""
    paths = [f"/v2/{repo}/manifests/{tag}" for repo, tags in layout.tags.items() for tag in tags]
    headers = {"Accept": ACCEPT}

    def bare():
        conn = http.client.HTTPConnection(registry.host)
        for path in paths:
            conn.request("HEAD", path, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.getheader("Docker-Content-Digest")
        conn.close()

    def transport():
        engine = Transport(deadline=60)
        for path in paths:
            assert engine.request("HEAD", registry.url + path, headers).header("Docker-Content-Digest")
        engine.close()

    def pool():
        engine = urllib3.HTTPConnectionPool(registry.host.rsplit(":", 1)[0], registry.port, maxsize=8)
        timeout = urllib3.Timeout(connect=10, read=60)
        for path in paths:
            response = engine.urlopen("HEAD", path, headers=headers, preload_content=False, retries=False,
                                      redirect=False, decode_content=False, timeout=timeout)
            response.read()
            response.release_conn()
            assert response.headers.get("Docker-Content-Digest")
        engine.close()

    best = {}
    for _ in range(runs):  # interleaved, so that all see the same machine
        for name, loop in (("bare", bare), ("transport", transport), ("urllib3", pool)):
            started = time.process_time()
            loop()
            best[name] = min(best.get(name, math.inf), (time.process_time() - started) * 1000 / len(paths))
    print(f"HTTP engine      CPU per HEAD in one process, {len(paths)} HEADs, best of {runs}")
    for name, said in (("bare", "bare http.client loop"), ("transport", "ledger's Transport"),
                       ("urllib3", f"urllib3 {urllib3.__version__} pool")):
        print(f"  {said:<23}{best[name]:.3f} ms ({best[name] / best['bare']:.2f}x the bare loop)")


def skopeo_loop(host, layout):
    started = time.monotonic()
    for repo, tags in layout.tags.items():
        for args in [["list-tags", f"docker://{host}/{repo}"]] + [["inspect", f"docker://{host}/{repo}:{tag}"]
                                                                   for tag in tags]:
            result = subprocess.run(["skopeo", args[0], "--tls-verify=false", args[1]], capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"skopeo {' '.join(args)} failed: {result.stderr.strip()[-300:]}")
    return time.monotonic() - started


def summary(args, tags, times, skopeo):
    """The headline figures of the proxied run: cold and warm against the skopeo loop, warm against the
    concurrency bound (whole processes: interpreter start and the append included)."""
    lines = []
    if skopeo is not None:
        for phase in ("cold", "warm"):
            *_, requests = times[phase]
            ceiling = skopeo / (requests * args.latency / args.concurrency) if args.latency else math.inf
            lines.append(f"  {phase} collect vs the skopeo loop: {skopeo / times[phase][1]:.1f}x faster "
                         f"(target: at least 20x; at most {ceiling:.1f}x at this concurrency: the skopeo loop "
                         "over the concurrency bound of the minimum requests)")
    reported, wall, *_, requests = times["warm"]
    bound = requests * args.latency / args.concurrency
    if bound:
        lines.append(f"  warm collect vs the concurrency bound: {wall / bound:.2f}x ({reported / bound:.2f}x the run "
                     f"alone; target: within 1.3x)")
    return lines


def table(label, counts, minimum):
    kinds = sorted(set(counts) | set(minimum))
    made = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in kinds)
    extra = sum(counts.values()) - sum(minimum.values())
    verdict = "exactly the minimum" if counts == minimum else f"{extra:+d} against the minimum {minimum}"
    print(f"  {label:<18}{made} ({sum(counts.values())} requests): {verdict}")


# The supply chain: referrers as cosign, Notation and the referrers tag schema write them (the shapes
# tests/test_artifacts.py builds, written again here so that the bench does not depend on the tests).

EMPTY, EMPTY_TYPE = b"{}", "application/vnd.oci.empty.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
ZERO = "0001-01-01T00:00:00Z"


class Built:
    """A manifest as bytes, with its blobs (config first) and the config the collector fetches, if any."""

    def __init__(self, document, blobs=()):
        self.body = json.dumps(document, indent=2).encode()
        self.media_type = document["mediaType"]
        self.blobs = list(blobs)
        self.digest = compute_digest(self.body)
        image = document.get("config", {}).get("mediaType") == IMAGE_CONFIG  # an image: its config is read
        self.config = compute_digest(self.blobs[0]) if image else None


def _descriptor(media_type, data, **extra):
    return {"mediaType": media_type, "digest": compute_digest(data), "size": len(data), **extra}


def _manifest(config_type, config, layers, **fields):
    """An OCI image manifest; `layers` are (media type, bytes, annotations or None)."""
    return Built({"schemaVersion": 2, "mediaType": OCI_MANIFEST, **fields, "config": _descriptor(config_type, config),
                  "layers": [_descriptor(t, data, **({"annotations": a} if a else {})) for t, data, a in layers]},
                 [config, *(data for _, data, _ in layers)])


def _cosign(layer_type, layer, annotations):
    """cosign v2's `.sig`/`.att`/`.sbom` image: one layer, Go's zero time in its config."""
    config = json.dumps({"architecture": "", "created": ZERO, "history": [{"created": ZERO}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [compute_digest(layer)]}, "config": {}},
                        separators=(",", ":")).encode()
    return _manifest(IMAGE_CONFIG, config, [(layer_type, layer, annotations)])


def cosign_signature(subject):
    payload = json.dumps({"critical": {"identity": {"docker-reference": "registry.example/app"},
                                       "image": {"Docker-manifest-digest": subject},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    return _cosign("application/vnd.dev.cosign.simplesigning.v1+json", payload,
                   {"dev.cosignproject.cosign/signature": base64.b64encode(b"not a real signature").decode()})


def cosign_attestation(subject):
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                            "predicateType": "https://slsa.dev/provenance/v0.2",
                            "subject": [{"name": "app", "digest": {"sha256": subject[7:]}}], "predicate": {}})
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json", "signatures": [{"keyid": "", "sig": "MEUC"}],
                           "payload": base64.b64encode(statement.encode()).decode()}).encode()
    return _cosign("application/vnd.dsse.envelope.v1+json", envelope,
                   {"predicateType": "https://slsa.dev/provenance/v0.2"})


def cosign_sbom(subject):
    document = json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": subject}).encode()
    return _cosign("text/spdx+json", document, None)


def cosign_bundle(subject, predicate="https://sigstore.dev/cosign/sign/v1"):
    """cosign v3: a Sigstore bundle with a `subject`, untagged."""
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": {}, "dsseEnvelope": {}}).encode()
    title = {"org.opencontainers.image.title": "sha256-x.sigstore.json"}
    return _manifest(EMPTY_TYPE, EMPTY, [(BUNDLE, bundle, title)],
                     artifactType=BUNDLE, subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                     annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                                  "dev.sigstore.bundle.predicateType": predicate,
                                  "org.opencontainers.image.created": "2024-03-08T18:18:20.406Z"})


def notation_signature(subject):
    return _manifest(EMPTY_TYPE, EMPTY, [("application/jose+json", b'{"payload": "e30", "protected": "e30"}', None)],
                     artifactType="application/vnd.cncf.notary.signature",
                     subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                     annotations={"io.cncf.notary.x509chain.thumbprint#S256": '["ab12"]'})


def referrers_index(*referrers):
    """The referrers tag schema's index (tag `sha256-<hex>`): one descriptor per referrer."""
    entries = []
    for referrer in referrers:
        document = json.loads(referrer.body)
        entries.append(_descriptor(OCI_MANIFEST, referrer.body, annotations=document.get("annotations", {}),
                                   artifactType=document.get("artifactType") or document["config"]["mediaType"]))
    return Built({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


class Supply(Layout):
    """A Layout with referrers: the referrer tags are in `tags`, the referrer manifests in `manifests`."""

    def __init__(self, api):
        super().__init__()
        self.api = api  # whether the registry serves the referrers API
        self.followed = {}  # repo -> the digests whose referrers are followed: tag digests, index children
        self.referrer_tags = Counter()  # ".sig", ".att", ".sbom", "schema index"
        self.untagged = 0  # referrer manifests pushed by digest

    def minimum(self, cold, mode="auto"):
        counts = super().minimum(cold, mode)
        if mode != "never" and self.api:  # one request per digest followed (the first is the probe)
            counts["referrers"] = sum(map(len, self.followed.values()))
        return counts

    def expected(self, kind):
        """What the minimum of a kind is made of, to name what a run asked beyond it (None: not known)."""
        return {"head": {(repo, tag) for repo, tags in self.tags.items() for tag in tags},
                "manifest": (self.manifests - self.tagged) | {(repo, tag) for repo, tags in self.tags.items()
                                                              for tag in tags},
                "config": self.configs,
                "referrers": {(repo, d) for repo, digests in self.followed.items() for d in digests} if self.api
                else None}.get(kind)


def push_supply(url, repos, tags, api, prefix="supply"):
    """Push through `url`: REPOS x TAGS tags `1.N` (tag 1.0 the same image in every repo, every third from
    1.2 an index of two platforms with BuildKit attestations) and `latest` on the last one, then referrers.
    Without the API: cosign `.sig` and `.att` tags on every other tag's digest, `.sig` on each platform
    child, `.sbom` on every fourth from 1.1, and on every third from 1.0 a referrers tag schema index
    listing a cosign v3 bundle and a Notation signature pushed by digest. With the API, all untagged: a
    bundle and a Notation signature on every other tag's digest, a bundle attesting an SBOM on every third,
    and a bundle on each platform child."""
    layout = Supply(api)
    pusher = Pusher(url)

    def put(repo, reference, built):
        for blob in built.blobs:
            pusher.blob(repo, blob)
        pusher.manifest(repo, reference, built.body, built.media_type)
        layout.manifests.add(built.digest)
        if built.config:
            layout.configs.add(built.config)
        if reference == built.digest:
            layout.untagged += 1
        else:
            layout.tags[repo].append(reference)
            layout.tagged.add(built.digest)

    def image(repo, tag, t):
        seed = "supply-common" if t == 0 else f"{repo}-{t}"
        if t % 3 == 2:
            digest, children = pusher.index(repo, tag, [("amd64", None), ("arm64", "v8")], seed=seed)
            children = sorted(children.values())
            layout.configs.update(pusher.configs[child] for child in children)
        else:
            digest, config, _ = pusher.image(repo, tag, seed=seed)
            children = []
            layout.configs.add(config)
        layout.manifests.update([digest, *children])
        layout.tags[repo].append(tag)
        layout.tagged.add(digest)
        return digest, children

    for r in range(repos):
        repo = f"{prefix}/app{r:03d}"
        layout.tags[repo] = []
        followed = layout.followed[repo] = set()
        for t in range(tags):
            digest, children = image(repo, f"1.{t}", t)
            followed.update([digest, *children])
            named = digest.replace(":", "-")
            if api:
                if t % 2 == 0:
                    put(repo, (bundle := cosign_bundle(digest)).digest, bundle)
                    put(repo, (notation := notation_signature(digest)).digest, notation)
                if t % 3 == 0:
                    put(repo, (sbom := cosign_bundle(digest, "https://spdx.dev/Document")).digest, sbom)
                for child in children:
                    put(repo, (bundle := cosign_bundle(child)).digest, bundle)
                continue
            builders = {".sig": cosign_signature, ".att": cosign_attestation, ".sbom": cosign_sbom}
            for suffix in [".sig", ".att"] * (t % 2 == 0) + [".sbom"] * (t % 4 == 1):
                put(repo, named + suffix, builders[suffix](digest))
                layout.referrer_tags[suffix] += 1
            for child in children:
                put(repo, child.replace(":", "-") + ".sig", cosign_signature(child))
                layout.referrer_tags[".sig"] += 1
            if t % 3 == 0:
                bundle, notation = cosign_bundle(digest), notation_signature(digest)
                put(repo, bundle.digest, bundle)
                put(repo, notation.digest, notation)
                put(repo, named, referrers_index(bundle, notation))
                layout.referrer_tags["schema index"] += 1
        image(repo, "latest", tags - 1)  # an alias: the same digest again, its referrers followed once
    return layout


def request_key(kind, path):
    """What a request asks for: a digest for manifests by digest and configs (one fetch serves every repo),
    (repo, tag or digest) for HEADs, a tag's GET and referrers, the path for the rest."""
    route = path.split("?", 1)[0]
    if kind not in ("head", "manifest", "config", "referrers"):
        return path
    name, _, last = route[len("/v2/"):].rpartition("/")
    by_digest = kind == "config" or (kind == "manifest" and last.startswith("sha256:"))
    return last if by_digest else (name.rpartition("/")[0], last)


def explain(kind, log, expected):
    """Name from the proxy's log the requests of a kind beyond (or short of) the minimum."""
    keys = Counter(request_key(kind, path) for method, path in log if request_kind(method, path) == kind)
    lines = [f"asked {n} times: {key}" for key, n in sorted(keys.items(), key=str) if n > 1]
    if expected is not None:
        lines += [f"not in the minimum: {key}" for key in sorted(set(keys) - expected, key=str)]
        lines += [f"in the minimum, not asked: {key}" for key in sorted(expected - set(keys), key=str)]
    else:
        lines += [f"{method} {path}" for method, path in log if request_kind(method, path) == kind]
    for line in lines[:20]:
        print(f"  {'':<18}  {kind}: {line}")
    if len(lines) > 20:
        print(f"  {'':<18}  {kind}: ... {len(lines) - 20} more")


def supply_chain(args, work):
    """Referrers followed through the tag schema and through the API, cold and warm; returns what was off
    the minimum (anything above it, or a warm run not exactly at it)."""
    failures = []
    print(f"supply chain     referrers followed from every tag's digest and an index's platform children; "
          f"{args.latency * 1000:.0f} ms added to every request")
    for api in (False, True):
        name = "referrers API" if api else "tag schema"
        with LocalRegistry(cache=True) as registry, \
                ReferrersProxy(registry.host, serve_referrers=api) as proxy:
            layout = push_supply(proxy.url, args.referrer_repos, args.referrer_tags, api)
            proxy.latency = args.latency  # pushing is not what is measured
            followed = sum(map(len, layout.followed.values()))
            tags = sum(map(len, layout.tags.values()))
            schema = sum(layout.referrer_tags.values())
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(layout.referrer_tags.items()))
            print(f"  {name}: {args.referrer_repos} repos, {tags} tags ({tags - schema} image tags"
                  f"{f' + {schema} referrer tags: {kinds}' if schema else ''}), {layout.untagged} untagged "
                  f"referrers; {len(layout.manifests)} distinct manifests, {len(layout.configs)} configs; "
                  f"{followed} digests followed ({' + '.join(str(len(d)) for d in layout.followed.values())} "
                  f"per repo); {'the referrers API served' if api else 'no referrers API (the registry: 404)'}")
            runs = [("cold", "auto", "auto"), ("warm", "auto", "auto")]
            runs += [("warm", "never", "auto")] if api else [("cold", "never", "never"), ("warm", "never", "never")]
            for phase, mode, db in runs:
                proxy.reset()
                reported, *_ = collect(str(work / f"supply-{'api' if api else 'schema'}-{db}.db"), proxy.host,
                                       args.concurrency, registry, ["--referrers", mode])
                counts, log = dict(proxy.counts), list(proxy.log)
                minimum = layout.minimum(cold=phase == "cold", mode=mode)
                label = f"{phase} {mode}"
                table(label, counts, minimum)
                made, least = sum(counts.values()), sum(minimum.values())
                asked = counts.get("referrers", 0)
                if mode == "never":
                    bound = "bound 0"
                elif api:
                    bound = f"{asked / followed:.2f} per digest; bound <= {followed}{', = on warm' * (phase == 'warm')}"
                else:
                    bound = "bound 1: the probe, then none"
                print(f"  {'':<18}{made} requests / minimum {least} = {made / least:.2f}; referrers {asked} for "
                      f"{followed} digests followed ({bound}); {reported:.2f}s")
                for kind in sorted(set(counts) | set(minimum)):
                    n, m = counts.get(kind, 0), minimum.get(kind, 0)
                    if n > m or (phase == "warm" and n != m):
                        failures.append(f"{name}, {label} run: {kind} {n}, the bound "
                                        f"{'=' if phase == 'warm' else '<='} {m}")
                        explain(kind, log, layout.expected(kind))
                    elif n < m:
                        print(f"  {'':<18}note: {kind} {n} is below the minimum {m}: something was not fetched?")
                        explain(kind, log, layout.expected(kind))
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--tags", type=int, default=50, help="tags per repo")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the proxy adds to every request")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--memory-tags", type=int, default=10_000, help="tags for the peak-memory run (0: skip)")
    parser.add_argument("--floor-tags", type=int, default=5_000,
                        help="tags for the CPU per request against a bare HEAD loop (0: skip)")
    parser.add_argument("--floor-runs", type=int, default=3, help="runs of each, the best kept")
    parser.add_argument("--no-skopeo", action="store_true", help="skip the skopeo loop")
    parser.add_argument("--no-referrers", action="store_true", help="skip the supply-chain (referrers) section")
    parser.add_argument("--referrer-repos", type=int, default=2, help="repos of the supply-chain section")
    parser.add_argument("--referrer-tags", type=int, default=6,
                        help="image tags per repo in the supply-chain section (and `latest`)")
    args = parser.parse_args()
    if not args.no_referrers and min(args.referrer_repos, args.referrer_tags) < 1:
        parser.error("--referrer-repos and --referrer-tags must be at least 1 (or pass --no-referrers)")
    if not args.no_skopeo and not shutil.which("skopeo"):
        sys.exit("skopeo is not installed: apt-get install -y skopeo (or pass --no-skopeo)")
    work = Path(tempfile.mkdtemp(prefix="ledger-bench-collect-"))
    print(f"machine          {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with LocalRegistry(cache=True) as registry:
        layout = push(registry, args.repos, args.tags)
        tags = sum(len(t) for t in layout.tags.values())
        print(f"registry         {args.repos} repos x {args.tags} tags = {tags} tags, {len(layout.manifests)} "
              f"distinct manifests (platform children included), {len(layout.configs)} configs")
        print(f"proxy            {args.latency * 1000:.0f} ms added to every request; "
              f"ledger concurrency {args.concurrency}")
        with Proxy(registry.host, latency=args.latency) as proxy:
            db = str(work / "ledger.db")
            times = {}
            print("requests:")
            for phase in ("cold", "warm"):
                proxy.reset()
                times[phase] = collect(db, proxy.host, args.concurrency, registry)
                counts = {kind: n for kind, n in proxy.counts.items()}
                table(f"{phase} run", counts, layout.minimum(cold=phase == "cold"))
                times[phase] += (sum(counts.values()),)
            print("wall time (the run as `ledger collect` reports it; the whole process in brackets):")
            for phase, (reported, wall, peak, (ledger_cpu, registry_cpu, proxy_cpu), requests) in times.items():
                bound = requests * args.latency / args.concurrency
                floor = (ledger_cpu + registry_cpu + proxy_cpu) / os.cpu_count()
                print(f"  {phase} run          {reported:.2f}s ({wall:.2f}s); concurrency bound {requests} x "
                      f"{args.latency * 1000:.0f} ms / {args.concurrency} = {bound:.2f}s; "
                      + (f"ratio {reported / bound:.2f} ({wall / bound:.2f})" if bound else "no ratio at 0 ms"))
                print(f"  {'':<18}CPU: ledger {ledger_cpu:.2f}s, registry {registry_cpu:.2f}s, proxy {proxy_cpu:.2f}s "
                      f"= {floor:.2f}s of wall time on {os.cpu_count()} cores at the least")
            skopeo = None
            if not args.no_skopeo:
                proxy.reset()
                skopeo = skopeo_loop(proxy.host, layout)
                print(f"  skopeo loop       {skopeo:.2f}s ({sum(proxy.counts.values())} requests: "
                      f"{', '.join(f'{k} {n}' for k, n in sorted(proxy.counts.items()))})")
                for phase, (reported, wall, *_) in times.items():
                    print(f"  ledger vs skopeo  {phase}: {skopeo / wall:.1f}x faster (whole process), "
                          f"{skopeo / reported:.1f}x (the run)")
            headline = summary(args, tags, times, skopeo)
        ratio = cpu_floor(args, registry, work) if args.floor_tags else None
        failures = [] if args.no_referrers else supply_chain(args, work)
        if args.memory_tags:
            repos = max(1, args.memory_tags // 100)
            big = push(registry, repos, args.memory_tags // repos, prefix="memory")
            count = sum(len(t) for t in big.tags.values())
            reported, wall, peak, _ = collect(str(work / "memory.db"), f"{registry.host}/memory/*", args.concurrency,
                                              registry)
            print(f"memory           {count} tags in {repos} repos collected cold in {reported:.1f}s: "
                  f"peak RSS {peak:.0f} MB")
    shutil.rmtree(work)
    print(f"summary          {tags} tags ({args.repos} x {args.tags}), {args.latency * 1000:.0f} ms per request, "
          f"concurrency {args.concurrency}; whole processes")
    for line in headline + ([f"  CPU per request: {ratio:.2f}x the bare HEAD loop (target: within 2x)"]
                            if ratio is not None else []):
        print(line)
    if failures:
        sys.exit("requests off the bound:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
