"""A Docker daemon as a source: the images a host holds, read through the Docker Engine API.

The daemon's view of a tag is the host's local copy, not the registry's truth, so its
observations carry the source 'daemon:NAME' and are keyed apart from registry ones.
"""

import json
import os
import socket
from collections import defaultdict
from urllib.parse import quote, urlsplit

from .findings import ImageFacts, Listing, RunResult, Sighting, SourceError, finish, record, unexpected
from .limits import DEFAULT_DEADLINE
from .references import TargetError, parse_target
from .semantics import Scope
from .times import normalise_created, now
from .transport import Transport, TransportError
from .wire import WireError, json_number, loads

DEFAULT_HOST = "unix:///var/run/docker.sock"
MAX_BODY = 32 * 1024 * 1024  # an image list of tens of thousands of images fits
MAX_VALUES = 2_000_000  # JSON values in it: as many small ones would take a few hundred MB
MAX_SIZE = 2 ** 62  # what SQLite's INTEGER holds, with room


class DaemonClient:
    """GETs on the Docker Engine API at `host` (unix:///path, tcp://host:port or http://host:port), through
    the same bounded transport as registries."""

    def __init__(self, host=None, timeout=30, deadline=DEFAULT_DEADLINE):
        self.host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        parts = urlsplit(self.host)
        if parts.scheme == "unix" and parts.path:
            self.transport = Transport(timeout=(timeout, timeout), deadline=deadline, unix_socket=parts.path)
            self.base = "http://localhost"
            where = socket.gethostname() + ("" if self.host == DEFAULT_HOST else f":{parts.path}")
        elif parts.scheme in ("tcp", "http") and parts.hostname:
            self.transport = Transport(timeout=(timeout, timeout), deadline=deadline)
            self.base = f"http://{parts.hostname}:{parts.port or 2375}"
            where = parts.netloc
        else:
            raise ValueError(f"invalid Docker host {self.host!r}: give unix:///path/to/docker.sock or tcp://HOST:PORT")
        self.source = f"daemon:{where}"
        self.requests = 0

    def failure(self, message, code, status=None):
        """A failure of this daemon (no registry's: `registry` is empty, `source` says which daemon)."""
        return SourceError(message, registry="", stage="daemon", status=status, code=code, source=self.source)

    def _get(self, path):
        self.requests += 1
        try:
            response = self.transport.request("GET", self.base + path, {"Accept": "application/json"})
            body = response.read(MAX_BODY, "answer")
        except TransportError as error:
            if error.kind == "too_large":
                raise self.failure(f"{self.host} GET {path}: {error.message}", "DAEMON_INVALID") from None
            raise self.failure(f"cannot connect to {self.host} ({error.reason})", "UNREACHABLE") from None
        if response.status >= 400:
            try:
                message = loads(body, "error")["message"]
            except (WireError, KeyError, TypeError):
                message = None
            if not isinstance(message, str):
                message = body[:200].decode("utf-8", "replace").strip()
            raise self.failure(f"{self.host} GET {path}: HTTP {response.status}: {message[:300]}", "DAEMON_ERROR",
                               response.status)
        return body

    def _json(self, path, kind):
        try:
            value = loads(self._get(path), f"GET {path}", max_values=MAX_VALUES)
        except WireError as error:
            raise self.failure(f"{self.host} {error}", "DAEMON_INVALID") from None
        if not isinstance(value, kind):
            raise self.failure(f"{self.host} GET {path}: expected a JSON {kind.__name__}", "DAEMON_INVALID")
        return value

    def fetch_ping(self):
        self._get("/_ping")

    def fetch_images(self):
        return self._json("/images/json", list)

    def fetch_image(self, image_id):
        return self._json(f"/images/{quote(image_id, safe=':')}/json", dict)

    def close(self):
        self.transport.close()


def _key(reference):
    """(registry, repo, tag) of a RepoTags entry, normalised as registry targets are (docker.io, library/)."""
    target = parse_target(reference)
    if target.repo is None or target.tag is None:
        raise TargetError(f"{reference!r} is not REPO:TAG")
    return target.registry, target.repo, target.tag


def _repo_digests(entries):
    """{(registry, repo): digest} from RepoDigests entries `name@sha256:...` (the smallest if several)."""
    digests = {}
    for entry in entries or []:
        name, at, digest = str(entry).partition("@")
        try:
            target = parse_target(name)
        except TargetError:
            continue
        if at and target.repo and digest.startswith("sha256:"):
            where = (target.registry, target.repo)
            digests[where] = min(digests.get(where, digest), digest)
    return digests


def _image_facts(image_id, inspected, listed, facts):
    """What /images/{id}/json adds to the listing's facts (created and size) of one image."""
    config = inspected.get("Config") if isinstance(inspected.get("Config"), dict) else {}
    labels = config.get("Labels") if isinstance(config.get("Labels"), dict) else listed.get("Labels")
    return ImageFacts(id=image_id, **facts, author=inspected.get("Author") or None,
                      architecture=inspected.get("Architecture") or None, os=inspected.get("Os") or None,
                      labels=json.dumps(labels or {}, sort_keys=True))


def collect_daemon(client, known_images=(), ledger_repos=()):
    """Every RepoTag the daemon holds as an observation, and a complete listing of each repo it holds
    (or that the ledger holds live keys of for this daemon), so a deleted image can be proven gone."""
    result = RunResult()
    try:
        client.fetch_ping()
        images = client.fetch_images()
        listed_at = now()
        tags = defaultdict(list)
        for image in images:
            image_id = image.get("Id") if isinstance(image, dict) else None
            if not isinstance(image_id, str) or not image_id.startswith("sha256:"):
                raise client.failure(f"{client.host} GET /images/json: an image without a sha256 Id", "DAEMON_INVALID")
            digests = _repo_digests(image.get("RepoDigests"))
            facts = {"created": normalise_created(image.get("Created")),
                     "size": json_number(image.get("Size"), 0, MAX_SIZE) if isinstance(image.get("Size"), int)
                     else None}
            references = image.get("RepoTags") if isinstance(image.get("RepoTags"), list) else []
            for reference in references:
                if not isinstance(reference, str) or reference in ("", "<none>:<none>"):
                    continue
                try:
                    registry, repo, tag = _key(reference)
                except TargetError as error:
                    record(result, client.failure(f"image {image_id}: {error}", "NAME_INVALID"))
                    continue
                tags[(registry, repo)].append(tag)
                result.observations.append(Sighting(
                    registry, repo, tag, listed_at, digest=digests.get((registry, repo)), source=client.source,
                    image=image_id, **facts))
            if image_id not in known_images and references:
                try:
                    result.images.append(_image_facts(image_id, client.fetch_image(image_id), image, facts))
                except SourceError as error:  # e.g. deleted since the listing: its facts wait for the next run
                    record(result, error)
        for registry, repo in sorted(set(tags) | set(ledger_repos)):
            result.coverage.append(Listing(registry, repo, Scope(), listed_at,
                                           sorted(tags.get((registry, repo), [])), source=client.source))
    except Exception as error:  # nothing a daemon answers may end the run
        record(result, error if isinstance(error, SourceError) else unexpected(error, registry="", stage="daemon",
                                                                               source=client.source))
        result.observations, result.coverage, result.images = [], [], []
    result.requests["daemon"] = client.requests
    return finish(result, reached=bool(result.coverage))
