"""The `ledger` command line: each command parses its options, calls one function, and prints.

The options `collect` and `watch` share are declared in options.py (with the config file's keys); their
runs are wired in collecting.py (plan, progress, summary, the watch loop) over run.py (one run and its
hooks). The reads are reads.py's SQL printed by output.py; verify, checkpoint, tiles, prove and witness
load their keys and pins through trust.py.
"""

import json
import os
import socket
import sys

import click

from . import __version__, output, reads, store
from .options import click_options, db_option, output_options, source_option
from .params import DirectoryPath, FilePath, Float, Int, TreeSize
from .terminal import printable

# Only what --help and the reading commands need is imported here: collecting imports the network code
# (and apprise with --notify, prometheus_client with metrics), `serve` Datasette, `verify --key` and
# checkpoints cryptography, each in its own command.

EXIT_FAILED, EXIT_PARTIAL = 1, 3
_EXITS = {"failed": EXIT_FAILED, "partial": EXIT_PARTIAL}  # a run's status; ok is 0

def _open(path):
    """The ledger at PATH, read-only (never created or written). A reader given no file says how to make
    one, or where to point instead."""
    try:
        return store.open_readonly(path)
    except store.StoreError as error:
        missing = not os.path.lexists(path)
        raise click.ClickException(str(error) + (
            " (make one with `ledger collect TARGET`, or name another with --db PATH or LEDGER_DB)" if missing
            else "")) from None


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


def collect_options(command):
    """The options `collect` and `watch` share: TARGETS, --db, and options.COLLECT."""
    for option in reversed([click.argument("targets", nargs=-1), db_option, *click_options()]):
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
@click.option("--dry-run", is_flag=True,
              help="Check the flags and the config file and print the plan (registries, how each is reached, "
                   "whose credentials, targets, filters); send no request and write nothing.")
def collect_command(dry_run, **flags):
    """Record what every tag of TARGETS points to now: one run."""
    from . import collecting  # the network code loads for collect and watch only
    status = collecting.collect(flags, dry_run)
    if status in _EXITS:
        sys.exit(_EXITS[status])

collect_command.help += _TARGET_HELP + """
    Exits 0 when the run is ok, 3 when it is partial (some targets failed;
    nothing false was recorded), 1 when it failed (no target gave anything),
    2 on bad usage. A repository that does not exist (and the ledger never
    held) and a glob that matches nothing (unless --allow-empty) are failed
    targets.
"""


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--expect", multiple=True, metavar="PIN",
              help="A checkpoint file, a directory of them, or EVENT_ID:HASH the ledger must still contain "
                   "and extend (repeatable).")
@click.option("--key", "public_key", metavar="PUBLIC",
              help="The verifier key (file or text) that must have signed the --expect checkpoints (needed with "
                   "checkpoint files).")
@click.option("--witness", "witness_keys", multiple=True, metavar="KEY",
              help="A witness's cosignature/v1 key (file or text): the --expect checkpoints must carry its "
                   "cosignature (repeatable).")
@click.option("--witness-threshold", type=Int(1), metavar="N",
              help="How many of the --witness keys must have cosigned each checkpoint [default: all of them].")
def verify(db_path, as_json, expect, public_key, witness_keys, witness_threshold):
    """Recompute the hash chain and every seal; print the head to pin elsewhere.

    Exits 1 naming the first bad row when an event or any other record was
    edited, deleted or inserted, when the schema was changed, or when a pin
    given with --expect no longer holds (history before it was rewritten, or
    the ledger was cut shorter than it).
    """
    from . import pinning, trust
    pins = trust.pins(expect, public_key, witnesses=trust.witnesses(expect, witness_keys, witness_threshold))
    db = _open(db_path)
    try:
        report = pinning.verify(db, pins)
    except store.StoreError as error:
        raise click.ClickException(f"{db_path}: {error}") from None
    output.print_verification(db_path, report, pins, as_json)
    if not report.ok:
        sys.exit(EXIT_FAILED)

@cli.command(name="checkpoint")
@db_option
@click.option("--key", "key_path", envvar="LEDGER_CHECKPOINT_KEY", type=FilePath(), metavar="FILE",
              help="The Ed25519 signer key to sign with (env LEDGER_CHECKPOINT_KEY).")
@click.option("--new-key", "new_key", type=FilePath(), metavar="FILE",
              help="Make a signer key in FILE (mode 0600) and its verifier key in FILE.pub, print the verifier.")
@click.option("--name", default=lambda: f"registry-ledger/{socket.gethostname()}", show_default="registry-ledger/HOST",
              help="With --new-key: the key's name, which is the checkpoints' origin (no spaces or '+').")
@click.option("--origin", metavar="TEXT",
              help="The checkpoint's origin line [default: the key's name]; tlog-tiles suggests the URL prefix its "
                   "tiles are published at, without https://.")
