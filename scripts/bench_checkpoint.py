"""Checkpoint-directory benchmark: what `--checkpoint-dir` costs a run after many runs. A run checks its
head against the checkpoint `latest.checkpoint` links to, not every file in the directory; this times
that write beside the whole-directory check it avoids (what `verify --expect DIR` does). Prints the
figures.

    .venv/bin/python scripts/bench_checkpoint.py --events 100000 --checkpoints 10000
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_store import build  # noqa: E402

from ledger import checkpoint, pinning, store  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "ledger.db")
        build(path, args.events, min(args.events, 10_000), 50)
        signer = checkpoint.parse_signer(checkpoint.new_key("bench.example/ledger")[0])
        directory = Path(scratch, "anchors")
        db = store.open_db(path)
        pinning.write_checkpoint(directory, db, signer, 1)
        first = (directory / "run-00000001.checkpoint").read_bytes()
        for run in range(2, args.checkpoints + 1):  # the same head each time: every one holds
            (directory / f"run-{run:08d}.checkpoint").write_bytes(first)
        started = time.perf_counter()
        pinning.write_checkpoint(directory, db, signer, args.checkpoints + 1)
        written = time.perf_counter() - started
        started = time.perf_counter()
        pins = pinning.read_pins([str(directory)], signer.verifier, signer.name)
        problem = pinning.check_pins(db, pins)
        whole = time.perf_counter() - started
        db.close()
    assert problem is None
    print(f"{args.events} events, {args.checkpoints + 1} checkpoints in the directory")
    print(f"  a run's checkpoint (checked against latest):  {written * 1000:8.1f} ms")
    print(f"  checking every checkpoint in the directory:   {whole * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
