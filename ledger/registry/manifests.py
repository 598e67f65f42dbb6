"""HEAD and GET /v2/<name>/manifests/<reference>: a tag resolved (by a HEAD, or by a GET whose bytes are
wanted anyway), and a manifest fetched and verified."""

import re
from types import MappingProxyType
from urllib.parse import quote

from ..manifests import (ACCEPT, MAX_MANIFEST_BYTES, ManifestError, compute_digest, parse_manifest, valid_digest,
                         verify_digest)
from ..wire import ascii_int, bare_media_type
from .errors import RegistryError

_ACCEPT = MappingProxyType({"Accept": ACCEPT})  # every manifest request's headers, shared
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]+")  # what quote() leaves as it is


def _tag_path(tag):
    """A tag (or digest) as one URL path segment, quoted as quote(tag, safe="") does."""
    return tag if _UNQUOTED.fullmatch(tag) else quote(tag, safe="")


def fetch_head(policy, repo, tag):
    """Resolve a tag: (digest, media type, size) from one HEAD. The tag is quoted: a registry may serve
    tags past distribution's grammar."""
    prefix, scopes = policy.repo(repo)
    try:
        response = policy.request("HEAD", f"{prefix}/manifests/{_tag_path(tag)}", "head", headers=_ACCEPT,
                                  scopes=scopes, repo=repo, tag=tag)
    except RegistryError as error:
        if error.status == 404:
            error.code = "TAG_UNKNOWN"
            error.message = f"head: tag {tag} is in {repo}'s tag list, but its manifest is unknown (HTTP 404)"
        raise
    response.close()
    policy.answered()
    digest = response.header("Docker-Content-Digest")
    media_type = bare_media_type(response.header("Content-Type"))
    size = ascii_int(response.header("Content-Length"))
    if digest is None:
        # Some registries omit the header on HEAD: the digest is then the hash of the body,
        # but only of a body that is a manifest (not a login page or an error in disguise).
        body, media_type, digest = fetch_manifest(policy, repo, tag, tag=tag)
        try:
            parse_manifest(body, digest, media_type)
        except ManifestError as error:
            raise policy.fail(f"head: no Docker-Content-Digest, and the manifest is not one ({error})", "head",
                              repo=repo, tag=tag, code="MANIFEST_INVALID") from None
        return digest, media_type, len(body)
    if not valid_digest(digest):
        raise policy.fail(f"head: invalid Docker-Content-Digest {digest[:80]!r}", "head", repo=repo, tag=tag,
                          code="DIGEST_INVALID")
    return digest, media_type, size


def fetch_tag(policy, repo, tag):
    """Resolve a tag with one GET instead of a HEAD, for a tag whose manifest is wanted anyway (one the
    ledger never held): (body, media type, digest, problem). The digest is the registry's
    Docker-Content-Digest, as a HEAD's; a body that cannot be read or does not hash to it is the
    problem (the sighting stands, the bytes do not, as when a GET after a HEAD fails). With no header,
    the digest is the body's hash, and only of a body that is a manifest (as fetch_head)."""
    prefix, scopes = policy.repo(repo)
    where = {"repo": repo, "tag": tag}
    try:
        response = policy.request("GET", f"{prefix}/manifests/{_tag_path(tag)}", "manifest", headers=_ACCEPT,
                                  scopes=scopes, **where)
    except RegistryError as error:
        if error.status == 404:
            error.code = "TAG_UNKNOWN"
            error.message = f"manifest: tag {tag} is in {repo}'s tag list, but its manifest is unknown (HTTP 404)"
        raise
    media_type = bare_media_type(response.header("Content-Type"))
    said = response.header("Docker-Content-Digest")
    if said is not None and not valid_digest(said):
        response.close()
        raise policy.fail(f"manifest: invalid Docker-Content-Digest {said[:80]!r}", "manifest",
                          code="DIGEST_INVALID", **where)
    try:
        body = policy.read(response, MAX_MANIFEST_BYTES, "manifest", **where)
    except RegistryError as error:
        if said is None:
            raise
        error.digest = said
        return None, media_type, said, error
    if said is None:
        digest = compute_digest(body)
        try:
            parse_manifest(body, digest, media_type)
        except ManifestError as error:
            raise policy.fail(f"manifest: no Docker-Content-Digest, and the manifest is not one ({error})",
                              "manifest", code="MANIFEST_INVALID", **where) from None
        return body, media_type, digest, None
    try:
        verify_digest(body, said, media_type)
    except ManifestError as error:
        return None, media_type, said, policy.fail(f"manifest: {error}", "manifest", code="DIGEST_MISMATCH",
                                                   digest=said, **where)
    return body, media_type, said, None


def fetch_manifest(policy, repo, reference, tag=None):
    """GET a manifest by digest (or tag) and verify the body: (body, media type, digest)."""
    prefix, scopes = policy.repo(repo)
    url = f"{prefix}/manifests/{quote(reference, safe=':')}"
    where = {"repo": repo, "tag": tag, "digest": reference if valid_digest(reference) else None}
    response = policy.request("GET", url, "manifest", headers=_ACCEPT, scopes=scopes, **where)
    media_type = bare_media_type(response.header("Content-Type"))
    header_digest = response.header("Docker-Content-Digest")
    body = policy.read(response, MAX_MANIFEST_BYTES, "manifest", **where)
    expected = reference if valid_digest(reference) else header_digest
    try:
        if expected:
            verify_digest(body, expected, media_type)
        else:
            expected = compute_digest(body)
    except ManifestError as error:
        raise policy.fail(f"manifest: {error}", "manifest", code="DIGEST_MISMATCH", **where) from None
    return body, media_type, expected
