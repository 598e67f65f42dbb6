"""The jobs of one registry's run on a bounded thread pool: what to fetch is a `Job`, its answer is handled on
the main thread, and the handler's follow-up jobs join the backlog. Nothing here knows a registry."""

import queue
from collections import deque
from enum import Enum
from typing import NamedTuple


class Kind(Enum):
    """What a job fetches; the collector maps each to the fetch a worker runs and the handler of its answer."""

    TAGS = "tags"  # a repository's tag list
    HEAD = "head"  # a tag resolved with a HEAD (a GET, as TAG, for a tag the ledger never held)
    TAG = "tag"  # a tag resolved with a GET: its manifest's bytes come with it
    MANIFEST = "manifest"  # a manifest by digest
    CONFIG = "config"  # an image config blob
    REFERRERS = "referrers"  # a digest's referrers, from the OCI referrers API
    SIGNATURE = "signature"  # a signature's layers, to check it

    @property
    def stage(self):
        """The stage its errors are recorded under."""
        return "manifest" if self is Kind.TAG else self.value


class Job(NamedTuple):
    """One fetch to run: `args` go to the fetch, `context` only to the handler (a tuple: 100,000 of them
    wait in the backlog of a large tag list)."""

    kind: Kind
    args: tuple
    context: dict


class Scheduler:
    """A few jobs per worker in flight, the rest waiting in order as plain tuples: a tag list of 100,000 tags
    submitted at once would be 100,000 futures in memory. `fetchers` maps a kind to the function a worker
    runs with the job's args; `admit(job)` sees each job as it leaves the backlog and returns the job to run
    (perhaps another) or None (held or skipped); `finished(job, future)` runs on the main thread for each
    answer and returns the jobs it leads to."""

    def __init__(self, in_flight, fetchers, admit, finished):
        self.in_flight = in_flight
        self.fetchers = fetchers
        self.admit = admit
        self.finished = finished
        self.backlog = deque()  # jobs not yet submitted, in order
        self.futures = {}  # future -> its job
        self.done = queue.SimpleQueue()  # futures as they finish

    def first(self, jobs):
        """Jobs that go before the whole backlog (held ones, now let go)."""
        self.backlog.extendleft(reversed(jobs))

    def run(self, pool, jobs):
        self.backlog.extend(jobs)
        self._pump(pool)
        try:
            while self.futures:
                future = self.done.get()  # not wait(): that visits every pending future, O(n) per answer
                self.backlog.extend(self.finished(self.futures.pop(future), future))
                self._pump(pool)
        except BaseException:
            for future in self.futures:
                future.cancel()  # an interrupted run stops asking at once
            raise

    def _pump(self, pool):
        while self.backlog and len(self.futures) < self.in_flight:
            job = self.admit(self.backlog.popleft())
            if job is not None:
                future = pool.submit(self.fetchers[job.kind], *job.args)
                self.futures[future] = job
                future.add_done_callback(self.done.put)
