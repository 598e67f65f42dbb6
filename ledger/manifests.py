"""Understand manifest, index and config bodies; check them against their digests. Pure code."""

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

from .times import normalise_created, normalise_time
from .wire import WireError, bare_media_type, loads

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# Without all four, registries down-convert and the digest changes.
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
IMAGE_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
LEGACY_TYPES = {DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED}
IMAGE_CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
# Layers a runtime unpacks into a root filesystem: the OCI and Docker layer media types, tar with any
# compression, distributable or not [OCI image-spec media-types.md, layer.md; Docker image manifest v2.2;
# containerd images/mediatypes.go]. With an image config, they are what makes a manifest an image: something
# that runs, whatever label (artifactType, annotations) its pusher chose.
IMAGE_LAYER_PREFIXES = ("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.")
# What a manifest is, as the ledger answers about it (manifests.category): something that runs (image, index
# of images), a legacy schema1 manifest, or an artifact's kind. IMAGES are the ones image questions count.
IMAGES = ("image", "index", "legacy")

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what a registry may send, and what a stored row may inflate to
MAX_CONFIG_BYTES = 8 * 1024 * 1024
ATTESTATION = "attestation-manifest"

# What marks an artifact as what it is. Sources: ../shared/SUPPLY-CHAIN-NOTES.md sections 1, 2 and 4 (keys
# [CS] sigstore/cosign, [NV] notaryproject/specifications, [BK] moby/buildkit), and where named below.
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"  # a cosign `.sig` layer [CS SIGNATURE_SPEC]
NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"  # artifactType or config mediaType [NV]
# cosign v3's referrer [CS BUNDLE_SPEC]; sigstore-js @sigstore/bundle names the older ones
# application/vnd.dev.sigstore.bundle+json;version=0.1|0.2|0.3 (compared here without parameters).
SIGSTORE_BUNDLES = {"application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.dev.sigstore.bundle+json"}
BUNDLE_CONTENT = "dev.sigstore.bundle.content"  # message-signature | dsse-envelope [CS BUNDLE_SPEC]
BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
# cosign v3 `sign` writes a DSSE bundle of this predicate: a signature, though shaped as an attestation
# [CS pkg/oci/remote/write.go WriteAttestationNewBundleFormat, pkg/types/predicate.go].
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
DSSE = "application/vnd.dsse.envelope.v1+json"  # a cosign `.att` layer [CS ATTESTATION_SPEC]
# BuildKit's attestation layers [BK]; cosign's attestation referrers' artifactType
# (sigstore/cosign pkg/oci/remote/write.go WriteAttestationsReferrer: ctypes.IntotoPayloadType).
IN_TOTO = "application/vnd.in-toto+json"
BUILDKIT_ATTESTATION = "application/vnd.docker.attestation.manifest.v1+json"  # oci-artifact=true [BK]
# cosign's experimental OCI 1.1 mode (COSIGN_EXPERIMENTAL=1) [CS internal/pkg/oci/remote/remote.go].
COSIGN_ARTIFACTS = {"application/vnd.dev.cosign.artifact.sig.v1+json": "signature",
                    "application/vnd.dev.cosign.artifact.att.v1+json": "attestation",
                    "application/vnd.dev.cosign.artifact.sbom.v1+json": "sbom"}
SBOM_TYPES = {
    # cosign `.sbom` layers [CS pkg/types/media.go, SBOM_SPEC]
    "text/spdx", "text/spdx+json", "application/vnd.cyclonedx", "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml", "application/vnd.syft+json",
    "application/spdx+json",  # IANA: https://iana.org/assignments/media-types/application/spdx+json
    "application/spdx3+json",  # IANA: https://www.iana.org/assignments/media-types/application/spdx3+json
}
# IANA: https://iana.org/assignments/media-types/application/vnd.cncf.helm.config.v1+json (Helm HIP-0017)
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
CREATED_ANNOTATION = "org.opencontainers.image.created"
MAX_ANNOTATIONS = 64 * 1024  # bytes of JSON; larger annotations are dropped whole, never cut
MAX_TEXT = 1024  # a chart name or version longer than this is not one
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


class ManifestError(ValueError):
    """A body that is not what it claims to be; the message says how."""


@dataclass
class Child:
    digest: str
    media_type: str | None
    size: int | None
    os: str | None
    architecture: str | None
    variant: str | None
    os_version: str | None
    attestation: bool
    attests: str | None


