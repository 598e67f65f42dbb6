"""Talk to one OCI / Docker v2 registry. Fetches only: nothing here decides or writes.

Three layers, as regclient's reghttp: `..transport` is the one HTTP path (bounded reads, a deadline, no
.netrc); `policy.Policy` is the only caller of it (pacing, retries, auth on a challenge, redirects, errors
worded); each endpoint is a small function of the policy in a file named after its path (ping, catalog,
tags, manifests, blobs, referrers), gathered as the methods of `client.RegistryClient`. `paging` follows a
listing's pages; `options` is how a registry is reached. What a registry says is parsed strictly.
"""

from .client import RegistryClient
from .errors import ListingTruncated, RegistryError
from .options import RegistryOptions, reach
from .paging import follow_pages, next_link
from .policy import USER_AGENT, retry_after

__all__ = ["RegistryClient", "RegistryOptions", "RegistryError", "ListingTruncated", "reach", "follow_pages",
           "next_link", "USER_AGENT", "retry_after"]