@click.option("--witness", "witness_urls", multiple=True, metavar="URL",
              help="Ask the c2sp.org/tlog-witness at URL (its submission prefix) to cosign, and print the "
                   "checkpoint with its cosignature (repeatable); needs --witness-key.")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="KEY",
              help="A witness's cosignature/v1 key (file or text): its cosignatures are kept, others dropped "
                   "(repeatable).")
def checkpoint_command(db_path, key_path, new_key, name, origin, witness_urls, witness_keys):
    """Print the ledger's head as a signed checkpoint (the signed-note format of
    Go's checksum database and CT witnesses): keep it elsewhere, and
    `ledger verify --expect FILE --key FILE.pub` proves the ledger still holds it.

    The ledger is verified first, as `ledger verify` does: one that fails
    is not signed (exit 1)."""
    from . import trust
    key = trust.signer(key_path, new_key, name)
    if key is None:
        return
    if bool(witness_urls) != bool(witness_keys):
        raise click.UsageError("--witness URL and --witness-key KEY go together")
    click.echo(trust.signed_head(_open(db_path), db_path, key, origin, witness_urls, witness_keys),
               nl=False)

@cli.command(name="witness")
@click.option("--state", "state_path", default="witness.db", show_default=True, type=FilePath(),
              metavar="FILE", help="The witness's own SQLite file: the last tree it cosigned of each log.")
@click.option("--key", "key_path", envvar="LEDGER_WITNESS_KEY", type=FilePath(), metavar="FILE",
              help="The witness's cosignature/v1 signer key (env LEDGER_WITNESS_KEY).")
@click.option("--new-key", "new_key", type=FilePath(), metavar="FILE",
              help="Make a witness key in FILE (mode 0600) and its public key in FILE.pub, print the public key.")
@click.option("--name", default=lambda: f"witness/{socket.gethostname()}", show_default="witness/HOST",
              help="With --new-key: the witness's name (no spaces or '+').")
