import base64
import json

import pytest

from ledger.manifests import (DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, MAX_ANNOTATIONS, OCI_INDEX,
                              OCI_MANIFEST, ManifestError, compute_digest, created_before_7, derive,
                              detect_media_type, facts_of, needs_config, parse_config, parse_helm_config,
                              parse_manifest, verify_digest)
from ledger.times import normalise_created, parse_when
from test_artifacts import (ZERO, buildkit_attestation, cosign_attestation, cosign_bundle, cosign_sbom,
                            cosign_signature, helm_chart, notation_signature, oras_attached, referrers_index)

CONFIG = "sha256:" + "c" * 64
CHILD = "sha256:" + "d" * 64


def test_image_manifest_records_config_and_compressed_size():
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100,
                                  "digest": CONFIG},
                       "layers": [{"size": 1000, "digest": CHILD}, {"size": 24, "digest": CHILD}]}).encode()
    manifest = parse_manifest(body, compute_digest(body), DOCKER_MANIFEST)
    assert (manifest.kind, manifest.config_digest, manifest.size, manifest.layers) == ("image", CONFIG, 1124, 2)


def test_index_children_mark_attestations_and_never_list_them_as_platforms():
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": CHILD, "size": 5,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": CONFIG, "size": 5, "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": CHILD}},
    ]}).encode()
    manifest = parse_manifest(body, compute_digest(body), "application/vnd.oci.image.index.v1+json; charset=x")
    assert manifest.kind == "index"
    platform, attestation = manifest.children
    assert (platform.architecture, platform.variant, platform.attestation) == ("arm64", "v8", False)
    assert (attestation.attestation, attestation.attests) == (True, CHILD)


def test_media_type_falls_back_to_body_then_shape():
    assert detect_media_type("application/json", {"mediaType": DOCKER_LIST}) == DOCKER_LIST
    assert detect_media_type(None, {"manifests": []}) == OCI_INDEX
    assert detect_media_type("", {"config": {}}) == OCI_MANIFEST
    assert detect_media_type(None, {"schemaVersion": 1, "signatures": []}) == DOCKER_SCHEMA1_SIGNED


def test_artifact_manifests_are_not_images():
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "size": 1,
                                  "digest": CONFIG}, "layers": []}).encode()
    manifest = parse_manifest(body, compute_digest(body))
    assert (manifest.kind, manifest.artifact_type) == ("artifact", "application/vnd.cncf.helm.config.v1+json")


