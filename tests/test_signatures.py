"""`signed` means a signature that verifies: cosign simple-signing signatures and Notation JWS envelopes
made here with generated keys and a self-signed certificate, pushed to the real registry as cosign and
notation push them (cosign's `.sig` tag; the referrers tag schema, since distribution has no referrers
API), and checked at collect time against --signature-key. A signature artifact alone is `has_signature`."""

import base64
import datetime
import hashlib
import json

from importlib import resources

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from test_artifacts import EMPTY, EMPTY_TYPE, OCI_MANIFEST, cosign_bundle, cosign_config, manifest, push, \
    referrers_index
from test_verify import tamper

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
NOTARY = "application/vnd.cncf.notary.signature"


def pem(key, path):
    """Write a public key (or a certificate) as PEM; returns the path."""
    if isinstance(key, x509.Certificate):
        data = key.public_bytes(serialization.Encoding.PEM)
    else:
        data = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.write_bytes(data)
    return str(path)


def key_id(key):
    public = key.public_key() if not isinstance(key, x509.Certificate) else key.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def cosign_signed(subject, key, *, names=None, certificate=None):
    """cosign v2 `sign --key`: a simple-signing payload naming `names` (default: the subject), signed
    (ECDSA P-256 with SHA-256, ASN.1 DER; Ed25519 over the payload) into the layer's annotation."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": "registry.example/app"},
                                       "image": {"docker-manifest-digest": names or subject},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    signature = key.sign(payload) if isinstance(key, ed25519.Ed25519PrivateKey) else \
        key.sign(payload, ec.ECDSA(hashes.SHA256()))
    annotations = {"dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()}
    if certificate is not None:
        annotations["dev.sigstore.cosign/certificate"] = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return manifest("application/vnd.oci.image.config.v1+json", cosign_config([payload]),
                    [(SIMPLESIGNING, payload, annotations)])


def certificate(key, name, issuer=None, issuer_key=None):
    """A certificate for `key`: self-signed, or issued by (issuer, issuer_key)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(issuer.subject if issuer else subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
            .sign(issuer_key or key, hashes.SHA256()))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def notation_signed(subject, key, chain, *, names=None, envelope=None):
    """`notation sign` with a JWS envelope: ES256 over `protected.payload`, the x5c chain leaf first."""
    if envelope is None:
        protected = b64url(json.dumps({"alg": "ES256", "crit": ["io.cncf.notary.signingScheme"],
                                       "cty": "application/vnd.cncf.notary.payload.v1+json",
                                       "io.cncf.notary.signingScheme": "notary.x509",
                                       "io.cncf.notary.signingTime": "2026-01-01T00:00:00Z"}).encode())
        payload = b64url(json.dumps({"targetArtifact": {"mediaType": OCI_MANIFEST, "digest": names or subject,
                                                        "size": 500}}).encode())
        r, s = decode_dss_signature(key.sign(f"{protected}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
        envelope = json.dumps({"payload": payload, "protected": protected,
                               "header": {"x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                                                  for c in chain],
                                          "io.cncf.notary.signingAgent": "notation-go/1.3.0"},
                               "signature": b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}).encode()
    return manifest(EMPTY_TYPE, EMPTY, [("application/jose+json", envelope, None)], artifactType=NOTARY,
                    subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 500},
                    annotations={"io.cncf.notary.x509chain.thumbprint#S256": '["ab12"]'})


@pytest.fixture
def image(registry, pusher, ns):
    """`app:prod`, not yet signed: (repo, digest, target)."""
    repo = f"{ns}/app"
    digest, _, _ = pusher.image(repo, "prod", seed=ns)
    return repo, digest, f"{registry.host}/{repo}"


def sign_with_tag(pusher, repo, digest, built):
    push(pusher, repo, digest.replace(":", "-") + ".sig", built)


def attach(pusher, repo, digest, *referrers):
    """Referrers as notation pushes them to a registry without the referrers API: untagged, and listed in
    the referrers tag schema's index."""
    for referrer in referrers:
        push(pusher, repo, referrer.digest, referrer)
    push(pusher, repo, digest.replace(":", "-"), referrers_index(*referrers))


def state(ledger):
    return [(row["tag"], row["signed"], row["has_signature"])
            for row in ledger.rows("SELECT tag, signed, has_signature FROM current_tags ORDER BY tag")]


def checks(ledger):
    return ledger.rows("SELECT signature, subject, key, result, reason, layer, run_id FROM signature_checks ORDER BY id")


def canned(ledger, name, **params):
    """A canned query of metadata.yml, run on the ledger as `ledger serve` runs it."""
    query = yaml.safe_load(resources.files("ledger").joinpath("metadata.yml").read_text())[
        "databases"]["ledger"]["queries"][name]["sql"]
    rows = ledger.rows(query, params)
    return [{key: row[key] for key in ("signed", "signature") if key in row} or row for row in rows]


def test_a_cosign_signature_by_a_configured_key_is_signed(registry, pusher, ledger, image, tmp_path):
    repo, digest, target = image
    key = ec.generate_private_key(ec.SECP256R1())
    signature = cosign_signed(digest, key)
    sign_with_tag(pusher, repo, digest, signature)
    ledger.collect(target, "--signature-key", pem(key, tmp_path / "cosign.pub"))
    assert state(ledger) == [("prod", 1, 1)]
    [row] = checks(ledger)
    assert (row["signature"], row["subject"], row["key"], row["result"], row["reason"]) == (
        signature.digest, digest, key_id(key), "verified", None)
    assert row["layer"] == "sha256:" + hashlib.sha256(signature.blobs[1]).hexdigest()
    assert ledger.rows("SELECT verified FROM current_referrers WHERE referrer = ?", [signature.digest]) == [
        {"verified": 1}]
    assert "no tags" in ledger("tags", "--unsigned").output
    assert json.loads(ledger("tags", "--json").output)[0]["signed"] == 1
    assert canned(ledger, "signed_at", ref=f"{target}:prod", at="") == [
        {"signed": 1, "signature": signature.digest}]
    assert canned(ledger, "unsigned_current_tags", pattern="") == []
    # a warm run checks nothing again: no blob is fetched, no row added
    ledger.collect(target, "--signature-key", str(tmp_path / "cosign.pub"))
    requests = json.loads(ledger.rows("SELECT requests FROM runs ORDER BY id DESC LIMIT 1")[0]["requests"])
    assert "signature" not in requests and len(checks(ledger)) == 1
    assert "ok" in ledger("verify").output


def test_an_ed25519_key_verifies_too(registry, pusher, ledger, image, tmp_path):
    repo, digest, target = image
    key = ed25519.Ed25519PrivateKey.generate()
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, key))
    ledger.collect(target, "--signature-key", pem(key, tmp_path / "ed.pub"))
    assert state(ledger) == [("prod", 1, 1)]


