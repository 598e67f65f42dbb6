"""A listing over pages: `Link: <...>; rel="next"` (a registry's catalog, tag list and referrers) and the Hub
API's `next`, each page read through the policy, the whole listing capped."""

from urllib.parse import urljoin, urlsplit

from ..limits import MAX_PAGES
from .errors import ListingTruncated

MAX_PAGE_BYTES = 8 * 1024 * 1024  # one page of a catalog or tag list
MAX_LISTING_BYTES = 64 * 1024 * 1024  # every page of one listing together
REFERRERS_PAGE = 10_000  # descriptors one page may hold: a page past --max-referrers is read, then cut


def next_link(header):
    """The URL of `rel="next"` in a `Link` header (RFC 8288), or None; never raises."""
    if not isinstance(header, str):
        return None
    position = 0
    while True:
        start = header.find("<", position)
        end = header.find(">", start + 1) if start >= 0 else -1
        if end < 0:
            return None
        url = header[start + 1:end].strip()
        following = header.find("<", end + 1)
        params = header[end + 1:following if following >= 0 else len(header)]
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip(",").strip().strip('"').split():
                return url or None
        position = end + 1


def follow_pages(url, read_page, before, refuse):
    """Walk a listing's pages from `url`: the one way a registry's `Link` pages and the Hub API's `next`
    pages are followed. `read_page(url)` reads one page and returns the next page's reference as that
    page gave it (None on the last), which is resolved against the page's own URL; `before(pages)` runs
    before each page is asked with the number already read, to stop at a cap by raising;
    `refuse(reason, url)` makes what is raised when the listing loops back to a page already read
    ('loop') or its next page is on another origin than the first ('origin')."""
    origin = urlsplit(url)[:2]
    seen = set()
    while url:
        if url in seen:
            raise refuse("loop", url)
        before(len(seen))
        seen.add(url)
        link = read_page(url)
        url = urljoin(url, link) if link else None
        if url and urlsplit(url)[:2] != origin:
            raise refuse("origin", url)


def read_listing(policy, url, key, stage, scopes, most, *, item=None, on_page=None,
                 hint="raise --max-tags if the repository is that large", **where):
    """Follow `Link: <...>; rel="next"` pages on the first page's origin, up to `most` names, MAX_PAGES
    pages and MAX_LISTING_BYTES; past a cap, ListingTruncated with what was read. Items are names, or
    what `item` makes of each (None: not one); `on_page` sees each page's answer."""
    items, total = [], 0
    # A descriptor holds a few values; a page of them is read whole, then cut to `most`.
    values_at_most = (2 * most if item is None else 50 * max(most, REFERRERS_PAGE)) + 1000

    def before(pages):
        if pages >= MAX_PAGES or len(items) > most or total > MAX_LISTING_BYTES:
            cap = (f"{most} names" if len(items) > most else f"{MAX_PAGES} pages" if pages >= MAX_PAGES
                   else f"{MAX_LISTING_BYTES} bytes")
            raise ListingTruncated(f"{stage}: the listing goes past {cap}; it is incomplete, so nothing is "
                                   f"removed ({hint})", items[:most], registry=policy.registry, stage=stage,
                                   **where)

    def read_page(url):
        nonlocal total
        response = policy.request("GET", url, stage, scopes=scopes, **where)
        if on_page:
            on_page(response)
        link = next_link(response.header("Link"))
        body = policy.read(response, MAX_PAGE_BYTES, stage, **where)
        total += len(body)
        values = policy.json_object(body, stage, where, max_values=values_at_most).get(key)
        if values is None:
            values = []  # "tags": null means none
        if item is not None and isinstance(values, list):
            values = [item(value) for value in values]
            if None in values:
                raise policy.fail(f"{stage}: '{key}' has an entry without a valid digest", stage,
                                  code="INVALID_ANSWER", **where)
        elif not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise policy.fail(f"{stage}: '{key}' is not a list of names", stage, code="INVALID_ANSWER", **where)
        items.extend(values)
        return link

    def refuse(reason, url):
        problem = f"pagination loops at {url[:200]}" if reason == "loop" else "next page points to another origin"
        return policy.fail(f"{stage}: {problem}", stage, code="INVALID_ANSWER", **where)

    follow_pages(url, read_page, before, refuse)
    if len(items) > most:
        raise ListingTruncated(f"{stage}: the listing has more than {most} names; it is incomplete, so nothing "
                               f"is removed ({hint})", items[:most], registry=policy.registry, stage=stage, **where)
    return items
