"""The questions people ask the ledger, as SQL over the contract's tables and views."""

import re

from .references import ReferenceError, parse_target

# For each tag key, its latest event observed at or before :at: one index seek per key,
# because a key's events never go back in time.
_STATE_AT = """
SELECT k.registry, k.repo, k.tag, e.digest, e.image, e.created, e.observed_at AS since, e.run_id
FROM tag_keys k
JOIN events e ON e.id = (SELECT q.id FROM event_log q WHERE q.key_id = k.id AND q.observed_at <= :at
                         ORDER BY q.observed_at DESC, q.id DESC LIMIT 1)
WHERE e.kind != 'removed' {where}
ORDER BY k.registry, k.repo, k.tag
"""
_GLOB = re.compile(r"[*?\[]")


def _pattern_clause(pattern, alias=""):
    """A glob over `registry/repo` or, with a tag part, `registry/repo:tag` (SQLite GLOB: * ? [...]).

    A pattern with no glob characters names one repo (or tag) and is matched by equality, so the
    key index answers it."""
    if not pattern:
        return "", {}
    with_tag = ":" in pattern.rsplit("/", 1)[-1]
    target = _exact(pattern)
    if target is not None:
        clause, params = f"AND {alias}registry = :registry", {"registry": target.registry}
        for part in ("repo", "tag"):
            if getattr(target, part) is not None:
                clause += f" AND {alias}{part} = :{part}"
                params[part] = getattr(target, part)
        return clause, params
    name = f"{alias}registry || '/' || {alias}repo"
    if with_tag:
        name += f" || ':' || {alias}tag"
    return f"AND ({name}) GLOB :pattern", {"pattern": pattern}


def _exact(pattern):
    if _GLOB.search(pattern):
        return None
    try:
        return parse_target(pattern)
    except ReferenceError:
        return None


def current_tags(db, pattern=None):
    where, params = _pattern_clause(pattern)
    return list(db.query(
        f"SELECT registry, repo, tag, digest, image, created, first_seen, last_changed FROM current_tags "
        f"WHERE 1 {where} ORDER BY registry, repo, tag", params))


def state_at(db, at, pattern=None):
    where, params = _pattern_clause(pattern, "k.")
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
