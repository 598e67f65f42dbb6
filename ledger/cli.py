"""The `ledger` command line: thin wrappers over collector and store."""

import csv
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import threading
import time

import click

from . import __version__, reads, store
from .limits import (CONCURRENCY_RANGE, DEADLINE_RANGE, DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, DEFAULT_RETRIES,
                     MAX_TAGS, MAX_TAGS_RANGE, MIN_RPS, NOTIFY_DEADLINE, NOTIFY_DEADLINE_RANGE, NOTIFY_KINDS, NOTIFY_ON,
                     REFERRER_MODES, RETRIES_RANGE)
from .terminal import printable, short_digest, table
from .times import parse_when

# Only what --help and the reading commands need is imported here: collecting imports the network code
# (and apprise with --notify, prometheus_client with metrics), `serve` Datasette, `verify --key` and
# checkpoints cryptography, each in its own command.

EXIT_FAILED, EXIT_PARTIAL = 1, 3

db_option = click.option(
    "--db", "db_path", default="ledger.db", show_default=True, envvar="LEDGER_DB", metavar="PATH",
    type=click.Path(dir_okay=False), help="The ledger file (env LEDGER_DB).")


source_option = click.option(
    "--source", metavar="GLOB",
    help="Only keys of this source: 'registry', or a Docker daemon's 'daemon:HOSTNAME' ('daemon:*') [default: all].")


def _open(path, readonly=False):
    """The ledger at PATH: read-only for the reading commands (never created or written), else to append to.
    A reader given no file says how to make one, or where to point instead."""
    try:
        return store.open_readonly(path) if readonly else store.open_db(path)
    except store.StoreError as error:
        missing = readonly and not os.path.lexists(path)
        raise click.ClickException(str(error) + (
            " (make one with `ledger collect TARGET`, or name another with --db PATH or LEDGER_DB)" if missing
            else "")) from None


def _answer(db, rows, pattern, columns, as_json, as_csv, full, empty):
    """A read command's rows; none, for a name the ledger never held, is that name's error (after an empty
    JSON list or CSV header, so a script still reads what it expects)."""
    unheld = reads.unheld(db, pattern) if pattern and not rows else None
    if unheld is None:
        _emit(rows, columns, as_json, as_csv, full, empty=empty)
        return
    if as_json or as_csv:
        _emit(rows, columns, as_json, as_csv, full)
    raise click.ClickException(unheld)  # exit 1, as grep's when nothing matches


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ledger")
def cli():
    """An append-only, tamper-evident history of what every tag in your
    container registries pointed to, and when.

    \b
    Exit status:
      0  ok (an empty answer about a name the ledger holds included)
      1  failed: collect's run failed; a read names nothing the ledger
         ever held, or there is no ledger; verify found tampering
      2  bad usage
      3  partial: collect's run read some targets, and others failed
    """


