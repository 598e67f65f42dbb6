"""Store benchmark: build a synthetic ledger through the store's own append API, then time every
view and canned query, and the pictures, on it, and the fleet's queries on it and copies of it. Prints
the figures.

    .venv/bin/python scripts/bench_store.py --events 1000000 --tags 100000
"""

import argparse
import asyncio
import datetime
import hashlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from ledger import reads, store
from ledger.findings import RunResult, Sighting
from ledger.serving import SERVE_SETTINGS, ledger_datasette, serving_metadata
from ledger.times import format_instant

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(*parts):
    return "sha256:" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


class Stopwatch:
    """Time spent inside a few store functions, to say where append time goes (patched where
    append_run calls them: in ledger/store/append.py)."""

    def __init__(self, *names):
        self.spent = dict.fromkeys(names, 0.0)
        for name in names:
            setattr(store.append, name, self._timed(name, getattr(store.append, name)))

    def _timed(self, name, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - started
        return timed


def build(path, events, tags, repos):
    """Run 1 adds every tag; each later run moves a slice of them, until `events` events exist; one tag in 50,
    from its third sighting on, moves back to the digest it held before its current one (a rollback).

    Only store.append_run is timed: classifying, hashing, interning and writing a run's results."""
    db = store.open_db(path)
    keys = [(f"bench.example/team{n % repos}/app{n % (repos * 7)}", f"v{n}") for n in range(tags)]
    appended, run, elapsed = 0, 0, 0.0
    batch = min(tags, 100_000)
    held = {key: (None, None) for key in keys[::50]}  # a flapping tag's digest now and the one before

    def pick(repo, tag, run):
        if (repo, tag) not in held:
            return digest(repo, tag, run)
        now, before = held[repo, tag]
        held[repo, tag] = (before or digest(repo, tag, run), now)
        return held[repo, tag][0]
    while appended < events:
        run += 1
        chunk = keys if run == 1 else keys[((run - 2) * batch) % tags:][:batch]
        chunk = chunk[: events - appended]
        at = f"2026-01-01T00:00:00.{run:06d}Z"
        observations = [Sighting("bench.example", repo.split("/", 1)[1], tag, at, pick(repo, tag, run), MANIFEST)
                        for repo, tag in chunk]
        run_id = store.start_run(db, "registry", ["bench.example"])
        result = RunResult(observations=observations)
        started = time.perf_counter()
        counts = store.append_run(db, run_id, result)
        elapsed += time.perf_counter() - started
        appended += counts["added"] + counts["moved"]
    db.close()
    return appended, run, elapsed


def build_moved_tag(path, moves, signed):
    """One tag moved `moves` times, from 2026-01-01 to an hour ago, its latest `signed` images each signed by
    a cosign tag in the same run: what a tag's timeline draws at worst (its latest 1,000 events, 500 referrer
    events). Only the latest are signed since every run reads all keys of the repository: signing each would
    make the build quadratic. Returns the seconds its runs took to append."""
    db = store.open_db(path)
    first = datetime.datetime(2026, 1, 1, 1, tzinfo=datetime.timezone.utc)
    step = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1) - first) / moves
    started = time.perf_counter()
    for n in range(moves):
        at, image = format_instant(first + n * step), digest("moved", n)
        observations = [Sighting("bench.example", "moved/app", "latest", at, image, MANIFEST)]
        if n >= moves - signed:
            observations.append(Sighting("bench.example", "moved/app", image.replace(":", "-") + ".sig", at,
                                         digest("signature", n), MANIFEST))
        store.append_run(db, store.start_run(db, "registry", ["bench.example/moved/app"]),
                         RunResult(observations=observations))
    db.close()
    return time.perf_counter() - started


