"""GET /v2/<name>/tags/list: a repository's tags, every page."""

from .paging import read_listing


def fetch_tags(policy, repo):
    prefix, scopes = policy.repo(repo)
    return read_listing(policy, f"{prefix}/tags/list?n={policy.options.page_size}", "tags", "tags", scopes,
                        policy.options.max_tags, repo=repo)