class _Progress:
    """A progress bar on a terminal: tags resolved out of tags listed so far."""

    def __init__(self, enabled):
        self.bar = None
        if enabled:
            self.bar = click.progressbar(length=0, label="collecting", file=sys.stderr, show_pos=True,
                                         show_eta=False, width=30)
            self.bar.__enter__()

    def __call__(self, tags=0, done=0):
        if self.bar is None:
            return
        self.bar.length += tags
        self.bar.label = f"collecting ({self.bar.length} tags)"
        self.bar.update(done)

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def collect_options(command):
    """The options `collect` and `watch` share."""
    for option in reversed([
        click.argument("targets", nargs=-1),
        db_option,
        click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
                     help="A TOML file of registries with their own targets, credentials, TLS and limits."),
        click.option("--concurrency", default=DEFAULT_CONCURRENCY, show_default=True, type=click.IntRange(*CONCURRENCY_RANGE),
                     help="Requests in flight at once, per registry."),
        click.option("--rps", type=click.FloatRange(min=MIN_RPS), metavar="N",
                     help="At most N requests per second, per registry."),
        click.option("--retries", default=DEFAULT_RETRIES, show_default=True, type=click.IntRange(*RETRIES_RANGE),
                     help="Retries on connection errors, 5xx and 429, with backoff."),
        click.option("--deadline", default=DEFAULT_DEADLINE, show_default=True,
                     type=click.FloatRange(*DEADLINE_RANGE), metavar="SECONDS",
                     help="Give up on one request (connect to last byte) after this long."),
        click.option("--max-tags", default=MAX_TAGS, show_default=True, type=click.IntRange(*MAX_TAGS_RANGE),
                     metavar="N", help="Most tags listed per repository; past it the listing is incomplete and "
                                       "removes nothing."),
        click.option("--include-tags", metavar="REGEX", help="Only tags this regex matches (searched; anchor with ^ $)."),
        click.option("--exclude-tags", metavar="REGEX", help="Skip tags this regex matches."),
        click.option("--allow-empty", is_flag=True,
                     help="A glob (or a registry's catalog) that matches no repository is expected: not an error."),
        click.option("--referrers", type=click.Choice(REFERRER_MODES), default="auto", show_default=True,
                     help="Ask the OCI referrers API for each digest's signatures, attestations and SBOMs: "
                          "auto (where the registry serves it), always (an error where it does not), never "
                          "(the referrers tag schema and cosign's tags alone, which cost no request)."),
        click.option("--plain-http", is_flag=True,
                     help="Use plain HTTP for every registry (localhost and 127.0.0.0/8 always may)."),
        click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), metavar="PEM",
                     help="Trust this CA bundle for TLS."),
        click.option("--insecure", is_flag=True, help="Skip TLS certificate verification (not recommended)."),
        click.option("--username", envvar="LEDGER_USERNAME", metavar="USER",
                     help="User name for the registries named here (env LEDGER_USERNAME)."),
        click.option("--password-stdin", is_flag=True,
                     help="Read the password or token from standard input (or set LEDGER_PASSWORD)."),
        click.option("--docker-config", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Docker config to read credentials from [default: $DOCKER_CONFIG/config.json or "
                          "~/.docker/config.json]."),
        click.option("--daemon", is_flag=True,
                     help="Also record the images a local Docker daemon holds (keyed apart from the registries)."),
        click.option("--docker-host", metavar="URL",
                     help="The daemon's API with --daemon: unix:///path or tcp://HOST:PORT "
                          "[default: $DOCKER_HOST or unix:///var/run/docker.sock]."),
        click.option("--checkpoint-dir", type=click.Path(file_okay=False), metavar="DIR",
                     help="After every run, write the signed head to a new DIR/run-ID.checkpoint and link "
                          "DIR/latest.checkpoint to it, once it extends the checkpoints there: a rolled-back or "
                          "rewritten ledger is refused, exit 1, and no file is overwritten (keep DIR elsewhere: "
                          "a git repo, a bucket)."),
        click.option("--checkpoint-key", envvar="LEDGER_CHECKPOINT_KEY", type=click.Path(dir_okay=False),
                     metavar="FILE", help="The signer key for --checkpoint-dir (env LEDGER_CHECKPOINT_KEY)."),
        click.option("--notify", multiple=True, metavar="URL",
                     help="Send a message about each run that changed something or failed to this apprise URL "
                          "(json://, slack://, msteams://, discord://, matrix://, mailto://, ...; repeatable); "
                          "${VAR} in it is read from the environment when sending, and never stored or shown."),
        click.option("--notify-on", metavar="KINDS",
                     help=f"What is worth a message, comma-separated: {', '.join(NOTIFY_KINDS)} "
                          f"[default: {','.join(NOTIFY_ON)}]."),
        click.option("--notify-deadline", type=click.FloatRange(*NOTIFY_DEADLINE_RANGE), metavar="SECONDS",
                     help=f"Give up on a run's notifications after this long, every URL together "
                          f"[default: {NOTIFY_DEADLINE:g}]."),
        click.option("--metrics-file", type=click.Path(dir_okay=False), metavar="PATH",
                     help="After every run, write Prometheus metrics to PATH, atomically (name it *.prom for "
                          "node_exporter's textfile collector)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary; errors only."),
    ]):
        command = option(command)
    return command


