"""Docker Hub has no catalog: list a namespace's repositories through the Hub API."""

import json
import os
from urllib.parse import urlsplit

from .references import is_loopback
from .findings import SourceError
from .registry import USER_AGENT, follow_pages
from .transport import Transport, TransportError
from .wire import WireError, loads

HUB_API = "https://hub.docker.com"
PAGE_SIZE = 100
MAX_PAGES = 2_000  # 200,000 repositories
MAX_PAGE_BYTES = 4 * 1024 * 1024


class HubError(SourceError):
    """A failure of the Docker Hub API, which lists docker.io's repositories (the registry has no catalog)."""


def hub_api():
    """The Hub API base; LEDGER_DOCKER_HUB_API points it elsewhere (a mirror, or a test stand-in)."""
    return os.environ.get("LEDGER_DOCKER_HUB_API", HUB_API).rstrip("/")


def fetch_hub_repositories(namespace, credentials=None, transport=None):
    """Every repository name (`namespace/name`) in a Docker Hub namespace, following `next` pages."""
    base = hub_api()
    own = transport is None
    transport = transport or Transport(user_agent=USER_AGENT)

    def fail(message, status=None):
        return HubError(message, registry="docker.io", repo=f"{namespace}/*", stage="catalog", status=status,
                        code="HUB_API")

    def get_json(method, url, headers, body=None):
        try:
            response = transport.request(method, url, headers, body)
            status = response.status
            raw = response.read(MAX_PAGE_BYTES, "Hub API answer") if status < 300 else None
            response.close()
        except TransportError as error:
            raise fail(f"Docker Hub API unreachable ({error.message})") from None
        if raw is None:
            return status, None
        try:
            return status, loads(raw, "Hub API answer")
        except WireError:
            raise fail("Docker Hub API answered with an unexpected shape") from None

    headers = {}
    try:
        if credentials is not None and credentials.username and credentials.password:
            if urlsplit(base).scheme != "https" and not is_loopback(urlsplit(base).netloc):
                raise fail(f"the Docker Hub API at {base} is plain HTTP: refusing to send credentials there")
            login = json.dumps({"username": credentials.username, "password": credentials.password}).encode()
            status, answer = get_json("POST", f"{base}/v2/users/login", {"Content-Type": "application/json"}, login)
            token = answer.get("token") if isinstance(answer, dict) else None
            if status != 200 or not isinstance(token, str) or not token:
                raise fail(f"Docker Hub refused the credentials from {credentials.source} (HTTP {status})", status)
            headers["Authorization"] = "Bearer " + token
        names = []

        def read_page(url):
            status, page = get_json("GET", url, headers)
            if status == 404:
                raise fail(f"Docker Hub has no namespace {namespace!r} (HTTP 404)", 404)
            if status >= 300:
                raise fail(f"Docker Hub API answered HTTP {status}", status)
            try:
                names.extend([f"{namespace}/{item['name']}" for item in page["results"]
                              if isinstance(item["name"], str)])
                link = page.get("next") or None
            except (KeyError, TypeError, AttributeError):
                raise fail("Docker Hub API answered with an unexpected shape") from None
            if link is not None and not isinstance(link, str):
                raise fail("Docker Hub API's next page points to another origin")
            return link

        def before(pages):
            if pages >= MAX_PAGES:
                raise fail(f"Docker Hub repository listing goes past {MAX_PAGES} pages")

        def refuse(reason, url):
            return fail("Docker Hub API's next page points to another origin" if reason == "origin"
                        else f"Docker Hub API's pages loop back to {url[:200]}")

        first = f"{base}/v2/namespaces/{namespace}/repositories?page_size={PAGE_SIZE}"
        follow_pages(first, read_page, before, refuse)
    finally:
        if own:
            transport.close()
    return names
