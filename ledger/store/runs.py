"""A run's lifecycle: its row opened, its lock held while it lives, dead runs closed, a failed run
closed with nothing appended."""

import fcntl
import json
import os
import socket

from .. import __version__
from . import seals
from ..times import now
from .database import StoreError, _db_file, _transaction

_HELD = {}  # (ledger file, run id) -> the descriptor whose flock says that run of this process is alive


def _lock_path(db_file, run_id):
    return f"{db_file}-run-{run_id}.lock"


def _take(fd):
    """flock without waiting: True if it was free (its holder, if any, is gone)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _interrupted(db, run_id, pid):
    db.execute("UPDATE runs SET finished_at = ?, status = 'failed', errors = 1, error_summary = ? WHERE id = ?",
               [now(), f"interrupted: process {pid} ended before the run did", run_id])
    seals.seal(db.conn, run_id)


def start_run(db, source, targets):
    """Record that a run began, so an interrupted run stays visible; close runs whose process died.

    A run holds an flock on `<ledger>-run-<id>.lock` from before its row is committed until
    append_run or finish_failed_run ends it, so a run is dead exactly when its lock is free, whatever
    host, container or pid namespace it ran in: two live processes can share a hostname and pid, and a
    dead run's pid can be reused. host and pid stay in the row for people. A row without a lock file
    was started before run locks existed: only the old rule (this host, its pid gone) can judge it."""
    host, pid = socket.gethostname(), os.getpid()
    path = _db_file(db)
    freed, held = [], None
    try:
        with _transaction(db.conn, "IMMEDIATE"):
            for run_id, old_host, old_pid in db.execute(
                    "SELECT id, host, pid FROM runs WHERE finished_at IS NULL "
                    "AND id NOT IN (SELECT run_id FROM run_seals)").fetchall():  # a sealed one was edited back
                try:
                    fd = os.open(_lock_path(path, run_id), os.O_RDONLY | os.O_NONBLOCK)  # a FIFO never blocks
                except FileNotFoundError:
                    if old_host == host and old_pid is not None and not _alive(old_pid):
                        _interrupted(db, run_id, old_pid)
                    continue
                if _take(fd):
                    freed.append((run_id, fd))
                    _interrupted(db, run_id, old_pid)
                else:
                    os.close(fd)
            run_id = db.execute(
                "INSERT INTO runs (started_at, status, source, targets, tool_version, host, pid) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                [now(), source, json.dumps(list(targets)), __version__, host, pid]).lastrowid
            held = os.open(_lock_path(path, run_id), os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
            if not _take(held):
                raise StoreError(f"{_lock_path(path, run_id)}: held by another process")
    except BaseException:
        for fd in [held, *(fd for _, fd in freed)]:
            if fd is not None:
                os.close(fd)
        raise
    for old_id, fd in freed:  # closed rows: their lock files go, then the locks
        _unlink(_lock_path(path, old_id))
        os.close(fd)
    _HELD[(path, run_id)] = held
    return run_id


def _alive(pid):
    """Signal 0 probes a process; only 'no such process' proves it gone (not permission denied)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _end_run(db, run_id):
    """The run is over: its lock file goes first, then the lock, so a free lock on an existing file
    always means a dead run."""
    path = _db_file(db)
    fd = _HELD.pop((path, run_id), None)
    if fd is not None:
        _unlink(_lock_path(path, run_id))
        os.close(fd)


def _row_to_finish(db, run_id):
    """The run row to finish, and a note for its error summary: the run's own row, or, when that was
    closed while the run was still going (a misjudged cleanup, an edit), a new row with the same start,
    source and targets, so that nothing the run found is lost and the ledger says what happened."""
    row = db.execute("SELECT finished_at, status, error_summary FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None or row[0] is None:
        return run_id, None
    new_id = db.execute(
        "INSERT INTO runs (started_at, status, source, targets, tool_version, host, pid) "
        "SELECT started_at, 'running', source, targets, ?, ?, ? FROM runs WHERE id = ?",
        [__version__, socket.gethostname(), os.getpid(), run_id]).lastrowid
    return new_id, f"run {run_id} continued here: its row was closed while it was still going ({row[1]}: {row[2]})"


def finish_failed_run(db, run_id, message):
    """Close a run whose results could not be appended: nothing of it enters the ledger."""
    try:
        with _transaction(db.conn, "IMMEDIATE"):
            row_id, note = _row_to_finish(db, run_id)
            db.execute("UPDATE runs SET finished_at = ?, status = 'failed', errors = 1, error_summary = ? "
                       "WHERE id = ?", [now(), "; ".join(filter(None, [message, note])), row_id])
            seals.seal(db.conn, row_id)
    finally:
        _end_run(db, run_id)