_TARGET_HELP = """

    \b
    TARGET is one of:
      HOST[:PORT]            every repository, via the catalog
      HOST/REPO              every tag of one repository
      HOST/REPO:TAG          one tag
      'HOST/team/*'          every catalog repository matching a glob
      alpine, myorg/app:1    Docker Hub names (docker.io/library/alpine)
      'docker.io/myorg/*'    a Docker Hub namespace, via the Hub API

    With --daemon (and no TARGET, or with some) it also reads every image a
    Docker daemon holds (GET /images/json): each REPO:TAG it has is recorded
    under the source 'daemon:HOSTNAME', apart from what the registry says.

    Credentials come from the Docker config (auths, credHelpers, credsStore),
    or --username with --password-stdin / LEDGER_PASSWORD.
"""


@cli.command(name="collect")
@collect_options
def collect_command(**flags):
    """Record what every tag of TARGETS points to now: one run."""
    signal.signal(signal.SIGTERM, _interrupt)
    planned = _Planner(flags)
    try:
        status = _run(planned.next(), planned.quiet, planned.metrics)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: the run is recorded as failed and nothing else was appended") from None
    if status == "failed":
        sys.exit(EXIT_FAILED)
    if status == "partial":
        sys.exit(EXIT_PARTIAL)


collect_command.help += _TARGET_HELP + """
    Exits 0 when the run is ok, 3 when it is partial (some targets failed;
    nothing false was recorded), 1 when it failed (no target gave anything),
    2 on bad usage. A repository that does not exist (and the ledger never
    held) and a glob that matches nothing (unless --allow-empty) are failed
    targets.
"""


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class _BadUsage(click.ClickException):
    """Bad usage that is not about one option's syntax (a config file, a pattern): one line, exit 2."""

    exit_code = 2


class _Planner:
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
        """The plan of the next run."""
        if self.first is not None:
            made, self.first = self.first, None
            return made
        return self._plan()

    def _plan(self):
        from .settings import FlagsConflict, SettingsError, plan
        try:
            return plan(self.flags, self._password, self.anchor)
        except FlagsConflict as error:
            raise click.UsageError(str(error)) from None
        except SettingsError as error:
            raise (_BadUsage if error.usage else click.ClickException)(str(error)) from None

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


def _run(plan, quiet, metrics=None):
    """One run, appended in one transaction, then its problems and summary, and its metrics; returns its
    status."""
    from .run import RunFailed, run_once
    progress = _Progress(not quiet and sys.stderr.isatty() and bool(plan.targets))
    started, failed = time.monotonic(), None
    try:
        outcome = run_once(plan, progress)
    except RunFailed as error:
        outcome, failed = None, error
    finally:
        progress.close()
    unwritten = metrics.observe(plan.db_path, time.monotonic() - started, outcome) if metrics else None
    if failed:
        for problem in failed.warnings:
            click.echo(f"warning: {printable(str(problem))}", err=True)
        raise click.ClickException("; ".join(filter(None, [str(failed), unwritten])))
    result = outcome.result
    for error in result.errors[:20]:
        click.echo(f"{'warning' if error.warning else 'error'}: {printable(str(error))}", err=True)
    if len(result.errors) > 20:
        click.echo(f"error: ... and {len(result.errors) - 20} more (see the errors table, run {outcome.run_id})",
                   err=True)
    if not quiet:
        _summary(outcome.run_id, result, outcome.counts, outcome.elapsed)
    if outcome.unanchored or unwritten:
        raise click.ClickException("; ".join(filter(None, [outcome.unanchored, unwritten])))
    return result.status