@dataclass
class Manifest:
    digest: str
    media_type: str
    kind: str  # image | index | artifact | legacy
    config_digest: str | None = None
    config_media_type: str | None = None
    artifact_type: str | None = None
    size: int | None = None
    layers: int | None = None
    children: list = field(default_factory=list)
    subject: str | None = None  # the digest of the manifest this one refers to (OCI 1.1)
    artifact_kind: str | None = None  # signature | attestation | sbom | referrers | helm-chart | artifact
    annotations: str | None = None  # the top-level annotations, as sorted JSON
    created: str | None = None  # an artifact's, from its annotations (an image's comes from its config)
    # What it is, from what can run (runnable): image | index | legacy | an artifact's kind. `kind` and
    # `artifact_kind` keep the words of before (sealed rows have them): kind 'artifact' for any artifactType,
    # artifact_kind from the labels. An index's is settled against its children when stored (store.facts).
    category: str | None = None


def valid_digest(value):
    return isinstance(value, str) and bool(DIGEST_RE.match(value))


def compute_digest(body, algorithm="sha256"):
    return f"{algorithm}:{_ALGORITHMS[algorithm](body).hexdigest()}"


def _schema1_payload(body):
    """A signed schema1 manifest's digest covers the JWS payload, not the body with signatures."""
    try:
        signatures = loads(body, "manifest")["signatures"]
        protected = signatures[0]["protected"]
        header = loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)), "signature header")
        tail = header["formatTail"]
        return body[: header["formatLength"]] + base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def verify_digest(body, digest, media_type=None):
    """Raise ManifestError unless `body` hashes to `digest`."""
    if not valid_digest(digest):
        raise ManifestError(f"invalid digest {digest!r}")
    algorithm = digest.split(":", 1)[0]
    if compute_digest(body, algorithm) == digest:
        return
    if media_type == DOCKER_SCHEMA1_SIGNED or b'"signatures"' in body[-4096:]:
        payload = _schema1_payload(body)
        if payload is not None and compute_digest(payload, algorithm) == digest:
            return
    raise ManifestError(f"body does not match digest {digest} (got {compute_digest(body, algorithm)})")


def detect_media_type(content_type, document):
    """The body's mediaType (the digest covers it, whoever serves the bytes); else Content-Type without
    parameters; else the body's shape."""
    if isinstance(document.get("mediaType"), str) and document["mediaType"]:
        return document["mediaType"]
    declared = bare_media_type(content_type, lower=True)
    if declared and declared not in ("application/json", "application/octet-stream", "text/plain"):
        return declared
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document:
        return OCI_MANIFEST
    if document.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1_SIGNED if "signatures" in document else DOCKER_SCHEMA1
    return declared or "application/octet-stream"


