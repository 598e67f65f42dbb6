"""What a manifest is: signatures, attestations, SBOMs, referrer lists and Helm charts, derived from their
bytes, stored, and checked by `ledger verify`. The manifests are built here as the tools write them
(cosign v2 tags and v3 bundles, ORAS, Notation, Helm, the referrers tag schema) and pushed to the real
registry."""

import base64
import gzip
import json
import sqlite3
from dataclasses import dataclass, field

import pytest

from ledger import store
from ledger.findings import RunResult, Sighting
from ledger.manifests import OCI_INDEX, OCI_MANIFEST, compute_digest, facts_of, needs_config, parse_manifest
from ledger.times import normalise_time

from test_verify import tamper

EMPTY = b"{}"  # the OCI empty descriptor's blob: application/vnd.oci.empty.v1+json, size 2
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
ZERO = "0001-01-01T00:00:00Z"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclass
class Built:
    """A manifest as bytes, with the blobs it names (config first)."""

    body: bytes
    media_type: str
    blobs: list = field(default_factory=list)

    @property
    def digest(self):
        return compute_digest(self.body)

    @property
    def config(self):
        return self.blobs[0]


def descriptor(media_type, data, **extra):
    return {"mediaType": media_type, "digest": compute_digest(data), "size": len(data), **extra}


def manifest(config_type, config, layers, **fields):
    """An OCI image manifest; `layers` are (media type, bytes, annotations or None)."""
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, **fields,
                "config": descriptor(config_type, config),
                "layers": [descriptor(t, data, **({"annotations": a} if a else {})) for t, data, a in layers]}
    return Built(json.dumps(document, indent=2).encode(), OCI_MANIFEST, [config, *(data for _, data, _ in layers)])


def cosign_config(layers):
    """What cosign writes as a `.sig`/`.att`/`.sbom` image's config: Go's zero time as created."""
    return json.dumps({"architecture": "", "created": ZERO, "history": [{"created": ZERO}], "os": "",
                       "rootfs": {"type": "layers", "diff_ids": [compute_digest(data) for data in layers]},
                       "config": {}}, separators=(",", ":")).encode()


def cosign_signature(subject, reference="registry.example/app"):
    """cosign v2 `sign`: tag `sha256-<hex>.sig`, one simple-signing layer per signature."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": reference},
                                       "image": {"Docker-manifest-digest": subject},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    annotations = {"dev.cosignproject.cosign/signature": base64.b64encode(b"not a real signature").decode(),
                   "dev.sigstore.cosign/bundle": json.dumps({"SignedEntryTimestamp": "MEUC",
                                                             "Payload": {"integratedTime": 1717171717}})}
    return manifest("application/vnd.oci.image.config.v1+json", cosign_config([payload]),
                    [("application/vnd.dev.cosign.simplesigning.v1+json", payload, annotations)])


def cosign_attestation(subject):
    """cosign v2 `attest`: tag `sha256-<hex>.att`, one DSSE envelope layer per attestation."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                            "predicateType": "https://slsa.dev/provenance/v0.2",
                            "subject": [{"name": "app", "digest": {"sha256": subject[7:]}}], "predicate": {}})
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(statement.encode()).decode(),
                           "signatures": [{"keyid": "", "sig": "MEUC"}]}).encode()
    return manifest("application/vnd.oci.image.config.v1+json", cosign_config([envelope]),
                    [("application/vnd.dsse.envelope.v1+json", envelope,
                      {"predicateType": "https://slsa.dev/provenance/v0.2"})])


def cosign_sbom():
    """cosign v2 `attach sbom`: tag `sha256-<hex>.sbom`, the SBOM as its one layer."""
    document = json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app"}).encode()
    return manifest("application/vnd.oci.image.config.v1+json", cosign_config([document]),
                    [("text/spdx+json", document, None)])


def oras_attached(subject, artifact_type, content, created="2024-05-06T07:08:09Z", **annotations):
    """`oras attach --artifact-type TYPE`: an OCI 1.1 artifact with an empty config and a subject."""
    return manifest(EMPTY_TYPE, EMPTY, [(artifact_type, content, {"org.opencontainers.image.title": "report"})],
                    artifactType=artifact_type, subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                    annotations={"org.opencontainers.image.created": created, **annotations})


