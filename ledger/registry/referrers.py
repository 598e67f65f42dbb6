"""GET /v2/<name>/referrers/<digest>: the OCI 1.1 referrers API, every page."""

from ..manifests import valid_digest
from ..referrers import Descriptor
from .errors import ListingTruncated
from .paging import read_listing


def fetch_referrers(policy, repo, digest):
    """The referrers of a digest from the OCI 1.1 API, every page: (descriptors, complete). A list the
    registry says it filtered (`OCI-Filters-Applied`, though we ask for no filter) is not complete. A
    registry without the API answers 404 (or 400, 405, 501: `referrers.UNSERVED`)."""
    filtered = []
    prefix, scopes = policy.repo(repo)
    try:
        descriptors = read_listing(
            policy, f"{prefix}/referrers/{digest}", "manifests", "referrers", scopes, policy.options.max_referrers,
            item=_descriptor, on_page=lambda response: filtered.append(response.header("OCI-Filters-Applied")),
            hint="the referrers read are followed; raise --max-referrers if a digest has that many", repo=repo,
            digest=digest)
    except ListingTruncated as error:
        error.items = list(dict.fromkeys(error.items))
        raise
    return list(dict.fromkeys(descriptors)), not any(filtered)


def _descriptor(value):
    """A referrers list entry as a Descriptor, or None when it names no valid digest."""
    if not isinstance(value, dict) or not valid_digest(value.get("digest")):
        return None
    media_type = value.get("mediaType")
    return Descriptor(value["digest"], media_type[:200] if isinstance(media_type, str) and media_type else None)
