"""What a manifest is, decided by what can run, never by a label its pusher chose: a runnable image with a
Notation signature's artifactType, pushed as `app:prod` to the real registry, is an image in `ledger tags`,
`tags --unsigned`, new_images, the notification (a loopback webhook) and the metrics; a real signature is still
a referrer; the referrers tag schema's index is stored only as referrers of its subject."""

import asyncio
import gzip
import json
import sqlite3

import pytest
from datasette.app import Datasette

from ledger import manifests
from ledger import collector
from ledger.manifests import OCI_INDEX, OCI_MANIFEST, compute_digest, facts_of, parse_manifest
from ledger.semantics import Observation
from ledger.serving import serving_metadata
from ledger.store import append

from sandbox import Pusher, ReferrersProxy, _layer_tar
from test_artifacts import (Built, cosign_attestation, cosign_signature, descriptor, manifest, notation_signature,
                            push, referrers_index)
from test_metrics import samples, value
from test_notify import Receiver, short
from test_verify import tamper

NOTARY = "application/vnd.cncf.notary.signature"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def runnable(seed, **fields):
    """An OCI image a runtime runs (an image config, one gzip tar layer), with whatever else `fields` add."""
    tar = _layer_tar(f"runnable {seed}".encode() * 64)
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-02-02T00:00:00Z",
                         "config": {"Env": ["PATH=/usr/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [compute_digest(tar)]}}).encode()
    return manifest(IMAGE_CONFIG, config, [(GZIP_LAYER, gzip.compress(tar, mtime=0), None)], **fields)


def index_of(children, platforms=True, **fields):
    """An OCI index over pushed manifests: with a platform per child, or (platforms=False) shaped as a
    referrers list, each child's descriptor with an artifactType and no platform."""
    extra = {"platform": {"architecture": "amd64", "os": "linux"}} if platforms else {"artifactType": NOTARY}
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, **fields,
                "manifests": [descriptor(OCI_MANIFEST, child.body, **extra) for child in children]}
    return Built(json.dumps(document).encode(), OCI_INDEX)


@pytest.fixture
def labelled(registry, pusher, ns):
    """`app:prod`: a runnable image carrying a Notation signature's artifactType; `app:v1`: an ordinary image
    with a real Notation signature in the referrers tag schema's index."""
    repo = f"{ns}/app"
    prod = runnable(ns, artifactType=NOTARY)
    push(pusher, repo, "prod", prod)
    v1, _, _ = pusher.image(repo, "v1", seed=ns)
    notation = notation_signature(v1)
    push(pusher, repo, notation.digest, notation)
    fallback = referrers_index(notation)
    push(pusher, repo, v1.replace(":", "-"), fallback)
    return {"repo": repo, "prod": prod, "v1": v1, "notation": notation, "fallback": fallback}


def current(ledger):
    """Each tag's kind, and whether a signature artifact refers to it (none verifies: no --signature-key)."""
    return {row["tag"]: (row["kind"], row["has_signature"]) for row in ledger.rows("SELECT * FROM current_tags")}


def test_a_runnable_image_labelled_a_signature_is_an_image_everywhere(registry, ledger, labelled, tmp_path):
    built, target = labelled, f"{registry.host}/{labelled['repo']}"
    metrics, receiver = tmp_path / "ledger.prom", Receiver()
    try:
        ledger.collect(target, "--notify", receiver.url(), "--metrics-file", str(metrics))
    finally:
        receiver.stop()
    prod = built["prod"].digest
    assert current(ledger) == {"prod": ("image", 0), "v1": ("image", 1)}
    listed = json.loads(ledger("tags", "--json").output)
    assert {row["tag"]: row["kind"] for row in listed} == {"prod": "image", "v1": "image"}
    assert [row["tag"] for row in json.loads(ledger("tags", "--unsigned", "--json").output)] == ["prod", "v1"]
    assert {row["digest"] for row in ledger.rows("SELECT digest FROM new_images")} == {prod, built["v1"]}
    assert ledger.rows("SELECT new_images FROM runs") == [{"new_images": 2}]
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 1 ok: 2 new images"
    assert f"new image {target}:prod {short(prod)}" in message["message"].splitlines()
    found = samples(metrics.read_text())
    assert value(found, "ledger_new_images_total") == 2
    assert value(found, "ledger_tags_tracked", source="registry") == 2
    # its config was read, as an image's is: the event has its image ID and created time
    [event] = ledger.rows("SELECT image, created FROM events WHERE tag = 'prod'")
    assert event == {"image": compute_digest(built["prod"].config), "created": "2024-02-02T00:00:00Z"}
    row = ledger.rows("SELECT kind, artifact_kind, category FROM manifests WHERE digest = ?", [prod])[0]
    assert row == {"kind": "artifact", "artifact_kind": "signature", "category": "image"}  # sealed words, the answer
    # the real signature is still a referrer, and signs v1
    assert {(r["referrer"], r["kind"], r["via"]) for r in ledger.rows("SELECT * FROM current_referrers")} == {
        (built["notation"].digest, "signature", "referrers")}
    # the tag schema's index: referrers of its subject, no platforms, no image index anywhere
    fallback = built["fallback"].digest
    assert ledger.rows("SELECT count(*) AS n FROM platforms WHERE index_digest = ?", [fallback]) == [{"n": 0}]
    assert ledger.rows("SELECT category FROM manifests WHERE digest = ?", [fallback]) == [{"category": "referrers"}]
    assert ledger.rows("SELECT kind FROM new_digests WHERE digest = ?", [fallback]) == [{"kind": "referrers"}]
    assert ledger("verify").exit_code == 0


def test_the_changes_feed_and_signed_at_answer_from_what_runs(registry, ledger, labelled):
    target = f"{registry.host}/{labelled['repo']}"
    ledger.collect(target)
    datasette = Datasette([ledger.path], metadata=serving_metadata(ledger.path))

    def query(name, **params):
        async def get():
            response = await datasette.client.get(f"/ledger/{name}.json", params={"_shape": "array", **params})
            assert response.status_code == 200, response.text
            return response.json()
        return asyncio.run(get())

    assert {row["atom_title"] for row in query("changes_feed")} == {f"new image: {target}:prod",
                                                                     f"new image: {target}:v1"}
    [signed] = query("signed_at", ref=f"{target}:v1")
    assert (signed["signed"], signed["signature"]) == (0, labelled["notation"].digest)  # there, not verified
    assert query("signed_at", ref=f"{target}:prod")[0]["signed"] == 0


def test_a_runnable_index_is_an_image_index_whatever_its_label_or_shape(registry, pusher, ledger, ns):
    repo = f"{ns}/app"
    amd, arm = runnable(ns + "amd"), runnable(ns + "arm")
    for child in (amd, arm):
        push(pusher, repo, child.digest, child)
    labelled = index_of([amd, arm], artifactType=NOTARY)  # platforms, and a signature's label
    shaped = index_of([amd], platforms=False)  # a referrers list's shape, under an image tag
    push(pusher, repo, "multi", labelled)
    push(pusher, repo, "bare", shaped)
    ledger.collect(f"{registry.host}/{repo}")
    assert current(ledger) == {"multi": ("index", 0), "bare": ("index", 0)}
    assert {row["tag"] for row in ledger.rows("SELECT tag FROM new_images")} == {"multi", "bare"}
    assert ledger("verify").exit_code == 0
    tamper(ledger.path, f"UPDATE manifests SET category = 'referrers' WHERE digest = '{shaped.digest}'")
    assert (f"manifests digest={shaped.digest}: category does not match its bytes"
            in ledger("verify", expect=1).output)


def test_a_runnable_referrer_is_a_referrer_but_never_a_signature(registry, pusher, ledger, ns):
    """Reached through the referrers API, a runnable image with a subject is a referrer of it (the ledger
    reached it as one), but it signs nothing, whatever its artifactType says."""
    repo = f"{ns}/app"
    with ReferrersProxy(registry.host) as api:
        through = Pusher(f"http://{api.host}")
        image, _, _ = through.image(repo, "prod", seed=ns)
        disguised = runnable(ns, artifactType=NOTARY, subject={"mediaType": OCI_MANIFEST, "digest": image,
                                                                "size": 500})
        push(through, repo, disguised.digest, disguised)
        ledger.collect(f"{api.host}/{repo}")
    assert current(ledger) == {"prod": ("image", 0)}
    assert {(r["referrer"], r["kind"]) for r in ledger.rows("SELECT * FROM current_referrers")} == {
        (disguised.digest, "image")}
    assert ledger("verify").exit_code == 0


@pytest.mark.parametrize("built,category", [
    (runnable("a", artifactType=NOTARY), "image"),
    (runnable("b", artifactType=NOTARY, subject={"mediaType": OCI_MANIFEST, "digest": "sha256:" + "a" * 64,
                                                  "size": 1}), "image"),
    (cosign_signature("sha256:" + "a" * 64), "signature"),  # an image config, a simple-signing layer
    (cosign_attestation("sha256:" + "a" * 64), "attestation"),
    (notation_signature("sha256:" + "a" * 64), "signature"),
])
def test_what_can_run_decides_the_category(built, category):
    parsed = parse_manifest(built.body, built.digest)
    assert parsed.category == category
    assert manifests.needs_config(parsed) == (category == "image" or parsed.kind == "image")


def test_a_referrers_list_writes_no_platforms_and_lists_its_entries():
    notation = notation_signature("sha256:" + "a" * 64)
    built = referrers_index(notation)
    facts = facts_of(parse_manifest(built.body, built.digest), built.body)
    assert "platforms" not in facts and [entry["digest"] for entry in facts["referrers"]] == [notation.digest]


def _as_schema_8(path):
    """The file as schema 8 code left it: no category column, the update guard of then gone (the upgrade
    re-creates it)."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER manifests_append_only_update")
    for (view,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'").fetchall():
        conn.execute(f"DROP VIEW {view}")
    conn.execute("ALTER TABLE manifests DROP COLUMN category")
    conn.execute("ALTER TABLE errors DROP COLUMN count")  # schema 10's
    conn.execute("DROP INDEX coverage_listings_by_repo")
    conn.execute("ALTER TABLE coverage_listings RENAME TO coverage")  # schema 19's (its new tables stay: sealed)
    conn.execute("PRAGMA user_version = 8")
    conn.commit()
    conn.close()


def test_a_ledger_of_before_gains_the_categories_and_still_verifies(registry, ledger, labelled, monkeypatch):
    """Rows written by schema 8 code: the labelled image kept as an artifact (its config never read), the
    referrers list's entries as platforms rows. Their seals cover that, so it stays and verifies; the
    category is filled in from the bytes, and the views answer from it."""
    target = f"{registry.host}/{labelled['repo']}"
    original = manifests.facts_of

    def facts_of_before(manifest, body, config_body=None):
        facts = original(manifest, body, config_body)
        if "referrers" in facts:
            facts["platforms"] = facts.pop("referrers")
        return facts

    with monkeypatch.context() as old_rules:
        old_rules.setattr(manifests, "_image_config", lambda manifest: manifest.kind == "image")
        old_rules.setattr(manifests, "facts_of", facts_of_before)
        old_rules.setattr(collector.work, "facts_of", facts_of_before)
        old_rules.setattr(append, "_observed", lambda derived: Observation(
            digest=derived["digest"], image=derived["config_digest"] if derived["kind"] == "image" else None,
            media_type=derived["media_type"], created=derived.get("created"), author=derived.get("author"),
            size=derived.get("size")))
        ledger.collect(target)
    prod, fallback = labelled["prod"].digest, labelled["fallback"].digest
    assert ledger.rows("SELECT config_body FROM manifests WHERE digest = ?", [prod]) == [{"config_body": None}]
    assert ledger.rows("SELECT image FROM events WHERE tag = 'prod'") == [{"image": None}]
    assert ledger.rows("SELECT count(*) AS n FROM platforms WHERE index_digest = ?", [fallback]) == [{"n": 1}]
    _as_schema_8(ledger.path)

    ledger.collect(target)  # opens for writing: the upgrade
    assert ledger("verify").exit_code == 0
    categories = {row["digest"]: row["category"] for row in ledger.rows("SELECT digest, category FROM manifests")}
    assert (categories[prod], categories[fallback], categories[labelled["v1"]]) == ("image", "referrers", "image")
    assert current(ledger) == {"prod": ("image", 0), "v1": ("image", 1)}
    assert {row["digest"] for row in ledger.rows("SELECT digest FROM new_images")} == {prod, labelled["v1"]}
    # what the old rules never read is learnt once: prod's image ID, as an update of the same digest
    events = ledger.rows("SELECT kind, image FROM events WHERE tag = 'prod' ORDER BY id")
    assert [event["kind"] for event in events] == ["added", "updated"] and events[-1]["image"] is not None
    ledger.collect(target)
    assert len(ledger.rows("SELECT id FROM events WHERE tag = 'prod'")) == 2
    tamper(ledger.path, f"UPDATE manifests SET category = 'signature' WHERE digest = '{prod}'")
    assert f"manifests digest={prod}: category does not match its bytes" in ledger("verify", expect=1).output


def referrer_tag(digest, suffix=""):
    """The tag cosign (with a suffix) or the referrers tag schema writes for a subject."""
    return digest.replace(":", "-") + suffix


def test_a_runnable_image_under_a_referrer_tag_name_is_an_image_tag(registry, pusher, ledger, ns, tmp_path):
    """The tag's name is the pusher's word: runnable images pushed as `sha256-<zeros>` (no such subject: the
    tag was never resolved before) and as prod's cosign `.sig` / `.att` tags are image tags everywhere."""
    repo, target = f"{ns}/app", f"{registry.host}/{ns}/app"
    prod, _, _ = pusher.image(repo, "prod", seed=ns)
    images = {referrer_tag("sha256:" + "0" * 64): runnable(ns + "orphan"),
              referrer_tag(prod, ".sig"): runnable(ns + "sig"), referrer_tag(prod, ".att"): runnable(ns + "att")}
    for tag, built in images.items():
        push(pusher, repo, tag, built)
    metrics, receiver = tmp_path / "ledger.prom", Receiver()
    try:
        ledger.collect(target, "--notify", receiver.url(), "--metrics-file", str(metrics))
    finally:
        receiver.stop()
    expected = {tag: ("image", 0) for tag in images} | {"prod": ("image", 0)}
    assert current(ledger) == expected  # a runnable .sig is no signature of prod
    assert {row["tag"] for row in json.loads(ledger("tags", "--json").output)} == set(expected)
    assert {row["tag"] for row in json.loads(ledger("tags", "--unsigned", "--json").output)} == set(expected)
    assert {row["tag"]: row["digest"] for row in ledger.rows("SELECT tag, digest FROM new_images")} == {
        **{tag: built.digest for tag, built in images.items()}, "prod": prod}
    [run] = json.loads(ledger("runs", "--json").output)
    assert (run["tags_seen"], run["new_images"]) == (4, 4)
    [message] = receiver.messages()
    assert message["title"] == "registry ledger: run 1 ok: 4 new images"
    assert all(f"new image {target}:{tag}" in message["message"] for tag in images)
    found = samples(metrics.read_text())
    assert value(found, "ledger_tags_tracked", source="registry") == 4
    assert not ledger.rows("SELECT * FROM current_referrers")  # an image at a cosign tag refers to nothing
    typo = ledger("tags", f"{target}:sha256-{'0' * 63}", expect=1).output  # suggests it, as any tag it holds
    assert f"did you mean {target}:sha256-{'0' * 64}?" in typo
    # moved to another image, then gone: replaced_tags and removed_tags say so, as of any image tag
    orphan = referrer_tag("sha256:" + "0" * 64)
    moved = runnable(ns + "moved")
    push(pusher, repo, orphan, moved)
    ledger.collect(target)
    assert [(row["tag"], row["new_digest"]) for row in ledger.rows("SELECT * FROM replaced_tags")] == [
        (orphan, moved.digest)]
    pusher.delete(repo, moved.digest)
    ledger.collect(target)
    assert [(row["tag"], row["last_digest"]) for row in ledger.rows("SELECT * FROM removed_tags")] == [
        (orphan, moved.digest)]
    assert ledger("verify").exit_code == 0


def test_genuine_referrer_tags_stay_referrers_even_with_their_subject_gone(registry, pusher, proxy, ledger, ns):
    """A cosign signature and a tag schema index of a live image, and of one deleted before the run (their
    tags resolved as orphans, one request each), and an empty tag schema index: referrers only, no image
    tags, no platforms rows, no new images."""
    repo, target = f"{ns}/app", f"{proxy.host}/{ns}/app"
    v1, _, _ = pusher.image(repo, "v1", seed=ns)
    gone, _, _ = pusher.image(repo, "gone", seed=ns + "gone")
    pushed = {}
    for subject in (v1, gone):
        signature, notation = cosign_signature(subject), notation_signature(subject)
        push(pusher, repo, referrer_tag(subject, ".sig"), signature)
        push(pusher, repo, notation.digest, notation)
        fallback = referrers_index(notation)
        push(pusher, repo, referrer_tag(subject), fallback)
        pushed[subject] = (signature, fallback)
    empty = referrers_index()  # a tag schema index whose last referrer was deleted
    push(pusher, repo, referrer_tag("sha256:" + "e" * 64), empty)
    pusher.delete(repo, gone)
    ledger.collect(target)
    assert current(ledger) == {"v1": ("image", 1)}
    assert [row["tag"] for row in json.loads(ledger("tags", "--json").output)] == ["v1"]
    assert {row["digest"] for row in ledger.rows("SELECT digest FROM new_images")} == {v1}
    assert json.loads(ledger("runs", "--json").output)[0]["new_images"] == 1
    # the orphans were resolved: their events are there, as referrers of the subject their name claims
    tags = {row["tag"] for row in ledger.rows("SELECT tag FROM events WHERE source = 'registry'")}
    assert tags == {"v1", referrer_tag(v1, ".sig"), referrer_tag(v1), referrer_tag(gone, ".sig"), referrer_tag(gone),
                    referrer_tag("sha256:" + "e" * 64)}
    cosign = {(row["subject"], row["referrer"], row["kind"]) for row in
              ledger.rows("SELECT * FROM current_referrers WHERE via = 'cosign tag'")}
    assert cosign == {(subject, pushed[subject][0].digest, "signature") for subject in (v1, gone)}
    for _, fallback in pushed.values():
        assert ledger.rows("SELECT category FROM manifests WHERE digest = ?", [fallback.digest]) == [
            {"category": "referrers"}]
    assert ledger.rows("SELECT count(*) AS n FROM platforms WHERE index_digest IN (?, ?, ?)",
                       [*(fallback.digest for _, fallback in pushed.values()), empty.digest]) == [{"n": 0}]
    proxy.reset()
    ledger.collect(target)  # warm: one HEAD per tag, the orphans' included, and nothing else per tag
    assert (proxy.counts["head"], proxy.counts["manifest"]) == (len(tags), 0)
    assert ledger("verify").exit_code == 0
