"""Appending a run: its observations classified against the ledger as the hash chain holds it, then
its events chained and written with what they derive, its manifests, coverage and errors."""

import collections
import json

from . import coverage, seals
from ..findings import BY_DIGEST, Problem, appended_status, identity
from ..referrers import REFERRER, schema_tag
from ..semantics import REMOVED, Latest, Observation, listing_removals, sighting_event
from ..times import now
from .database import StoreError, _transaction
from .encoding import GENESIS, REGISTRY, _canonical, _hex_prefix, digest_key, digest_text, event_hash
from .facts import _chunks, _save_images, _save_manifests, settled_category, stored_facts
from .runs import _end_run, _row_to_finish



def _known_facts(db, digests):
    """What the ledger knows of each digest, derived again from the bytes it was read from: a row edited
    in the file is not believed (verify names it), so it can never become an event."""
    facts = {}
    for chunk in _chunks(set(digests)):
        rows = db.execute(f"SELECT digest, media_type, kind, body, config_body FROM manifests "
                          f"WHERE digest IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        for row in rows:
            derived = stored_facts(row)
            if derived is not None:
                derived["category"] = settled_category(db, derived)
                facts[row[0]] = derived
    return facts


def _observed(derived):
    """An event's facts, from a manifest's."""
    runs = derived["kind"] == "image" or derived.get("category") == "image"  # an image's ID, whatever its label
    return Observation(digest=derived["digest"], image=derived.get("config_digest") if runs else None,
                       media_type=derived["media_type"], created=derived.get("created"),
                       author=derived.get("author"), size=derived.get("size"))


_State = collections.namedtuple("_State", "key_id event_id latest")  # latest: a semantics.Latest


def _states(db, repos):
    """The state of every tag key (removed ones too) of every (registry, repo, source) this run touched:
    each key's latest event, checked against its place in the hash chain first, so that nothing edited in
    the file (a digest's bytes, a view, tag_keys) can be classified against and become a chained event."""
    states = {}
    for registry, repo, source in repos:
        for (tag, key_id, event_id, kind, observed_at, digest, image, media_type, created, author, size, run_id,
             stored, previous) in db.conn.execute(_KEY_STATES, [registry, repo, source]):
            digest, image = digest_text(digest), digest_text(image)
            try:
                recomputed = event_hash(previous.hex() if previous else GENESIS, _canonical(
                    event_id, run_id, observed_at, kind, registry, repo, tag, digest, image, media_type, created,
                    author, size, source))
            except (AttributeError, TypeError, ValueError):
                recomputed = None
            if recomputed is None or (previous is None and event_id != 1) or recomputed != stored.hex():
                raise StoreError(f"event {event_id} no longer matches its hash: the ledger was edited, so nothing "
                                 "is appended to it (`ledger verify` names what changed)")
            states[(registry, repo, tag, source)] = _State(key_id, event_id, Latest(kind, observed_at, Observation(
                digest=digest, image=image, media_type=media_type, created=created, author=author, size=size)))
    return states


# A key's state is its latest event in the chain, never tag_keys' derived copy of it, read from the
# tables themselves (not views), with what its hash is checked against.
_KEY_STATES = """
SELECT k.tag, k.id, e.id, e.kind, e.observed_at, d.digest, i.digest, m.media_type, e.created, e.author, e.size,
       e.run_id, e.hash, (SELECT p.hash FROM event_log p WHERE p.id = e.id - 1)
FROM tag_keys k
JOIN event_log e ON e.id = (SELECT max(q.id) FROM event_log q WHERE q.key_id = k.id)
LEFT JOIN digests d ON d.id = e.digest_id
LEFT JOIN digests i ON i.id = e.image_id
LEFT JOIN media_types m ON m.id = e.media_type_id
WHERE k.registry = ? AND k.repo = ? AND k.source = ?
"""


def _classify_all(db, result):
    """The events this run makes, classified against the ledger as it is now, and the facts they show."""
    repos = {(seen.registry, seen.repo, seen.source) for seen in result.observations}
    listings = result.coverage + result.referrer_listings
    repos |= {(listing.registry, listing.repo, listing.source) for listing in listings if listing.complete}
    states = _states(db, repos)
    facts = _known_facts(db, [seen.digest for seen in result.observations if seen.digest and seen.source in BY_DIGEST]
                         + [row.latest.observation.digest for key, row in states.items()
                            if key[3] == REFERRER and row.latest.observation.digest])
    pending = []
    for seen in result.observations:
        key = (seen.registry, seen.repo, seen.tag, seen.source)
        if seen.source in BY_DIGEST:
            derived = facts.get(seen.digest)
            known = derived and _observed(derived)
            obs = known or Observation(digest=seen.digest, media_type=seen.media_type)
            if seen.source == REFERRER and not _refers(result, seen, derived):
                continue
        else:  # a daemon reports every fact with the tag
            known = obs = Observation(digest=seen.digest, image=seen.image, media_type=seen.media_type,
                                      created=seen.created, author=seen.author, size=seen.size)
        row = states.get(key)
        kind = sighting_event(row.latest if row else None, obs, seen.observed_at, complete=known is not None,
                              by_image=seen.source not in BY_DIGEST)
        if kind is not None:
            pending.append((seen.observed_at, key, kind, obs, row))
    for listing in listings:
        if not listing.complete:
            continue
        where = (listing.registry, listing.repo)
        rows = {key[2]: row for key, row in states.items() if key[:2] == where and key[3] == listing.source}
        for tag in listing_removals({tag: row.latest for tag, row in rows.items()}, listing.tags, listing.listed_at,
                                    listing.scope, lambda digest: (facts.get(digest) or {}).get("subject")):
            row = rows[tag]
            pending.append((listing.listed_at, (*where, tag, listing.source), REMOVED, row.latest.observation, row))
    pending.sort(key=lambda item: (item[0], item[1]))
    return pending, facts


def _refers(result, seen, derived):
    """Whether a listed referrer is one: its manifest, once read, must name the subject it was listed
    for. A registry's list is its word; the bytes are the referrer's."""
    if derived is None:
        return False  # not read (its fetch failed and is an errors row): nothing to record yet
    if derived.get("subject") == seen.subject:
        return True
    result.errors.append(Problem(
        at=now(), registry=seen.registry, repo=seen.repo, digest=seen.digest, stage="referrers",
        code="REFERRER_MISMATCH", message=f"referrers: {seen.digest} is listed as a referrer of "
        f"{seen.subject}, but its manifest's subject is {derived.get('subject') or 'absent'}; not recorded"))
    return False


def _image_event(key, obs, facts):
    """Whether an event shows an image (for the count of new images): not a referrer, not an artifact such as
    a signature, a referrers list or a Helm chart (what can run decides, as in the new_images view, whatever
    the tag's name: a runnable image under a name like a cosign tag is one)."""
    source = key[3]
    if source not in BY_DIGEST:
        return True
    if source != REGISTRY:
        return False
    from ..manifests import IMAGES  # manifest parsing: not imported by a read command, which loads this module
    derived = facts.get(obs.digest)
    if derived is None:
        return True  # unread: unknown, counted as the view counts it
    # an index of nothing runs nothing: under a referrer tag's name, the tag schema's empty index
    return derived.get("category") in IMAGES and not (schema_tag(key[2]) and derived.get("category") == "index"
                                                      and not derived.get("children"))


def _stored_digests(db, values):
    """{digest text: [id, first_event_id]} for the values already in the digests table."""
    wanted = {digest_key(value): value for value in values}
    found = {}
    for chunk in _chunks(wanted):
        rows = db.execute(f"SELECT id, digest, first_event_id FROM digests "
                          f"WHERE substr(hex(digest), 1, 12) IN ({', '.join('?' for _ in chunk)})",
                          [_hex_prefix(key) for key in chunk])
        for digest_id, stored, first in rows:
            if stored in wanted:
                found[wanted[stored]] = [digest_id, first]
    return found


class _Digests:
    """Interned digests for one append: ids for known ones, new ids (and first sightings) for the rest."""

    def __init__(self, db, values):
        self.known = _stored_digests(db, values)
        self.next_id = db.execute("SELECT coalesce(max(id), 0) + 1 FROM digests").fetchone()[0]
        self.new = {}
        self.first_sightings = []

    def id(self, value):
        if value is None:
            return None
        entry = self.known.get(value) or self.new.get(value)
        if entry is None:
            entry = self.new[value] = [self.next_id, None]
            self.next_id += 1
        return entry[0]

    def seen(self, value, event_id):
        """The first non-removed event that shows a digest is where it counts as new; True if this is it."""
        entry = self.known.get(value) or self.new.get(value)
        if entry[1] is not None:
            return False
        entry[1] = event_id
        if value in self.known:
            self.first_sightings.append((event_id, entry[0]))
        return True

    def save(self, db):
        db.conn.executemany("INSERT INTO digests (id, digest, first_event_id) VALUES (?, ?, ?)",
                            [(digest_id, digest_key(value), first) for value, (digest_id, first) in self.new.items()])
        db.conn.executemany("UPDATE digests SET first_event_id = ? WHERE id = ?", self.first_sightings)


def _media_type_ids(db, pending):
    ids = dict(db.execute("SELECT media_type, id FROM media_types").fetchall())
    new = [value for value in {obs.media_type for *_, obs, _ in pending} - ids.keys() if value is not None]
    next_id = max(ids.values(), default=0) + 1
    for offset, value in enumerate(sorted(new)):
        ids[value] = next_id + offset
        db.execute("INSERT INTO media_types (id, media_type) VALUES (?, ?)", [ids[value], value])
    return ids


def _append_events(db, run_id, pending, facts):
    """Hash-chain and insert this run's events; keep tag_keys' state and digests' first sightings."""
    head = db.execute("SELECT id, hash FROM event_log ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev = (head[0], head[1].hex()) if head else (0, GENESIS)
    digests = _Digests(db, {value for *_, obs, _ in pending for value in (obs.digest, obs.image) if value})
    media_types = _media_type_ids(db, pending)
    next_key = db.execute("SELECT coalesce(max(id), 0) + 1 FROM tag_keys").fetchone()[0]
    new_keys, states, kinds, stored, new_images = {}, {}, [], [], 0
    for observed_at, key, kind, obs, state in pending:
        registry, repo, tag, source = key
        key_id = state.key_id if state else new_keys.get(key)
        if key_id is None:
            key_id = new_keys[key] = next_key
            next_key += 1
        previous = states[key_id][0] if key_id in states else state and state.event_id
        last_id += 1
        prev = event_hash(prev, _canonical(last_id, run_id, observed_at, kind, registry, repo, tag, obs.digest,
                                           obs.image, obs.media_type, obs.created, obs.author, obs.size, source))
        kinds.append(kind)
        stored.append((last_id, run_id, observed_at, kind, key_id, previous, digests.id(obs.digest),
                       digests.id(obs.image), media_types.get(obs.media_type), obs.created, obs.author, obs.size,
                       bytes.fromhex(prev)))
        if kind != REMOVED and (obs.digest or obs.image):
            if digests.seen(identity(obs.digest, obs.image, source), last_id) and _image_event(key, obs, facts):
                new_images += 1
        began = observed_at if kind == "added" else states.get(key_id, (None,) * 4)[3]
        states[key_id] = (last_id, kind, observed_at, began)
    digests.save(db)
    db.conn.executemany("INSERT INTO tag_keys (id, registry, repo, tag, source) VALUES (?, ?, ?, ?, ?)",
                        [(key_id, *key) for key, key_id in new_keys.items()])
    db.conn.executemany(
        "UPDATE tag_keys SET event_id = ?, kind = ?, observed_at = ?, first_seen = coalesce(?, first_seen) WHERE id = ?",
        [(*state, key_id) for key_id, state in states.items()])
    db.conn.executemany(
        "INSERT INTO event_log (id, run_id, observed_at, kind, key_id, prev_event_id, digest_id, image_id, "
        "media_type_id, created, author, size, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", stored)
    return kinds, (last_id, prev) if head or kinds else (None, None), new_images


def _summary(note, errors, total):
    """The run's errors in one line: a few kinds, each with its count, and the total when rows merged
    failures or were left out."""
    kinds = sorted({str(error) for error in errors if not error.warning})
    shown = kinds[:5]
    if total > len(shown):
        shown.insert(0, f"{total} errors")
    return "; ".join(([note] if note else []) + shown) or None


def append_run(db, run_id, result):
    """Append one run's findings in a single write transaction; returns the run's counts, under `run_id`
    the run they were recorded as (a new one if the run's own row was closed underneath it), under
    `events` the (first, last) ids of the events it appended, or None, and under `status` the status it
    was recorded with (findings.appended_status: the result's own is left as it was)."""
    with _transaction(db.conn, "IMMEDIATE"):
        row_id, note = _row_to_finish(db, run_id)
        _save_manifests(db, row_id, result.manifests)
        _save_images(db, row_id, result.images)
        pending, facts = _classify_all(db, result)
        status = appended_status(result.status, result.errors)
        kinds, (head_id, head_hash), new_images = _append_events(db, row_id, pending, facts)
        position = db.execute("SELECT coalesce(max(id), 0) + 1 FROM run_seals").fetchone()[0]  # the seal's, below
        coverage.save(db.conn, row_id, position, result.coverage)
        for error in result.errors:  # one row per kind, with the count of the failures it stands for
            db.execute(
                "INSERT INTO errors (run_id, at, registry, repo, tag, digest, stage, http_status, code, message, "
                "source, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row_id, error.at, error.registry, error.repo, error.tag, error.digest, error.stage,
                 error.status, error.code, error.message, error.source, error.count])
        _save_signature_checks(db, row_id, result.signature_checks)
        counts = {kind: kinds.count(kind) for kind in ("added", "moved", "updated", "removed")}
        counts["new_images"] = new_images
        counts["tags_seen"] = sum(1 for seen in result.observations if seen.source != REFERRER)  # untagged: no tag
        counts["repos_listed"] = sum(1 for listing in result.coverage if listing.complete)
        counts["errors"] = result.errors.total()  # every failure a row stands for; warnings are not failures
        counts["run_id"] = row_id
        counts["events"] = (head_id - len(kinds) + 1, head_id) if kinds else None  # one writer: ids in a row
        counts["status"] = status
        summary = _summary(note, result.errors, counts["errors"])
        db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, repos_listed = ?, tags_seen = ?, added = ?, moved = ?, "
            "updated = ?, removed = ?, new_images = ?, errors = ?, requests = ?, rate_limits = ?, error_summary = ?, "
            "head_event_id = ?, head_hash = ? WHERE id = ?",
            [now(), status, counts["repos_listed"], counts["tags_seen"], counts["added"], counts["moved"],
             counts["updated"], counts["removed"], counts["new_images"], counts["errors"],
             json.dumps(dict(sorted(result.requests.items()))),
             json.dumps(result.rate_limits, sort_keys=True) if result.rate_limits else None,
             summary, head_id, head_hash, row_id])
        seals.seal(db.conn, row_id)
    _end_run(db, run_id)
    return counts


def _save_signature_checks(db, run_id, checks):
    """Each verdict once per (signature, subject, key): a run racing another may have checked it too."""
    db.conn.executemany(
        "INSERT INTO signature_checks (run_id, checked_at, registry, repo, signature, subject, key, result, reason, "
        "layer) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signature_checks "
        "WHERE signature = ? AND subject = ? AND coalesce(key, '') = coalesce(?, ''))",
        [[run_id, check.checked_at, check.registry, check.repo, check.signature, check.subject, check.key,
          check.result, check.reason, check.layer, check.signature, check.subject, check.key] for check in checks])
