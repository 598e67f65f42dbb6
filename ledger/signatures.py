"""Whether a signature artifact is a signature of a digest by a key the user trusts: pure, bytes in and
results out (the collector fetches the layers, the store records the results).

Two things must hold for "verified": the signature verifies with a configured key (`--signature-key`),
and what it signed names the digest it is listed for (a good signature over a payload for another digest
signs that digest, not this one). Formats (../shared/SUPPLY-CHAIN-NOTES.md section 2):

- cosign simple signing (`.sig` tags, cosign's experimental OCI 1.1 mode): each layer of media type
  application/vnd.dev.cosign.simplesigning.v1+json is a payload, its annotation
  `dev.cosignproject.cosign/signature` the base64 signature over the layer's bytes; the payload's
  `critical.image.docker-manifest-digest` names the digest [CS SIGNATURE_SPEC, pkg/oci/static/signature.go].
- Notation JWS (application/jose+json): the JWS signing input `protected.payload` signed by the leaf of the
  envelope's `x5c` chain, the payload's `targetArtifact.digest` naming the digest [NV]. The leaf is trusted
  when a configured certificate is one of the chain's certificates or issued its last one (each link checked),
  or when a configured public key is the leaf's.

The cryptography package does all of the cryptography and X.509 (no ASN.1 is read here). Keyless cosign
signatures and Sigstore bundles need the public Sigstore instance (Fulcio, Rekor): they are recorded as
not supported, never as verified. Certificate validity periods and revocation are not checked.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .manifests import NOTARY_SIGNATURE, SIGSTORE_BUNDLES, SIMPLESIGNING
from .wire import WireError, bare_media_type, loads

MAX_KEY_FILE = 256 * 1024
MAX_LAYER_BYTES = 256 * 1024  # a simple-signing payload is ~300 bytes; a JWS envelope with its chain a few KiB
MAX_LAYERS = 16  # signatures read per artifact (a `.sig` tag gains one layer per signature)
MAX_CHAIN = 8
MIN_RSA_BITS = 2048
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
COSIGN_CERTIFICATE = "dev.sigstore.cosign/certificate"
COSIGN_TYPE = "cosign container image signature"
JWS = "application/jose+json"
COSE = "application/cose"

VERIFIED, FAILED, UNSUPPORTED, NO_KEY = "verified", "failed", "unsupported", "no key"
KEYLESS = "not verified: keyless signatures are not supported (they need the public Sigstore instance)"


class KeyFileError(Exception):
    """A --signature-key file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Key:
    """A configured key: its id is 'sha256:' + the hex SHA-256 of its SubjectPublicKeyInfo (DER), as
    `openssl pkey -pubin -outform DER | sha256sum` prints it (a certificate's: of its public key)."""

    id: str
    path: str
    public_key: object
    certificate: object = None


@dataclass(frozen=True)
class Verdict:
    """One key's word on one signature artifact: VERIFIED, FAILED, UNSUPPORTED (with its reason), or NO_KEY
    (key None). `layer`: the layer that verified."""

    key: str | None
    result: str
    reason: str | None = None
    layer: str | None = None


def key_id(public_key):
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def load_keys(paths):
    """Every key and certificate in the files at `paths` (PEM: PUBLIC KEY, CERTIFICATE), once each."""
    keys = {}
    for path in paths:
        for key in _load_key_file(path):
            keys.setdefault((key.id, key.certificate is not None), key)
    return tuple(keys.values())


def _load_key_file(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read ({error.strerror})") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE} bytes; not a key file")
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(f"{path}: holds a private key; give the public key (e.g. cosign.pub) or a certificate")
    found = []
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            for certificate in x509.load_pem_x509_certificates(data):
                found.append(Key(key_id(certificate.public_key()), path, _usable(certificate.public_key(), path),
                                 certificate))
        elif b"-----BEGIN PUBLIC KEY-----" in data:
            public_key = serialization.load_pem_public_key(data)
            found.append(Key(key_id(public_key), path, _usable(public_key, path)))
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{path}: not a PEM public key or certificate ({str(error)[:120]})") from None
    if not found:
        raise KeyFileError(f"{path}: no PEM public key (BEGIN PUBLIC KEY) or certificate (BEGIN CERTIFICATE) in it")
    return found


def _usable(public_key, path):
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in _EC_HASHES:
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= MIN_RSA_BITS:
        return public_key
    raise KeyFileError(f"{path}: not a key signatures are verified with (ECDSA P-256/P-384/P-521, Ed25519, "
                       f"RSA of at least {MIN_RSA_BITS} bits)")


_EC_HASHES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}


@dataclass
class Checking:
    """What a run checks signatures with: the configured keys, the verdicts the ledger holds
    ({(signature, subject): {key id or None}}), and `body(digest)`, a stored manifest's bytes."""

    keys: tuple
    done: dict
    body: object

    def wanted(self, signature, subject):
        """The key ids (None: no key configured) with no verdict on this signature of this subject yet."""
        have = self.done.get((signature, subject), set())
        return [key for key in dict.fromkeys([key.id for key in self.keys] or [None]) if key not in have]


