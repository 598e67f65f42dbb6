"""What a source found in one run, as the store takes it: the typed contract between the sources (the
registry collector, a Docker daemon) and the store. Sources fill a RunResult; the store classifies it
into events and appends it. Nothing here does I/O.
"""

from collections import Counter
from dataclasses import dataclass, field, replace

from .referrers import REFERRER
from .times import now

REGISTRY = "registry"  # the source of a registry's own tags; a daemon's are 'daemon:NAME', referrers 'referrer'
BY_DIGEST = (REGISTRY, REFERRER)  # sources whose keys are told apart by digest, with facts from manifests
WARNING = "NAME_WARNING"  # an errors row that says what a run left out, not that anything failed
NOTIFY_FAILED = "NOTIFY_FAILED"  # an errors row that says a notification was not delivered: the run is as it was
CHECKPOINT_FAILED = "CHECKPOINT_FAILED"  # no signed head written after a run: refused, or the write failed
_WARNINGS = (WARNING, NOTIFY_FAILED)


@dataclass(slots=True)
class Sighting:
    """One key seen in this run. A registry's tag brings its digest and media type (from one HEAD); the
    store takes the rest from the manifest it holds. A referrer is listed for `subject`. A Docker
    daemon reports every fact with the tag."""

    registry: str
    repo: str
    tag: str
    observed_at: str
    digest: str | None = None
    media_type: str | None = None
    source: str = REGISTRY
    subject: str | None = None  # a referrer's: the digest it was listed for
    image: str | None = None  # a daemon's: the image ID, and the facts below
    created: str | None = None
    author: str | None = None
    size: int | None = None


@dataclass(slots=True)
class Listing:
    """What one listing of a repository showed, and what it speaks for (`scope`). Only a complete
    listing proves that a key it does not show was removed."""

    registry: str
    repo: str
    scope: object  # semantics.Scope, or referrers.ReferrerScope
    listed_at: str
    tags: list = field(default_factory=list)  # the keys it showed (tags; for referrers, their digests)
    complete: bool = True
    reason: str | None = None  # why it is incomplete
    source: str = REGISTRY


@dataclass(slots=True)
class ImageFacts:
    """What a Docker daemon says of an image ID (written once: the ID is a hash of the image's config)."""

    id: str
    created: str | None = None
    size: int | None = None  # all layers, uncompressed
    author: str | None = None
    architecture: str | None = None
    os: str | None = None
    labels: str | None = None  # JSON object


def identity(digest, image, source):
    """What a key points to, as its source tells images apart (the store's first sightings, notifications,
    timelines): a registry's tag or a referrer by its manifest digest; a Docker daemon's by its image ID,
    whatever digests it carries as it is pushed, pulled back or retagged."""
    return (digest or image) if source in BY_DIGEST else (image or digest)


class SourceError(Exception):
    """A typed failure of a source; `record` makes it a Problem. `registry` is the registry the failure
    concerns ('' for a whole Docker daemon), `source` which source met it."""

    def __init__(self, message, *, registry, stage, repo=None, tag=None, digest=None, status=None, code=None,
                 source=REGISTRY):
        super().__init__(message)
        self.message = message
        self.registry = registry
        self.stage = stage
        self.repo = repo
        self.tag = tag
        self.digest = digest
        self.status = status
        self.code = code
        self.source = source

    def __str__(self):
        return located(self)


def located(problem):
    """A failure as one line: registry/repo:tag (or the source, for a whole daemon), then what went wrong."""
    where = (problem.registry or problem.source) + (f"/{problem.repo}" if problem.repo else "") + (
        f":{problem.tag}" if problem.tag else "")
    return f"{where}: {problem.message}"


@dataclass(slots=True)
class Problem:
    """A failure as data: what the errors table keeps of it. Small on purpose: the exception it comes
    from holds every frame of the failed request, and a registry may fail 100,000 tags in one run."""

    at: str
    registry: str
    stage: str
    message: str
    repo: str | None = None
    tag: str | None = None
    digest: str | None = None
    status: int | None = None
    code: str | None = None
    source: str = REGISTRY
    count: int = 1  # how many failures of this kind it stands for (Problems merges them)

    def __str__(self):
        return located(self) + (f" ({self.count} times)" if self.count > 1 else "")

    @property
    def merge_key(self):
        """What makes failures one kind: where (source, registry, repo), at which stage, with which code."""
        return self.source, self.registry, self.repo, self.stage, self.code

    @property
    def warning(self):
        """A name the ledger could not store, or a notification not delivered: said, but the run's status
        ignores it (a registry that serves such a name, or a chat service that is down, would otherwise
        make every run partial)."""
        return self.code in _WARNINGS


