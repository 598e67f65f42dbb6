"""How the commands print: a read's rows as aligned columns, JSON or CSV; a run's summary; a verification.
Every string a registry or a file wrote goes through `terminal.printable`."""

import csv
import json
import sys

import click

from . import reads, store
from .terminal import printable, short_digest, table


SHORT = ("digest", "image", "prev_digest", "subject")
FLAGS = ("signed", "has_signature", "attested", "sbom", "points_there_now")  # 0/1 in JSON and CSV; yes/- for people


def answer(db, rows, pattern, columns, as_json, as_csv, full, empty, brief=None):
    """A read command's rows; none, for a name the ledger never held, is that name's error (after an empty
    JSON list or CSV header, so a script still reads what it expects)."""
    unheld = reads.unheld(db, pattern) if pattern and not rows else None
    if unheld is None:
        emit(rows, columns, as_json, as_csv, full, empty=empty, brief=brief)
        return
    if as_json or as_csv:
        emit(rows, columns, as_json, as_csv, full, brief=brief)
    raise click.ClickException(unheld)  # exit 1, as grep's when nothing matches


def emit(rows, columns, as_json=False, as_csv=False, full=False, empty="nothing", brief=None):
    """Rows for scripts (JSON, CSV) or for people (aligned columns): `columns`, the command's one list, in
    JSON, CSV and the table with --full, in that order; the table without --full shows the `brief` ones (all
    when None) with short digests, and the source column when any row is not the registry's own."""
    if not (as_json or as_csv or full):
        shown = brief or [column for column in columns if column != "source"]
        if "source" not in shown and any(row.get("source", store.REGISTRY) != store.REGISTRY for row in rows):
            shown = [*shown, "source"]
        columns = shown
    if as_json:
        click.echo(json.dumps([{column: row.get(column) for column in columns} for row in rows], indent=2))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([csv_cell(row.get(column)) for column in columns] for row in rows)
    elif rows:
        def cell(column, value):
            if column in SHORT and value and not full:
                return short_digest(str(value))
            if column in FLAGS and value is not None:
                return "yes" if value else "-"
            return printable(value) if isinstance(value, str) else value
        click.echo(table([[cell(c, row.get(c)) for c in columns] for row in rows], columns))
    elif empty:
        click.echo(empty, err=True)


def csv_cell(value):
    """A list (a run's problems) is one CSV cell of JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


CHANGES = ("added", "moved", "updated", "removed", "new_images")


def stamp():
    """The time of day a watcher's line starts with: UTC, to the second."""
    from .times import now
    return now()[:19] + "Z"


def summary(run_id, result, counts, elapsed, prefix=""):
    """A run's counts for people: a line, then one a count, the requests, and any registry's rate limit."""
    requests = ", ".join(f"{kind} {n}" for kind, n in sorted(result.requests.items()))
    click.echo(f"{prefix}run {run_id}: {result.status} in {elapsed:.2f}s")
    for label, value in [("repos listed", counts["repos_listed"]), ("tags seen", counts["tags_seen"]),
                         ("added", counts["added"]), ("moved", counts["moved"]), ("updated", counts["updated"]),
                         ("removed", counts["removed"]), ("new images", counts["new_images"]),
                         ("errors", counts["errors"])]:
        click.echo(f"  {label:<13}{value:>7}")
    click.echo(f"  {'requests':<13}{sum(result.requests.values()):>7}" + (f"  ({requests})" if requests else ""))
    for registry, limit in sorted(result.rate_limits.items()):
        click.echo(f"  {'rate limit':<13}{limit['remaining']:>7}  left of {limit['limit']} at {registry}")


def print_verification(db_path, report, pins, as_json):
    """`ledger verify`'s answer: JSON, or the head to pin (stdout), or the first bad row (stderr)."""
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
