"""ReferrersProxy serves the OCI 1.1 referrers API for the distribution 2.8 registry, from what ORAS pushes through it."""

import json

import pytest
import requests

from ledger.manifests import OCI_INDEX, OCI_MANIFEST
from sandbox import ReferrersProxy
from oras_push import CREATED, oras_attach, oras_push

SIG = "application/vnd.example.signature.v1+json"
SBOM = "application/spdx+json"


@pytest.fixture
def referrers(registry):
    with ReferrersProxy(registry.host) as running:
        yield running


@pytest.fixture
def subject(referrers, ns):
    """An ORAS artifact pushed through the proxy: (repo, digest)."""
    repo = f"{ns}/app"
    return repo, oras_push(referrers.host, repo, "v1", {"app.txt": b"app"}, artifact_type="application/vnd.example.app")


def get(proxy, path, **params):
    """A referrers answer, which must be an OCI index."""
    response = requests.get(proxy.url + path, params=params)
    assert response.status_code == 200 and response.headers["Content-Type"] == OCI_INDEX
    return response


def listed(proxy, repo, digest):
    return [d["digest"] for d in get(proxy, f"/v2/{repo}/referrers/{digest}").json()["manifests"]]


def manifest_bytes(proxy, repo, digest):
    return requests.get(f"{proxy.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}).content


def test_attached_artifact_is_listed_with_its_type_and_annotations(referrers, subject):
    repo, digest = subject
    attached = oras_attach(referrers.host, repo, digest, {"sig.json": b"{}"}, SIG, {"example.key": "value"})
    body = manifest_bytes(referrers, repo, attached)
    annotations = json.loads(body)["annotations"]
    assert set(annotations) == {CREATED, "example.key"}
    assert get(referrers, f"/v2/{repo}/referrers/{digest}").json() == {
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": attached, "size": len(body), "artifactType": SIG,
             "annotations": annotations}]}
    # A push with a subject is answered with OCI-Subject, as a registry with the API must; listed once.
    again = requests.put(f"{referrers.url}/v2/{repo}/manifests/{attached}", data=body,
                         headers={"Content-Type": OCI_MANIFEST})
    assert again.status_code == 201 and again.headers["OCI-Subject"] == digest
    assert listed(referrers, repo, digest) == [attached]
    assert listed(referrers, repo, attached) == listed(referrers, f"{repo}-unknown", digest) == []
    assert referrers.counts["referrers"] == 4


def test_pages_follow_link_and_keep_the_filter(referrers, subject):
    repo, digest = subject
    pushed = [oras_attach(referrers.host, repo, digest, {f"{n}.json": b"%d" % n}, SIG if n % 2 else SBOM)
              for n in range(5)]
    referrers.page_size = 1
    for params, expected in (({}, pushed), ({"artifactType": SIG}, pushed[1::2])):
        seen, response = [], get(referrers, f"/v2/{repo}/referrers/{digest}", **params)
        while True:
            assert response.headers.get("OCI-Filters-Applied") == ("artifactType" if params else None)
            seen += [d["digest"] for d in response.json()["manifests"]]
            if "next" not in response.links:
                break
            response = get(referrers, response.links["next"]["url"])
        assert seen == expected
    assert referrers.counts["referrers"] == 5 + 2


def test_delete_forgets_the_referrer(referrers, subject):
    repo, digest = subject
    kept, deleted = (oras_attach(referrers.host, repo, digest, {"x.json": data}, SBOM) for data in (b"1", b"2"))
    assert requests.delete(f"{referrers.url}/v2/{repo}/manifests/{deleted}").status_code == 202
    assert listed(referrers, repo, digest) == [kept]


def test_bad_digest_head_and_a_registry_without_the_api(referrers, subject):
    repo, digest = subject
    attached = oras_attach(referrers.host, repo, digest, {"sig.json": b"{}"}, SIG)
    bad = requests.get(f"{referrers.url}/v2/{repo}/referrers/sha256:ABC")
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "DIGEST_INVALID"
    head = requests.head(f"{referrers.url}/v2/{repo}/referrers/{digest}")
    full = get(referrers, f"/v2/{repo}/referrers/{digest}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == full.headers["Content-Length"] == str(len(full.content))

    referrers.serve_referrers = False
    assert requests.get(f"{referrers.url}/v2/{repo}/referrers/{digest}").status_code == 404
    again = requests.put(f"{referrers.url}/v2/{repo}/manifests/{attached}",
                         data=manifest_bytes(referrers, repo, attached), headers={"Content-Type": OCI_MANIFEST})
    assert again.status_code == 201 and "OCI-Subject" not in again.headers
    assert referrers.counts["referrers"] == 4
