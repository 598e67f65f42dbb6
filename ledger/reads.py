"""The questions people ask the ledger, as SQL over the contract's tables and views."""

from .references import parse_target

_STATE_AT = """
SELECT e.registry, e.repo, e.tag, e.digest, e.image, e.created, e.observed_at AS since, e.run_id
FROM events e
JOIN (SELECT max(id) AS id FROM events WHERE observed_at <= :at GROUP BY registry, repo, tag) latest USING (id)
WHERE e.kind != 'removed' {where}
ORDER BY e.registry, e.repo, e.tag
"""


def _pattern_clause(pattern, alias=""):
    """A glob over `registry/repo` or, with a tag part, `registry/repo:tag` (SQLite GLOB: * ? [...])."""
    if not pattern:
        return "", {}
    name = f"{alias}registry || '/' || {alias}repo"
    if ":" in pattern.rsplit("/", 1)[-1]:
        name += f" || ':' || {alias}tag"
    return f"AND ({name}) GLOB :pattern", {"pattern": pattern}


def current_tags(db, pattern=None):
    where, params = _pattern_clause(pattern)
    return list(db.query(
        f"SELECT registry, repo, tag, digest, image, created, first_seen, last_changed FROM current_tags "
        f"WHERE 1 {where} ORDER BY registry, repo, tag", params))


def state_at(db, at, pattern=None):
    where, params = _pattern_clause(pattern, "e.")
    return list(db.query(_STATE_AT.format(where=where), {"at": at, **params}))


def history(db, reference):
    """Every event of one tag, oldest first, with what it pointed to before."""
    target = parse_target(reference)
    if target.repo is None or target.tag is None:
        raise ValueError(f"{reference!r} names no tag: give REGISTRY/REPO:TAG")
    return list(db.query(
        "SELECT event_id, observed_at, kind, digest, prev_digest, image, created, run_id FROM tag_history "
        "WHERE registry = ? AND repo = ? AND tag = ? ORDER BY event_id",
        [target.registry, target.repo, target.tag]))


def changes(db, since, until=None, pattern=None):
    where, params = _pattern_clause(pattern, "")
    return list(db.query(
        f"SELECT observed_at, kind, registry, repo, tag, prev_digest, digest, run_id FROM tag_history "
        f"WHERE observed_at > :since AND observed_at <= :until {where} ORDER BY event_id",
        {"since": since, "until": until or "9999", **params}))
