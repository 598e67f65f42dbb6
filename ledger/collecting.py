"""`collect` and `watch` as the command line runs them: each run's plan made from the same flags
(`Planner`), one run told on the terminal (`report`), and the watcher's loop and its signals (`Watcher`).

The run itself, and every hook after its append (notifications, the checkpoint, the metrics), is
run.py's. Errors here are click's, so a bad flag or config file is one line and the CLI's exit status.
"""

import os
import random
import signal
import sys
import threading

import click

from . import output
from .progress import Progress, Trace, observer
from .terminal import printable


def collect(flags, dry_run=False):
    """One run of `collect` (or, with `dry_run`, its plan printed); returns the run's status."""
    signal.signal(signal.SIGTERM, _interrupt)
    planned = Planner(flags)
    if dry_run:
        from .settings import describe
        click.echo("\n".join(describe(planned.next())))
        return None
    try:
        return report(planned.next(), planned.quiet, verbose=planned.flags.verbose)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: the run is recorded as failed and nothing else was appended") from None


def watch(flags, interval, jitter, metrics_port=None):
    """Runs every `interval` seconds (varied by `jitter`) until a signal."""
    planned = Planner(flags, metrics_port)
    try:
        Watcher(planned).loop(interval, jitter)
    finally:
        if planned.metrics:
            planned.metrics.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class BadUsage(click.ClickException):
    """Bad usage that is not about one option's syntax (a config file, a pattern): one line, exit 2."""

    exit_code = 2


class Planner:
    """Each run's plan from the same flags: credentials are resolved anew for every run (a watcher lives
    for weeks; passwords and helper tokens rotate), the password given on the command line read once."""

    def __init__(self, flags, metrics_port=None):
        from .settings import Flags
        self.flags = Flags(**flags)
        self.quiet = self.flags.quiet
        self.anchor = _anchor(self.flags.checkpoint_dir, self.flags.checkpoint_key)
        self.password, self.read = None, False
        self.first = self._plan()  # made now, so bad flags fail before any run
        for registry, options in self.first.options.items():
            if options.insecure:
                click.echo(f"warning: TLS certificates are not verified for {registry}", err=True)
        self.metrics = _metrics(self.flags.metrics_file, metrics_port)

    def next(self):
        """The plan of the next run, with the process's metrics (one for the watcher's life)."""
        if self.first is not None:
            made, self.first = self.first, None
        else:
            made = self._plan()
        made.metrics = self.metrics
        return made

    def _plan(self):
        from .settings import FlagsConflict, SettingsError, plan
        try:
            return plan(self.flags, self._password, self.anchor)
        except FlagsConflict as error:
            raise click.UsageError(str(error)) from None
        except SettingsError as error:
            raise (BadUsage if error.usage else click.ClickException)(str(error)) from None

    def _password(self, registries):
        if not self.read:
            self.password, self.read = _password(self.flags.password_stdin, registries), True
        return self.password


def _metrics(path, port):
    """The process's metrics with --metrics-file or --metrics-port (its server listening already)."""
    if not path and port is None:
        return None
    from .metrics import Metrics, MetricsError
    try:
        return Metrics(path, port)
    except MetricsError as error:
        raise click.ClickException(str(error)) from None


def _anchor(checkpoint_dir, checkpoint_key):
    """(directory, signer) for --checkpoint-dir, checked before any run."""
    if not checkpoint_dir:
        return None
    if not checkpoint_key:
        raise click.UsageError("--checkpoint-dir needs --checkpoint-key FILE "
                               "(make one: ledger checkpoint --new-key FILE)")
    from . import checkpoint
    try:
        return checkpoint_dir, checkpoint.load_signer(checkpoint_key)
    except checkpoint.CheckpointError as error:
        raise click.BadParameter(str(error), param_hint="--checkpoint-key") from None


def _password(password_stdin, registries):
    """The command line's password, which belongs to exactly one registry: never spread over several."""
    password = None
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif os.environ.get("LEDGER_PASSWORD"):
        password = os.environ["LEDGER_PASSWORD"]
    if password is not None and len(registries) != 1:
        named = f"{len(registries)} registries ({', '.join(registries)})" if registries else "no registry"
        raise click.UsageError(
            f"--username/--password-stdin (or LEDGER_PASSWORD) give credentials for one registry, and the targets "
            f"name {named}: give each registry its own credentials in a --config file, or use the Docker config "
            "(docker login)")
    return password


def report(plan, quiet, watching=False, verbose=False):
    """One run (run.run_once: appended in one transaction, then its hooks), then its problems and summary;
    returns its status. A watcher's run that changed nothing is one line, starting with the time, as its
    summary is."""
    from .run import RunFailed, run_once
    progress = Progress(not quiet and not verbose and sys.stderr.isatty() and bool(plan.targets))
    plan.observe = observer(progress, Trace() if verbose else None) if progress.enabled or verbose else None
    failed = None
    try:
        outcome = run_once(plan, progress)
    except RunFailed as error:
        outcome, failed = None, error
    finally:
        progress.close()
    if failed:
        for problem in failed.warnings:
            click.echo(f"warning: {printable(str(problem))}", err=True)
        raise click.ClickException("; ".join(filter(None, [str(failed), failed.unwritten])))
    result = outcome.result
    for error in result.errors[:20]:
        click.echo(f"{'warning' if error.warning else 'error'}: {printable(str(error))}", err=True)
    if len(result.errors) > 20:
        click.echo(f"error: ... and {len(result.errors) - 20} more (see the errors table, run {outcome.run_id})",
                   err=True)
    if not quiet and watching and result.status == "ok" and not any(outcome.counts[kind] for kind in output.CHANGES):
        click.echo(f"{output.stamp()} run {outcome.run_id}: ok, no changes ({outcome.counts['tags_seen']} tags seen, "
                   f"{sum(result.requests.values())} requests in {outcome.elapsed:.2f}s)")
    elif not quiet:
        prefix = f"{output.stamp()} " if watching else ""
        output.summary(outcome.run_id, result, outcome.counts, outcome.elapsed, prefix)
    if outcome.unanchored or outcome.unwritten:
        raise click.ClickException("; ".join(filter(None, [outcome.unanchored, outcome.unwritten])))
    return result.status


class Watcher:
    """Runs until a signal: the first lets the current run finish, a second abandons it."""

    def __init__(self, planned):
        self.planned = planned
        self.stop = threading.Event()
        self.running = threading.Event()
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)

    def on_signal(self, signum, frame):
        if self.stop.is_set() and self.running.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        if self.running.is_set():
            click.echo("watch: finishing the current run, then stopping (signal again to abandon it)", err=True)

    def loop(self, interval, jitter):
        while not self.stop.is_set():
            self.running.set()
            try:
                report(self.planned.next(), self.planned.quiet, watching=True, verbose=self.planned.flags.verbose)
            except KeyboardInterrupt:
                click.echo("watch: run abandoned", err=True)
                return
            except click.ClickException as error:
                click.echo(f"error: {error.format_message()}", err=True)
            except Exception as error:  # a watcher outlives any one run
                click.echo(f"error: watch: the run failed ({error.__class__.__name__}: "
                           f"{printable(str(error)[:200])}); the next one goes ahead", err=True)
            finally:
                self.running.clear()
            self.stop.wait(interval * (1 + random.uniform(-jitter, jitter)))