def _summary(run_id, result, counts, elapsed):
    requests = ", ".join(f"{kind} {n}" for kind, n in sorted(result.requests.items()))
    click.echo(f"run {run_id}: {result.status} in {elapsed:.2f}s")
    for label, value in [("repos listed", counts["repos_listed"]), ("tags seen", counts["tags_seen"]),
                         ("added", counts["added"]), ("moved", counts["moved"]), ("updated", counts["updated"]),
                         ("removed", counts["removed"]), ("new images", counts["new_images"]),
                         ("errors", counts["errors"])]:
        click.echo(f"  {label:<13}{value:>7}")
    click.echo(f"  {'requests':<13}{sum(result.requests.values()):>7}" + (f"  ({requests})" if requests else ""))
    for registry, limit in sorted(result.rate_limits.items()):
        click.echo(f"  {'rate limit':<13}{limit['remaining']:>7}  left of {limit['limit']} at {registry}")


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--expect", multiple=True, metavar="PIN",
              help="A checkpoint file, a directory of them, or EVENT_ID:HASH the ledger must still contain "
                   "and extend (repeatable).")
@click.option("--key", "public_key", metavar="PUBLIC",
              help="The verifier key (file or text) that must have signed the --expect checkpoints (needed with "
                   "checkpoint files).")
def verify(db_path, as_json, expect, public_key):
    """Recompute the hash chain and every seal; print the head to pin elsewhere.

    Exits 1 naming the first bad row when an event or any other record was
    edited, deleted or inserted, when the schema was changed, or when a pin
    given with --expect no longer holds (history before it was rewritten, or
    the ledger was cut shorter than it).
    """
    from . import pinning
    pins = _pins(expect, public_key)
    db = _open(db_path, readonly=True)
    try:
        report = pinning.verify(db, pins)
    except store.StoreError as error:
        raise click.ClickException(f"{db_path}: {error}") from None
    _print_verification(db_path, report, pins, as_json)
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _print_verification(db_path, report, pins, as_json):
    if as_json:
        shown = {"ok": report.ok, "events": report.events, "head_event_id": report.head_id,
                 "head_hash": report.head_hash, "problems": report.problems}
        click.echo(json.dumps({**shown, "pins": len(pins)} if pins else shown))
    elif report.ok:
        head = f"event {report.head_id} {report.head_hash}" if report.head_id else "empty ledger"
        held = f"; {len(pins)} pin{'s' * (len(pins) != 1)} hold" if pins else ""
        click.echo(f"{db_path}: ok, {report.events} events; head {head}{held}")
        if report.without_bytes:
            click.echo(f"{db_path}: {report.without_bytes} manifests from before schema 6 have no bytes yet; their "
                       "seal covers them, and the next run that meets their digest fills them in", err=True)
    else:
        click.echo(f"{db_path}: TAMPERED: {printable(report.problems[0])}", err=True)


def _verifier(key):
    """The verifier key from a file or its text; a signer key file gives its own verifier."""
    from . import checkpoint
    try:
        return checkpoint.load_verifier(key)
    except checkpoint.CheckpointError:
        if not os.path.isfile(key):
            raise
        try:
            return checkpoint.load_signer(key).verifier
        except checkpoint.CheckpointError:
            pass
        raise


def _pins(expect, public_key, option="--expect"):
    """The pins to check; a checkpoint file counts only with --key, as anyone can write one."""
    from . import checkpoint, pinning
    unsigned = next((text for text in expect if not pinning.is_event_pin(text)), None)
    if unsigned is not None and not public_key:
        raise click.UsageError(f"{option} {printable(unsigned)}: a checkpoint needs --key PUBLIC, the verifier key "
                               "that must have signed it (anyone can write an unsigned one); EVENT_ID:HASH needs none")
    try:
        verifier = _verifier(public_key) if public_key else None
        return pinning.read_pins(expect, verifier)
    except (checkpoint.CheckpointError, pinning.PinError) as error:  # a pin that cannot be trusted fails verify
        raise click.ClickException(f"{option}: {error}") from None


