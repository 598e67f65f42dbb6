"""SQL fragments that say one rule of the schema once, for the code that writes its own SQL over the
views' tables (reads.py, pictures, the notification's changes): which tag is a referrer's, a digest's
text, the digest a key points to now. schema/views.sql says the same rules in its views."""

# A referrer tag (schema/views.sql holds the same rule, ledger/referrers.py the same in Python).
SCHEMA_TAG_SQL = ("(substr({tag}, 1, 7) IN ('sha256-', 'sha512-') AND length({tag}) IN (71, 75, 76) "
                  "AND NOT substr({tag}, 8, 64) GLOB '*[^0-9a-f]*' AND substr({tag}, 72) IN ('', '.sig', '.att', '.sbom'))")
# A digest (as text) whose manifest the ledger read and which does not run: manifests.category, and an
# index of nothing (the tag schema's index once its last referrer is gone) is none. The unrunnable_manifests
# view says it once for the views; it is said over the tables here, since a reader may open a file whose
# views predate that view.
_NOT_RUNNABLE = ("EXISTS (SELECT 1 FROM {schema}.manifests rm WHERE rm.digest = {digest} "
                 "AND (rm.category NOT IN ('image', 'index', 'legacy') OR (rm.category = 'index' "
                 "AND rm.artifact_kind IS NULL AND NOT EXISTS (SELECT 1 FROM {schema}.platforms rp "
                 "WHERE rp.index_digest = rm.digest AND rp.attestation = 0))))")


def referrer_tag_sql(tag, digest, schema="main", categorised=True):
    """SQL: whether a tag is set aside as a referrer's: named like one (SCHEMA_TAG_SQL) AND pointing to a
    manifest that does not run. The name is the pusher's choice: alone it never hides a runnable image, nor
    one whose manifest the ledger could not read (as any tag of unknown kind, it is shown). `digest` is an
    SQL expression of the digest's text, evaluated only for a tag so named. A ledger read as it is from
    before manifests had a category (schema 11; `categorised` False) is judged as its own views judge it:
    by the name."""
    runnable = f" AND {_NOT_RUNNABLE.format(schema=schema, digest=digest)}" if categorised else ""
    return f"({SCHEMA_TAG_SQL.format(tag=tag)}{runnable})"


def categorised(db):
    """Whether the ledger's manifests have their category (schema 11 on): a ledger of an older schema is
    read as it is, without it (store.open_readonly)."""
    return any(row[1] == "category" for row in db.execute("PRAGMA table_info(manifests)"))


def digest_text_sql(digest_id, schema="main"):
    """SQL: the text of digests row `digest_id` (an expression)."""
    return f"(SELECT dn.digest FROM {schema}.digest_names dn WHERE dn.id = {digest_id})"


def key_digest_sql(key, schema="main"):
    """SQL: the digest tag key `key` points to now (its latest event's)."""
    return digest_text_sql(f"(SELECT ke.digest_id FROM {schema}.event_log ke WHERE ke.id = {key}.event_id)", schema)
