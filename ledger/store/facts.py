"""Manifests and images as the ledger keeps them: a manifest's bytes (zlib), and the facts derived
again from those bytes whenever they are read, never taken from the row's word."""

import zlib

# Schema 7's columns: derived from the stored bytes like the others, and checked against them by verify, but
# not in the seals' row digests (seals.TABLES is fixed), so a row of before can have them filled in.
_ARTIFACT_COLUMNS = ("subject", "artifact_kind", "annotations", "name", "version")
_MANIFEST_COLUMNS = ("digest", "media_type", "kind", "config_digest", "config_media_type", "artifact_type",
                     "created", "author", "size", "layers", "os", "architecture", "variant", "os_version", "labels",
                     *_ARTIFACT_COLUMNS)


def _save_manifests(db, run_id, manifests):
    """Write each new manifest once, with its bytes (zlib); a row from before bytes were kept gets them,
    and the columns of schema 7 and 11 derived from them. An index comes after its children (the collector
    records it once they are), so its category is settled against theirs."""
    for facts in manifests:
        body = zlib.compress(facts["body"]) if facts.get("body") is not None else None
        config = zlib.compress(facts["config_body"]) if facts.get("config_body") is not None else None
        values = [facts.get(column) for column in _MANIFEST_COLUMNS] + [settled_category(db, facts)]
        inserted = db.execute(
            f"INSERT INTO manifests ({', '.join(_MANIFEST_COLUMNS)}, category, body, config_body, first_run_id) "
            f"SELECT {', '.join('?' for _ in _MANIFEST_COLUMNS)}, ?, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?)",
            [*values, body, config, run_id, facts["digest"]]).rowcount
        if not inserted and body is not None:
            db.execute(f"UPDATE manifests SET body = ?, config_body = ?, "
                       f"{', '.join(f'{c} = ?' for c in _ARTIFACT_COLUMNS)}, category = ? "
                       "WHERE digest = ? AND body IS NULL",
                       [body, config, *(facts.get(c) for c in _ARTIFACT_COLUMNS), values[-1], facts["digest"]])
        platforms = facts.get("platforms") or []
        if inserted and platforms:
            columns = list(platforms[0])
            db.conn.executemany(
                f"INSERT INTO platforms (index_digest, {', '.join(columns)}) VALUES (?, {', '.join('?' for _ in columns)})",
                [[facts["digest"], *row.values()] for row in platforms])


def known_digests(db):
    """Digests whose facts the ledger holds verifiably, in bytes that hash to them: a run never fetches
    them again. A row from before bytes were kept is fetched once more."""
    return {row[0] for row in db.execute("SELECT digest FROM manifests WHERE body IS NOT NULL")}


def config_sources(db):
    """Config digest -> a manifest whose row keeps that config's bytes: a config the ledger holds is read
    from it, never fetched again."""
    return dict(db.execute("SELECT config_digest, digest FROM manifests WHERE config_body IS NOT NULL "
                           "AND config_digest IS NOT NULL"))


def stored_config(db, manifest_digest):
    """The config bytes a manifest's row keeps, or None (the caller checks them against their digest)."""
    from ..manifests import MAX_CONFIG_BYTES  # manifest parsing, imported by the runs and verify that read bytes
    row = db.execute("SELECT config_body FROM manifests WHERE digest = ?", [manifest_digest]).fetchone()
    try:
        return _inflate(row[0], MAX_CONFIG_BYTES) if row and row[0] else None
    except (zlib.error, TypeError, ValueError):
        return None


def tags_held(db, registry, repo, source):
    """The tags of a repository the ledger ever held a key for (live or removed): a tag not among them is
    resolved with one GET, since its manifest is wanted anyway."""
    return {row[0] for row in db.execute("SELECT tag FROM tag_keys WHERE registry = ? AND repo = ? AND source = ?",
                                         [registry, repo, source])}


def rate_limited_registries(db):
    """Registries that sent rate-limit headers in some run: there a manifest GET is a pull, a HEAD is not."""
    return {row[0] for row in db.execute(
        "SELECT DISTINCT key FROM runs, json_each(runs.rate_limits) WHERE runs.rate_limits IS NOT NULL "
        "AND json_valid(runs.rate_limits) AND json_type(runs.rate_limits) = 'object'")}


def known_indexes(db):
    """Digests of the indexes the ledger holds: only these have children whose referrers are followed."""
    return {row[0] for row in db.execute("SELECT digest FROM manifests WHERE kind = 'index' AND body IS NOT NULL")}


def known_images(db):
    """Image IDs a Docker daemon has described already: their facts are never asked for again."""
    return {row[0] for row in db.execute("SELECT id FROM images")}


def live_repos(db, source):
    """(registry, repo) of every repository holding a live key of `source`: listed by the next run of that
    source even when a catalog no longer names it, so that its keys' removal can be proven."""
    return db.execute("SELECT DISTINCT registry, repo FROM tag_keys WHERE kind != 'removed' AND source = ?",
                      [source]).fetchall()


def held_repo(db, registry, repo, source):
    """Whether the ledger ever held a key of this repository, of `source` (live or removed since): a named
    repository the registry no longer knows is then a deletion, not a typo."""
    return db.execute("SELECT 1 FROM tag_keys WHERE registry = ? AND repo = ? AND source = ? LIMIT 1",
                      [registry, repo, source]).fetchone() is not None