def test_garbage_with_a_notation_artifact_type_is_not_signed(registry, pusher, ledger, image, tmp_path):
    repo, digest, target = image
    garbage = manifest(EMPTY_TYPE, EMPTY, [("application/jose+json", b"\x00\xffnot an envelope" * 8, None)],
                       artifactType=NOTARY, subject={"mediaType": OCI_MANIFEST, "digest": digest, "size": 500})
    attach(pusher, repo, digest, garbage)
    key = ec.generate_private_key(ec.SECP256R1())
    ledger.collect(target, "--signature-key", pem(certificate(key, "ledger test"), tmp_path / "cert.pem"))
    assert state(ledger) == [("prod", 0, 1)]
    [row] = checks(ledger)
    assert (row["signature"], row["result"]) == (garbage.digest, "failed")
    assert "not a Notation JWS envelope" in row["reason"]
    assert [r["tag"] for r in json.loads(ledger("tags", "--unsigned", "--json").output)] == ["prod"]
    assert [(row["tag"], row["has_signature"]) for row in canned(ledger, "unsigned_current_tags", pattern="")] == [
        ("prod", 1)]


def test_a_valid_signature_of_another_digest_is_not_a_signature_of_this_one(registry, pusher, ledger, image,
                                                                             tmp_path):
    repo, digest, target = image
    key = ec.generate_private_key(ec.SECP256R1())
    other = "sha256:" + "ab" * 32
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, key, names=other))
    ledger.collect(target, "--signature-key", pem(key, tmp_path / "cosign.pub"))
    assert state(ledger) == [("prod", 0, 1)]
    [row] = checks(ledger)
    assert row["result"] == "failed"
    assert row["reason"] == f"the signature verifies, but its payload names {other}, not {digest}"


