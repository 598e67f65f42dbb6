"""Soak: many collect runs against a registry changed at random, through a fault-injecting proxy,
with some runs killed. Checks after every run that the ledger never recorded anything false,
and at the end that it matches the registry exactly. Prints the figures; exits 1 on any mismatch.

    .venv/bin/python scripts/soak.py --runs 200
"""

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from ledger.manifests import ACCEPT
# sandbox/ is a package of this source tree, not installed (see ARCHITECTURE.md): the repository root goes on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sandbox import RESET, TRUNCATE, LocalRegistry, Proxy, Pusher  # noqa: E402


def true_state(registry, repos):
    """tag key -> digest, read straight from the registry (not through the proxy)."""
    state = {}
    for repo in repos:
        listing = requests.get(f"{registry.url}/v2/{repo}/tags/list")
        if listing.status_code == 404:
            continue
        for tag in listing.json().get("tags") or []:
            head = requests.head(f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            state[(repo, tag)] = head.headers["Docker-Content-Digest"]
    return state


class Faults:
    """A random fault on a share of the requests the proxy forwards."""

    KINDS = ["503", "429", "reset", "truncate", "corrupt", "garbage", "slow"]

    def __init__(self, rng, rate):
        self.rng = rng
        self.rate = rate
        self.counts = Counter()

    def __call__(self, method, path, status, headers, body):
        if self.rng.random() >= self.rate or path in ("/v2/", "/v2"):
            return None
        kind = self.rng.choice(self.KINDS)
        self.counts[kind] += 1
        json_type = [("Content-Type", "application/json")]
        if kind == "503":
            return 503, json_type, b'{"errors":[{"code":"UNAVAILABLE","message":"soak"}]}'
        if kind == "429":
            return 429, json_type + [("Retry-After", "0")], b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'
        if kind == "reset":
            return RESET
        if kind == "truncate":
            return TRUNCATE if method != "HEAD" and len(body) > 1 else RESET
        if kind == "corrupt" and method == "GET" and body:
            return status, headers, body[:-1] + bytes([body[-1] ^ 1])
        if kind == "garbage":
            return 200, json_type, b'{"tags": [oops'
        time.sleep(0.05)
        return None


def change(rng, pusher, repos, tags, serial):
    """One random change: push a new image, re-point a tag to another tag's image, or delete a manifest."""
    repo = rng.choice(repos)
    what = rng.random()
    if what < 0.5:
        if rng.random() < 0.15:
            pusher.index(repo, rng.choice(tags), [("amd64", None), ("arm64", "v8")], seed=f"soak-{serial}")
        else:
            pusher.image(repo, rng.choice(tags), seed=f"soak-{serial}")
        return "push"
    listing = requests.get(f"{pusher.base}/v2/{repo}/tags/list").json().get("tags") or []
    if not listing:
        pusher.image(repo, rng.choice(tags), seed=f"soak-{serial}")
        return "push"
    source = rng.choice(listing)
    head = requests.head(f"{pusher.base}/v2/{repo}/manifests/{source}", headers={"Accept": ACCEPT})
    if what < 0.8:
        body = requests.get(f"{pusher.base}/v2/{repo}/manifests/{source}", headers={"Accept": ACCEPT})
        pusher.manifest(repo, rng.choice(tags), body.content, head.headers["Content-Type"])
        return "retag"
    pusher.delete(repo, head.headers["Docker-Content-Digest"])
    return "delete"


def check_runs(db, since, truth):
    """Every event of every new run must agree with the registry's true state during that run."""
    conn = sqlite3.connect(db)
    mismatches = []
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
        conn.close()
        return mismatches, since  # killed before the schema was first applied
    rows = conn.execute("SELECT id, status FROM runs WHERE id > ? ORDER BY id", [since]).fetchall()
    for run_id, status in rows:
        for kind, repo, tag, digest in conn.execute(
                "SELECT kind, repo, tag, digest FROM events WHERE run_id = ?", [run_id]):
            key = (repo, tag)
            if kind == "removed" and key in truth:
                mismatches.append(f"run {run_id}: false removal of {repo}:{tag}")
            if kind != "removed" and truth.get(key) != digest:
                mismatches.append(f"run {run_id}: {kind} {repo}:{tag} -> {digest}, truly {truth.get(key)}")
        if status == "ok":
            current = {(r, t): d for r, t, d in conn.execute("SELECT repo, tag, digest FROM current_tags")}
            if current != truth:
                mismatches.append(f"run {run_id}: ok, but current_tags differ from the registry on "
                                  f"{len(set(current.items()) ^ set(truth.items()))} keys")
    if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        mismatches.append("integrity_check failed")
    last = rows[-1][0] if rows else since
    conn.close()
    return mismatches, last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repos", type=int, default=4)
    parser.add_argument("--tags", type=int, default=6)
    parser.add_argument("--fault-rate", type=float, default=0.04, help="share of requests given a fault")
    parser.add_argument("--kill-rate", type=float, default=0.1, help="share of runs killed with SIGKILL")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ledger-soak-"))
    db = str(work / "soak.db")
    repos = [f"soak/r{n}" for n in range(args.repos)]
    tags = [f"t{n}" for n in range(args.tags)] + ["latest", "v1.0"]
    started = time.monotonic()
    changes, mismatches = Counter(), []
    kills, last_run = 0, 0
    with LocalRegistry() as registry, Proxy(registry.host) as proxy:
        pusher = Pusher(registry.url)
        for repo in repos:
            for tag in tags[:3]:
                pusher.image(repo, tag, seed=f"{repo}-{tag}")
        faults = Faults(rng, args.fault_rate)
        proxy.alter_response = faults
        target = f"{proxy.host}/soak/*"
        for number in range(args.runs):
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                changes[change(rng, pusher, repos, tags, sum(changes.values()))] += 1
            truth = true_state(registry, repos)
            process = subprocess.Popen([sys.executable, "-m", "ledger", "collect", "-q", target, "--db", db,
                                        "--retries", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if rng.random() < args.kill_rate:
                time.sleep(rng.uniform(0.05, 0.6))
                if process.poll() is None:
                    process.kill()
                    kills += 1
            process.wait()
            found, last_run = check_runs(db, last_run, truth)
            mismatches += found
        proxy.alter_response = None
        final = subprocess.run([sys.executable, "-m", "ledger", "collect", "-q", target, "--db", db])
        found, last_run = check_runs(db, last_run, true_state(registry, repos))
        mismatches += found
        if final.returncode != 0:
            mismatches.append(f"the final clean run exited {final.returncode}")
        verify = subprocess.run([sys.executable, "-m", "ledger", "verify", "--db", db], capture_output=True,
                                text=True)
        if verify.returncode != 0:
            mismatches.append(f"verify: {verify.stderr.strip()}")
        requests_made = sum(proxy.counts.values())
    conn = sqlite3.connect(db)
    events = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    final_statuses = Counter()
    for status, summary in conn.execute("SELECT status, error_summary FROM runs"):
        final_statuses["interrupted" if (summary or "").startswith("interrupted") else status] += 1
    print(f"runs            {args.runs + 1} ({', '.join(f'{k} {v}' for k, v in sorted(final_statuses.items()))}; "
          f"{args.runs + 1 - sum(final_statuses.values())} killed before recording a run)")
    print(f"kills           {kills} (SIGKILL mid-run)")
    print(f"changes         {sum(changes.values())} ({', '.join(f'{k} {v}' for k, v in sorted(changes.items()))})")
    print(f"requests        {requests_made}")
    print(f"faults injected {sum(faults.counts.values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(faults.counts.items()))})")
    print(f"events          {sum(events.values())} ({', '.join(f'{k} {v}' for k, v in sorted(events.items()))})")
    print(f"verify          {verify.stdout.strip() or verify.stderr.strip()}")
    print(f"mismatches      {len(mismatches)}")
    for line in mismatches[:20]:
        print(f"  {line}")
    print(f"time            {time.monotonic() - started:.0f}s")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