@cli.command(name="checkpoint")
@db_option
@click.option("--key", "key_path", envvar="LEDGER_CHECKPOINT_KEY", type=click.Path(dir_okay=False), metavar="FILE",
              help="The Ed25519 signer key to sign with (env LEDGER_CHECKPOINT_KEY).")
@click.option("--new-key", "new_key", type=click.Path(dir_okay=False), metavar="FILE",
              help="Make a signer key in FILE (mode 0600) and its verifier key in FILE.pub, print the verifier.")
@click.option("--name", default=lambda: f"registry-ledger/{socket.gethostname()}", show_default="registry-ledger/HOST",
              help="With --new-key: the key's name, which is the checkpoints' origin (no spaces or '+').")
def checkpoint_command(db_path, key_path, new_key, name):
    """Print the ledger's head as a signed checkpoint (the signed-note format of
    Go's checksum database and CT witnesses): keep it elsewhere, and
    `ledger verify --expect FILE --key FILE.pub` proves the ledger still holds it.

    The ledger is verified first, as `ledger verify` does: one that fails
    is not signed (exit 1)."""
    from . import checkpoint, pinning
    try:
        if new_key:
            click.echo(checkpoint.write_new_key(new_key, name).text())
            return
        if not key_path:
            raise click.UsageError("give --key FILE to sign with, or --new-key FILE to make one")
        signer = checkpoint.load_signer(key_path)
    except checkpoint.CheckpointError as error:
        raise click.ClickException(str(error)) from None
    try:
        signed = pinning.signed_head(_open(db_path, readonly=True), signer)
    except (pinning.PinError, store.StoreError) as error:
        raise click.ClickException(f"{db_path}: {printable(str(error))}") from None
    click.echo(signed, nl=False)


@cli.command()
@click.argument("event_id", type=click.IntRange(1), required=False)
@click.option("--consistency", nargs=2, metavar="OLD NEW",
              help="Prove the tree of OLD extends to NEW instead: checkpoint files or event counts.")
@click.option("--size", type=click.IntRange(1),
              help="Prove inclusion in the tree of the first SIZE events [default: all].")
@click.option("--key", "public_key", metavar="PUBLIC",
              help="The verifier key the checkpoint files must be signed by (needed with checkpoint files).")
@db_option
def prove(event_id, consistency, size, public_key, db_path):
    """Print an RFC 9162 Merkle proof as JSON: that EVENT_ID is in the ledger's
    tree, or with --consistency that an older tree is a prefix of a newer
    one. ledger.merkle.verify_inclusion / verify_consistency check them
    without the ledger."""
    if (event_id is None) == (consistency is None):
        raise click.UsageError("give an EVENT_ID, or --consistency OLD NEW")
    from . import pinning
    db = _open(db_path, readonly=True)
    try:
        if consistency:
            old, new = (_tree(value, public_key) for value in consistency)
            click.echo(json.dumps(pinning.consistency(db, old, new), indent=2))
        else:
            click.echo(json.dumps(pinning.inclusion(db, event_id, size), indent=2))
    except pinning.PinError as error:
        raise click.ClickException(str(error)) from None


def _tree(value, public_key):
    """A tree given as a size, or by a checkpoint file: then (size, the root it pins), which the ledger's
    tree of that size must still have."""
    if value.isascii() and value.isdigit():
        return int(value), None
    pin = _pins([value], public_key, "--consistency")[0]
    return pin.size, pin.root


_SHORT = ("digest", "image", "prev_digest", "subject")
_FLAGS = ("signed", "attested", "sbom")  # 0/1 in JSON and CSV; yes/- for people


def output_options(command):
    """--json and --csv for scripts; aligned columns otherwise."""
    command = click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")(command)
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)
    return click.option("--full", is_flag=True, help="Full digests in the table (JSON and CSV always have them).")(
        command)


