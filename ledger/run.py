"""One run: what the ledger already knows, the sources' collection, the append, and the hooks after it,
all wired here: its notification (`plan.notify`), the signed head (`plan.anchor`), the metrics
(`plan.metrics`).

The CLI's `collect` and `watch` (collecting.py) are this and a summary; nothing here prints.
"""

import sqlite3
import time
from dataclasses import dataclass

from . import pinning, store
from .collector import collect
from .daemon import collect_daemon
from .findings import CHECKPOINT_FAILED, Problem, RunResult
from .signatures import Checking
from .terminal import printable
from .times import now


class RunFailed(Exception):
    """A run that could not be recorded, or that ended without its findings: one line, naming the ledger.
    `warnings`: the Problems of notifying about it (with --notify), which only stderr can tell;
    `unwritten`: why its metrics could not be written, if they could not."""

    def __init__(self, message):
        super().__init__(message)
        self.warnings = []
        self.unwritten = None


@dataclass
class Outcome:
    run_id: int  # the run's row: another one when its own was closed underneath it
    result: object  # the sources' RunResult
    counts: dict  # what the append made of it
    elapsed: float
    unanchored: str | None = None  # why the signed head could not be written, if it could not
    unwritten: str | None = None  # why the metrics could not be written, if they could not


def run_once(plan, progress=None):
    """Collect `plan` (a settings.Plan) and append it as one run. KeyboardInterrupt still closes the run
    (as failed) before it goes on up. With notifications, a run that fails before it is appended is
    still told about (best effort); with metrics, every run that ends is counted, failed or not."""
    started = time.monotonic()
    try:
        outcome = _open_and_run(plan, progress)
    except RunFailed as error:
        if plan.notify is not None:
            error.warnings.extend(plan.notify.failed(str(error)))
        if plan.metrics is not None:
            error.unwritten = plan.metrics.observe(plan.db_path, time.monotonic() - started, None)
        raise
    if plan.metrics is not None:
        outcome.unwritten = plan.metrics.observe(plan.db_path, time.monotonic() - started, outcome)
    return outcome


def _open_and_run(plan, progress):
    try:
        db = store.open_db(plan.db_path)
    except store.StoreError as error:
        raise RunFailed(str(error)) from None
    try:
        return _run(db, plan, progress or (lambda **_: None))
    except (sqlite3.Error, store.StoreError) as error:
        raise RunFailed(f"{plan.db_path}: the run could not be recorded ({error}); see `ledger verify`") from None


def _run(db, plan, progress):
    try:
        known = store.known_digests(db)
        ledger_repos = {}
        for registry, repo in store.live_repos(db, store.REGISTRY):
            ledger_repos.setdefault(registry, set()).add(repo)
        source = "+".join(name for name, used in (("registry", plan.targets), ("daemon", plan.daemon)) if used)
        run_id = store.start_run(db, source, plan.described)
        started = time.monotonic()
        result = _collect(db, plan, run_id, known, ledger_repos, progress)
        try:
            counts = store.append_run(db, run_id, result)
        except Exception as error:  # the ledger must still say the run happened and failed
            store.finish_failed_run(db, run_id, f"could not append: {error}")
            raise RunFailed(f"{plan.db_path}: run {run_id} could not be appended: {error}") from None
        result.status = counts["status"]  # the append may have found a failure the sources could not
        last = _notify(db, plan.notify, counts, result) if plan.notify else counts["run_id"]
        unanchored = _write_checkpoint(plan, db, last)
    finally:
        db.close()
    return Outcome(counts["run_id"], result, counts, time.monotonic() - started, unanchored)


def _collect(db, plan, run_id, known, ledger_repos, progress):
    """The sources' findings; whatever escapes them still closes the run, as failed."""
    try:
        indexes = store.known_indexes(db) if plan.targets else set()
        checking = Checking(plan.signature_keys, store.signature_checks_done(db),
                            lambda digest: store.manifest_body(db, digest)) if plan.targets else None
        configs = None  # config digest -> a manifest keeping its bytes, read when a config is first wanted

        def config_of(digest):
            nonlocal configs
            if configs is None:
                configs = store.config_sources(db)
            return store.stored_config(db, configs[digest]) if digest in configs else None
        result = collect(plan.targets, known, ledger_repos, options=plan.options, progress=progress,
                         observe=plan.observe,
                         children_of=lambda digest: store.children_of(db, digest) if digest in indexes else [],
                         seen=lambda registry, repo: store.held_repo(db, registry, repo, store.REGISTRY),
                         tags_held=lambda registry, repo: store.tags_held(db, registry, repo, store.REGISTRY),
                         rate_limited=store.rate_limited_registries(db), config_of=config_of,
                         signatures=checking) if plan.targets else None
        if plan.daemon:
            local = collect_daemon(plan.daemon, store.known_images(db), store.live_repos(db, plan.daemon.source))
            result = result.merge(local) if result else local
        return result
    except KeyboardInterrupt:
        store.finish_failed_run(db, run_id, "interrupted: stopped by a signal")
        raise
    except Exception as error:
        message = f"failed: {error.__class__.__name__}: {str(error)[:200]}"
        store.finish_failed_run(db, run_id, message)
        raise RunFailed(f"{plan.db_path}: run {run_id} {printable(message)}") from None


def _notify(db, notify, counts, result):
    """Tell about a run once it is committed, so that whoever is told finds it in the ledger. Deliveries
    that failed are warnings of the run's outcome, and the errors rows of a sealed run of their own
    (source 'notify'): the run told about is sealed already. Returns the last run appended."""
    run_id = counts["run_id"]
    problems = notify.appended(store.run_changes(db, run_id, result.status, counts["events"], result.errors))
    if not problems:
        return run_id
    result.errors.extend(problems)
    told = store.start_run(db, "notify", [f"the notification of run {run_id}"])
    return store.append_run(db, told, RunResult(errors=problems))["run_id"]


def _write_checkpoint(plan, db, run_id):
    """Write the signed head after a run; the run is appended either way. A checkpoint refused (the
    ledger does not extend the ones already written: it was rolled back or rewritten) or not written is
    the errors row of a failed run of its own (source 'checkpoint': the run before it is sealed already),
    told like any failed run. Returns the problem, or None."""
    if plan.anchor is None:
        return None
    directory, signer = plan.anchor
    try:
        pinning.write_checkpoint(directory, db, signer, run_id)
        return None
    except pinning.PinError as error:
        message = f"{directory}: run {run_id} is appended, but its checkpoint is refused: {error}"
    except OSError as error:
        message = f"{directory}: run {run_id} is appended, but its checkpoint could not be written ({error.strerror})"
    message = printable(message)
    result = RunResult(errors=[Problem(at=now(), registry="", stage="checkpoint", message=message,
                                       code=CHECKPOINT_FAILED, source="checkpoint")], status="failed")
    refused = store.start_run(db, "checkpoint", [f"the checkpoint of run {run_id}"])
    counts = store.append_run(db, refused, result)
    if plan.notify:
        _notify(db, plan.notify, counts, result)
    return message