def cosign_bundle(subject, content="dsse-envelope", predicate="https://sigstore.dev/cosign/sign/v1"):
    """cosign v3 `sign` (and `attest`): a Sigstore bundle referring to its subject [cosign BUNDLE_SPEC]."""
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": {},
                         "dsseEnvelope" if content == "dsse-envelope" else "messageSignature": {}}).encode()
    annotations = {"dev.sigstore.bundle.content": content,
                   "org.opencontainers.image.created": "2024-03-08T18:18:20.406Z"}
    if predicate:
        annotations["dev.sigstore.bundle.predicateType"] = predicate
    return manifest(EMPTY_TYPE, EMPTY, [(BUNDLE, bundle, {"org.opencontainers.image.title": "sha256-x.sigstore.json"})],
                    artifactType=BUNDLE, subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                    annotations=annotations)


def notation_signature(subject):
    """`notation sign` on an OCI 1.1 registry [notaryproject signature-specification]."""
    return manifest(EMPTY_TYPE, EMPTY, [("application/jose+json", b'{"payload": "e30", "protected": "e30"}', None)],
                    artifactType="application/vnd.cncf.notary.signature",
                    subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                    annotations={"io.cncf.notary.x509chain.thumbprint#S256": '["ab12"]'})


def buildkit_attestation(subject):
    """BuildKit's attestation manifest with oci-artifact=true: in-toto layers, a subject."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document"})
    return manifest(EMPTY_TYPE, EMPTY, [("application/vnd.in-toto+json", statement.encode(),
                                          {"in-toto.io/predicate-type": "https://spdx.dev/Document"})],
                    artifactType="application/vnd.docker.attestation.manifest.v1+json",
                    subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                    annotations={"vnd.docker.reference.type": "attestation-manifest",
                                 "vnd.docker.reference.digest": subject})


def helm_chart(name="mychart", version="0.1.0"):
    """`helm push`: the chart's metadata as the config, its .tgz as the one layer; no manifest mediaType."""
    config = json.dumps({"name": name, "version": version, "description": "A Helm chart for Kubernetes",
                         "apiVersion": "v2", "appVersion": "1.16.0", "type": "application"}).encode()
    chart = gzip.compress(f"{name}/Chart.yaml".encode(), mtime=0)
    document = {"schemaVersion": 2,
                "config": descriptor("application/vnd.cncf.helm.config.v1+json", config),
                "layers": [descriptor("application/vnd.cncf.helm.chart.content.v1.tar+gzip", chart)],
                "annotations": {"org.opencontainers.image.created": "2024-06-01T10:00:00+02:00",
                                "org.opencontainers.image.description": "A Helm chart for Kubernetes",
                                "org.opencontainers.image.title": name, "org.opencontainers.image.version": version}}
    return Built(json.dumps(document).encode(), OCI_MANIFEST, [config, chart])


def referrers_index(*referrers):
    """The referrers tag schema's index (tag `sha256-<hex>`): one descriptor per referrer, with its
    artifactType and annotations and no platform [distribution-spec, Referrers Tag Schema]."""
    entries = []
    for referrer in referrers:
        document = json.loads(referrer.body)
        entries.append(descriptor(OCI_MANIFEST, referrer.body,
                                  artifactType=document.get("artifactType") or document["config"]["mediaType"],
                                  annotations=document.get("annotations", {})))
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    return Built(body, OCI_INDEX)


def push(pusher, repo, reference, built):
    for blob in built.blobs:
        pusher.blob(repo, blob)
    return pusher.manifest(repo, reference, built.body, built.media_type)


def stored(ledger, digest):
    rows = ledger.rows("SELECT kind, artifact_kind, category, subject, created, annotations, name, version, config_body "
                       "FROM manifests WHERE digest = ?", [digest])
    return rows[0] if rows else None


@pytest.fixture
def supply_chain(registry, pusher, ns):
    """An image with what real registries hold beside it: cosign v2 tags, a cosign v3 signature and a
    Notation signature listed by the referrers tag schema, and a Helm chart in its own repository."""
    repo = f"{ns}/app"
    image, image_id, _ = pusher.image(repo, "prod", seed=ns)
    tag = image.replace(":", "-")
    built = {"image": image, "image_id": image_id, "sig": cosign_signature(image), "att": cosign_attestation(image),
             "sbom": cosign_sbom(), "bundle": cosign_bundle(image), "notation": notation_signature(image),
             "chart": helm_chart()}
    for suffix in ("sig", "att", "sbom"):
        push(pusher, repo, f"{tag}.{suffix}", built[suffix])
    for untagged in ("bundle", "notation"):
        push(pusher, repo, built[untagged].digest, built[untagged])
    built["referrers"] = referrers_index(built["bundle"], built["notation"])
    push(pusher, repo, tag, built["referrers"])
    push(pusher, f"{ns}/charts/mychart", "0.1.0", built["chart"])
    return built


