"""Fuzz `ledger collect` with hostile registry answers.

Runs N random hostile configurations against the loopback HostileRegistry of sandbox/hostile.py
(`random_case`: one to three endpoints among ping, catalog, a tag list, a manifest HEAD or GET, a
config blob and the token realm, each answering with a hostile status, hostile header values and
a hostile body, framed by a Content-Length, by closing or chunked; random targets, Basic or Bearer
auth, retries). Each runs as an in-process `ledger collect` (click's CliRunner) in a fresh ledger,
and is a crash when it raised anything but SystemExit, exited other than 0, 1 or 3, printed a
traceback or a raw terminal control character, left a run 'running', left a ledger `ledger
verify` refuses, or did not end within --timeout seconds.

Prints `runs N, inputs tried M, crashes K` (M: hostile answers the server actually served), then
each crash's input and traceback. Exits 1 when anything crashed. Only 127.0.0.1 / localhost is used.

    .venv/bin/python scripts/fuzz_registry.py --runs 200 --seed 7
"""

import argparse
import random
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# sandbox/ is a package of this source tree, not installed (see ARCHITECTURE.md): the repository root goes on sys.path.
sys.path.insert(0, str(ROOT))

from sandbox import hostile  # noqa: E402
from ledger.cli import cli  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="how many random configurations (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    parser.add_argument("--deadline", type=float, default=hostile.DEADLINE,
                        help="collect --deadline, per request (default %(default)s; 0 leaves it out)")
    parser.add_argument("--max-tags", type=int, default=1000,
                        help="collect --max-tags (default %(default)s; 0 leaves it out)")
    parser.add_argument("--timeout", type=float, default=60, help="a run not ended after this many seconds is a crash")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each run's input and outcome")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    rng = random.Random(seed)
    options = (["--deadline", f"{args.deadline:g}"] if args.deadline else []) + (
        ["--max-tags", str(args.max_tags)] if args.max_tags else [])
    print(f"fuzz_registry: seed {seed}, {args.runs} runs, collect options {' '.join(options) or '(none)'}",
          flush=True)

    with socket.socket() as sock:  # a loopback port nobody listens on, for hostile URLs to point at
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    server = hostile.good_registry()
    bodies = hostile.hostile_bodies()
    crashes, tried, started = [], 0, time.monotonic()
    try:
        for number in range(1, args.runs + 1):
            case = hostile.random_case(rng, bodies)
            problems, result = hostile.run_in_process(cli, case, server, dead_port, options=options,
                                                      timeout=args.timeout)
            tried += server.hostile_served
            if args.verbose:
                print(f"run {number}: exit {result.exit_code}, {server.hostile_served} hostile answers"
                      f"{', CRASH' if problems else ''}\n  {case.describe()}", flush=True)
            if problems:
                crashes.append((number, case, problems))
    finally:
        server.stop()

    print(f"runs {args.runs}, inputs tried {tried}, crashes {len(crashes)}  "
          f"({time.monotonic() - started:.1f}s, seed {seed})")
    for number, case, problems in crashes:
        print(f"\n--- crash in run {number} ---\n{case.describe()}")
        for problem in problems:
            print(problem.rstrip())
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