def test_the_wrong_key_fails_with_its_reason_and_the_right_one_added_later_verifies(registry, pusher, ledger, image,
                                                                                    tmp_path):
    repo, digest, target = image
    signer, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, signer))
    wrong = pem(stranger, tmp_path / "stranger.pub")
    ledger.collect(target, "--signature-key", wrong)
    assert state(ledger) == [("prod", 0, 1)]
    assert [(row["key"], row["result"], row["reason"]) for row in checks(ledger)] == [
        (key_id(stranger), "failed", "the signature does not verify with this key")]
    # the same signature, another key: only the key without a verdict is checked
    ledger.collect(target, "--signature-key", wrong, "--signature-key", pem(signer, tmp_path / "signer.pub"))
    assert [(row["key"], row["result"], row["run_id"]) for row in checks(ledger)] == [
        (key_id(stranger), "failed", 1), (key_id(signer), "verified", 2)]
    assert state(ledger) == [("prod", 1, 1)]
    assert "ok" in ledger("verify").output


def test_a_notation_jws_signature_verifies_with_its_certificate(registry, pusher, ledger, image, tmp_path):
    repo, digest, target = image
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(key, "acme signer")
    signature = notation_signed(digest, key, [leaf])
    attach(pusher, repo, digest, signature)
    other_key = ec.generate_private_key(ec.SECP256R1())
    stranger = pem(certificate(other_key, "someone else"), tmp_path / "stranger.pem")
    ledger.collect(target, "--signature-key", stranger)
    assert state(ledger) == [("prod", 0, 1)]
    assert checks(ledger)[0]["reason"].startswith("signed by 'CN=acme signer', which is not this key's")
    ledger.collect(target, "--signature-key", pem(leaf, tmp_path / "leaf.pem"))
    assert [(row["key"], row["result"]) for row in checks(ledger)][-1] == (key_id(leaf), "verified")
    assert state(ledger) == [("prod", 1, 1)]


def test_a_notation_signature_by_a_certificate_a_configured_ca_issued_verifies(registry, pusher, ledger, image,
                                                                                tmp_path):
    repo, digest, target = image
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(ca_key, "acme root")
    leaf = certificate(key, "acme release", issuer=ca, issuer_key=ca_key)
    attach(pusher, repo, digest, notation_signed(digest, key, [leaf]),
           notation_signed(digest, key, [leaf], names="sha256:" + "cd" * 32))
    ledger.collect(target, "--signature-key", pem(ca, tmp_path / "ca.pem"))
    assert state(ledger) == [("prod", 1, 1)]
    assert sorted(row["result"] for row in checks(ledger)) == ["failed", "verified"]


def test_without_a_key_a_signature_is_present_but_not_signed(registry, pusher, ledger, image):
    repo, digest, target = image
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, ec.generate_private_key(ec.SECP256R1())))
    ledger.collect(target)
    assert state(ledger) == [("prod", 0, 1)]
    assert [(row["key"], row["result"], row["reason"]) for row in checks(ledger)] == [
        (None, "no key", "no --signature-key configured")]
    requests = json.loads(ledger.rows("SELECT requests FROM runs")[0]["requests"])
    assert "signature" not in requests  # nothing to verify with: no blob fetched
    table = ledger("tags").output
    assert "has_signature" in table and "signed" in table