def test_what_each_manifest_is_is_stored_with_it(registry, ledger, ns, supply_chain):
    built = supply_chain
    ledger.collect(f"{registry.host}/{ns}/app", f"{registry.host}/{ns}/charts/mychart")
    image = stored(ledger, built["image"])
    assert (image["kind"], image["artifact_kind"], image["category"], image["subject"]) == ("image", None, "image", None)
    signature = stored(ledger, built["sig"].digest)
    # the words of before (sealed) say image; what can run says signature: its layer is no filesystem
    assert (signature["kind"], signature["artifact_kind"], signature["category"]) == ("image", "signature", "signature")
    assert signature["created"] is None and signature["config_body"] is not None  # Go's zero time is no time
    assert stored(ledger, built["att"].digest)["artifact_kind"] == "attestation"
    assert stored(ledger, built["sbom"].digest)["artifact_kind"] == "sbom"
    referrers = stored(ledger, built["referrers"].digest)
    assert (referrers["kind"], referrers["artifact_kind"], referrers["category"]) == ("index", "referrers", "referrers")
    # its entries are referrers of its subject, not platforms of an index
    assert ledger.rows("SELECT digest FROM platforms WHERE index_digest = ?", [built["referrers"].digest]) == []
    bundle = stored(ledger, built["bundle"].digest)  # untagged: found as an entry of the referrers list
    assert (bundle["kind"], bundle["artifact_kind"], bundle["subject"], bundle["created"]) == (
        "artifact", "signature", built["image"], "2024-03-08T18:18:20Z")
    assert json.loads(bundle["annotations"])["dev.sigstore.bundle.content"] == "dsse-envelope"
    notation = stored(ledger, built["notation"].digest)
    assert (notation["artifact_kind"], notation["subject"], notation["created"]) == ("signature", built["image"], None)
    chart = stored(ledger, built["chart"].digest)
    assert (chart["kind"], chart["artifact_kind"], chart["created"]) == (
        "artifact", "helm-chart", "2024-06-01T08:00:00Z")
    created = {row["tag"]: row["created"] for row in ledger.rows("SELECT tag, created FROM events")}
    assert created[built["image"].replace(":", "-") + ".sig"] is None
    assert ZERO not in {row["created"] for row in ledger.rows("SELECT created FROM manifests")}
    assert ledger("verify").exit_code == 0


def test_a_collected_helm_chart_keeps_its_name_and_version(registry, ledger, ns, supply_chain):
    ledger.collect(f"{registry.host}/{ns}/charts/mychart")
    chart = stored(ledger, supply_chain["chart"].digest)
    assert (chart["name"], chart["version"], chart["artifact_kind"]) == ("mychart", "0.1.0", "helm-chart")
    assert ledger("verify").exit_code == 0


@pytest.mark.parametrize("column,value", [
    ("artifact_kind", "'artifact'"), ("subject", "NULL"), ("annotations", "'{}'"), ("artifact_kind", "NULL")])
def test_an_edited_artifact_fact_is_named_by_verify(registry, ledger, ns, supply_chain, column, value):
    ledger.collect(f"{registry.host}/{ns}/app")
    digest = supply_chain["bundle"].digest
    tamper(ledger.path, f"UPDATE manifests SET {column} = {value} WHERE digest = '{digest}'")
    output = ledger("verify", expect=1).output
    assert f"manifests digest={digest}: {column} does not match its bytes" in output, output


def test_a_referrer_fact_forged_onto_an_image_is_named(registry, ledger, ns, supply_chain):
    """An ordinary image row made to look signed, or to refer to something: the bytes say otherwise."""
    ledger.collect(f"{registry.host}/{ns}/app")
    image = supply_chain["image"]
    tamper(ledger.path, f"UPDATE manifests SET subject = '{supply_chain['sig'].digest}' WHERE digest = '{image}'")
    assert f"manifests digest={image}: subject does not match its bytes" in ledger("verify", expect=1).output


def test_the_new_columns_are_written_once(registry, ledger, ns, supply_chain):
    ledger.collect(f"{registry.host}/{ns}/app")
    conn = sqlite3.connect(ledger.path)
    for statement in ("UPDATE manifests SET artifact_kind = 'sbom' WHERE artifact_kind = 'signature'",
                      "UPDATE manifests SET subject = NULL WHERE subject IS NOT NULL",
                      "UPDATE manifests SET name = 'x' WHERE kind = 'image'"):
        with pytest.raises(sqlite3.IntegrityError, match="manifests is append-only"):
            conn.execute(statement)
    conn.close()