def _emit(rows, columns, as_json=False, as_csv=False, full=False, empty="nothing"):
    """Rows as aligned columns for people, or JSON / CSV for scripts; the source column when any row
    is not the registry's own."""
    if any(row.get("source", store.REGISTRY) != store.REGISTRY for row in rows):
        columns = [*columns, "source"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif rows:
        def cell(column, value):
            if column in _SHORT and value and not full:
                return short_digest(str(value))
            if column in _FLAGS and value is not None:
                return "yes" if value else "-"
            return printable(value) if isinstance(value, str) else value
        click.echo(table([[cell(c, row[c]) for c in columns] for row in rows], columns))
    else:
        click.echo(empty, err=True)


def _when(text, db=None):
    """TIME as people type it, or a run id (`42` or `run:42`: the moment that run finished)."""
    run = re.fullmatch(r"(?:run:)?(\d+)", text.strip())
    if run and db is not None and len(run.group(1)) < 8:
        found = db.execute("SELECT finished_at FROM runs WHERE id = ?", [int(run.group(1))]).fetchone()
        if not found or not found[0]:
            raise click.BadParameter(f"run {run.group(1)} is not a finished run", param_hint="TIME")
        return found[0]
    try:
        return parse_when(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="TIME") from None


@cli.command()
@click.argument("pattern", required=False)
@db_option
@source_option
@click.option("--unsigned", is_flag=True, help="Only tags whose digest has no signature now.")
@output_options
def tags(pattern, db_path, source, unsigned, as_json, as_csv, full):
    """What every image tag points to now, and whether it is signed, attested, with an SBOM; PATTERN globs
    `registry/repo` or `registry/repo:tag`. Signature, attestation, SBOM and referrer tags are not listed:
    see `ledger history` and the current_referrers view. Exits 1 when PATTERN names nothing the ledger ever held."""
    db = _open(db_path, readonly=True)
    rows = reads.current_tags(db, pattern, source, unsigned)
    _answer(db, rows, pattern,
            ["registry", "repo", "tag", "digest", "kind", "created", "last_changed", "signed", "attested", "sbom"],
            as_json, as_csv, full, empty="no tags")


@cli.command()
@click.argument("reference")
@db_option
@source_option
@output_options
def history(reference, db_path, source, as_json, as_csv, full):
    """Every event of one tag (REGISTRY/REPO:TAG), oldest first, with its signatures', attestations' and
    SBOMs' comings and goings (WHAT) for every digest it pointed to. Exits 1 when the ledger never held the tag."""
    db = _open(db_path, readonly=True)
    try:
        rows = reads.history(db, reference, source)
    except ValueError as error:  # references.TargetError is one
        raise click.BadParameter(str(error), param_hint="REFERENCE") from None
    _answer(db, rows, reference,
            ["event_id", "observed_at", "kind", "what", "prev_digest", "digest", "subject", "created", "run_id"],
            as_json, as_csv, full, empty=f"no events for {reference}")


@cli.command()
@click.argument("time")
@click.argument("pattern", required=False)
@db_option
@source_option
@output_options
def at(time, pattern, db_path, source, as_json, as_csv, full):
    """What every tag pointed to at TIME: '2026-11-20T14:00:00Z', '2 days ago', a date, or a run id. Exits 1
    when PATTERN names nothing the ledger ever held."""
    db = _open(db_path, readonly=True)
    rows = reads.state_at(db, _when(time, db), pattern, source)
    _answer(db, rows, pattern, ["registry", "repo", "tag", "digest", "image", "since", "run_id"], as_json, as_csv,
            full, empty="no tags at that time")


@cli.command()
@click.option("--since", required=True, metavar="TIME", help="Changes after TIME ('1 day ago', a date, a run id).")
@click.option("--until", metavar="TIME", help="Up to TIME [default: now].")
@click.argument("pattern", required=False)
@db_option
@source_option
@output_options
def changes(since, until, pattern, db_path, source, as_json, as_csv, full):
    """Tags added, moved, updated and removed in a window; CHANGE tells a move back to an earlier digest
    (rollback, with when the tag first pointed there: SEEN_BEFORE) and one that only added platforms to an
    index (platforms_added) from other moves. Exits 1 when PATTERN names nothing the ledger ever held."""
    db = _open(db_path, readonly=True)
    rows = reads.changes(db, _when(since, db), _when(until, db) if until else None, pattern, source)
    _answer(db, rows, pattern, ["observed_at", "kind", "change", "registry", "repo", "tag", "prev_digest", "digest",
                                "seen_before", "run_id"],
            as_json, as_csv, full, empty="no changes")


@cli.command()
@db_option
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1), help="How many runs, newest first.")
@click.option("--errors", "with_errors", is_flag=True, help="Also list each run's errors.")
@output_options
def runs(db_path, limit, with_errors, as_json, as_csv, full):
    """The latest runs: status, counts, and what failed.

    A run still 'running' whose lock is free (its process is gone) is closed
    as failed ("interrupted") by the next collect, from any host.
    """
    rows = reads.runs(_open(db_path, readonly=True), limit, problems=with_errors or as_json)
    columns = ["id", "started_at", "status", "targets", "tags_seen", "added", "moved", "updated", "removed",
               "new_images", "errors"]
    if as_json or as_csv or full or not rows:  # --full: the finish time and the whole summary, in the table
        _emit(rows, columns + ["finished_at", "error_summary"], as_json, as_csv, empty=f"{db_path}: no runs yet")
    else:
        _emit(rows, columns)
    if not (as_json or as_csv):
        for line in reads.run_problems(rows, summaries=not (with_errors or full)):
            click.echo(printable(line))


