"""Referrers with history: signatures, attestations and SBOMs found through the referrers tag schema and
cosign's tags (the real registry: distribution 2.8 has no referrers API) and through the OCI 1.1 API (a
loopback proxy in front of the same registry, answering `/v2/<name>/referrers/<digest>` from what was
pushed through it). Artifacts are pushed as the tools write them, and with the real ORAS SDK."""

import json

import pytest

from sandbox import ReferrersProxy

from oras_push import oras_attach, oras_push
from test_artifacts import (cosign_attestation, cosign_bundle, cosign_sbom, cosign_signature, notation_signature,
                            push, referrers_index)

SPDX = "application/spdx+json"


@pytest.fixture
def api(registry):
    """The real registry, serving the referrers API through a proxy."""
    with ReferrersProxy(registry.host) as running:
        yield running


def current(ledger, where=""):
    return ledger.rows(f"SELECT repo, tag, kind, has_signature, attested, sbom FROM current_tags {where} ORDER BY tag")


def referrers(ledger):
    return {(row["subject"], row["referrer"], row["kind"], row["via"])
            for row in ledger.rows("SELECT * FROM current_referrers")}


def events(ledger):
    return ledger.rows("SELECT kind, tag, digest, created, source FROM events ORDER BY id")


def referrer_events(ledger):
    return [(row["kind"], row["tag"]) for row in events(ledger) if row["source"] == "referrer"]


@pytest.fixture
def signed_image(registry, pusher, ns):
    """`app:prod`, with cosign v2's three tags and, in the referrers tag schema's index, a cosign v3
    signature bundle and a Notation signature (as cosign and notation push them to a registry without
    the referrers API)."""
    repo = f"{ns}/app"
    image, _, _ = pusher.image(repo, "prod", seed=ns)
    prefix = image.replace(":", "-")
    built = {"image": image, "repo": repo, "prefix": prefix, "sig": cosign_signature(image),
             "att": cosign_attestation(image), "sbom": cosign_sbom(), "bundle": cosign_bundle(image),
             "notation": notation_signature(image)}
    for suffix in ("sig", "att", "sbom"):
        push(pusher, repo, f"{prefix}.{suffix}", built[suffix])
    for untagged in ("bundle", "notation"):
        push(pusher, repo, built[untagged].digest, built[untagged])
    push(pusher, repo, prefix, referrers_index(built["bundle"], built["notation"]))
    return built


def test_the_tag_schema_and_cosign_tags_make_referrers_not_images(registry, ledger, signed_image):
    built = signed_image
    ledger.collect(f"{registry.host}/{built['repo']}")
    assert current(ledger) == [{"repo": built["repo"], "tag": "prod", "kind": "image", "has_signature": 1, "attested": 1,
                                "sbom": 1}]
    image = built["image"]
    assert referrers(ledger) == {
        (image, built["sig"].digest, "signature", "cosign tag"), (image, built["att"].digest, "attestation", "cosign tag"),
        (image, built["sbom"].digest, "sbom", "cosign tag"), (image, built["bundle"].digest, "signature", "referrers"),
        (image, built["notation"].digest, "signature", "referrers")}
    run = ledger.rows("SELECT new_images, status FROM runs")[0]
    assert run == {"new_images": 1, "status": "ok"}
    assert [row["digest"] for row in ledger.rows("SELECT digest FROM new_images")] == [image]
    kinds = {row["kind"] for row in ledger.rows("SELECT kind FROM new_digests")}
    assert kinds == {"image", "signature", "attestation", "sbom", "referrers"}
    assert sorted(referrer_events(ledger)) == sorted([("added", built["bundle"].digest),
                                                      ("added", built["notation"].digest)])
    # no zero time is a time: cosign's configs say 0001-01-01, the bundle says when it was made
    created = {row["digest"]: row["created"] for row in events(ledger)}
    assert created[built["sig"].digest] is None and created[built["bundle"].digest] == "2024-03-08T18:18:20Z"
    assert not ledger.rows("SELECT 1 FROM events WHERE created LIKE '0001%'")
    ledger("verify")


def test_a_warm_run_over_the_tag_schema_makes_no_request_per_digest(registry, pusher, ledger, signed_image):
    built = signed_image
    with ReferrersProxy(registry.host, serve_referrers=False) as proxy:
        ledger.collect(f"{proxy.host}/{built['repo']}")
        proxy.reset()
        ledger.collect(f"{proxy.host}/{built['repo']}")
        # the five referrer tags are in the tag list: HEADs like any tag; one request asks whether the API is served
        assert dict(proxy.counts) == {"ping": 1, "tags": 1, "head": 5, "referrers": 1}
        proxy.reset()
        ledger.collect(f"{proxy.host}/{built['repo']}", "--referrers", "never")
        assert dict(proxy.counts) == {"ping": 1, "tags": 1, "head": 5}
    assert ledger.rows("SELECT count(*) AS n FROM events WHERE run_id > 1") == [{"n": 0}]