def timed(function, repeat=3):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--repos", type=int, default=500)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="ledger-bench-")) / "ledger.db"
    watch = Stopwatch("_classify_all", "event_hash")
    events, runs, elapsed = build(path, args.events, args.tags, args.repos)
    size = os.path.getsize(path) + (os.path.getsize(str(path) + "-wal") if os.path.exists(str(path) + "-wal") else 0)
    print(f"machine          {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"ledger           {events} events over {args.tags} tags in {runs} runs")
    print(f"append           {events / elapsed:,.0f} events/s with the hash chain ({elapsed:.1f}s)")
    classify, hashing = (watch.spent[name] / events * 1e6 for name in ("_classify_all", "event_hash"))
    print(f"  per event      {elapsed / events * 1e6:.1f} us: classifying {classify:.1f}, hashing {hashing:.1f}, "
          f"interning and writing {elapsed / events * 1e6 - classify - hashing:.1f}")
    print(f"size             {size / events:.0f} bytes per event ({size / 1e6:.0f} MB)")
    db = store.open_db(path)
    largest = db.execute("SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC LIMIT 6")
    print("  by table/index " + ", ".join(f"{name} {size / events:.0f}" for name, size in largest))
    took, report = timed(lambda: store.verify(db), repeat=1)
    print(f"verify           {took:.2f}s ({'ok' if report.ok else report.problems[0]})")
    repo, tag = db.execute("SELECT repo, tag FROM events ORDER BY id DESC LIMIT 1").fetchone()
    took, rows = timed(lambda: db.execute("SELECT * FROM current_tags").fetchall())
    print(f"current_tags     {took * 1000:.0f} ms to read all {len(rows)} rows")
    took, rows = timed(lambda: reads.history(db, f"bench.example/{repo}:{tag}"), repeat=20)
    print(f"one tag history  {took * 1000:.2f} ms ({len(rows)} events)")
    took, rows = timed(lambda: reads.state_at(db, "2026-01-01T00:00:00.000003Z", f"bench.example/{repo}"), repeat=20)
    print(f"one repo at T    {took * 1000:.2f} ms ({len(rows)} tags)")
    last = db.execute("SELECT run_id, min(id), max(id), min(observed_at) FROM event_log "
                      "WHERE run_id = (SELECT max(run_id) FROM event_log)").fetchone()
    took, rows = timed(lambda: reads.changes(db, "2026-01-01T00:00:00.000000Z", pattern=f"bench.example/{repo}"))
    print(f"one repo changes {took * 1000:.0f} ms ({len(rows)} events, "
          f"{sum(row['change'] == 'rollback' for row in rows)} rollbacks; `ledger changes --since`)")
    took, told = timed(lambda: store.run_changes(db, last[0], "ok", last[1:3], []), repeat=1)
    print(f"notification     {took * 1000:.0f} ms to read the last run's {last[2] - last[1] + 1} events "
          f"({told.rollbacks} rollbacks) for its message")
    print("views and queries: the whole HTML page as `ledger serve` gives it (rows, count, facets), best of 3, "
          "in Datasette's own client (each query's limit: 1000 ms):")
    from datasette.app import Datasette
    datasette = Datasette([str(path)], metadata=serving_metadata(path), settings=SERVE_SETTINGS)

    async def fetch(url, params):
        response = await datasette.client.get(url, params=params)
        return response.status_code, response.text

    checks = [
        ("events (a page)", "/ledger/events", {}),
        ("current_tags (a page)", "/ledger/current_tags", {}),
        ("tag_history (a page)", "/ledger/tag_history", {}),
        ("tag_history of one tag", "/ledger/tag_history", {"repo": repo, "tag": tag}),
        ("replaced_tags (a page)", "/ledger/replaced_tags", {}),
        ("new_images (a page)", "/ledger/new_images", {}),
        ("removed_tags (a page)", "/ledger/removed_tags", {}),
        ("new_digests (a page)", "/ledger/new_digests", {}),
        ("current_referrers (a page)", "/ledger/current_referrers", {}),
        ("rollbacks (a page)", "/ledger/rollbacks", {}),
        ("replaced_tags, rollbacks", "/ledger/replaced_tags", {"change": "rollback"}),
    ] + [(f"query {name}{'' if params else ' (defaults)'}", f"/ledger/{name}", params) for name, params in [
        ("state_at", {"at": "2026-01-01T00:00:00.000003Z", "pattern": "bench.example/team7/*"}),
        ("state_at", {}),
        ("history_of_tag", {"ref": f"bench.example/{repo}:{tag}"}),
        ("replaced_in_window", {"since": "2000-01-01T00:00:00Z"}),
        ("release_tags_moved", {"pattern": "bench.example/team7/*"}),
        ("rollbacks", {}),
        ("rollbacks", {"pattern": "bench.example/team7/*"}),
        ("new_images_since", {"since": "2000-01-01T00:00:00Z"}),
        ("removed_in_window", {"since": "2000-01-01T00:00:00Z"}),
        ("digest_usage", {"digest": digest(f"bench.example/{repo}", tag, 1)}),
        ("runs_with_problems", {"since": "2000-01-01T00:00:00Z"}),
        ("stale_coverage", {"since": "2000-01-01T00:00:00Z"}),
        ("changes_feed", {"pattern": "bench.example/team7/*"}),
        ("unsigned_current_tags", {"pattern": "bench.example/team7/*"}),
        ("referrers_in_window", {"since": "2000-01-01T00:00:00Z"}),
        ("signed_at", {"ref": f"bench.example/{repo}:{tag}", "at": "2026-01-01T00:00:00.000003Z"}),
    ]]
    for label, url, params in checks:
        took, (status, body) = timed(lambda: asyncio.run(fetch(url, params)))
        timed_out = "took too long" in body or "timed out" in body
        verdict = f"HTTP {status}" + (": a query or facet timed out" if timed_out else "")
        print(f"  {label:<34}{took * 1000:8.0f} ms  {verdict}")
    # The pictures (ledger/pictures/), in the Datasette `ledger serve` builds (it registers them). Every
    # event above is of 2026-01-01, so each window runs from then to today and holds them all (the chart's
    # worst case); one more tag, moved through the year, is the timeline's worst case.
    moves, signed = 1200, 600
    took = build_moved_tag(path, moves, signed)
    served = ledger_datasette([path])
    days = str((datetime.date.today() - datetime.date(2026, 1, 1)).days + 1)
    print(f"pictures: the whole page as `ledger serve` gives it, best of 3 (target: under 1000 ms); first "
          f"bench.example/moved/app:latest is moved {moves} times in {days} days, its latest {signed} images "
          f"signed ({took:.1f}s to append):")

    async def picture(url, params):
        response = await served.client.get(url, params=params)
        return response.status_code, response.text

    for label, url, params in [
        ("timeline of one tag", "/ledger/-/timeline", {"tag": f"bench.example/{repo}:{tag}"}),
        (f"timeline of a tag moved {moves} times", "/ledger/-/timeline", {"tag": "bench.example/moved/app:latest"}),
        (f"timelines of one repo, {days} days", "/ledger/-/timelines", {"pattern": f"bench.example/{repo}",
                                                                        "days": days}),
        (f"timelines of team7/*, {days} days", "/ledger/-/timelines", {"pattern": "bench.example/team7/*",
                                                                       "days": days}),
        (f"timelines of every tag, {days} days", "/ledger/-/timelines", {"days": days}),
    ]:
        took, (status, body) = timed(lambda: asyncio.run(picture(url, params)))
        drawn = body.count('class="band"')
        marks = body.count('class="marker ')
        print(f"  {label:<38}{took * 1000:8.0f} ms  HTTP {status}, {drawn} bands, {marks} marks")
    fleet(path, f"bench.example/{repo}", tag)


def fleet(path, repo, tag):
    """The fleet's queries (`ledger serve a.db b.db`) over this ledger and copies of it, as two ledgers and as
    three: each reads every ledger it serves. A copy is the file with its -wal, as between runs; the copies
    are deleted after."""
    copies = [path.with_name(f"{path.stem}-{n}.db") for n in (2, 3)]
    for copy in copies:
        for suffix in ("", "-wal"):
            if os.path.exists(f"{path}{suffix}"):
                shutil.copy(f"{path}{suffix}", f"{copy}{suffix}")
    print("fleet: the whole page as `ledger serve` gives it, best of 3 (each query's limit: 1000 ms), over the "
          "ledger and a copy, then two copies; rows as its JSON says (+: more than Datasette shows):")
    for count in (2, 3):
        served = ledger_datasette([path, *copies[:count - 1]])

        async def get(url, params):
            return await served.client.get(url, params=params)

        for label, query, params in [
            ("fleet_current_tags (a page)", "fleet_current_tags", {}),
            ("fleet_changes (the last day)", "fleet_changes", {}),
            ("fleet_changes since the build's last run", "fleet_changes", {"since": "2026-01-01T00:00:00.000009Z"}),
            ("fleet_changes since 2000 (every event)", "fleet_changes", {"since": "2000-01-01T00:00:00Z"}),
            ("fleet_digest_usage", "fleet_digest_usage", {"digest": digest(repo, tag, 1)}),
        ]:
            took, response = timed(lambda: asyncio.run(get(f"/_memory/{query}", params)))
            data = asyncio.run(get(f"/_memory/{query}.json", {**params, "_shape": "objects"})).json()
            rows = f"{len(data['rows'])}{'+' if data['truncated'] else ''} rows" if data.get("ok", True) else (
                "timed out" if "took too long" in data["error"] else data["error"])
            print(f"  {count} ledgers: {label:<40}{took * 1000:8.0f} ms  HTTP {response.status_code}, {rows}")
    for leftover in path.parent.glob(f"{path.stem}-[23].db*"):
        leftover.unlink()


if __name__ == "__main__":
    main()