def document(body):
    """A manifest's JSON (already parsed once as a manifest, so within the bounds)."""
    return loads(body, "manifest")


@dataclass(frozen=True)
class Plan:
    """What verifying a signature artifact takes: the layers to fetch (digest, size), or why it cannot
    be verified at all (`unsupported`, or `failed` for an artifact that is malformed for every key)."""

    layers: tuple = ()
    unsupported: str | None = None
    failed: str | None = None


def plan(document):
    """The layers of a signature manifest (parsed JSON) that carry the signatures this module verifies."""
    layers = [layer for layer in document.get("layers") or () if isinstance(layer, dict)] \
        if isinstance(document.get("layers"), list) else []
    types = {bare_media_type(layer.get("mediaType"), lower=True) for layer in layers}
    marks = {bare_media_type(document.get("artifactType"), lower=True),
             bare_media_type((document.get("config") or {}).get("mediaType"), lower=True)
             if isinstance(document.get("config"), dict) else None}
    if SIMPLESIGNING in types:
        wanted = [layer for layer in layers if bare_media_type(layer.get("mediaType"), lower=True) == SIMPLESIGNING]
    elif NOTARY_SIGNATURE in marks and JWS in types:
        wanted = [layer for layer in layers if bare_media_type(layer.get("mediaType"), lower=True) == JWS]
    elif NOTARY_SIGNATURE in marks and COSE in types:
        return Plan(unsupported="not verified: Notation COSE envelopes are not supported (JWS ones are)")
    elif (types | marks) & SIGSTORE_BUNDLES:
        return Plan(unsupported=KEYLESS + " (a Sigstore bundle)")
    elif NOTARY_SIGNATURE in marks:
        return Plan(failed="a Notation signature without a JWS or COSE envelope layer")
    else:
        return Plan(unsupported="not verified: no signature layer of a format this ledger verifies")
    fetched = []
    for layer in wanted[:MAX_LAYERS]:
        digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(digest, str) or type(size) is not int or size < 0:
            return Plan(failed="a signature layer has no valid digest and size")
        if size > MAX_LAYER_BYTES:
            return Plan(failed=f"a signature layer is {size} bytes, more than {MAX_LAYER_BYTES}")
        fetched.append((digest, size))
    return Plan(layers=tuple(fetched))


def verify(document, blobs, subject, keys):
    """Each key's Verdict on a signature manifest (parsed JSON) whose layers' bytes are `blobs` (digest ->
    bytes, each already checked against its digest), as a signature of `subject`."""
    if not keys:
        return [Verdict(None, NO_KEY, "no --signature-key configured")]
    planned = plan(document)
    if planned.unsupported or planned.failed:
        result = UNSUPPORTED if planned.unsupported else FAILED
        return [Verdict(key.id, result, planned.unsupported or planned.failed) for key in keys]
    layers = [layer for layer in document["layers"] if isinstance(layer, dict)
              and (layer.get("digest"), layer.get("size")) in planned.layers]
    check = _notation if JWS in {bare_media_type(layer.get("mediaType"), lower=True) for layer in layers} else _cosign
    verdicts = []
    for key in keys:
        reasons = []
        for layer in layers:
            reason = check(layer, blobs[layer["digest"]], subject, key)
            if reason is None:
                verdicts.append(Verdict(key.id, VERIFIED, None, layer["digest"]))
                break
            reasons.append(reason)
        else:
            keyless = [reason for reason in reasons if reason == KEYLESS]
            result = UNSUPPORTED if keyless and len(keyless) == len(reasons) else FAILED
            verdicts.append(Verdict(key.id, result, "; ".join(dict.fromkeys(reasons))[:500]))
    return verdicts


def _cosign(layer, payload, subject, key):
    """None when a simple-signing layer is `key`'s signature of `subject`, else why not."""
    annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
    encoded = annotations.get(COSIGN_SIGNATURE)
    if not isinstance(encoded, str):
        return f"the layer has no {COSIGN_SIGNATURE} annotation"
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return f"its {COSIGN_SIGNATURE} annotation is not base64"
    if not _signed(key.public_key, signature, payload, _COSIGN_SCHEMES):
        return KEYLESS if isinstance(annotations.get(COSIGN_CERTIFICATE), str) else \
            "the signature does not verify with this key"
    try:
        critical = loads(payload, "the signed payload").get("critical")
    except (WireError, AttributeError):
        return "the signature verifies, but its payload is not a simple-signing JSON object"
    image = critical.get("image") if isinstance(critical, dict) else None
    if not isinstance(image, dict) or critical.get("type") != COSIGN_TYPE:
        return f"the signature verifies, but its payload is not a {COSIGN_TYPE!r}"
    # Go's encoding/json, which cosign reads it with, matches the key whatever its case.
    named = [value for name, value in image.items() if name.lower() == "docker-manifest-digest"]
    if named != [subject]:
        return f"the signature verifies, but its payload names {_said(named)}, not {subject}"
    return None


