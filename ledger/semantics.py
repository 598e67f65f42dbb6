"""Decide which event an observation makes: the seed's MetadataSet.Exists / Replace, as events.

Pure code: no I/O, no clock. The store calls it inside its write transaction.
"""

import functools
import json
from dataclasses import dataclass, fields

from .referrers import schema_tag

ADDED, MOVED, UPDATED, REMOVED = "added", "moved", "updated", "removed"


@dataclass(frozen=True)
class Observation:
    """What one run saw for one tag key (or the key's current state)."""

    digest: str | None = None
    image: str | None = None
    media_type: str | None = None
    created: str | None = None  # normalised: UTC, whole seconds
    author: str | None = None
    size: int | None = None


_OTHER = [f.name for f in fields(Observation) if f.name not in ("digest", "image", "created")]


def clean_image_id(image):
    """The seed's cleanImageID: an image ID without its `sha256:` algorithm prefix."""
    if not image:
        return ""
    return image.rsplit(":", 1)[-1]


def _truncated(created):
    """Created times compare to the whole second (the seed's Truncate(time.Second)); Go's zero time, which
    cosign writes into signature configs and older ledgers kept, is no time at all."""
    if not created or created.startswith(ZERO_TIME):
        return None
    return created[:19]


ZERO_TIME = "0001-01-01T00:00:00"


def contradicts(state, obs, by_image=False):
    """Both have a digest and they differ, or both have an image and they differ.

    `by_image`: only the image ID tells images apart (a Docker daemon's view, where the digest
    says where a local copy was pushed or pulled, not what it is)."""
    if not by_image and state.digest and obs.digest and state.digest != obs.digest:
        return True
    return bool(state.image and obs.image and clean_image_id(state.image) != clean_image_id(obs.image))


def exists(state, obs):
    """The seed's Exists: other metadata equal, created equal to the second, no contradiction."""
    if any(getattr(state, name) != getattr(obs, name) for name in _OTHER):
        return False
    if _truncated(state.created) != _truncated(obs.created):
        return False
    return not contradicts(state, obs)


def adds_something(state, obs):
    """O fills a digest or image that S lacked."""
    return bool((obs.digest and not state.digest) or (obs.image and not state.image))


def classify(state, obs, by_image=False):
    """The event kind for observation `obs` of a key whose current state is `state` (None: no state).

    Returns None when the observation exists in the state and adds nothing. With `by_image` (the
    daemon source) a new digest for the same image ID is `updated`, not `moved`.
    """
    if state is None:
        return ADDED
    if contradicts(state, obs, by_image):
        return MOVED
    if exists(state, obs) and not adds_something(state, obs):
        return None
    return UPDATED


def removed_keys(current, listed):
    """Tags with a current state that a complete listing no longer shows.

    `current` are the tags of one repo (within the listing's scope) whose
    latest event is not `removed`; `listed` is what the complete listing
    returned. The caller guarantees completeness: a failed or partial
    listing must never reach here.
    """
    listed = set(listed)
    return sorted(tag for tag in current if tag not in listed)


@dataclass(frozen=True)
class Latest:
    """A key's latest event as the hash chain holds it: its kind, when it was observed, what it showed."""

    kind: str
    observed_at: str
    observation: Observation


def sighting_event(latest, obs, observed_at, complete=True, by_image=False):
    """The event a sighting makes of a key whose latest event is `latest` (None: the key has none), or None.

    None when a newer observation is in the ledger already (a concurrent run), and when the sighting
    exists in the state and adds nothing. A removed key has no state: it is added again. An incomplete
    sighting (`complete` False: its manifest was not read, a fetch failed) only ever adds or moves, never
    downgrades what is known.
    """
    if latest is not None and latest.observed_at > observed_at:
        return None
    state = latest.observation if latest is not None and latest.kind != REMOVED else None
    kind = classify(state, obs, by_image=by_image)
    if kind is None or (not complete and kind not in (ADDED, MOVED)):
        return None
    return kind


def listing_removals(latest, listed, listed_at, scope, subject_of=lambda digest: None):
    """The tags a complete listing proves removed, of one repository and source: `latest` {tag: Latest}.

    A listing removes a key that it no longer shows, that is not removed already, that its scope speaks
    for, and that was not observed after the listing was made. A referrer listing (a scope with
    `subjects`) speaks only for the referrers of the subjects it read completely: `subject_of(digest)`
    is the subject a referrer's bytes name. The caller guarantees completeness.
    """
    subjects = getattr(scope, "subjects", None)
    current = {tag: key for tag, key in latest.items()
               if key.kind != REMOVED and scope.covers(tag)
               and (subjects is None or subject_of(key.observation.digest) in subjects)}
    return [tag for tag in removed_keys(current, listed) if current[tag].observed_at <= listed_at]


@functools.lru_cache(maxsize=64)
def tag_filter(pattern):
    """A tag filter, compiled once, for RE2: its time is linear in the tag whatever the pattern (as in
    Go's regctl and crane), so no filter can stall a run. Raises re2.error for what RE2 cannot run."""
    import re2  # a native library: not imported by a read command, which loads the store and so this module
    options = re2.Options()
    options.log_errors = False  # a pattern RE2 refuses is reported to the user once, not also logged on stderr
    return re2.compile(pattern, options)


@dataclass(frozen=True)
class Scope:
    """Which tags of a repository a listing speaks for: a removal is proven only inside it.

    `tags` None means every tag; `include` / `exclude` are RE2 regular
    expressions searched in the tag name (anchor them with ^ and $).
    """

    tags: frozenset | None = None
    include: str | None = None
    exclude: str | None = None

    def covers(self, tag):
        """Whether the listing speaks for `tag`. Referrer tags (cosign's, the tag schema's) go with the
        digests they refer to, whatever narrows the image tags, so a listing always speaks for them."""
        return schema_tag(tag) or self.selects(tag)

    def selects(self, tag):
        """Whether the scope picks `tag` by its name, as it picks an image tag (what a run resolves)."""
        if self.tags is not None and tag not in self.tags:
            return False
        if self.include and not tag_filter(self.include).search(tag):
            return False
        return not (self.exclude and tag_filter(self.exclude).search(tag))

    def describe(self):
        """'*' for every tag, else a JSON object of what narrows it (stored in coverage.scope)."""
        narrowed = {name: value for name, value in
                    (("tags", sorted(self.tags) if self.tags is not None else None),
                     ("include", self.include), ("exclude", self.exclude)) if value is not None}
        return json.dumps(narrowed, sort_keys=True) if narrowed else "*"