def signature_checks_done(db):
    """{(signature, subject): {key or None, ...}} of every verdict recorded: never checked again."""
    done = {}
    for signature, subject, key in db.execute("SELECT signature, subject, key FROM signature_checks"):
        done.setdefault((signature, subject), set()).add(key)
    return done


def manifest_body(db, digest):
    """A stored manifest's bytes, checked against its digest again, or None."""
    row = db.execute("SELECT digest, media_type, kind, body, config_body FROM manifests WHERE digest = ?",
                     [digest]).fetchone()
    facts = stored_facts(row) if row else None
    return facts["body"] if facts else None


def stored_facts(row):
    """A manifests row (media_type, kind, body, config_body) as facts derived again from its bytes, or None
    when it has none or they do not hold (edited): then nothing is taken from it."""
    from ..manifests import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, ManifestError, derive  # not for a read command
    digest, media_type, kind, body, config = row
    if body is None:  # a schema1 row, written from a HEAD's word alone by older versions, is not believed
        return None
    try:
        return derive(digest, media_type, _inflate(body, MAX_MANIFEST_BYTES),
                      _inflate(config, MAX_CONFIG_BYTES) if config else None)
    except (ManifestError, zlib.error, TypeError, ValueError):
        return None


def _inflate(stored, limit):
    """zlib bytes back, refusing more than `limit` (a few KiB can inflate to GiB)."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(stored, limit + 1)
    if len(raw) > limit or inflater.unconsumed_tail:
        raise ValueError(f"stored bytes inflate past {limit}")
    return raw


def _save_images(db, run_id, images):
    db.conn.executemany(
        "INSERT INTO images (id, created, size, author, architecture, os, labels, first_run_id) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM images WHERE id = ?)",
        [[facts.id, facts.created, facts.size, facts.author, facts.architecture, facts.os, facts.labels, run_id,
          facts.id] for facts in images])


def children_of(db, digest):
    """The children of a stored index whose referrers are followed with it (its platforms, not its
    attestations), or a referrers list's entries (from its bytes: they are no platforms); [] for anything
    else."""
    children = [row[0] for row in db.execute("SELECT digest FROM platforms WHERE index_digest = ? AND attestation = 0 "
                                             "ORDER BY position", [digest])]
    if children:
        return children  # a referrers list stored before schema 11 has its entries as platforms too
    row = db.execute("SELECT digest, media_type, kind, body, config_body FROM manifests "
                     "WHERE digest = ? AND category = 'referrers'", [digest]).fetchone()
    facts = stored_facts(row) if row else None
    return [entry["digest"] for entry in facts.get("referrers", ())] if facts else []


def settled_category(db, facts):
    """What a manifest is (manifests.category): its bytes' word, but an index any of whose children is an
    image, or an index of them, is an image index whatever label or shape it has, since a runtime runs
    those children. Its children are stored before it, so their own categories are read."""
    category = facts.get("category")
    if facts.get("kind") != "index" or category == "index":
        return category
    for chunk in _chunks(facts.get("children") or ()):
        if db.execute(f"SELECT 1 FROM manifests WHERE category IN ('image', 'index') "
                      f"AND digest IN ({', '.join('?' for _ in chunk)}) LIMIT 1", chunk).fetchone():
            return "index"
    return category


def fill_artifact_facts(conn):
    """At the upgrade to schema 7: each row's new columns (subject, artifact kind, annotations, a Helm
    chart's name and version), derived from the bytes it keeps. A row without bytes gets them when its
    bytes are filled in; a row whose bytes do not hold gets none (verify names it)."""
    digests = [row[0] for row in conn.execute("SELECT digest FROM manifests WHERE body IS NOT NULL")]
    for chunk in _chunks(digests):
        rows = conn.execute(f"SELECT digest, media_type, kind, body, config_body FROM manifests "
                            f"WHERE digest IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        for row in rows:
            facts = stored_facts(row)
            values = [facts.get(column) for column in _ARTIFACT_COLUMNS] if facts else []
            if any(value is not None for value in values):
                conn.execute(f"UPDATE manifests SET {', '.join(f'{c} = ?' for c in _ARTIFACT_COLUMNS)} "
                             "WHERE digest = ?", [*values, row[0]])


def fill_categories(conn):
    """At the upgrade to schema 11: each row's category, derived from the bytes it keeps; an index's after
    its children's, so settled against them. Rows without bytes, or whose bytes do not hold, get none."""
    digests = [row[0] for row in conn.execute("SELECT digest FROM manifests WHERE body IS NOT NULL")]
    indexes = {}  # digest -> what settling it needs
    for chunk in _chunks(digests):
        rows = conn.execute(f"SELECT digest, media_type, kind, body, config_body FROM manifests "
                            f"WHERE digest IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        for facts in filter(None, map(stored_facts, rows)):
            if facts["kind"] == "index":
                indexes[facts["digest"]] = {key: facts.get(key) for key in ("digest", "kind", "category", "children")}
            else:
                conn.execute("UPDATE manifests SET category = ? WHERE digest = ?", [facts["category"], facts["digest"]])
    while indexes:  # a level of nesting at a time; all that is left at once if children name each other
        ready = [facts for facts in indexes.values() if not indexes.keys() & set(facts["children"])]
        for facts in ready or list(indexes.values()):
            conn.execute("UPDATE manifests SET category = ? WHERE digest = ?",
                         [settled_category(conn, facts), facts["digest"]])
            del indexes[facts["digest"]]


def _chunks(values, size=500):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]
