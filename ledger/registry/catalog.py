"""GET /v2/_catalog: every repository of a registry that offers its catalog."""

from .errors import ListingTruncated, RegistryError
from .paging import read_listing

MAX_REPOSITORIES = 200_000  # from one catalog
CATALOG_SCOPE = "registry:catalog:*"


def fetch_catalog(policy):
    try:
        return read_listing(policy, f"{policy.base}/v2/_catalog?n={policy.options.page_size}", "repositories",
                            "catalog", (CATALOG_SCOPE,), MAX_REPOSITORIES)
    except ListingTruncated:
        raise
    except RegistryError as error:
        if error.status in (404, 405) or (error.status == 403 and policy.anonymous()):
            error.message = (f"catalog: this registry does not offer its catalog (HTTP {error.status}); "
                             f"name repositories instead, e.g. {policy.registry}/OWNER/REPO")
        raise