def test_a_helm_charts_name_and_version_come_from_its_config_and_are_verified(db_path):
    """Store level, so it holds whichever collector feeds it: a chart's facts with its config bytes."""
    chart = helm_chart("web", "1.2.3")
    parsed = parse_manifest(chart.body, chart.digest, OCI_MANIFEST)
    assert needs_config(parsed)
    db = store.open_db(db_path)
    run_id = store.start_run(db, "registry", ["r.example/charts/web"])
    store.append_run(db, run_id, RunResult(
        manifests=[facts_of(parsed, chart.body, chart.config)],
        observations=[Sighting("r.example", "charts/web", "1.2.3", "2026-01-01T00:00:00.000000Z", chart.digest,
                               OCI_MANIFEST)]))
    row = db.execute("SELECT name, version, artifact_kind, created FROM manifests").fetchone()
    assert row == ("web", "1.2.3", "helm-chart", "2024-06-01T08:00:00Z")
    assert store.verify(db).ok
    db.close()
    tamper(db_path, "UPDATE manifests SET version = '9.9.9'")
    readonly = store.open_readonly(db_path)
    problems = store.verify(readonly).problems
    readonly.close()
    assert problems[0] == f"manifests digest={chart.digest}: version does not match its bytes (the row was edited)"


def _as_schema_6(path):
    """The file as the schema 6 code left it: no artifact columns, the update guard of then gone (the
    upgrade re-creates it)."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER manifests_append_only_update")
    conn.execute("DROP INDEX manifests_by_subject")
    for (view,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'").fetchall():
        conn.execute(f"DROP VIEW {view}")  # today's name the columns dropped below; the upgrade re-makes them
    for column in ("subject", "artifact_kind", "annotations", "name", "version"):
        conn.execute(f"ALTER TABLE manifests DROP COLUMN {column}")
    conn.execute("ALTER TABLE errors DROP COLUMN source")  # schema 8's
    conn.execute("ALTER TABLE manifests DROP COLUMN category")  # schema 11's
    conn.execute("ALTER TABLE errors DROP COLUMN count")  # schema 10's
    conn.execute("DROP INDEX coverage_listings_by_repo")
    conn.execute("ALTER TABLE coverage_listings RENAME TO coverage")  # schema 19's (its new tables stay: sealed)
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()


def test_a_schema_6_ledger_gains_the_facts_from_its_bytes(registry, ledger, ns, supply_chain, monkeypatch):
    """Rows written by schema 6 code kept what it derived: Go's zero time as a cosign signature's created,
    no created for an artifact. Their seals cover that, so it stays and verifies; the new columns are
    filled from the bytes; the next run adds what the tags gained (an artifact's created), once."""
    from ledger import manifests

    with monkeypatch.context() as old_rules:
        old_rules.setattr(manifests, "normalise_created", normalise_time)
        old_rules.setattr(manifests, "CREATED_ANNOTATION", "not read before schema 7")
        ledger.collect(f"{registry.host}/{ns}/app")
    sig, bundle = supply_chain["sig"].digest, supply_chain["bundle"].digest
    assert stored(ledger, sig)["created"] == ZERO and stored(ledger, bundle)["created"] is None
    _as_schema_6(ledger.path)

    ledger.collect(f"{registry.host}/{ns}/app")  # opens for writing: the upgrade
    assert ledger.rows("PRAGMA user_version")[0]["user_version"] == store.SCHEMA_VERSION
    assert (stored(ledger, sig)["artifact_kind"], stored(ledger, sig)["created"]) == ("signature", ZERO)
    assert (stored(ledger, bundle)["subject"], stored(ledger, bundle)["created"]) == (supply_chain["image"], None)
    assert ledger("verify").exit_code == 0
    sig_tag = supply_chain["image"].replace(":", "-") + ".sig"
    events = ledger.rows("SELECT kind, created FROM events WHERE tag = ? ORDER BY id", [sig_tag])
    # Go's zero time is no time, before and after: no event for it (an annotated artifact's created, new
    # information, is an update)
    assert [(e["kind"], e["created"]) for e in events] == [("added", ZERO)]
    ledger.collect(f"{registry.host}/{ns}/app")
    assert len(ledger.rows("SELECT id FROM events WHERE tag = ?", [sig_tag])) == 1
    tamper(ledger.path, f"UPDATE manifests SET artifact_kind = NULL WHERE digest = '{sig}'")
    assert f"manifests digest={sig}: artifact_kind does not match its bytes" in ledger("verify", expect=1).output