@click.option("--log", "logs", multiple=True, metavar="[ORIGIN ]PUBLIC",
              help="A log to witness: its verifier key (file or text), and its origin first if that is not the "
                   "key's name (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8002, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def witness_command(state_path, key_path, new_key, name, logs, host, port):
    """Run a c2sp.org/tlog-witness: POST /add-checkpoint cosigns a log's
    checkpoint once it is signed by the log's key and proved consistent with
    the last one this witness cosigned (409 for another old size, 422 for a
    bad proof), so a second team can vouch for the ledger without trusting it."""
    from . import trust
    trust.serve_witness(state_path, key_path, new_key, name, logs, host, port)

@cli.command(name="tiles")
@click.argument("directory", type=DirectoryPath())
@db_option
@click.option("--key", "key_path", envvar="LEDGER_CHECKPOINT_KEY", metavar="FILE",
              help="The signer key to sign the head with (env LEDGER_CHECKPOINT_KEY); with --checkpoint, the "
                   "verifier key (file or text) that must have signed it.")
@click.option("--checkpoint", "checkpoint_path", type=FilePath(), metavar="FILE",
              help="Publish this signed (and maybe cosigned) checkpoint, from `ledger checkpoint`, instead of "
                   "signing the head.")
@click.option("--origin", metavar="TEXT",
              help="The checkpoint's origin line [default: the key's name]; tlog-tiles suggests the URL prefix the "
                   "directory is published at, without https://.")
def tiles_command(directory, db_path, key_path, checkpoint_path, origin):
    """Write the ledger's Merkle tree to DIRECTORY as c2sp.org/tlog-tiles static
    files: DIRECTORY/checkpoint, DIRECTORY/tile/<L>/<N>[.p/<W>] and
    DIRECTORY/tile/entries/<N>[.p/<W>], for any web server or bucket to publish.

    Only tiles the directory lacks are written; those it has must hold the
    same bytes, and a published checkpoint the ledger no longer extends is
    refused (exit 1): nothing is ever overwritten but DIRECTORY/checkpoint."""
    from . import checkpoint, pinning, tiles, trust
    signer, verifier = trust.tile_keys(key_path, checkpoint_path)
    db = _open(db_path)
    try:
        done = tiles.publish(db, directory, signer, verifier, checkpoint_path, origin)
    except (tiles.TileError, pinning.PinError, checkpoint.CheckpointError, store.StoreError) as error:
        raise click.ClickException(f"{db_path}: {printable(str(error))}") from None
    click.echo(f"{directory}: tree of {done.size} events; {done.written} tiles written, {done.kept} already there")

@cli.command()
@click.argument("event_id", type=Int(1), required=False)
@click.option("--consistency", nargs=2, type=TreeSize(), metavar="OLD NEW",
              help="Prove the tree of OLD extends to NEW instead: checkpoint files or event counts.")
@click.option("--size", type=Int(1),
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
    from . import pinning, trust
    db = _open(db_path)
    try:
        if consistency:
            old, new = (trust.tree(value, public_key) for value in consistency)
            click.echo(json.dumps(pinning.consistency(db, old, new), indent=2))
        else:
            click.echo(json.dumps(pinning.inclusion(db, event_id, size), indent=2))
    except pinning.PinError as error:
        raise click.ClickException(str(error)) from None


def _asked(hint, read, *args):
    """What `read` answers, or bad usage naming HINT when it says the question cannot be asked (a ValueError:
    a TIME that is not one, a REFERENCE that names no tag, a shortened DIGEST)."""
    try:
        return read(*args)
    except ValueError as error:  # references.TargetError is one
        raise click.BadParameter(str(error), param_hint=hint) from None


TAGS_COLUMNS = ["registry", "repo", "tag", "digest", "kind", "image", "created", "first_seen", "last_changed",
                "signed", "has_signature", "attested", "sbom", "source"]


@cli.command()
@click.argument("pattern", required=False)
@db_option
@source_option
@click.option("--unsigned", is_flag=True,
              help="Only tags whose digest has no signature that verified against a --signature-key.")
@output_options
def tags(pattern, db_path, source, unsigned, as_json, as_csv, full):
    """What every image tag points to now, and whether it is signed, attested, with an SBOM; PATTERN globs
    `registry/repo` or `registry/repo:tag`. `signed`: a signature that verified against a key given to
    collect with --signature-key; `has_signature`: a signature artifact is there, verified or not.
    Signature, attestation, SBOM and referrer tags are not listed: see `ledger history` and the
    current_referrers view. Exits 1 when PATTERN names nothing the ledger ever held."""
    db = _open(db_path)
    rows = reads.current_tags(db, pattern, source, unsigned)
    output.answer(db, rows, pattern, TAGS_COLUMNS, as_json, as_csv, full, empty="no tags", brief=[
        "registry", "repo", "tag", "digest", "kind", "created", "last_changed", "signed", "has_signature", "attested",
        "sbom"])


@cli.command()
@click.argument("reference")
@db_option
@source_option
@output_options
def history(reference, db_path, source, as_json, as_csv, full):
    """Every event of one tag (REGISTRY/REPO:TAG), oldest first, with its signatures', attestations' and
    SBOMs' comings and goings (WHAT) for every digest it pointed to. Exits 1 when the ledger never held the tag."""
    db = _open(db_path)
    rows = _asked("REFERENCE", reads.history, db, reference, source)
    output.answer(db, rows, reference, ["event_id", "observed_at", "kind", "what", "prev_digest", "digest", "subject",
                                  "created", "run_id", "source"], as_json, as_csv, full,
            empty=f"no events for {reference}")


@cli.command()
@click.argument("time")
@click.argument("pattern", required=False)
@db_option
@source_option
@output_options
def at(time, pattern, db_path, source, as_json, as_csv, full):
    """What every tag pointed to at TIME: '2026-11-20T14:00:00Z', '2 days ago', a run id, or a date (its start,
    00:00 UTC). Exits 1 when PATTERN names nothing the ledger ever held."""
    db = _open(db_path)
    rows = reads.state_at(db, _asked("TIME", reads.moment, db, time), pattern, source)
    output.answer(db, rows, pattern, reads.AT_COLUMNS, as_json, as_csv, full, empty="no tags at that time",
                  brief=[column for column in reads.AT_COLUMNS if column not in ("created", "source")])


@cli.command()
@click.option("--since", required=True, metavar="TIME",
              help="Changes from TIME on: '1 day ago', a run id, or a date (from 00:00 UTC that day on).")
@click.option("--until", metavar="TIME", help="Up to TIME; a date includes that whole day (UTC) [default: now].")
@click.argument("pattern", required=False)
@db_option
@source_option
@output_options
def changes(since, until, pattern, db_path, source, as_json, as_csv, full):
    """Tags added, moved, updated and removed in a window; CHANGE tells a rollback (SEEN_BEFORE: when the tag
    first pointed there) or platforms_added from other moves. Exits 1 when PATTERN names nothing held."""
    db = _open(db_path)
    rows = reads.changes(db, *_asked("TIME", reads.window, db, since, until), pattern, source)
    columns = reads.CHANGES_COLUMNS
    output.answer(db, rows, pattern, columns, as_json, as_csv, full, empty="no changes", brief=columns[:9] + ["run_id"])


@cli.command()
@click.argument("reference")
@db_option
@source_option
@output_options
def platforms(reference, db_path, source, as_json, as_csv, full):
    """The platforms of what REFERENCE points to now (REGISTRY/REPO:TAG), or of a digest (sha256:...): an
    index's children, attestations left out, or a single image's own platform. Exits 1 when the ledger
    never held the tag or digest."""
    db = _open(db_path)
    digest, rows = _asked("REFERENCE", reads.platforms, db, reference, source)
    columns, brief = reads.PLATFORMS_COLUMNS, reads.PLATFORMS_COLUMNS[:-1]
    if digest is None and not reference.startswith("sha256:"):
        output.answer(db, rows, reference, columns, as_json, as_csv, full, f"no tag {reference} now", brief)
    else:
        held = bool(rows) or reads.holds_manifest(db, digest)
        output.emit(rows, columns, as_json, as_csv, full, brief=brief, empty=held and f"no platforms in {digest}")
        if not held:
            raise click.ClickException(f"{digest} is not in the ledger: it never stored that manifest")


@cli.command(name="digest")
@click.argument("digest")
@db_option
@output_options
def digest_command(digest, db_path, as_json, as_csv, full):
    """Which tags point to DIGEST now, and which ever did (FIRST_SEEN there, LEFT_AT when it moved away): a
    manifest digest or an image ID, with or without sha256:. Exits 1 when no tag ever pointed to it."""
    rows = _asked("DIGEST", reads.digest_usage, _open(db_path), digest)
    columns = ["registry", "repo", "tag", "points_there_now", "first_seen", "left_at", "source"]
    output.emit(rows, columns, as_json, as_csv, full, empty=None)
    if not rows:
        raise click.ClickException(f"{digest} is not in the ledger: no tag ever pointed to it")


@cli.command()
@db_option
@click.option("-n", "--limit", default=20, show_default=True, type=Int(1), help="How many runs, newest first.")
@click.option("--errors", "with_errors", is_flag=True, help="Also list each run's errors.")
@output_options
def runs(db_path, limit, with_errors, as_json, as_csv, full):
    """The latest runs: status, counts, and what failed.

    A run still 'running' whose lock is free (its process is gone) is closed
    as failed ("interrupted") by the next collect, from any host.
    """
    rows = reads.runs(_open(db_path), limit, problems=with_errors)
    columns = ["id", "started_at", "finished_at", "status", "targets", "tags_seen", "added", "moved", "updated",
               "removed", "new_images", "errors", "error_summary"]
    # --errors: each run's errors, a list in JSON, a cell of JSON in CSV, and lines under the table
    output.emit(rows, columns + (["problems"] if with_errors and (as_json or as_csv) else []), as_json, as_csv, full,
          empty=f"{db_path}: no runs yet", brief=[c for c in columns if c not in ("finished_at", "error_summary")])
    if not (as_json or as_csv):
        for line in reads.run_problems(rows, summaries=not (with_errors or full)):
            click.echo(printable(line))


def parse_interval(text):
    """`90`, `30s`, `15m`, `1h`, `1d` -> seconds, or bad usage."""
    from .times import parse_interval as seconds
    try:
        return seconds(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--every'") from None


@cli.command()
@collect_options
@click.option("--every", default="15m", show_default=True, metavar="INTERVAL",
              help="Time between runs: 30s, 15m, 1h.")
@click.option("--jitter", default=0.1, show_default=True, type=Float(0, 0.5),
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
    from . import collecting  # the network code loads for collect and watch only
    collecting.watch(flags, interval, jitter, metrics_port)
    click.echo("watch: stopped", err=True)

watch.help += _TARGET_HELP


@cli.command()
@click.argument("db_paths", nargs=-1, metavar="[DB]...", type=FilePath())
@click.option("--db", "db_options", multiple=True, metavar="PATH", type=FilePath(),
              help="A ledger file to serve, as DB (repeatable) [default: LEDGER_DB or ledger.db when no DB is given].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default keeps it on this machine.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--sql/--no-sql", default=None,
              help="Allow arbitrary SQL; canned queries run either way [default: on for a loopback --host, "
                   "off otherwise].")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="[NAME=]FILE",
              help="Serve this signed checkpoint file (re-read on every request: a latest.checkpoint, or what "
                   "`ledger checkpoint` writes) at /NAME/-/tlog/checkpoint, beside the ledger's tlog tiles; NAME "
                   "is needed with several ledgers (repeatable).")
def serve(db_paths, db_options, host, port, sql, checkpoints):
    """Browse ledgers in Datasette, read-only, each with its metadata and canned queries, and with two or
    more, queries across them all. Each ledger's Merkle tree is served as
    c2sp.org/tlog-tiles under /NAME/-/tlog."""
    from . import serving  # Datasette loads for this command only

    try:
        serving.serve([*db_options, *db_paths] or [os.environ.get("LEDGER_DB") or "ledger.db"], host, port, sql,
                      checkpoints)
    except store.StoreError as error:
        raise click.ClickException(str(error)) from None
