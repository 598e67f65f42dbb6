"""Growth benchmark: what a run where nothing changed adds to the ledger, at several repository counts.

Each ledger gets a first run that lists every repository (one tag each, seen), then warm runs that
list and see the same: no event, no change of coverage. The file is measured after
`PRAGMA wal_checkpoint(TRUNCATE)`, so the runs row, its seal, the coverage_runs row and every index
entry count; the growth is averaged over the warm runs (SQLite grows a file a 4 KiB page at a time).
Target: at most 4 KB per no-change run, whatever the repository count.

    .venv/bin/python scripts/bench_growth.py --repos 500 2000 10000 --runs 20
"""

import argparse
import hashlib
import os
import tempfile
from pathlib import Path

from ledger import store
from ledger.findings import Listing, RunResult, Sighting
from ledger.semantics import Scope

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REGISTRY = "bench.example"


def _run(db, repos, run):
    """One run that lists every repository completely and sees its one tag where it was."""
    at = f"2026-01-01T00:{run // 60:02d}:{run % 60:02d}.000000Z"
    digest = {repo: "sha256:" + hashlib.sha256(repo.encode()).hexdigest() for repo in repos}
    result = RunResult(observations=[Sighting(REGISTRY, repo, "latest", at, digest[repo], MANIFEST) for repo in repos],
                       coverage=[Listing(REGISTRY, repo, Scope(), at, ["latest"]) for repo in repos])
    run_id = store.start_run(db, "registry", [REGISTRY])
    return store.append_run(db, run_id, result)


def _size(db, path):
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    wal = Path(f"{path}-wal")
    return os.path.getsize(path) + (wal.stat().st_size if wal.exists() else 0)


def growth(count, runs):
    """(bytes the first run added, bytes per warm no-change run) for a ledger of `count` repositories."""
    path = Path(tempfile.mkdtemp(prefix="ledger-growth-")) / "ledger.db"
    db = store.open_db(path)
    repos = [f"team{n % 50}/app{n}" for n in range(count)]
    empty = _size(db, path)
    _run(db, repos, 0)
    _run(db, repos, 1)  # the first warm run: pages the stream's first runs left half full fill up
    start = _size(db, path)
    for run in range(2, runs + 2):
        counts = _run(db, repos, run)
        assert counts["added"] + counts["moved"] + counts["updated"] + counts["removed"] == 0, counts
    end = _size(db, path)
    changes = db.execute("SELECT count(*) FROM coverage_changes").fetchone()[0]
    assert changes == count, f"{changes} coverage changes for {count} repositories listed the same way every run"
    db.close()
    return start - empty, (end - start) / runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, nargs="+", default=[500, 2000, 10000])
    parser.add_argument("--runs", type=int, default=20, help="warm runs to average over")
    args = parser.parse_args()
    print(f"{'repositories':>12}  {'first two runs':>14}  {'per no-change run':>18}")
    for count in args.repos:
        first, per_run = growth(count, args.runs)
        print(f"{count:>12,}  {first / 1e3:>11,.0f} KB  {per_run:>14,.0f} bytes"
              + ("" if per_run <= 4096 else "  (over the 4 KB target)"))


if __name__ == "__main__":
    main()
