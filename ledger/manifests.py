"""Understand manifest, index and config bodies; check them against their digests. Pure code."""

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

from .times import normalise_created
from .wire import WireError, loads

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

ATTESTATION = "attestation-manifest"
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
    """Content-Type without parameters; else the body's mediaType; else its shape."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared not in ("application/json", "application/octet-stream", "text/plain"):
        return declared
    if isinstance(document.get("mediaType"), str):
        return document["mediaType"]
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


def parse_manifest(body, digest, content_type=None):
    """Parse a verified manifest body into the facts the ledger keeps."""
    document = _load_object(body, "manifest")
    media_type = detect_media_type(content_type, document)
    if media_type in LEGACY_TYPES or document.get("schemaVersion") == 1:
        return Manifest(digest=digest, media_type=media_type, kind="legacy")
    if media_type in INDEX_TYPES or "manifests" in document:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError("index has no manifests list")
        return Manifest(digest=digest, media_type=media_type, kind="index",
                        artifact_type=_str_or_none(document.get("artifactType")),
                        children=[_child(entry, position) for position, entry in enumerate(entries)])
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
    return Manifest(digest=digest, media_type=media_type, kind=kind, config_digest=config["digest"],
                    config_media_type=config_type, artifact_type=artifact_type or (
                        config_type if kind == "artifact" else None),
                    size=total, layers=len(layers))


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


def facts_of(manifest, body, config_body=None):
    """The row the ledger keeps for a manifest: its facts, its platforms (an index's children) and the
    bytes they come from, so that they can be derived again from those bytes alone."""
    facts = {"digest": manifest.digest, "media_type": manifest.media_type, "kind": manifest.kind,
             "config_digest": manifest.config_digest, "config_media_type": manifest.config_media_type,
             "artifact_type": manifest.artifact_type, "size": manifest.size, "layers": manifest.layers,
             "body": body}
    if config_body is not None:
        facts.update(parse_config(config_body), config_body=config_body)
    if manifest.kind == "index":
        facts["platforms"] = [_platform(position, child) for position, child in enumerate(manifest.children)]
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
    if manifest.kind != "image":
        return facts_of(manifest, body)
    if config_body is None:
        raise ManifestError("the image config's bytes are missing")
    verify_digest(config_body, manifest.config_digest)
    return facts_of(manifest, body, config_body)