def _notation(layer, envelope, subject, key):
    """None when a Notation JWS envelope is a signature of `subject` by a certificate `key` trusts."""
    try:
        document = loads(envelope, "the JWS envelope", max_depth=16)
        protected, payload, signature = (document[name] for name in ("protected", "payload", "signature"))
        chain = document["header"]["x5c"]
        if not all(isinstance(part, str) for part in (protected, payload, signature)) or not isinstance(chain, list):
            raise TypeError
        header = loads(_b64url(protected), "the JWS protected header", max_depth=8)
        algorithm = header["alg"]
        certificates = [x509.load_der_x509_certificate(base64.b64decode(der, validate=True))
                        for der in chain[:MAX_CHAIN]]
        leaf_key = certificates[0].public_key() if certificates else None
        signed_payload = loads(_b64url(payload), "the JWS payload", max_depth=16)
        raw_signature = _b64url(signature)
    except (WireError, KeyError, TypeError, ValueError, binascii.Error, UnsupportedAlgorithm):
        return "the layer is not a Notation JWS envelope with an x5c certificate chain"
    if leaf_key is None or not isinstance(algorithm, str) or algorithm not in _JWS_SCHEMES:
        return f"the JWS envelope has no certificate or an algorithm Notation does not sign with ({str(algorithm)[:20]})"
    leaf = certificates[0]
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey if algorithm[0] == "E" else rsa.RSAPublicKey):
        return f"the JWS algorithm {algorithm} is not one for the leaf certificate's key"
    if not _signed(leaf_key, _jws_signature(raw_signature, leaf_key),
                   f"{protected}.{payload}".encode("ascii", "replace"), [_JWS_SCHEMES[algorithm]]):
        return "the JWS signature does not verify with the envelope's own leaf certificate"
    if not _trusted(certificates, key):
        return (f"signed by {leaf.subject.rfc4514_string()[:200]!r}, which is not this key's, nor a certificate "
                "this key's certificate issued")
    target = signed_payload.get("targetArtifact") if isinstance(signed_payload, dict) else None
    named = target.get("digest") if isinstance(target, dict) else None
    if named != subject:
        return f"the signature verifies, but its payload names {_said([named] if named else [])}, not {subject}"
    return None


def _trusted(certificates, key):
    """The chain links up (each certificate issued by the next) to a configured certificate, or its leaf
    holds the configured public key."""
    for child, parent in zip(certificates, certificates[1:]):
        if not _issued(child, parent):
            return False
    if key.certificate is None:
        try:
            return key_id(certificates[0].public_key()) == key.id
        except UnsupportedAlgorithm:
            return False
    anchor = key.certificate.public_bytes(serialization.Encoding.DER)
    return any(certificate.public_bytes(serialization.Encoding.DER) == anchor for certificate in certificates) \
        or _issued(certificates[-1], key.certificate)


def _issued(child, parent):
    try:
        child.verify_directly_issued_by(parent)
        return True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False


def _jws_signature(raw, public_key):
    """A JWS ECDSA signature is R || S, each the curve's size in bytes [RFC 7518 3.4]; cryptography takes DER."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return raw
    size = (public_key.curve.key_size + 7) // 8
    if len(raw) != 2 * size:
        return b""
    return encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))


def _signed(public_key, signature, message, schemes):
    """Whether `signature` over `message` verifies with `public_key` under one of `schemes` (a key type's
    (hash, RSA padding) choices)."""
    for algorithm, rsa_padding in schemes:
        try:
            if isinstance(public_key, ed25519.Ed25519PublicKey):
                public_key.verify(signature, message)
            elif isinstance(public_key, ec.EllipticCurvePublicKey):
                if algorithm is None:
                    algorithm = _EC_HASHES.get(public_key.curve.name, hashes.SHA256)
                public_key.verify(signature, message, ec.ECDSA(algorithm()))
            elif isinstance(public_key, rsa.RSAPublicKey) and rsa_padding is not None:
                public_key.verify(signature, message, rsa_padding(algorithm), algorithm())
            else:
                continue
            return True
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return False


def _pss(algorithm):
    return padding.PSS(mgf=padding.MGF1(algorithm()), salt_length=algorithm.digest_size)


# cosign signs with SHA-256 by default for every key type, and with the curve's hash where sigstore's
# default verifier pairs one with it (P-384, P-521); RSA keys sign PKCS #1 v1.5 (sigstore/sigstore
# pkg/signature). Ed25519 signs the payload itself.
_COSIGN_SCHEMES = [(None, None), (hashes.SHA256, lambda algorithm: padding.PKCS1v15()), (hashes.SHA256, _pss)]
# The JWS algorithms Notation signs with [NV signature-specification: PS256/384/512, ES256/384/512].
_JWS_SCHEMES = {"PS256": (hashes.SHA256, _pss), "PS384": (hashes.SHA384, _pss), "PS512": (hashes.SHA512, _pss),
                "ES256": (hashes.SHA256, None), "ES384": (hashes.SHA384, None), "ES512": (hashes.SHA512, None)}


def _b64url(text):
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _said(values):
    shown = [str(value)[:80] for value in values]
    return ", ".join(shown) if shown else "no digest"