def test_a_referrer_gone_from_the_fallback_index_is_removed_and_the_signature_state_follows(
        registry, pusher, ledger, signed_image):
    built = signed_image
    target = f"{registry.host}/{built['repo']}"
    ledger.collect(target)
    push(pusher, built["repo"], built["prefix"], referrers_index(built["notation"]))  # the bundle is dropped
    ledger.collect(target)
    assert referrer_events(ledger)[-1] == ("removed", built["bundle"].digest)
    assert built["bundle"].digest not in {row[1] for row in referrers(ledger)}
    assert current(ledger)[0]["has_signature"] == 1  # still: the cosign tag and the Notation signature
    pusher.delete(built["repo"], built["sig"].digest)  # the cosign signature tag goes with it
    pusher.delete(built["repo"], built["notation"].digest)
    push(pusher, built["repo"], built["prefix"], referrers_index())
    ledger.collect(target)
    assert current(ledger)[0]["has_signature"] == 0
    removed = {row["tag"] for row in ledger.rows("SELECT tag FROM removed_tags")}
    assert removed == set()  # a signature tag gone is not an image tag removed
    ledger("verify")


def test_the_referrers_api_finds_untagged_referrers_once_per_digest(registry, pusher, api, ledger, ns):
    repo = f"{ns}/app"
    index, children = pusher.index(repo, "prod", [("amd64", None), ("arm64", "v8")], seed=ns, attestations=False)
    child = children[("amd64", None)]
    signature = cosign_bundle(index)
    push(pusher, repo, signature.digest, signature)  # pushed around the proxy: it knows only what passes it
    api_pusher = type(pusher)(api.url)
    push(api_pusher, repo, signature.digest, signature)
    sbom = oras_attach(api.host, repo, child, {"sbom.spdx.json": b'{"spdxVersion": "SPDX-2.3"}'}, SPDX)
    api.reset()
    ledger.collect(f"{api.host}/{repo}")
    assert api.counts["referrers"] == 3  # the index and its two platforms, once each
    assert current(ledger) == [{"repo": repo, "tag": "prod", "kind": "index", "has_signature": 1, "attested": 0,
                                "sbom": 1}]
    assert referrers(ledger) == {(index, signature.digest, "signature", "referrers"),
                                 (child, sbom, "sbom", "referrers")}
    api.reset()
    ledger.collect(f"{api.host}/{repo}")
    assert dict(api.counts) == {"ping": 1, "tags": 1, "head": 1, "referrers": 3}
    api_pusher.delete(repo, sbom)
    ledger.collect(f"{api.host}/{repo}")
    assert referrer_events(ledger)[-1] == ("removed", sbom)
    assert current(ledger)[0]["sbom"] == 0
    ledger("verify")


def test_every_page_of_a_referrers_list_is_read(registry, pusher, ledger, ns):
    repo = f"{ns}/app"
    image, _, _ = pusher.image(repo, "prod", seed=ns)
    with ReferrersProxy(registry.host, page_size=1) as api:
        digests = {oras_attach(api.host, repo, image, {f"report{n}.json": b"{}"}, f"application/vnd.example.r{n}")
                   for n in range(3)}
        ledger.collect(f"{api.host}/{repo}")
        assert api.counts["referrers"] == 3  # one digest, three pages
    assert {row[1] for row in referrers(ledger)} == digests
    assert {row[2] for row in referrers(ledger)} == {"artifact"}


def test_a_listed_referrer_whose_manifest_names_another_subject_is_not_recorded(registry, pusher, api, ledger, ns):
    repo = f"{ns}/app"
    image, _, _ = pusher.image(repo, "prod", seed=ns)
    other, _, _ = pusher.image(repo, "other", seed=ns + "other")
    stray = oras_attach(api.host, repo, other, {"a.json": b"{}"}, "application/vnd.example.a")

    def lie(method, path, status, headers, body):
        if f"/referrers/{image}" in path:  # list the other image's referrer as this one's
            entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": stray, "size": 1}
            return status, headers, json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
        return None
    api.alter_response = lie
    ledger.collect(f"{api.host}/{repo}", expect=3)
    assert referrers(ledger) == {(other, stray, "artifact", "referrers")}
    error = ledger.rows("SELECT code, message FROM errors")[0]
    assert error["code"] == "REFERRER_MISMATCH" and f"listed as a referrer of {image}" in error["message"]


