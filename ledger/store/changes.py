"""What one run appended, as a notification tells it: read back from the run's own events inside the
append's transaction, so a message says what the ledger now holds, not what the sources reported."""

from collections import Counter
from dataclasses import dataclass, replace

from ..limits import NOTIFY_ITEMS
from .fragments import digest_text_sql, referrer_tag_sql


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
    change: str = ""  # tag_history's change: the kind, with a move told as moved, rollback or platforms_added
    seen_before: str | None = None  # a rollback's: when the key first pointed to the digest it came back to
    left_at: str | None = None  # a rollback's: when the key last stopped pointing there
    platforms_added: tuple = ()  # a platforms_added move's: the new platforms, as os/architecture[/variant]


@dataclass
class RunChanges:
    """A finished run as its notification needs it."""

    run_id: int
    status: str
    counts: Counter  # (kind, new image?) -> events of image tags this run appended
    changes: list  # Change: the first NOTIFY_ITEMS of each (kind or rollback, new image?), in the order appended
    errors: list  # Problem: the run's failures, warnings left out
    rollbacks: int = 0  # of the moves counted: back to a digest the key pointed to before


# The run's events of image tags, with whether each shows a new image and whether a move is a rollback (one
# probe of event_log_by_digest, as tag_history's change makes it). Both are ranges of event ids, so a run of
# 100,000 events is read once in id order and only the listed ones in full. A referrer tag's event is left
# out by its name AND the digest it is at (fragments.referrer_tag_sql, as the views): never by its name alone.
_RUN_EVENTS = f"""
SELECT e.id, e.kind, e.id IN (SELECT event_id FROM new_images WHERE event_id BETWEEN ? AND ?),
       e.kind = 'moved' AND EXISTS (SELECT 1 FROM event_log x WHERE x.digest_id = e.digest_id
                                                              AND x.key_id = e.key_id AND x.id < e.id)
FROM event_log e JOIN tag_keys k ON k.id = e.key_id
WHERE e.id BETWEEN ? AND ? AND k.source != 'referrer'
  AND NOT {referrer_tag_sql("k.tag", digest_text_sql("e.digest_id"))}
ORDER BY e.id
"""
_DETAILS = ("SELECT event_id, kind, registry, repo, tag, source, digest, prev_digest, image, prev_image, change "
            "FROM tag_history WHERE event_id IN ({}) ORDER BY event_id")
# A rollback's earlier sighting, as the rollbacks view tells it (read for the listed ones only).
_EARLIER = """
SELECT (SELECT min(x.observed_at) FROM event_log x WHERE x.digest_id = e.digest_id AND x.key_id = e.key_id),
       (SELECT CASE WHEN l.kind = 'removed' THEN l.observed_at ELSE (
                   SELECT n.observed_at FROM event_log n WHERE n.key_id = l.key_id AND n.observed_at >= l.observed_at
                   AND n.id > l.id ORDER BY n.observed_at, n.id LIMIT 1) END
        FROM event_log l WHERE l.id = (SELECT max(x.id) FROM event_log x WHERE x.digest_id = e.digest_id
                                                                         AND x.key_id = e.key_id AND x.id < e.id))
FROM event_log e WHERE e.id = ?
"""
# The platforms a platforms_added move brought: the new index's, less the old one's.
_ADDED_PLATFORMS = """
SELECT DISTINCT n.os || '/' || n.architecture || coalesce('/' || n.variant, '') FROM platforms n
WHERE n.index_digest = ? AND n.attestation = 0
  AND NOT EXISTS (SELECT 1 FROM platforms o WHERE o.index_digest = ? AND o.attestation = 0 AND o.os IS n.os
                  AND o.architecture IS n.architecture AND o.variant IS n.variant)
ORDER BY 1
"""


def run_changes(db, run_id, status, events, errors):
    """The changes of run `run_id`, which appended the events `events` (first, last id) or none (None)."""
    counts, quota, listed = Counter(), Counter(), {}
    if events:
        for event_id, kind, new, rollback in db.execute(_RUN_EVENTS, [*events, *events]):
            counts[kind, bool(new)] += 1
            quota["rollback" if rollback else kind, bool(new)] += 1  # rollbacks are listed even after many moves
            if quota["rollback" if rollback else kind, bool(new)] <= NOTIFY_ITEMS:
                listed[event_id] = bool(new)
    rows = db.execute(_DETAILS.format(", ".join("?" * len(listed))), list(listed)).fetchall() if listed else ()
    changes = [_change(db, row, listed[row[0]]) for row in rows]
    return RunChanges(run_id, status, counts, changes, [problem for problem in errors if not problem.warning],
                      rollbacks=quota["rollback", False] + quota["rollback", True])


def _change(db, row, new_image):
    *event, change = row
    found = Change(*event, new_image=new_image, change=change or event[1])
    if change == "rollback":
        seen_before, left_at = db.execute(_EARLIER, [found.event_id]).fetchone()
        return replace(found, seen_before=seen_before, left_at=left_at)
    if change == "platforms_added":
        added = db.execute(_ADDED_PLATFORMS, [found.digest, found.prev_digest]).fetchall()
        return replace(found, platforms_added=tuple(platform for (platform,) in added))
    return found