@pytest.mark.parametrize("body,message", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {"digest": "nope"}}).encode(),
     "no valid config"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": "x"}]}).encode(),
     "index entry 0"),
])
def test_malformed_manifests_raise_a_clear_error(body, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(body, compute_digest(body))


def test_bodies_are_verified_against_their_digest():
    verify_digest(b"abc", compute_digest(b"abc"))
    verify_digest(b"abc", compute_digest(b"abc", "sha512"))
    with pytest.raises(ManifestError, match="does not match"):
        verify_digest(b"abd", compute_digest(b"abc"))
    with pytest.raises(ManifestError, match="invalid digest"):
        verify_digest(b"abc", "md5:00")


def test_signed_schema1_digest_covers_the_payload_not_the_signatures():
    payload = b'{\n   "schemaVersion": 1,\n   "name": "x",\n   "tag": "1"\n}'
    cut = payload.rfind(b"\n}")
    tail = base64.urlsafe_b64encode(payload[cut:]).rstrip(b"=").decode()
    protected = base64.urlsafe_b64encode(json.dumps({"formatLength": cut, "formatTail": tail}).encode()).decode()
    signed = payload[:cut] + b',\n   "signatures": [{"protected": "' + protected.encode() + b'"}]' + payload[cut:]
    verify_digest(signed, compute_digest(payload), DOCKER_SCHEMA1_SIGNED)
    assert parse_manifest(signed, compute_digest(payload), DOCKER_SCHEMA1_SIGNED).kind == "legacy"


def test_config_facts_are_normalised():
    facts = parse_config(json.dumps({"created": "2024-05-06T07:08:09.123456789+02:00", "author": "me",
                                     "architecture": "arm", "os": "linux", "variant": "v7",
                                     "config": {"Labels": {"b": "2", "a": "1"}}}).encode())
    assert facts["created"] == "2024-05-06T05:08:09Z"
    assert (facts["author"], facts["architecture"], facts["variant"]) == ("me", "arm", "v7")
    assert facts["labels"] == '{"a": "1", "b": "2"}'
    assert parse_config(b'{"config": {"Labels": null}}')["labels"] is None


@pytest.mark.parametrize("value,expected", [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("2024-01-02T03:04:05.999999999Z", "2024-01-02T03:04:05Z"),
    ("2024-01-02T03:04:05-01:30", "2024-01-02T04:34:05Z"),
    ("2024-01-02 03:04:05+0000", "2024-01-02T03:04:05Z"),
    (1704164645, "2024-01-02T03:04:05Z"),
    ("1704164645.75", "2024-01-02T03:04:05Z"),
    ("0001-01-01T00:00:00Z", None),  # Go's zero time: cosign's signature configs carry it; never a time
    ("0001-01-01T00:00:00.000000000+00:00", None),
    (-62135596800, None),
    ("0001-01-01T00:00:01Z", "0001-01-01T00:00:01Z"),
    (-30610224001, "0999-12-31T23:59:59Z"),  # found by hypothesis: strftime does not pad the year
    ("yesterday", None),
    (None, None),
    ("", None),
    (True, None),
])
def test_created_is_normalised_to_utc_whole_seconds(value, expected):
    assert normalise_created(value) == expected


# What an artifact is, from its bytes alone (the manifests are built as the tools write them, in test_artifacts).
SUBJECT = "sha256:" + "5" * 64


def parsed(built):
    return parse_manifest(built.body, built.digest, built.media_type)


@pytest.mark.parametrize("built,kind,artifact_kind", [
    (cosign_signature(SUBJECT), "image", "signature"),
    (cosign_attestation(SUBJECT), "image", "attestation"),
    (cosign_sbom(), "image", "sbom"),
    (cosign_bundle(SUBJECT), "artifact", "signature"),  # cosign v3 `sign`: a DSSE bundle of cosign/sign/v1
    (cosign_bundle(SUBJECT, "message-signature", None), "artifact", "signature"),
    (cosign_bundle(SUBJECT, "dsse-envelope", "https://slsa.dev/provenance/v1"), "artifact", "attestation"),
    (cosign_bundle(SUBJECT, None, None), "artifact", "artifact"),  # a bundle that does not say what it holds
    (notation_signature(SUBJECT), "artifact", "signature"),
    (buildkit_attestation(SUBJECT), "artifact", "attestation"),
    (oras_attached(SUBJECT, "application/spdx+json", b"{}"), "artifact", "sbom"),
    (oras_attached(SUBJECT, "application/vnd.cyclonedx+json; version=1.5", b"{}"), "artifact", "sbom"),
    (oras_attached(SUBJECT, "application/sarif+json", b"{}"), "artifact", "artifact"),
    (helm_chart(), "artifact", "helm-chart"),
])
def test_what_an_artifact_is_comes_from_its_media_types(built, kind, artifact_kind):
    manifest = parsed(built)
    assert (manifest.kind, manifest.artifact_kind) == (kind, artifact_kind)


def test_an_oci_1_1_artifact_keeps_its_subject_annotations_and_created():
    built = oras_attached(SUBJECT, "application/sarif+json", b"{}", created="2024-05-06T09:08:09.5+02:00",
                          **{"org.example.scanner": "grype"})
    facts = facts_of(parsed(built), built.body)
    assert (facts["subject"], facts["created"], facts["artifact_type"]) == (
        SUBJECT, "2024-05-06T07:08:09Z", "application/sarif+json")
    assert facts["annotations"] == json.dumps({"org.example.scanner": "grype",
                                               "org.opencontainers.image.created": "2024-05-06T09:08:09.5+02:00"},
                                              sort_keys=True)


def test_an_ordinary_image_is_no_artifact_and_its_annotations_do_not_set_created():
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": CONFIG},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 3,
                                   "digest": CHILD}],
                       "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}).encode()
    manifest = parse_manifest(body, compute_digest(body))
    assert (manifest.artifact_kind, manifest.subject, manifest.created) == (None, None, None)
    assert json.loads(manifest.annotations) == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