def test_a_failed_referrers_listing_removes_nothing(registry, pusher, api, ledger, ns):
    repo = f"{ns}/app"
    image, _, _ = pusher.image(repo, "prod", seed=ns)
    signature = oras_attach(api.host, repo, image, {"sig": b"x"}, "application/vnd.cncf.notary.signature")
    ledger.collect(f"{api.host}/{repo}")
    api.alter_response = lambda method, path, *rest: (503, [], b"") if "/referrers/" in path else None
    ledger.collect(f"{api.host}/{repo}", "--retries", "0", expect=3)
    assert referrer_events(ledger) == [("added", signature)]
    assert current(ledger)[0]["has_signature"] == 1


def test_referrers_always_says_the_registry_does_not_serve_the_api(registry, ledger, signed_image):
    built = signed_image
    ledger.collect(f"{registry.host}/{built['repo']}", "--referrers", "always", expect=3)
    assert [row["code"] for row in ledger.rows("SELECT code FROM errors")] == ["REFERRERS_UNSUPPORTED"]
    # the tag schema was still read: the referrers were added, and nothing can be removed
    assert len(referrers(ledger)) == 5


@pytest.mark.parametrize("narrowed", [["--include-tags", "^prod$"], [":prod"]])
def test_filters_and_named_tags_still_follow_the_image_s_referrer_tags(registry, ledger, signed_image, narrowed):
    built = signed_image
    target = f"{registry.host}/{built['repo']}" + (narrowed[0] if narrowed[0].startswith(":") else "")
    ledger.collect(target, *[flag for flag in narrowed if not flag.startswith(":")])
    assert current(ledger)[0]["has_signature"] == 1 and len(referrers(ledger)) == 5


def test_an_oras_pushed_artifact_is_an_artifact_with_its_created_time(registry, ledger, ns):
    repo = f"{ns}/reports"
    digest = oras_push(registry.host, repo, "v1", {"report.json": b'{"ok": true}'},
                       artifact_type="application/vnd.example.report.config.v1+json",
                       annotations={"org.opencontainers.image.created": "2025-02-03T04:05:06Z"})
    ledger.collect(f"{registry.host}/{repo}")
    assert current(ledger) == [{"repo": repo, "tag": "v1", "kind": "artifact", "has_signature": 0, "attested": 0, "sbom": 0}]
    event = events(ledger)[0]
    assert (event["digest"], event["created"]) == (digest, "2025-02-03T04:05:06Z")
    assert not ledger.rows("SELECT 1 FROM new_images")


def test_the_questions_an_auditor_asks(registry, pusher, ledger, signed_image):
    """`ledger tags --unsigned`, `ledger history` with the signature changes beside the moves, and the
    canned queries: unsigned current tags, referrers in a window, was REF signed at TIME."""
    import asyncio

    from datasette.app import Datasette

    from ledger.serving import serving_metadata

    built = signed_image
    repo, target = built["repo"], f"{registry.host}/{built['repo']}"
    unsigned, _, _ = pusher.image(repo, "dev", seed=built["repo"] + "dev")
    ledger.collect(target)
    before = ledger.rows("SELECT finished_at FROM runs")[0]["finished_at"]
    pusher.delete(repo, built["sig"].digest)
    push(pusher, repo, built["prefix"], referrers_index())  # every signature of prod gone
    ledger.collect(target)
    listed = json.loads(ledger("tags", "--json").output)
    assert [(row["tag"], row["signed"]) for row in listed] == [("dev", 0), ("prod", 0)]
    assert json.loads(ledger("tags", "--unsigned", "--json").output) == listed
    history = json.loads(ledger("history", f"{target}:prod", "--json").output)
    assert history[0]["what"] == "tag" and history[0]["kind"] == "added"
    assert sorted((row["kind"], row["what"]) for row in history[1:]) == sorted(
        [("added", "signature")] * 3 + [("added", "attestation"), ("added", "sbom")] + [("removed", "signature")] * 3)
    assert all(row["subject"] == built["image"] for row in history[1:])
    table = ledger("history", f"{target}:prod").output
    assert "signature" in table and "what" in table.splitlines()[0]

    datasette = Datasette([ledger.path], metadata=serving_metadata(ledger.path))

    def query(name, **params):
        async def get():
            response = await datasette.client.get(f"/ledger/{name}.json", params={"_shape": "array", **params})
            assert response.status_code == 200, response.text
            return response.json()
        return asyncio.run(get())

    assert {row["tag"] for row in query("unsigned_current_tags")} == {"dev", "prod"}
    assert [row["tag"] for row in query("unsigned_current_tags", pattern="*:dev")] == ["dev"]
    window = query("referrers_in_window", since=before)
    assert sorted((row["kind"], row["what"]) for row in window) == [("removed", "signature")] * 3
    then = query("signed_at", ref=f"{target}:prod", at=before)
    assert {row["signature"] for row in then} == {built["sig"].digest, built["bundle"].digest,
                                                  built["notation"].digest}
    # signatures were there, but no --signature-key verified them (their bytes are not real signatures)
    assert all(row["signed"] == 0 and row["digest"] == built["image"] for row in then)
    now = query("signed_at", ref=f"{target}:prod")
    assert [(row["signed"], row["signature"]) for row in now] == [(0, None)]
    assert query("signed_at", ref=f"{target}:dev", at=before)[0]["signed"] == 0
    assert unsigned != built["image"]


