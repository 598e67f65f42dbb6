"""Startup benchmark: CPU seconds (user + system) of whole `ledger` processes that only read, beside a bare
`python -c pass`: `ledger --help` and each reading command on a small ledger. Target: under 0.15 s each.

    .venv/bin/python scripts/bench_startup.py --runs 10
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ledger import store
from ledger.findings import RunResult, Sighting

TARGET = 0.15


def cpu(command):
    """CPU seconds of one whole process running `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def small_ledger(path):
    db = store.open_db(path)
    run_id = store.start_run(db, "registry", ["r.example/app"])
    store.append_run(db, run_id, RunResult(observations=[
        Sighting("r.example", "app", f"v{n}", "2026-01-01T00:00:00.000000Z", f"sha256:{n:064x}", "m")
        for n in range(100)]))
    db.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    path = str(Path(tempfile.mkdtemp(prefix="ledger-startup-")) / "ledger.db")
    small_ledger(path)
    ledger = [sys.executable, "-m", "ledger"]
    commands = {"python -c pass": [sys.executable, "-c", "pass"], "ledger --help": [*ledger, "--help"],
                "ledger tags": [*ledger, "tags", "--db", path],
                "ledger history": [*ledger, "history", "r.example/app:v1", "--db", path],
                "ledger at": [*ledger, "at", "now", "--db", path],
                "ledger changes": [*ledger, "changes", "--since", "2000-01-01", "--db", path],
                "ledger runs": [*ledger, "runs", "--db", path]}
    print(f"CPU seconds per whole process (user + system), median and max of {args.runs}; target {TARGET}:")
    failed = False
    for label, command in commands.items():
        figures = [cpu(command) for _ in range(args.runs)]
        median = statistics.median(figures)
        over = label != "python -c pass" and median > TARGET
        failed |= over
        print(f"  {label:<16} {median:.3f} (max {max(figures):.3f}){'  OVER TARGET' if over else ''}")
    os.unlink(path)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
