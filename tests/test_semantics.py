"""Every row of DESIGN.md's event table and every branch of the seed's Exists / Replace."""

import pytest

from ledger.referrers import ReferrerScope
from ledger.semantics import (Latest, Observation, Scope, classify, clean_image_id, exists, listing_removals,
                              removed_keys, sighting_event)

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
I1, I2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
BASE = dict(digest=D1, image=I1, media_type="m", created="2024-01-01T00:00:00Z", author="ann", size=10)


def obs(**changes):
    return Observation(**{**BASE, **changes})


CASES = [
    # (name, state, observation, expected event)
    ("no state: added", None, obs(), "added"),
    ("exact match: nothing", obs(), obs(), None),
    ("digest differs: moved", obs(), obs(digest=D2), "moved"),
    ("image differs: moved", obs(), obs(image=I2), "moved"),
    ("both differ: moved", obs(), obs(digest=D2, image=I2), "moved"),
    ("digest differs with other metadata too: moved", obs(), obs(digest=D2, size=99), "moved"),
    ("image prefix is not a contradiction", obs(), obs(image=I1.split(":")[1]), None),
    ("image compared without any algorithm prefix", obs(image="sha256:abc"), obs(image="sha512:abc"), None),
    ("empty digest in observation never contradicts", obs(), obs(digest=None), None),
    ("empty image in observation never contradicts", obs(), obs(image=None), None),
    ("empty digest in state, observation fills it: updated", obs(digest=None), obs(), "updated"),
    ("empty image in state, observation fills it: updated", obs(image=None), obs(), "updated"),
    ("both empty digests: compare the rest", obs(digest=None), obs(digest=None), None),
    ("created equal to the second: nothing", obs(created="2024-01-01T00:00:00Z"),
     obs(created="2024-01-01T00:00:00.999999Z"), None),
    ("created differs by a second: updated", obs(), obs(created="2024-01-01T00:00:01Z"), "updated"),
    ("created appears: updated", obs(created=None), obs(), "updated"),
    ("size differs: updated (the seed's Replace)", obs(), obs(size=11), "updated"),
    ("author differs: updated", obs(), obs(author="bob"), "updated"),
    ("media type differs: updated", obs(), obs(media_type="n"), "updated"),
    ("digest contradiction wins over filled image", obs(image=None), obs(digest=D2), "moved"),
    ("image contradiction with empty digests", obs(digest=None), obs(digest=None, image=I2), "moved"),
]


@pytest.mark.parametrize("name,state,observation,expected", CASES, ids=[c[0] for c in CASES])
def test_classify_follows_the_event_table(name, state, observation, expected):
    assert classify(state, observation) == expected


@pytest.mark.parametrize("state,observation,expected", [
    (obs(), obs(), True),
    (obs(), obs(author="x"), False),  # other metadata must match exactly
    (obs(), obs(created="2024-01-01T00:00:00.5Z"), True),  # truncated to seconds
    (obs(), obs(created="2024-01-01T00:00:02Z"), False),
    (obs(), obs(image=I2), False),  # contradictory image
    (obs(), obs(digest=D2), False),  # contradictory manifest hash
    (obs(image=None, digest=None), obs(), True),  # empty values are not contradictions
])
def test_exists_matches_the_seed(state, observation, expected):
    assert exists(state, observation) is expected


def test_clean_image_id_strips_the_algorithm():
    assert clean_image_id("sha256:abc") == "abc"
    assert clean_image_id("abc") == "abc"
    assert clean_image_id(None) == ""


def test_removed_keys_are_current_tags_missing_from_the_listing():
    assert removed_keys({"a": 1, "b": 2, "c": 3}, ["a", "c", "d"]) == ["b"]
    assert removed_keys({"a": 1}, []) == ["a"]
    assert removed_keys({}, ["a"]) == []


T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"


def test_a_sighting_older_than_the_keys_latest_event_makes_none():
    """A concurrent run appended a newer observation first: the older one is not replayed over it."""
    latest = Latest("added", T1, obs())
    assert sighting_event(latest, obs(digest=D2), T0) is None
    assert sighting_event(latest, obs(digest=D2), T1) == "moved"
    assert sighting_event(None, obs(), T0) == "added"


def test_a_removed_key_seen_again_is_added():
    assert sighting_event(Latest("removed", T0, obs()), obs(), T1) == "added"


def test_an_incomplete_sighting_only_adds_or_moves():
    """A manifest not read (a fetch failed) never downgrades what the ledger knows of the key."""
    bare = Observation(digest=D1, media_type="m")
    assert sighting_event(Latest("added", T0, obs()), bare, T1, complete=False) is None
    assert sighting_event(Latest("added", T0, obs()), bare, T1) == "updated"
    assert sighting_event(Latest("added", T0, obs()), Observation(digest=D2), T1, complete=False) == "moved"
    assert sighting_event(None, bare, T1, complete=False) == "added"


def test_a_listing_removes_only_current_keys_in_its_scope_seen_before_it():
    latest = {"gone": Latest("added", T0, obs()), "kept": Latest("added", T0, obs()),
              "already": Latest("removed", T0, obs()), "newer": Latest("moved", T2, obs()),
              "outside": Latest("added", T0, obs())}
    assert listing_removals(latest, ["kept"], T1, Scope(exclude="^outside$")) == ["gone"]
    assert listing_removals(latest, ["kept"], T1, Scope()) == ["gone", "outside"]


def test_a_referrer_listing_removes_only_referrers_of_the_subjects_it_read():
    latest = {"a": Latest("added", T0, obs(digest=D1)), "b": Latest("added", T0, obs(digest=D2))}
    subject = {D1: "sha256:" + "s" * 64}.get
    assert listing_removals(latest, [], T1, ReferrerScope(frozenset({"sha256:" + "s" * 64})), subject) == ["a"]
    assert listing_removals(latest, [], T1, ReferrerScope(frozenset()), subject) == []


def test_for_a_daemon_only_the_image_id_tells_images_apart():
    local = Observation(image="sha256:" + "1" * 64)
    pushed = Observation(image="sha256:" + "1" * 64, digest="sha256:" + "a" * 64)
    repushed = Observation(image="sha256:" + "1" * 64, digest="sha256:" + "b" * 64)
    rebuilt = Observation(image="sha256:" + "2" * 64, digest="sha256:" + "b" * 64)
    assert classify(local, pushed, by_image=True) == "updated"  # built locally, then pushed
    assert classify(pushed, repushed, by_image=True) == "updated"
    assert classify(pushed, repushed) == "moved"  # a registry's digest is the image
    assert classify(pushed, rebuilt, by_image=True) == "moved"
    assert classify(pushed, local, by_image=True) is None  # an empty digest never contradicts or updates
