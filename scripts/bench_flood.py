"""Referrer flood benchmark: what one `ledger collect` costs when a registry answers every referrers request
with the same thousands of referrers whose manifests name another subject (issue 21: 180,000 errors rows,
a 93 MiB ledger and 498 MiB RSS at 120 tags, before the caps).

A loopback HostileRegistry (sandbox/hostile.py) serves TAGS tags of distinct images in one repository, and
the referrers API. A first collect, with no referrers API yet, records the tags; then the API answers every
digest with the same FLOOD lying referrers, and a second collect (the ledger's default caps) is measured:
its peak RSS (VmHWM of the collect process, polled from /proc while it runs: ru_maxrss would carry the
forking parent's size), the ledger's growth in bytes over that run (WAL checkpointed before and after),
its errors rows with their counts, and its status. It exits 1 past a target: 300 MB of RSS, 5 MB of growth.

    .venv/bin/python scripts/bench_flood.py                    # 120 tags, 9,000 referrers each
    .venv/bin/python scripts/bench_flood.py --tags 20 --flood 500
    .venv/bin/python scripts/bench_flood.py -- --max-referrers 9000    # the flooded run's options
"""

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# sandbox/ is a package of this source tree, not installed (see ARCHITECTURE.md): the repository root goes on sys.path.
sys.path.insert(0, str(ROOT))
from sandbox.hostile import HostileRegistry, referrer_flood  # noqa: E402

RSS_TARGET_MB = 300
GROWTH_TARGET_MB = 5


def peak_kb(pid):
    """VmHWM of a running process, in KiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def collect(db, host, extra=()):
    """One `ledger collect` process: (exit status, peak RSS KiB, seconds, stderr)."""
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "ledger", "collect", "--quiet", "--db", db, *extra,
                                    f"{host}/flood/app"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while True:
            pid, status, _ = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, peak_kb(process.pid) or 0)
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        err.seek(0)
        return os.waitstatus_to_exitcode(status), peak, elapsed, err.read().decode("utf-8", "replace")


def size(db):
    """The ledger's bytes with its WAL checkpointed into it."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return sum(os.path.getsize(path) for path in (db, db + "-wal") if os.path.exists(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=120, help="tags of distinct images in the repository")
    parser.add_argument("--flood", type=int, default=9_000, help="lying referrers listed for every digest")
    parser.add_argument("options", nargs="*", help="options of the flooded collect (after --)")
    args = parser.parse_args()

    server = HostileRegistry()
    for n in range(args.tags):
        server.add_image("flood/app", f"v{n}", seed=f"flood image {n}")
    answer, _ = referrer_flood(server, "flood/app", args.flood)
    with server, tempfile.TemporaryDirectory() as directory:
        db = str(Path(directory) / "ledger.db")
        status, _, _, err = collect(db, server.host)  # no referrers API yet: the tags alone
        if status != 0:
            sys.exit(f"the first collect failed (exit {status}): {err[-2000:]}")
        before = size(db)
        server.referrers = lambda _subject: answer
        server.requests.clear()
        status, peak, elapsed, err = collect(db, server.host, args.options)
        after = size(db)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        run = conn.execute("SELECT id, status, errors FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        errors = conn.execute("SELECT stage, code, count FROM errors WHERE run_id = ? ORDER BY id", [run[0]]).fetchall()
        conn.close()
    referrers_asked = sum(1 for request in server.requests if request.kind == "referrers")
    manifests = sum(1 for request in server.requests if request.kind == "manifest" and request.method == "GET")
    growth = after - before
    print(f"flood: {args.tags} tags, each digest's referrers list {args.flood} referrers naming another subject "
          f"({len(answer) / 1e6:.2f} MB per answer)")
    print(f"flooded run {run[0]} ({' '.join(args.options) or 'default caps'}): exit {status}, status {run[1]}, "
          f"{elapsed:.1f} s; {referrers_asked} referrers requests, {manifests} manifests fetched")
    print(f"  errors rows  {len(errors):>9}  (total {run[2]} errors)")
    for stage, code, count in errors:
        print(f"    {stage}/{code}: {count}")
    print(f"  peak RSS     {peak / 1024:>9.1f} MB  (target < {RSS_TARGET_MB} MB)")
    print(f"  ledger growth {growth:>8} bytes = {growth / 1e6:.2f} MB  (target < {GROWTH_TARGET_MB} MB; "
          f"{before} -> {after} bytes)")
    if peak / 1024 >= RSS_TARGET_MB or growth >= GROWTH_TARGET_MB * 1e6 or run[1] != "partial":
        sys.exit(1)


if __name__ == "__main__":
    main()
