"""tlog-tiles benchmark: `ledger tiles` on a big ledger (first time, then again after a run), and
`ledger serve`'s tiles per request. Prints the figures.

    .venv/bin/python scripts/bench_tiles.py --events 1000000
"""

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_store import build  # noqa: E402

from ledger import checkpoint, tiles  # noqa: E402
from ledger.serving import ledger_datasette  # noqa: E402


def timed_tiles(db, key, out):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ledger", "tiles", out, "--db", db, "--key", key],
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout.strip()


def serve_times(datasette, name, paths):
    async def run():
        spent = []
        for path in paths:
            started = time.perf_counter()
            response = await datasette.client.get(f"/{name}/-/tlog/{path}")
            spent.append(time.perf_counter() - started)
            assert response.status_code == 200, (path, response.status_code)
        return spent
    return asyncio.run(run())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="tiles fetched per kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = os.path.join(scratch, "ledger.db")
        started = time.perf_counter()
        build(db, args.events, min(args.events, 100_000), 50)
        print(f"built a ledger of {args.events:,} events in {time.perf_counter() - started:.1f} s")
        key = os.path.join(scratch, "key")
        Path(key).write_text(checkpoint.new_key("bench.example/ledger")[0] + "\n")
        out = os.path.join(scratch, "tiles")
        first, said = timed_tiles(db, key, out)
        print(f"ledger tiles, first time:        {first:7.2f} s  ({said})")
        build_more = os.path.join(scratch, "more.db")  # one more run's worth of events on top: the incremental case
        os.rename(db, build_more)
        build(build_more, 10_000, 10_000, 50)
        os.rename(build_more, db)
        again, said = timed_tiles(db, key, out)
        print(f"ledger tiles, after 10,000 more: {again:7.2f} s  ({said})")
        files = sum(1 for _ in Path(out).rglob("*") if _.is_file())
        size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
        print(f"  {files:,} files, {size / 2**20:.1f} MiB")

        datasette = ledger_datasette([db])
        count = args.events + 10_000
        all_tiles = tiles.tiles_of(count)
        cold = serve_times(datasette, "ledger", ["tile/1/000"])[0]
        print(f"serve: first upper-level tile (reads every event once): {cold * 1000:.0f} ms")
        rng = random.Random(1)
        for label, pick in [("level-0 tile", lambda t: t.level == 0), ("entry bundle", lambda t: t.level == 0),
                            ("upper tile", lambda t: t.level > 0)]:
            chosen = [t for t in all_tiles if pick(t)]
            paths = [rng.choice(chosen) for _ in range(args.requests)]
            if label == "entry bundle":
                paths = [tiles.Tile(None, t.index, t.width) for t in paths]
            spent = sorted(serve_times(datasette, "ledger", [t.path() for t in paths]))
            print(f"serve: {label:<13} median {statistics.median(spent) * 1000:5.2f} ms, "
                  f"p99 {spent[int(len(spent) * 0.99) - 1] * 1000:5.2f} ms, max {spent[-1] * 1000:5.2f} ms "
                  f"({len(spent)} requests, in-process ASGI)")


if __name__ == "__main__":
    main()
