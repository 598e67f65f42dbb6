import base64
import json

import pytest

from ledger.manifests import (DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST,
                              ManifestError, compute_digest, detect_media_type, parse_config, parse_manifest,
                              verify_digest)
from ledger.times import normalise_created

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
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    (-30610224001, "0999-12-31T23:59:59Z"),  # found by hypothesis: strftime does not pad the year
    ("yesterday", None),
    (None, None),
    ("", None),
    (True, None),
])
def test_created_is_normalised_to_utc_whole_seconds(value, expected):
    assert normalise_created(value) == expected
