"""Collection benchmark: ledger collect against the request minimum, the concurrency bound and a skopeo loop.

Starts a local registry, pushes REPOS x TAGS tags (pairs of tags share a digest, every tenth tag is the same
image in every repo, every fifth is a two-platform index with attestations), and puts a loopback proxy adding
LATENCY to every request in front of it. Then it runs, through the proxy, a cold and a warm `ledger collect`
and a skopeo loop doing the same job (`skopeo list-tags` per repo, `skopeo inspect` per tag), and prints
requests by kind beside the minimum, wall times, the ratios and peak memory. Last, it collects MEMORY_TAGS
tags straight from the registry and prints the collector's peak RSS.

The supply-chain section (skip it with --no-referrers) measures what following each tracked digest's
referrers costs, on two more registries of REFERRER_REPOS x REFERRER_TAGS tags (plus a `latest` alias):
the tag-schema path, where some images carry cosign `.sig`/`.att`/`.sbom` tags and a referrers tag schema
index (`sha256-<hex>`, listing a cosign v3 bundle and a Notation signature pushed by digest) behind a
registry without the OCI referrers API; and the API path, where untagged referrers with a `subject` (some
on index children) are served by the referrers API. It prints requests by kind, cold and warm, beside
the minimum, and exits 1 if a count is off it (any count above it, or a warm run not exactly at it).

    .venv/bin/python scripts/bench_collect.py --repos 10 --tags 30 --latency 0.02 --memory-tags 10000
"""

import argparse
import base64
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

from ledger.manifests import OCI_INDEX, OCI_MANIFEST, compute_digest
from ledger.registry import RegistryOptions
from ledger.sandbox import LocalRegistry, Proxy, Pusher, ReferrersProxy

LEDGER = [sys.executable, "-m", "ledger"]
DEFAULT_CONCURRENCY = RegistryOptions().concurrency
PAGE_SIZE = RegistryOptions().page_size


class Layout:
    """What was pushed, and so the fewest requests that can collect it."""

    def __init__(self):
        self.tags = {}  # repo -> [tag]
        self.manifests = set()  # top-level and platform-child manifest digests
        self.configs = set()

    def minimum(self, cold):
        repos = len(self.tags)
        counts = {"ping": 1, "catalog": max(1, math.ceil(repos / PAGE_SIZE)),
                  "tags": sum(max(1, math.ceil(len(tags) / PAGE_SIZE)) for tags in self.tags.values()),
                  "head": sum(len(tags) for tags in self.tags.values())}
        if cold:
            counts.update(manifest=len(self.manifests), config=len(self.configs))
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
            return {digest, *children.values()}, {pusher.configs[child] for child in children.values()}
        digest, config, _ = pusher.image(repo, tag, seed=seed)
        return {digest}, {config}

    with ThreadPoolExecutor(8) as pool:
        for manifests, configs in pool.map(one, jobs):
            layout.manifests |= manifests
            layout.configs |= configs
    return layout


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collect(db, host, concurrency, registry, extra=()):
    """One `ledger collect` as a subprocess: (run seconds as it reports them, process wall seconds, peak MB,
    CPU seconds of ledger, of the registry and of this process, which runs the proxy)."""
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
    return reported, wall, usage.ru_maxrss / 1024, cpu


def skopeo_loop(host, layout):
    started = time.monotonic()
    for repo, tags in layout.tags.items():
        for args in [["list-tags", f"docker://{host}/{repo}"]] + [["inspect", f"docker://{host}/{repo}:{tag}"]
                                                                   for tag in tags]:
            result = subprocess.run(["skopeo", args[0], "--tls-verify=false", args[1]], capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"skopeo {' '.join(args)} failed: {result.stderr.strip()[-300:]}")
    return time.monotonic() - started


def table(label, counts, minimum):
    kinds = sorted(set(counts) | set(minimum))
    made = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in kinds)
    extra = sum(counts.values()) - sum(minimum.values())
    verdict = "exactly the minimum" if counts == minimum else f"{extra:+d} against the minimum {minimum}"
    print(f"  {label:<18}{made} ({sum(counts.values())} requests): {verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--tags", type=int, default=30, help="tags per repo")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the proxy adds to every request")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--memory-tags", type=int, default=10_000, help="tags for the peak-memory run (0: skip)")
    parser.add_argument("--no-skopeo", action="store_true", help="skip the skopeo loop")
    args = parser.parse_args()
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
                      f"ratio {reported / bound:.2f} ({wall / bound:.2f})")
                print(f"  {'':<18}CPU: ledger {ledger_cpu:.2f}s, registry {registry_cpu:.2f}s, proxy {proxy_cpu:.2f}s "
                      f"= {floor:.2f}s of wall time on {os.cpu_count()} cores at the least")
            if not args.no_skopeo:
                proxy.reset()
                skopeo = skopeo_loop(proxy.host, layout)
                print(f"  skopeo loop       {skopeo:.2f}s ({sum(proxy.counts.values())} requests: "
                      f"{', '.join(f'{k} {n}' for k, n in sorted(proxy.counts.items()))})")
                for phase, (reported, wall, *_) in times.items():
                    print(f"  ledger vs skopeo  {phase}: {skopeo / wall:.1f}x faster (whole process), "
                          f"{skopeo / reported:.1f}x (the run)")
        if args.memory_tags:
            repos = max(1, args.memory_tags // 100)
            big = push(registry, repos, args.memory_tags // repos, prefix="memory")
            count = sum(len(t) for t in big.tags.values())
            reported, wall, peak, _ = collect(str(work / "memory.db"), registry.host, args.concurrency, registry)
            print(f"memory           {count} tags in {repos} repos collected cold in {reported:.1f}s: "
                  f"peak RSS {peak:.0f} MB")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
