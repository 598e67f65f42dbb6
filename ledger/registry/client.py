"""One registry's v2 API: the policy (policy.py), with one method per endpoint, each from its own file."""

from . import blobs, catalog, manifests, ping, referrers, tags
from .policy import Policy


class RegistryClient(Policy):
    """One registry's v2 API, shared by the collector's worker threads. Each endpoint is a function of the
    policy in a file of its own, named after its path; a new endpoint is one more file and one more line."""

    fetch_ping = ping.fetch_ping  # GET /v2/
    fetch_catalog = catalog.fetch_catalog  # GET /v2/_catalog
    fetch_tags = tags.fetch_tags  # GET /v2/<name>/tags/list
    fetch_head = manifests.fetch_head  # HEAD /v2/<name>/manifests/<tag>
    fetch_tag = manifests.fetch_tag  # GET /v2/<name>/manifests/<tag>, for a tag whose bytes are wanted
    fetch_manifest = manifests.fetch_manifest  # GET /v2/<name>/manifests/<digest>
    fetch_blob = blobs.fetch_blob  # GET /v2/<name>/blobs/<digest>
    fetch_referrers = referrers.fetch_referrers  # GET /v2/<name>/referrers/<digest>