def _load_object(body, what):
    try:
        document = loads(body, what)
    except WireError as error:
        raise ManifestError(str(error)) from None
    if not isinstance(document, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return document


MAX_SIZE = 2 ** 53  # a size past this is a lie, and a sum of them must fit SQLite's INTEGER


def _int_or_none(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SIZE else None


def _str_or_none(value):
    return value if isinstance(value, str) and value else None


def _bare(media_type):
    """A media type without parameters, lower case, for comparing."""
    return bare_media_type(media_type, lower=True)


def _subject(document):
    subject = document.get("subject")
    return subject["digest"] if isinstance(subject, dict) and valid_digest(subject.get("digest")) else None


def _annotations(document):
    annotations = document.get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def _annotations_json(annotations):
    if not annotations:
        return None
    text = json.dumps(annotations, sort_keys=True, ensure_ascii=False)
    return text if len(text.encode("utf-8")) <= MAX_ANNOTATIONS else None


def _artifact_kind(types, layer_types, annotations):
    """What an artifact is, from its artifactType and config media type (`types`) and its layers' media
    types; None when nothing marks it."""
    found = types | layer_types
    if SIMPLESIGNING in layer_types or NOTARY_SIGNATURE in types:
        return "signature"
    if found & SIGSTORE_BUNDLES:
        content = annotations.get(BUNDLE_CONTENT)
        if content == "message-signature" or (
                content == "dsse-envelope" and annotations.get(BUNDLE_PREDICATE) == COSIGN_SIGN_PREDICATE):
            return "signature"
        return "attestation" if content == "dsse-envelope" else "artifact"
    cosign = sorted(COSIGN_ARTIFACTS[value] for value in types & COSIGN_ARTIFACTS.keys())
    if cosign:
        return cosign[0]
    if layer_types & {DSSE, IN_TOTO} or types & {IN_TOTO, BUILDKIT_ATTESTATION}:
        return "attestation"
    return "sbom" if found & SBOM_TYPES else None


def _is_referrers_list(media_type, entries):
    """A referrers list, as the fallback tag `<alg>-<hex>` holds it (or the referrers API answers): an OCI
    index of artifacts, not platforms. Its descriptors carry each referrer's artifactType (omitted only
    for an index referrer that has none) and annotations, and never a platform [DS Listing Referrers,
    Referrers Tag Schema]; the tag's name is not in the bytes, so the content decides. An empty index
    says nothing either way and is not one."""
    return (media_type == OCI_INDEX and bool(entries)
            and not any(isinstance(entry.get("platform"), dict) for entry in entries)
            and any(_str_or_none(entry.get("artifactType")) for entry in entries))


def runnable(media_type, config_type, layers):
    """Whether a runtime would run it: an image manifest whose config is an image config (or names no type,
    as before OCI required one) and whose every layer is a filesystem layer. artifactType, annotations and
    subject are the pusher's words and play no part."""
    return (_bare(media_type) in IMAGE_TYPES and (config_type is None or _bare(config_type) in IMAGE_CONFIG_TYPES)
            and all(isinstance(layer, dict) and (_bare(_str_or_none(layer.get("mediaType"))) or "").startswith(
                IMAGE_LAYER_PREFIXES) for layer in layers))


def parse_manifest(body, digest, content_type=None):
    """Parse a verified manifest body into the facts the ledger keeps."""
    document = _load_object(body, "manifest")
    media_type = detect_media_type(content_type, document)
    if media_type in LEGACY_TYPES or document.get("schemaVersion") == 1:
        return Manifest(digest=digest, media_type=media_type, kind="legacy", category="legacy")
    annotations, subject = _annotations(document), _subject(document)
    if media_type in INDEX_TYPES or "manifests" in document:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError("index has no manifests list")
        children = [_child(entry, position) for position, entry in enumerate(entries)]
        artifact_type = _str_or_none(document.get("artifactType"))
        if artifact_type or subject:  # an index that is itself a referrer
            word = _artifact_kind({_bare(artifact_type)} - {None}, set(), annotations) or "artifact"
        else:
            word = "referrers" if _is_referrers_list(_bare(media_type), entries) else None
        return Manifest(digest=digest, media_type=media_type, kind="index", artifact_type=artifact_type,
                        children=children, subject=subject, artifact_kind=word,
                        annotations=_annotations_json(annotations),
                        created=normalise_created(annotations.get(CREATED_ANNOTATION)) if word else None,
                        category=word or "index")
    config = document.get("config")
    if not isinstance(config, dict) or not valid_digest(config.get("digest")):
        raise ManifestError("manifest has no valid config descriptor")
    layers = document.get("layers")
    if not isinstance(layers, list):
        layers = []
    sizes = [_int_or_none(layer.get("size")) if isinstance(layer, dict) else None for layer in layers]
    config_size = _int_or_none(config.get("size"))
    total = None if config_size is None or None in sizes else config_size + sum(sizes)
    total = total if total is None or total <= MAX_SIZE else None
    config_type = _str_or_none(config.get("mediaType"))
    artifact_type = _str_or_none(document.get("artifactType"))
    kind = "image" if (config_type in IMAGE_CONFIG_TYPES or config_type is None) and not artifact_type else "artifact"
    if _bare(config_type) == HELM_CONFIG:
        word = "helm-chart"
    else:
        word = _artifact_kind({_bare(artifact_type), _bare(config_type)} - {None},
                              {_bare(layer.get("mediaType")) for layer in layers if isinstance(layer, dict)} - {None},
                              annotations) or ("artifact" if kind == "artifact" else None)
    category = "image" if runnable(media_type, config_type, layers) else word or "artifact"
    return Manifest(digest=digest, media_type=media_type, kind=kind, config_digest=config["digest"],
                    config_media_type=config_type, artifact_type=artifact_type or (
                        config_type if kind == "artifact" else None),
                    size=total, layers=len(layers), subject=subject, artifact_kind=word,
                    annotations=_annotations_json(annotations),
                    created=normalise_created(annotations.get(CREATED_ANNOTATION)) if kind == "artifact" else None,
                    category=category)


def _child(entry, position):
    if not isinstance(entry, dict) or not valid_digest(entry.get("digest")):
        raise ManifestError(f"index entry {position} has no valid digest")
    platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
    annotations = entry.get("annotations") if isinstance(entry.get("annotations"), dict) else {}
    attestation = annotations.get("vnd.docker.reference.type") == ATTESTATION
    return Child(
        digest=entry["digest"], media_type=_str_or_none(entry.get("mediaType")), size=_int_or_none(entry.get("size")),
        os=_str_or_none(platform.get("os")), architecture=_str_or_none(platform.get("architecture")),
        variant=_str_or_none(platform.get("variant")), os_version=_str_or_none(platform.get("os.version")),
        attestation=attestation,
        attests=_str_or_none(annotations.get("vnd.docker.reference.digest")) if attestation else None)


def parse_config(body):
    """The image config facts the ledger keeps: created, author, platform, labels."""
    document = _load_object(body, "image config")
    inner = document.get("config") if isinstance(document.get("config"), dict) else {}
    labels = inner.get("Labels") if isinstance(inner.get("Labels"), dict) else None
    return {
        "created": normalise_created(document.get("created")),
        "author": _str_or_none(document.get("author")),
        "os": _str_or_none(document.get("os")),
        "architecture": _str_or_none(document.get("architecture")),
        "variant": _str_or_none(document.get("variant")),
        "os_version": _str_or_none(document.get("os.version")),
        "labels": json.dumps(labels, sort_keys=True, ensure_ascii=False) if labels else None,
    }


def parse_helm_config(body):
    """A Helm chart's name and version, from its config blob (Chart.yaml's fields as JSON)."""
    document = _load_object(body, "helm chart config")
    return {"name": _short_text(document.get("name")), "version": _short_text(document.get("version"))}


def _short_text(value):
    text = _str_or_none(value)
    return text if text and len(text) <= MAX_TEXT else None


def created_before_7(kind, config_body):
    """The `created` a ledger before schema 7 derived from the same bytes: an image config's, Go's zero
    time included, and none for anything else. Rows written then keep it: their seals cover it."""
    if kind != "image" or config_body is None:
        return None
    return normalise_time(_load_object(config_body, "image config").get("created"))


def needs_config(manifest):
    """Whether a manifest's config blob holds facts the ledger keeps: an image's (what runs, or what the
    words of before called one), a Helm chart's."""
    return _image_config(manifest) or manifest.artifact_kind == "helm-chart"


def _image_config(manifest):
    return manifest.kind == "image" or manifest.category == "image"


def facts_of(manifest, body, config_body=None):
    """The row the ledger keeps for a manifest: its facts, its platforms (an index's children) and the
    bytes they come from, so that they can be derived again from those bytes alone."""
    facts = {"digest": manifest.digest, "media_type": manifest.media_type, "kind": manifest.kind,
             "config_digest": manifest.config_digest, "config_media_type": manifest.config_media_type,
             "artifact_type": manifest.artifact_type, "size": manifest.size, "layers": manifest.layers,
             "subject": manifest.subject, "artifact_kind": manifest.artifact_kind,
             "annotations": manifest.annotations, "created": manifest.created, "name": None, "version": None,
             "category": manifest.category, "body": body}
    if config_body is not None and needs_config(manifest):
        parse = parse_config if _image_config(manifest) else parse_helm_config
        facts.update(parse(config_body), config_body=config_body)
    if manifest.kind == "index":
        listed = [_platform(position, child) for position, child in enumerate(manifest.children)]
        # A referrers list's entries are referrers of its subject, never platforms: kept out of the
        # platforms table (rows of before schema 11 have them: verify knows them as `referrers`).
        facts["referrers" if manifest.category == "referrers" else "platforms"] = listed
        facts["children"] = [child.digest for child in manifest.children if not child.attestation]
    return facts


def _platform(position, child):
    return {"position": position, "digest": child.digest, "media_type": child.media_type, "size": child.size,
            "os": child.os, "architecture": child.architecture, "variant": child.variant,
            "os_version": child.os_version, "attestation": int(child.attestation), "attests": child.attests}


def derive(digest, media_type, body, config_body=None):
    """A stored manifest row derived again from its bytes alone; ManifestError unless the bytes hash to the
    digest (and the config bytes to the config digest the manifest names)."""
    verify_digest(body, digest, media_type)
    manifest = parse_manifest(body, digest, media_type)
    if not needs_config(manifest) or (config_body is None and manifest.kind != "image"):
        # a Helm chart recorded before its config was fetched has none, nor an image that schema 10 and
        # before took for an artifact (an artifactType), whose config they never fetched
        return facts_of(manifest, body)
    if config_body is None:
        raise ManifestError("the image config's bytes are missing")
    verify_digest(config_body, manifest.config_digest)
    return facts_of(manifest, body, config_body)
