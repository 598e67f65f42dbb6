"""Docker Hub has no catalog: list a namespace's repositories through the Hub API."""

import os
from urllib.parse import urlsplit

import requests

from .registry import USER_AGENT, RegistryError

HUB_API = "https://hub.docker.com"
PAGE_SIZE = 100
MAX_PAGES = 10_000


def hub_api():
    """The Hub API base; LEDGER_DOCKER_HUB_API points it elsewhere (a mirror, or a test stand-in)."""
    return os.environ.get("LEDGER_DOCKER_HUB_API", HUB_API).rstrip("/")


def fetch_hub_repositories(namespace, credentials=None, timeout=(10, 60)):
    """Every repository name (`namespace/name`) in a Docker Hub namespace, following `next` pages."""
    base = hub_api()
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT

    def fail(message, status=None):
        return RegistryError(message, registry="docker.io", repo=f"{namespace}/*", stage="catalog", status=status,
                             code="HUB_API")

    if credentials is not None and credentials.username and credentials.password:
        try:
            login = session.post(f"{base}/v2/users/login", json={"username": credentials.username,
                                                                  "password": credentials.password}, timeout=timeout)
        except requests.exceptions.RequestException as error:
            raise fail(f"Docker Hub login failed ({error.__class__.__name__})") from None
        if login.status_code != 200 or not isinstance(login.json().get("token"), str):
            raise fail(f"Docker Hub refused the credentials from {credentials.source} (HTTP {login.status_code})",
                       login.status_code)
        session.headers["Authorization"] = "Bearer " + login.json()["token"]
    url = f"{base}/v2/namespaces/{namespace}/repositories?page_size={PAGE_SIZE}"
    origin = urlsplit(url)[:2]
    names, pages = [], 0
    try:
        while url:
            pages += 1
            if pages > MAX_PAGES:
                raise fail("Docker Hub repository listing does not end")
            try:
                response = session.get(url, timeout=timeout)
            except requests.exceptions.RequestException as error:
                raise fail(f"Docker Hub API unreachable ({error.__class__.__name__})") from None
            if response.status_code == 404:
                raise fail(f"Docker Hub has no namespace {namespace!r} (HTTP 404)", 404)
            if response.status_code >= 400:
                raise fail(f"Docker Hub API answered HTTP {response.status_code}", response.status_code)
            try:
                page = response.json()
                results = page["results"]
                names += [f"{namespace}/{item['name']}" for item in results]
            except (ValueError, KeyError, TypeError):
                raise fail("Docker Hub API answered with an unexpected shape") from None
            url = page.get("next") or None
            if url and urlsplit(url)[:2] != origin:
                raise fail("Docker Hub API's next page points to another origin")
    finally:
        session.close()
    return names
