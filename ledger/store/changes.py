"""What one run appended, as a notification tells it: read back from the run's own events inside the
append's transaction, so a message says what the ledger now holds, not what the sources reported."""

from collections import Counter
from dataclasses import dataclass

from ..limits import NOTIFY_ITEMS
from ..referrers import schema_tag


@dataclass(frozen=True, slots=True)
class Change:
    """One event of an image tag (a referrer, or a signature's or referrers index's tag, is not one)."""

    event_id: int
    kind: str  # added, moved, updated, removed
    registry: str
    repo: str
    tag: str
    source: str
    digest: str | None  # a removed tag's: the digest it last had
    prev_digest: str | None
    image: str | None
    prev_image: str | None
    new_image: bool  # the first time the ledger saw this image (the new_images view)


@dataclass
class RunChanges:
    """A finished run as its notification needs it."""

    run_id: int
    status: str
    counts: Counter  # (kind, new image?) -> events of image tags this run appended
    changes: list  # Change: the first NOTIFY_ITEMS of each (kind, new image?), in the order appended
    errors: list  # Problem: the run's failures, warnings left out


# The run's events of image tags, with whether each shows a new image. Both are ranges of event ids, so
# a run of 100,000 events is read once in id order and only the listed ones in full.
_RUN_EVENTS = """
SELECT e.id, e.kind, k.tag, e.id IN (SELECT event_id FROM new_images WHERE event_id BETWEEN ? AND ?)
FROM event_log e JOIN tag_keys k ON k.id = e.key_id
WHERE e.id BETWEEN ? AND ? AND k.source != 'referrer'
ORDER BY e.id
"""
_DETAILS = ("SELECT event_id, kind, registry, repo, tag, source, digest, prev_digest, image, prev_image "
            "FROM tag_history WHERE event_id IN ({}) ORDER BY event_id")


def run_changes(db, run_id, status, events, errors):
    """The changes of run `run_id`, which appended the events `events` (first, last id) or none (None)."""
    counts, listed = Counter(), {}
    if events:
        for event_id, kind, tag, new in db.execute(_RUN_EVENTS, [*events, *events]):
            if schema_tag(tag):
                continue
            counts[kind, bool(new)] += 1
            if counts[kind, bool(new)] <= NOTIFY_ITEMS:
                listed[event_id] = bool(new)
    rows = db.execute(_DETAILS.format(", ".join("?" * len(listed))), list(listed)) if listed else ()
    changes = [Change(*row, new_image=listed[row[0]]) for row in rows]
    return RunChanges(run_id, status, counts, changes, [problem for problem in errors if not problem.warning])
