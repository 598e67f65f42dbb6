"""Prometheus metrics of the runs, with prometheus_client: written atomically after every run to a file
for node_exporter's textfile collector (`--metrics-file`), and served on 127.0.0.1 for a watcher's life
(`ledger watch --metrics-port`).

Counters (`_total`) accumulate: over the watcher's life, and across runs through the file, whose
counters each process continues from, so a `collect` run by cron every 15 minutes makes counters that
only go up (a file it cannot read as its own starts them at 0, which Prometheus reads as a reset).
Gauges (`ledger_last_run_*`, tags tracked, rate limits) say the state the last run left.
"""

import math
import os
import sqlite3
import time

from . import reads, store
from .paths import read_bytes

STATUSES = ("ok", "partial", "failed")
KINDS = ("added", "moved", "updated", "removed")
MAX_FILE_BYTES = 1024 * 1024  # a metrics file read back for its counters


class MetricsError(Exception):
    """A metrics file or port that cannot be used; one line naming it."""


class Metrics:
    """One process's metrics, on a registry of their own (never prometheus_client's global one)."""

    def __init__(self, path=None, port=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
        disable_created_metrics()  # a counter continued from the file was not created by this process
        self.path = path
        self.registry = registry = CollectorRegistry()
        self.runs = Counter("ledger_runs", "Runs finished, by status.", ["status"], registry=registry)
        self.events = Counter("ledger_events", "Events appended, by kind.", ["kind"], registry=registry)
        self.new_images = Counter("ledger_new_images", "Images seen for the first time.", registry=registry)
        self.requests = Counter("ledger_requests", "Requests made, by kind.", ["kind"], registry=registry)
        self.errors = Counter("ledger_errors", "Rows of the errors table, by stage and severity (error, warning).",
                              ["stage", "severity"], registry=registry)
        self.finished = Gauge("ledger_last_run_timestamp_seconds", "When the last run ended (unix time).",
                              registry=registry)
        self.duration = Gauge("ledger_last_run_duration_seconds", "How long the last run took.", registry=registry)
        self.status = Gauge("ledger_last_run_status", "1 for the last run's status, 0 for the others.", ["status"],
                            registry=registry)
        self.last_events = Gauge("ledger_last_run_events", "Events the last run appended, by kind.", ["kind"],
                                 registry=registry)
        self.last_new_images = Gauge("ledger_last_run_new_images", "Images the last run saw for the first time.",
                                     registry=registry)
        self.tags = Gauge("ledger_tags_tracked", "Image tags the ledger holds now (current_tags), by source.",
                          ["source"], registry=registry)
        self.remaining = Gauge("ledger_rate_limit_remaining", "Pulls left in the registry's rate limit window, "
                               "as the last run was told.", ["registry"], registry=registry)
        self.limit = Gauge("ledger_rate_limit_limit", "The registry's rate limit, as the last run was told.",
                           ["registry"], registry=registry)
        for status in STATUSES:
            self.runs.labels(status)
            self.status.labels(status)
        for kind in KINDS:
            self.events.labels(kind)
            self.last_events.labels(kind)
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise MetricsError(f"--metrics-file {path}: no directory {directory}")
            self._continue(path)
        self.server = None
        if port is not None:
            from prometheus_client import start_http_server
            try:
                self.server = start_http_server(port, addr="127.0.0.1", registry=registry)
            except OSError as error:
                raise MetricsError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} "
                                   f"({error.strerror or error})") from None

    def _continue(self, path):
        """Start each counter from the value the file holds, if it is a metrics file."""
        from prometheus_client.parser import text_string_to_metric_families
        counters = {"ledger_runs_total": (self.runs, {"status"}), "ledger_events_total": (self.events, {"kind"}),
                    "ledger_new_images_total": (self.new_images, set()),
                    "ledger_requests_total": (self.requests, {"kind"}),
                    "ledger_errors_total": (self.errors, {"stage", "severity"})}
        try:
            text = read_bytes(path, MAX_FILE_BYTES)
            if len(text) > MAX_FILE_BYTES:
                return
            samples = [sample for family in text_string_to_metric_families(text.decode("utf-8"))
                       for sample in family.samples]
        except (OSError, UnicodeDecodeError, ValueError, TypeError, IndexError):
            return
        for sample in samples:
            counter, labels = counters.get(sample.name, (None, None))
            if counter is None or set(sample.labels) != labels:
                continue
            if math.isfinite(sample.value) and sample.value > 0:
                (counter.labels(**sample.labels) if sample.labels else counter).inc(sample.value)

    def observe(self, db_path, duration, outcome=None):
        """Count one run (`outcome` a run.Outcome, or None for a run that could not be appended) and
        write the file; returns why the file could not be written, or None."""
        status = outcome.result.status if outcome else "failed"
        counts = outcome.counts if outcome else {}
        self.runs.labels(status).inc()
        self.finished.set(time.time())
        self.duration.set(duration)
        for name in STATUSES:
            self.status.labels(name).set(int(name == status))
        for kind in KINDS:
            self.events.labels(kind).inc(counts.get(kind, 0))
            self.last_events.labels(kind).set(counts.get(kind, 0))
        self.new_images.inc(counts.get("new_images", 0))
        self.last_new_images.set(counts.get("new_images", 0))
        if outcome:
            for kind, count in outcome.result.requests.items():
                self.requests.labels(kind).inc(count)
            for problem in outcome.result.errors:
                self.errors.labels(problem.stage, "warning" if problem.warning else "error").inc(problem.count)
            self.remaining.clear()
            self.limit.clear()
            for registry, told in outcome.result.rate_limits.items():
                self.remaining.labels(registry).set(told["remaining"])
                if told.get("limit") is not None:
                    self.limit.labels(registry).set(told["limit"])
        self._tracked(db_path)
        return self.write()

    def _tracked(self, db_path):
        try:
            db = store.open_readonly(db_path)
        except store.StoreError:
            return  # no ledger yet (a run that could not open it): the gauge says what it last knew
        try:
            tracked = reads.tracked_tags(db)
        except sqlite3.Error:
            return  # busy past its timeout, or damaged: `ledger verify` says which; the gauge keeps what it knew
        finally:
            db.close()
        self.tags.clear()
        for source, count in tracked.items():
            self.tags.labels(source).set(count)

    def write(self):
        """The file, written to a temporary name beside it and renamed: a scrape never reads half of it."""
        if not self.path:
            return None
        from prometheus_client import write_to_textfile
        try:
            write_to_textfile(self.path, self.registry)
        except OSError as error:
            return f"{self.path}: the run is recorded, but its metrics could not be written ({error.strerror})"
        return None

    def close(self):
        if self.server is not None:
            server, thread = self.server
            server.shutdown()
            server.server_close()
            thread.join()
            self.server = None