def test_a_subject_that_is_not_a_digest_is_not_kept():
    built = oras_attached("sha256:nothex", "application/sarif+json", b"{}")
    assert parsed(built).subject is None


def test_annotations_past_the_bound_are_dropped_whole():
    built = oras_attached(SUBJECT, "application/sarif+json", b"{}", big="x" * MAX_ANNOTATIONS)
    manifest = parsed(built)
    assert manifest.annotations is None and manifest.created == "2024-05-06T07:08:09Z"


def test_a_referrers_list_is_an_index_of_artifacts_not_platforms():
    fallback = referrers_index(cosign_bundle(SUBJECT), notation_signature(SUBJECT))
    manifest = parsed(fallback)
    assert (manifest.kind, manifest.artifact_kind, manifest.subject) == ("index", "referrers", None)
    assert [child.architecture for child in manifest.children] == [None, None]
    platforms = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": CHILD, "size": 5, "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": CONFIG, "size": 5,
         "platform": {"architecture": "unknown", "os": "unknown"},
         "artifactType": "application/vnd.docker.attestation.manifest.v1+json",
         "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": CHILD}},
    ]}).encode()
    assert parse_manifest(platforms, compute_digest(platforms)).artifact_kind is None
    for entries in ([], [{"mediaType": OCI_MANIFEST, "digest": CHILD, "size": 5}]):  # nothing says "referrers"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        assert parse_manifest(body, compute_digest(body)).artifact_kind is None
    listed = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": CHILD, "size": 5, "artifactType": "application/spdx+json"}]}).encode()
    assert parse_manifest(listed, compute_digest(listed)).artifact_kind is None  # the tag schema's is an OCI index


def test_an_index_with_a_subject_is_itself_a_referrer():
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/spdx+json",
                       "subject": {"mediaType": OCI_MANIFEST, "digest": SUBJECT, "size": 5},
                       "annotations": {"org.opencontainers.image.created": "2024-02-03T04:05:06Z"},
                       "manifests": [{"mediaType": OCI_MANIFEST, "digest": CHILD, "size": 5}]}).encode()
    manifest = parse_manifest(body, compute_digest(body))
    assert (manifest.artifact_kind, manifest.subject, manifest.created) == ("sbom", SUBJECT, "2024-02-03T04:05:06Z")


def test_a_cosign_signature_config_has_no_created_time():
    built = cosign_signature(SUBJECT)
    facts = derive(built.digest, built.media_type, built.body, built.config)
    assert facts["created"] is None and facts["artifact_kind"] == "signature"
    assert created_before_7("image", built.config) == ZERO  # what schema 6 stored, and verify accepts


def test_a_helm_chart_needs_its_config_for_name_and_version():
    chart = helm_chart("web", "1.2.3")
    manifest = parsed(chart)
    assert needs_config(manifest) and needs_config(parsed(cosign_signature(SUBJECT)))
    assert not needs_config(parsed(cosign_bundle(SUBJECT))) and not needs_config(parsed(referrers_index()))
    facts = derive(chart.digest, chart.media_type, chart.body, chart.config)
    assert (facts["name"], facts["version"], facts["config_body"]) == ("web", "1.2.3", chart.config)
    assert (facts["created"], facts["artifact_kind"]) == ("2024-06-01T08:00:00Z", "helm-chart")
    without = derive(chart.digest, chart.media_type, chart.body)  # recorded before configs of charts were fetched
    assert (without["name"], without["version"], without["created"]) == (None, None, "2024-06-01T08:00:00Z")
    with pytest.raises(ManifestError, match="does not match"):
        derive(chart.digest, chart.media_type, chart.body, helm_chart("web", "6.6.6").config)


def test_a_chart_name_or_version_past_the_bound_is_not_kept():
    config = json.dumps({"name": "web", "version": "1" * 2000}).encode()
    assert parse_helm_config(config) == {"name": "web", "version": None}


def test_a_user_may_still_ask_about_the_year_1():
    assert parse_when("0001-01-01T00:00:00Z") == "0001-01-01T00:00:00.000000Z"