@dataclass(slots=True)
class SignatureCheck:
    """One key's verdict on one signature artifact as a signature of `subject` (ledger/signatures.py):
    verified, failed or unsupported with a reason, or 'no key' (key None) when none was configured."""

    registry: str
    repo: str
    signature: str  # the signature artifact's manifest digest
    subject: str
    key: str | None
    result: str
    reason: str | None
    layer: str | None
    checked_at: str


class Problems:
    """A run's failures, one per kind (`Problem.merge_key`): the first of a kind is its sample, with the
    count of them all. A registry that fails 100,000 tags, or lists 9,000 referrers that lie for each of
    120 digests, is a few rows with their counts, not a ledger (and memory) full of the same line."""

    def __init__(self, problems=()):
        self._kinds = {}
        self.extend(problems)

    def append(self, problem):
        kept = self._kinds.get(problem.merge_key)
        if kept is None:  # a copy: a Problem in two runs' results (a run's, its notify run's) keeps its own count
            self._kinds[problem.merge_key] = replace(problem)
        else:
            kept.count += problem.count

    def extend(self, problems):
        for problem in problems:
            self.append(problem)

    def __iter__(self):
        return iter(self._kinds.values())

    def __len__(self):
        return len(self._kinds)

    def __getitem__(self, index):
        return list(self._kinds.values())[index]

    def total(self, warnings=False):
        """How many failures the rows stand for (warnings too, with `warnings`)."""
        return sum(problem.count for problem in self if warnings or not problem.warning)


@dataclass
class RunResult:
    """Everything one run found, from every source, for one append."""

    observations: list = field(default_factory=list)  # Sighting
    manifests: list = field(default_factory=list)  # manifests rows with their bytes (manifests.facts_of)
    coverage: list = field(default_factory=list)  # Listing of tags
    errors: Problems = field(default_factory=Problems)  # Problem, merged by kind
    requests: Counter = field(default_factory=Counter)  # requests made, by kind
    rate_limits: dict = field(default_factory=dict)  # registry -> {"limit", "remaining"}
    images: list = field(default_factory=list)  # ImageFacts, from a Docker daemon
    referrer_listings: list = field(default_factory=list)  # Listing of referrers: proves removals, not stored
    signature_checks: list = field(default_factory=list)  # SignatureCheck
    status: str = "ok"

    def __post_init__(self):
        if not isinstance(self.errors, Problems):
            self.errors = Problems(self.errors)

    def merge(self, other):
        """One run over several sources: ok only if each is, failed only if each failed."""
        for name in ("observations", "manifests", "coverage", "errors", "images", "referrer_listings",
                     "signature_checks"):
            getattr(self, name).extend(getattr(other, name))
        self.requests.update(other.requests)
        self.rate_limits.update(other.rate_limits)
        statuses = {self.status, other.status}
        self.status = statuses.pop() if len(statuses) == 1 else "partial"
        return self


def record(result, error, count=1):
    """A failure (`count` of them, said at once) becomes data: stamped with the time and kept with the run's
    results, merged with those of its kind."""
    result.errors.append(Problem(at=now(), registry=error.registry, stage=error.stage, message=error.message,
                                 repo=error.repo, tag=error.tag, digest=error.digest, status=error.status,
                                 code=error.code, source=getattr(error, "source", REGISTRY), count=count))


def unexpected(error, **where):
    """An exception nothing expected, as a failure of its scope (its type and a bounded message)."""
    stage = where.get("stage", "collect")
    return SourceError(f"{stage}: could not handle the answer ({error.__class__.__name__}: {str(error)[:200]})",
                       code="INTERNAL", **where)


def appended_status(status, errors):
    """A run's status once its append has judged its findings: an ok run is partial when the append found a
    failure the sources could not (a referrer whose bytes name another subject than it was listed for)."""
    return "partial" if status == "ok" and not all(problem.warning for problem in errors) else status


def finish(result, reached):
    """A run is ok without failures (warnings are not failures), failed when it learned nothing, else
    partial."""
    if all(problem.warning for problem in result.errors):
        result.status = "ok"
    elif not reached or not (result.observations or any(listing.complete for listing in result.coverage)):
        result.status = "failed"
    else:
        result.status = "partial"
    return result
