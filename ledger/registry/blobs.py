"""GET /v2/<name>/blobs/<digest>: an image config or a signature layer, verified against its digest."""

from ..manifests import MAX_CONFIG_BYTES, ManifestError, verify_digest


def fetch_blob(policy, repo, digest, limit=MAX_CONFIG_BYTES, stage="config"):
    """GET a blob (an image config, or with stage 'signature' a signature layer) and verify it against
    its digest."""
    prefix, scopes = policy.repo(repo)
    response = policy.request("GET", f"{prefix}/blobs/{digest}", stage, scopes=scopes, repo=repo, digest=digest)
    body = policy.read(response, limit, stage, repo=repo, digest=digest)
    try:
        verify_digest(body, digest)
    except ManifestError as error:
        raise policy.fail(f"{stage}: {error}", stage, repo=repo, digest=digest, code="DIGEST_MISMATCH") from None
    return body
