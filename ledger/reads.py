"""The questions people ask the ledger, as SQL over the contract's tables and views."""

import re

from .references import ReferenceError, parse_target

# For each tag key, its latest event observed at or before :at: one index seek per key,
# because a key's events never go back in time.
_STATE_AT = """
SELECT k.registry, k.repo, k.tag, e.digest, e.image, e.created, e.observed_at AS since, e.run_id, k.source
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


def _source_clause(source, alias=""):
    """A glob over the source: 'registry', 'daemon:*', 'daemon:build-host'."""
    return (f"AND {alias}source GLOB :source", {"source": source}) if source else ("", {})


def current_tags(db, pattern=None, source=None):
    where, params = _pattern_clause(pattern)
    also, more = _source_clause(source)
    return list(db.query(
        f"SELECT registry, repo, tag, digest, image, created, first_seen, last_changed, source FROM current_tags "
        f"WHERE 1 {where} {also} ORDER BY registry, repo, tag, source", {**params, **more}))


def state_at(db, at, pattern=None, source=None):
    where, params = _pattern_clause(pattern, "k.")
    also, more = _source_clause(source, "k.")
    return list(db.query(_STATE_AT.format(where=f"{where} {also}"), {"at": at, **params, **more}))


def history(db, reference, source=None):
    """Every event of one tag, oldest first, with what it pointed to before."""
    target = parse_target(reference)
    if target.repo is None or target.tag is None:
        raise ValueError(f"{reference!r} names no tag: give REGISTRY/REPO:TAG")
    also, more = _source_clause(source)
    return list(db.query(
        "SELECT event_id, observed_at, kind, digest, prev_digest, image, created, run_id, source FROM tag_history "
        f"WHERE registry = :registry AND repo = :repo AND tag = :tag {also} ORDER BY event_id",
        {"registry": target.registry, "repo": target.repo, "tag": target.tag, **more}))


def changes(db, since, until=None, pattern=None, source=None):
    where, params = _pattern_clause(pattern, "")
    also, more = _source_clause(source)
    return list(db.query(
        f"SELECT observed_at, kind, registry, repo, tag, prev_digest, digest, run_id, source FROM tag_history "
        f"WHERE observed_at > :since AND observed_at <= :until {where} {also} ORDER BY event_id",
        {"since": since, "until": until or "9999", **params, **more}))