def test_a_podman_manifest_list_s_platforms_have_their_referrers_followed(registry, podman, api, ledger, ns):
    """A list pushed by podman (`manifest push --all`); an SBOM attached to one platform, a signature to
    the list, both by ORAS through a registry serving the referrers API."""
    from podman import manifest_list

    repo = f"{ns}/multi"
    for architecture in ("amd64", "arm64"):
        podman.build(f"localhost/{ns}-{architecture}:1", architecture.encode() * 100)
    manifest_list(podman, f"{ns}-list", [(f"localhost/{ns}-{a}:1", a) for a in ("amd64", "arm64")],
                  f"{registry.host}/{repo}:1.0")
    ledger.collect(f"{registry.host}/{repo}")
    index = ledger.rows("SELECT digest FROM current_tags")[0]["digest"]
    children = [row["digest"] for row in ledger.rows(
        "SELECT digest FROM platforms WHERE index_digest = ? ORDER BY position", [index])]
    assert len(children) == 2
    sbom = oras_attach(api.host, repo, children[1], {"bom.json": b'{"bomFormat": "CycloneDX"}'},
                       "application/vnd.cyclonedx+json")
    signature = oras_attach(api.host, repo, index, {"sig": b"x"}, "application/vnd.cncf.notary.signature")
    api.reset()
    ledger.collect(f"{api.host}/{repo}")
    assert api.counts["referrers"] == 3
    rows = ledger.rows("SELECT tag, kind, has_signature, attested, sbom FROM current_tags WHERE registry = ?", [api.host])
    assert rows == [{"tag": "1.0", "kind": "index", "has_signature": 1, "attested": 0, "sbom": 1}]
    assert referrers(ledger) == {(index, signature, "signature", "referrers"), (children[1], sbom, "sbom", "referrers")}
    ledger("verify")


def test_referrers_never_adds_but_never_removes_what_only_the_api_lists(registry, pusher, api, ledger, ns):
    repo = f"{ns}/app"
    image, _, _ = pusher.image(repo, "prod", seed=ns)
    signature = oras_attach(api.host, repo, image, {"sig": b"x"}, "application/vnd.cncf.notary.signature")
    ledger.collect(f"{api.host}/{repo}")
    ledger.collect(f"{api.host}/{repo}", "--referrers", "never")
    ledger.collect(f"{api.host}/{repo}")
    assert referrer_events(ledger) == [("added", signature)]
    assert current(ledger)[0]["has_signature"] == 1


@pytest.mark.parametrize("name, body, link", [
    ("not JSON", b"<html>referrers</html>", None),
    ("nested 200,000 deep", b'{"manifests":' + b"[" * 200_000 + b"]" * 200_000 + b"}", None),
    ("an entry without a digest", b'{"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json"}]}',
     None),
    ("a huge number and a bad digest", b'{"manifests": [{"digest": "sha256:zz", "size": 1e400}]}', None),
    ("a page past 8 MiB", b'{"manifests": [' + b" " * (9 << 20) + b"]}", None),
    ("pages that loop", b'{"manifests": []}', "self"),
])
def test_a_hostile_referrers_answer_is_an_error_row_and_removes_nothing(registry, pusher, api, ledger, ns, name,
                                                                        body, link):
    repo = f"{ns}/app"
    image, _, _ = pusher.image(repo, "prod", seed=ns)
    signature = oras_attach(api.host, repo, image, {"sig": b"x"}, "application/vnd.cncf.notary.signature")
    ledger.collect(f"{api.host}/{repo}")

    def hostile(method, path, status, headers, answered):
        if "/referrers/" not in path:
            return None
        extra = [("Link", f'<{path}>; rel="next"')] if link else []
        return 200, [("Content-Type", "application/vnd.oci.image.index.v1+json"), *extra], body
    api.alter_response = hostile
    ledger.collect(f"{api.host}/{repo}", "--retries", "0", expect=3)
    errors = ledger.rows("SELECT stage, code, message FROM errors")
    assert [error["stage"] for error in errors] == ["referrers"], (name, errors)
    assert referrer_events(ledger) == [("added", signature)]  # nothing removed on a broken listing
    assert current(ledger) == [{"repo": repo, "tag": "prod", "kind": "image", "has_signature": 1, "attested": 0, "sbom": 0}]
    assert ledger.rows("SELECT status FROM runs ORDER BY id DESC LIMIT 1") == [{"status": "partial"}]
