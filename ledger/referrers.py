"""What refers to a digest, and under which names: pure rules, no I/O.

Signatures, attestations and SBOMs reach a registry three ways (../shared/SUPPLY-CHAIN-NOTES.md sections
1 and 2): as OCI 1.1 referrers (a manifest whose `subject` is the digest, listed by
`GET /v2/<name>/referrers/<digest>`), in the referrers tag schema's index (tag `sha256-<hex>`, for
registries without that API), and as cosign's legacy tags `sha256-<hex>.sig|.att|.sbom`.
"""

import json
import re
from dataclasses import dataclass

REFERRER = "referrer"  # the source of a referrer key: (registry, repo, referrer digest)
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
# A tag the referrers tag schema or cosign writes; the views (schema/views.sql) hold the same rule in SQL.
_SCHEMA_TAG = re.compile(r"(sha256|sha512)-[0-9a-f]{64}(\.sig|\.att|\.sbom)?")
# Answers that say a registry does not serve the API: distribution answers 404, Quay 400 on a manifest it
# does not know, others 405 or 501 [GGCR commitSubjectReferrers; quay/quay#3071].
UNSERVED = (400, 404, 405, 501)


def schema_tag(tag):
    """Whether a tag is a referrers tag schema index or a cosign signature, attestation or SBOM tag: not an
    image tag, whatever it points to."""
    return bool(_SCHEMA_TAG.fullmatch(tag))


def fallback_tag(digest):
    """The referrers tag schema's tag for a subject: algorithm, '-', the encoded part cut to 64 characters
    [DS main, Referrers Tag Schema; the same as v1.1.1's for sha256]."""
    algorithm, _, encoded = digest.partition(":")
    return re.sub(r"[^a-zA-Z0-9._-]", "-", f"{algorithm[:32]}-{encoded[:64]}")


def cosign_tags(digest):
    """cosign's legacy tags for a subject: the digest with ':' as '-', and a suffix [CS SIGNATURE_SPEC]."""
    return [digest.replace(":", "-") + suffix for suffix in COSIGN_SUFFIXES]


@dataclass(frozen=True)
class Descriptor:
    """One referrer as a referrers list gives it; only the digest is believed (the manifest says the rest)."""

    digest: str
    media_type: str | None


@dataclass(frozen=True)
class ReferrerScope:
    """What a run's referrer listings of one repository speak for: the subjects whose referrers it read
    completely. A referrer key is removed only when its subject is one of them."""

    subjects: frozenset

    def covers(self, _tag):
        return True  # the store narrows it to these subjects, which it reads from each referrer's bytes

    def describe(self):
        return json.dumps({"referrers of": len(self.subjects)})