def parse_interval(text):
    """`90`, `30s`, `15m`, `1h`, `1d` -> seconds, or bad usage."""
    from .times import parse_interval as seconds
    try:
        return seconds(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@cli.command()
@collect_options
@click.option("--every", default="15m", show_default=True, metavar="INTERVAL",
              help="Time between runs: 30s, 15m, 1h.")
@click.option("--jitter", default=0.1, show_default=True, type=click.FloatRange(0, 0.5),
              help="Vary each wait by up to this share of the interval, so many watchers spread out.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), metavar="N",
              help="Serve Prometheus metrics at http://127.0.0.1:N/metrics for the watcher's life (loopback only).")
def watch(every, jitter, metrics_port, **flags):
    """Collect TARGETS on a schedule, forever.

    A failed run is recorded and the next one goes ahead. SIGINT or SIGTERM
    lets the current run finish and exits 0; a second signal abandons the
    run (recorded as interrupted) and exits 0.
    """
    interval = parse_interval(every)
    planned = _Planner(flags, metrics_port)
    try:
        _Watcher(planned).loop(interval, jitter)
    finally:
        if planned.metrics:
            planned.metrics.close()
    click.echo("watch: stopped", err=True)


class _Watcher:
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
                _run(self.planned.next(), self.planned.quiet, self.planned.metrics)
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


watch.help += _TARGET_HELP


@cli.command()
@click.argument("db_paths", nargs=-1, metavar="[DB]...", type=click.Path(dir_okay=False))
@click.option("--db", "db_options", multiple=True, metavar="PATH", type=click.Path(dir_okay=False),
              help="A ledger file to serve, as DB (repeatable) [default: LEDGER_DB or ledger.db when no DB is given].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default keeps it on this machine.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--sql/--no-sql", default=None,
              help="Allow arbitrary SQL; canned queries run either way [default: on for a loopback --host, "
                   "off otherwise].")
def serve(db_paths, db_options, host, port, sql):
    """Browse ledgers in Datasette, read-only, each with its metadata and canned queries, and with two or
    more, queries across them all."""
    from . import serving  # Datasette loads for this command only

    try:
        serving.serve([*db_options, *db_paths] or [os.environ.get("LEDGER_DB") or "ledger.db"], host, port, sql)
    except store.StoreError as error:
        raise click.ClickException(str(error)) from None