def test_keyless_signatures_and_bundles_are_not_supported_never_verified(registry, pusher, ledger, image, tmp_path):
    repo, digest, target = image
    fulcio_key = ec.generate_private_key(ec.SECP256R1())
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, fulcio_key,
                                                      certificate=certificate(fulcio_key, "sigstore-intermediate")))
    bundle = cosign_bundle(digest)
    attach(pusher, repo, digest, bundle)
    key = ec.generate_private_key(ec.SECP256R1())
    ledger.collect(target, "--signature-key", pem(key, tmp_path / "cosign.pub"))
    assert state(ledger) == [("prod", 0, 1)]
    rows = checks(ledger)
    assert [row["result"] for row in rows] == ["unsupported", "unsupported"]
    assert all(row["reason"].startswith("not verified: keyless signatures are not supported") for row in rows)


def test_an_edited_verdict_fails_verify(registry, pusher, ledger, image, tmp_path, db_path):
    repo, digest, target = image
    key = ec.generate_private_key(ec.SECP256R1())
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, key, names="sha256:" + "ef" * 32))
    ledger.collect(target, "--signature-key", pem(key, tmp_path / "cosign.pub"))
    tamper(db_path, "UPDATE signature_checks SET result = 'verified', reason = NULL")
    result = ledger("verify", expect=1)
    assert "signature_checks id=1: changed after run 1 was sealed" in result.output


def test_a_key_file_that_cannot_be_used_is_one_line(registry, ledger, image, tmp_path):
    _, _, target = image
    private = tmp_path / "cosign.key"
    private.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    result = ledger("collect", "--quiet", target, "--signature-key", str(private), expect=2)
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --signature-key: {private}: holds a private key; give the public key (e.g. cosign.pub) or a "
        "certificate")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    result = ledger("collect", "--quiet", target, "--signature-key", str(junk), expect=2)
    assert f"--signature-key: {junk}: not a PEM public key or certificate" in result.output
    assert "Traceback" not in result.output
    result = ledger("collect", "--quiet", target, "--signature-key", str(tmp_path / "missing.pub"), expect=2)
    assert f"{tmp_path / 'missing.pub'}: cannot read" in result.output


def test_the_config_file_names_signature_keys(registry, pusher, ledger, image, tmp_path):
    repo, digest, target = image
    key = ec.generate_private_key(ec.SECP256R1())
    sign_with_tag(pusher, repo, digest, cosign_signed(digest, key))
    config = tmp_path / "ledger.toml"
    config.write_text(f'signature_keys = ["{pem(key, tmp_path / "cosign.pub")}"]\n'
                      f'[registries."{registry.host}"]\ntargets = ["{target}"]\n')
    ledger("collect", "--quiet", "--config", str(config))
    assert state(ledger) == [("prod", 1, 1)]
    config.write_text(f'[registries."{registry.host}"]\nsignature_keys = ["x"]\n')
    result = ledger("collect", "--quiet", "--config", str(config), expect=2)
    assert "signature_keys belongs at the top level" in result.output


