"""Signature benchmark: what `signed` (a verified signature) and `has_signature` cost `current_tags`, and
what verifying costs. Builds a ledger through the store's own append API: one repository of N tags, each
image signed by a cosign `.sig` tag whose manifest is stored, half of them with a verified verdict in
signature_checks; then times reading current_tags and `tags --unsigned`, and signatures.verify on a real
ECDSA P-256 simple-signing signature. Prints the figures.

    .venv/bin/python scripts/bench_signatures.py --tags 2000
"""

import argparse
import base64
import hashlib
import json
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import reads, signatures, store
from ledger.findings import RunResult, SignatureCheck, Sighting
from ledger.manifests import facts_of, parse_manifest

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signed_payload(subject, key):
    payload = json.dumps({"critical": {"identity": {"docker-reference": "bench.example/app"},
                                       "image": {"docker-manifest-digest": subject},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    return payload, key.sign(payload, ec.ECDSA(hashes.SHA256()))


def signature_manifest(subject, key):
    """A cosign `.sig` manifest (as bytes) and its parsed document, signed for real."""
    payload, signature = signed_payload(subject, key)
    document = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                           "digest": digest(b"{}")},
                "layers": [{"mediaType": SIMPLESIGNING, "size": len(payload), "digest": digest(payload),
                            "annotations": {signatures.COSIGN_SIGNATURE: base64.b64encode(signature).decode()}}]}
    return json.dumps(document).encode(), document, payload


def build(path, tags, key, key_id):
    db = store.open_db(path)
    at = "2026-01-01T00:00:00.000001Z"
    observations, manifests, checks = [], [], []
    for n in range(tags):
        image = digest(f"image {n}".encode())
        body, _, _ = signature_manifest(image, key)
        facts = facts_of(parse_manifest(body, digest(body)), body, b"{}")
        manifests.append(facts)
        observations += [Sighting("bench.example", "app", f"v{n}", at, image, MANIFEST),
                         Sighting("bench.example", "app", image.replace(":", "-") + ".sig", at, facts["digest"],
                                  MANIFEST)]
        if n % 2 == 0:
            checks.append(SignatureCheck("bench.example", "app", facts["digest"], image, key_id, "verified", None,
                                         None, at))
    store.append_run(db, store.start_run(db, "registry", ["bench.example/app"]),
                     RunResult(observations=observations, manifests=manifests, signature_checks=checks))
    return db


def timed(function, repeat=3):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=2000)
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    key_id = signatures.key_id(key.public_key())
    db = build(Path(tempfile.mkdtemp(prefix="ledger-bench-")) / "ledger.db", args.tags, key, key_id)
    took, rows = timed(lambda: db.execute("SELECT * FROM current_tags").fetchall())
    signed = sum(1 for row in reads.current_tags(db) if row["signed"])
    print(f"current_tags     {took * 1000:.0f} ms to read all {len(rows)} rows ({signed} signed, every one "
          "has_signature)")
    took, rows = timed(lambda: reads.current_tags(db, unsigned=True))
    print(f"tags --unsigned  {took * 1000:.0f} ms ({len(rows)} rows)")
    took, rows = timed(lambda: db.execute("SELECT * FROM current_referrers WHERE verified").fetchall())
    print(f"current_referrers WHERE verified  {took * 1000:.0f} ms ({len(rows)} rows)")
    subject = digest(b"image 0")
    body, document, payload = signature_manifest(subject, key)
    keys = (signatures.Key(key_id, "bench", key.public_key()),)
    runs = 500
    started = time.perf_counter()
    for _ in range(runs):
        [verdict] = signatures.verify(document, {digest(payload): payload}, subject, keys)
    assert verdict.result == signatures.VERIFIED
    print(f"verify           {(time.perf_counter() - started) / runs * 1e6:.0f} us per ECDSA P-256 simple-signing "
          "signature (parse, verify, payload check)")


if __name__ == "__main__":
    main()
