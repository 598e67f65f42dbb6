"""Parse what users type (`127.0.0.1:5000/team/*`, `alpine:3`) into targets.

Repository names follow the distribution reference grammar, and Docker's rule
for telling a registry host from a Docker Hub namespace. Tags follow what
registries serve (`storable_tag`), which is more than that grammar allows.
"""

import ipaddress
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"\A{_COMPONENT}(?:/{_COMPONENT})*\Z")  # distribution's grammar (\Z: no trailing newline)
TAG_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")  # distribution's grammar; storable_tag allows more
# One name (a tag, or a component of a repository name) the ledger can store, print and put in a URL path:
# 1 to 255 printable ASCII characters, none of / \ ? # % (they change a URL's meaning however it is
# quoted, on some servers), : and @ (`sha256:...` and `@` read as digests) or ; (a path parameter to
# Java servers), and not `.` or `..` (dot segments a server resolves away).
SAFE_NAME_RE = re.compile(r"(?!\.\.?\Z)(?:(?![/\\?#%:@;])[!-~]){1,255}")
_HOST_RE = re.compile(
    r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::([0-9]{1,5}))?$"
)
_GLOB_CHARS = set("*?[")


class TargetError(ValueError):
    """A target that cannot be parsed; the message names it."""


@dataclass(frozen=True)
class Target:
    """What one collect target asks for.

    repo None: every repository of the registry (catalog); pattern: a glob
    over catalog names; tag: one tag of one repository.
    """

    text: str
    registry: str
    repo: str | None = None
    tag: str | None = None
    pattern: str | None = None

    def matches(self, repo):
        if self.pattern is not None:
            return fnmatchcase(repo, self.pattern)
        return self.repo is None or self.repo == repo


def storable_tag(tag):
    """A tag the ledger records. Pulp and others serve tags distribution's grammar refuses (`-lead`, `.dot`,
    150 characters); they are a registry's truth all the same, so anything that can be stored and asked for
    safely is kept, and only what cannot (spaces, `/`, control or non-ASCII characters) is left out."""
    return isinstance(tag, str) and SAFE_NAME_RE.fullmatch(tag) is not None


def storable_repo(repo):
    """A repository name the ledger records: `storable_tag`'s rule for each `/`-separated component, and
    255 characters in all (distribution's limit)."""
    return isinstance(repo, str) and len(repo) <= 255 and all(map(storable_tag, repo.split("/")))


def _looks_like_host(component):
    """Docker's rule: a first component with '.' or ':', or 'localhost', is a registry host."""
    return "." in component or ":" in component or component == "localhost"


def canonical_registry(host):
    lowered = host.lower()
    if lowered in _HUB_ALIASES:
        return DOCKER_HUB
    return lowered


def _check_host(host, text):
    match = _HOST_RE.match(host)
    if not match or (match.group(1) and not 0 < int(match.group(1)) < 65536):
        raise TargetError(f"invalid registry host {host!r} in target {text!r}")


def parse_target(text):
    """Parse one TARGET of `ledger collect`."""
    raw = text.strip()
    if not raw or any(ch.isspace() for ch in raw):
        raise TargetError(f"invalid target {text!r}: empty or contains spaces")
    if "@" in raw:
        raise TargetError(f"invalid target {text!r}: digests are not tags; name a registry, repository or tag")
    if "://" in raw:
        raise TargetError(f"invalid target {text!r}: give a host name, not a URL (e.g. 127.0.0.1:5000/app)")
    first, slash, rest = raw.partition("/")
    if not slash:
        # Without a slash `alpine:3` is a Docker Hub image, so only an
        # unmistakable host is a registry; `myhost:5000/` names any other.
        hostname = first.split(":")[0]
        if "." in hostname or first.startswith("[") or hostname == "localhost":
            _check_host(first, text)
            return Target(text=text, registry=canonical_registry(first))
        host, rest = DOCKER_HUB, raw
    elif _looks_like_host(first):
        _check_host(first, text)
        host = canonical_registry(first)
    else:
        host, rest = DOCKER_HUB, raw
    if not rest:
        return Target(text=text, registry=host)
    repo, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = rest[: len(rest) - len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
        if not storable_tag(tag) or _GLOB_CHARS & set(tag):
            raise TargetError(
                f"invalid tag {tag!r} in target {text!r}: 1 to 255 printable ASCII characters, none of "
                "/ \\ ? # % : @ ; and no glob (* [): choose tags with --include-tags")
    if host == DOCKER_HUB and "/" not in repo:
        repo = "library/" + repo
    if _GLOB_CHARS & set(repo):
        if tag is not None:
            raise TargetError(f"invalid target {text!r}: a glob names repositories, not tags")
        return Target(text=text, registry=host, pattern=repo)
    if not REPO_RE.match(repo):
        raise TargetError(
            f"invalid repository {repo!r} in target {text!r}: lowercase letters, digits and . _ - separators only")
    return Target(text=text, registry=host, repo=repo, tag=tag)


def is_loopback(registry):
    """Like Docker: localhost and 127.0.0.0/8 (and ::1) are reached over plain HTTP."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    return is_loopback_host(host.strip("[]"))


def is_loopback_host(host):
    """Only this machine: `localhost`, 127.0.0.0/8 or ::1 (a name that resolves there is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_base(registry, plain_http=False, tls=False):
    """The base URL of a registry's v2 API. `tls` (a CA file or skip-verify was given) means
    HTTPS even on loopback."""
    host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
    scheme = "http" if plain_http or (is_loopback(registry) and not tls) else "https"
    return f"{scheme}://{host}"