def test_a_signature_layer_the_registry_serves_wrong_is_an_error_and_checked_again(registry, pusher, proxy, ledger,
                                                                                 ns, tmp_path):
    repo = f"{ns}/app"
    digest, _, _ = pusher.image(repo, "prod", seed=ns)
    key = ec.generate_private_key(ec.SECP256R1())
    signature = cosign_signed(digest, key)
    sign_with_tag(pusher, repo, digest, signature)
    layer = "sha256:" + hashlib.sha256(signature.blobs[1]).hexdigest()
    public = pem(key, tmp_path / "cosign.pub")
    served = {"body": b'{"critical": "other bytes"}'}

    def wrong(method, path, status, headers, body):
        if method == "GET" and path.endswith(f"/blobs/{layer}"):
            return 200, [(k, v) for k, v in headers if k.lower() != "content-length"], served["body"]
        return None
    proxy.alter_response = wrong
    target = f"{proxy.host}/{repo}"
    ledger.collect(target, "--signature-key", public, "--retries", "0", expect=3)
    errors = ledger.rows("SELECT stage, code, digest FROM errors")
    assert errors == [{"stage": "signature", "code": "DIGEST_MISMATCH", "digest": layer}]
    assert checks(ledger) == [] and state(ledger) == [("prod", 0, 1)]
    served["body"] = b"x" * (300 * 1024)  # past the bound: not read whole
    ledger.collect(target, "--signature-key", public, "--retries", "0", expect=3)
    assert ledger.rows("SELECT stage, code FROM errors WHERE run_id = 2") == [{"stage": "signature", "code": "TOO_LARGE"}]
    proxy.alter_response = None
    ledger.collect(target, "--signature-key", public)
    assert [(row["result"], row["run_id"]) for row in checks(ledger)] == [("verified", 3)]
    assert state(ledger) == [("prod", 1, 1)]


def hostile_envelopes(leaf):
    """JWS envelopes a registry could serve: each must be a `failed` verdict, never an exception."""
    der = base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()
    good = b64url(b'{"alg": "ES256"}')
    return [b"", b"[]", b"null", b'{"payload": 1}', b"[" * 5000 + b"]" * 5000,
            json.dumps({"payload": "e30", "protected": "e30", "signature": "", "header": []}).encode(),
            json.dumps({"payload": "e30", "protected": b64url(b'{"alg": {}}'), "signature": "",
                        "header": {"x5c": [der]}}).encode(),
            json.dumps({"payload": "e30", "protected": b64url(b'{"alg": "PS256"}'), "signature": "AAAA",
                        "header": {"x5c": [der]}}).encode(),
            json.dumps({"payload": "!!", "protected": good, "signature": "AAAA", "header": {"x5c": [der]}}).encode(),
            json.dumps({"payload": "e30", "protected": good, "signature": "AAAA", "header": {"x5c": ["bm90IGRlcg=="]}}).encode(),
            json.dumps({"payload": "e30", "protected": good, "signature": "AAAA", "header": {"x5c": []}}).encode(),
            json.dumps({"payload": "e30", "protected": good, "signature": "A" * 86, "header": {"x5c": [der]}}).encode()]


def test_hostile_signature_bytes_are_failed_verdicts_never_a_crash():
    from ledger import signatures
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(key, "hostile")
    keys = (signatures.Key(key_id(leaf), "leaf.pem", leaf.public_key(), leaf),
            signatures.Key(key_id(key), "key.pub", key.public_key()))
    subject = "sha256:" + "12" * 32
    for envelope in hostile_envelopes(leaf):
        document = json.loads(notation_signed(subject, key, [leaf], envelope=envelope).body)
        verdicts = signatures.verify(document, {document["layers"][0]["digest"]: envelope}, subject, keys)
        assert [verdict.result for verdict in verdicts] == ["failed", "failed"], envelope[:80]
    payloads = [b"", b"[]", b'{"critical": []}', b'{"critical": {"image": [], "type": "x"}}',
                b'{"critical": {"type": "cosign container image signature", "image": {"docker-manifest-digest": 7}}}']
    for payload in payloads:
        annotations = {"dev.cosignproject.cosign/signature": base64.b64encode(
            key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()}
        document = json.loads(manifest("application/vnd.oci.image.config.v1+json", cosign_config([payload]),
                                       [(SIMPLESIGNING, payload, annotations)]).body)
        verdicts = signatures.verify(document, {document["layers"][0]["digest"]: payload}, subject, keys[1:])
        assert verdicts[0].result == "failed" and "the signature verifies, but" in verdicts[0].reason
    # a layer that says it is huge is refused before any fetch
    document["layers"][0]["size"] = 10 ** 9
    assert signatures.verify(document, {}, subject, keys[1:])[0].reason.startswith("a signature layer is 1000000000")
