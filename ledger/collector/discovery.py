"""Referrer discovery in one registry's run: which digests refer to each digest a tag points at (and to an
index's children), from cosign's tags, the referrers tag schema's fallback index and the OCI referrers API;
each referrer observed as a key of its own, capped per digest and per run, and its signature checked."""

from collections import defaultdict
from dataclasses import dataclass

from ..findings import Listing, Sighting, record
from ..referrers import REFERRER, UNSERVED, ReferrerScope, cosign_tags, fallback_tag, schema_tag
from ..registry import ListingTruncated, RegistryError
from ..times import now
from .scheduler import Job, Kind


@dataclass(slots=True)
class _Discovery:
    """What one run learned of the referrers of one digest it follows, in one repository (one per tag
    digest: small, and no set until a referrer is listed)."""

    found: set | None = None  # referrer digests listed, by the API or a fallback index
    waiting: int = 0  # fallback indexes not yet read
    api: bool = False  # the referrers API listed them completely
    broken: bool = False  # a listing failed: nothing can be removed

    def listed(self, digest):
        if self.found is None:
            self.found = set()
        self.found.add(digest)


class Referrers:
    """The referrers of one registry's run. It asks for jobs through the collector's own: `resolve(repo, tag,
    **context)` (a referrer tag's job), `fetch_if_new(repo, digest)` (a manifest's, once per run) and
    `capped(repo, index, children)` (an index's children as far as a run follows them)."""

    def __init__(self, registry, options, result, progress, known, children_of, signing, resolve, fetch_if_new,
                 capped):
        self.registry = registry
        self.options = options
        self.result = result
        self.progress = progress
        self.known = known
        self.children_of = children_of
        self.signing = signing
        self.resolve = resolve
        self.fetch_if_new = fetch_if_new
        self.capped = capped
        self.children = {}  # index digest -> the children whose referrers are followed with it
        self.schema = {}  # repo -> its tags that are referrer tags (cosign's, the tag schema's)
        self.unresolved = {}  # repo -> its referrer tags in scope that no digest followed has resolved yet
        self.listed = {}  # repo -> whether its tag listing was complete
        self.discoveries = {}  # (repo, digest) -> _Discovery, for every digest whose referrers are followed
        self.trackers = defaultdict(set)  # digest -> repos following it
        self.lists = defaultdict(list)  # fallback index digest not yet recorded -> (repo, subject) it lists
        self.referred = set()  # (repo, referrer digest, subject) observed
        self.api = None if options.referrers != "never" else False  # whether the registry serves it
        self.probing = False  # the first referrers request is out: the rest wait for its answer
        self.held = []

    def tag_listing(self, repo, listed, complete, scope):
        """A repository's tags, as read: its referrer tags (returned) are followed with their subjects; those
        of a whole listing that no subject reaches are resolved at the end (`orphans`)."""
        self.schema[repo] = schema = {tag for tag in listed if schema_tag(tag)}
        self.listed[repo] = complete
        if scope.tags is None:  # else the scope's named ones are resolved as named
            self.unresolved[repo] = {tag for tag in schema if scope.selects(tag)}
        return schema

    def orphans(self):
        """The referrer tags no digest the run followed resolved: a tag's name is the pusher's word, so each
        is resolved as any tag (one request each), and what it points to, once read, says whether it is a
        referrer (a signature, a tag schema index of a subject gone) or an image under that name."""
        found = [(repo, tag) for repo, tags in sorted(self.unresolved.items()) for tag in sorted(tags)]
        self.unresolved.clear()
        return found

    def follow(self, repo, digest):
        """Follow a digest's referrers (and its children's, for an index): its cosign tags and fallback
        index from the tag list already read, and the referrers API unless the registry lacks it."""
        if (repo, digest) in self.discoveries:
            return []
        discovery = self.discoveries[(repo, digest)] = _Discovery()
        self.trackers[digest].add(repo)
        names = self.schema.get(repo)
        follow = []
        if names:  # the repository has referrer tags at all
            unresolved = self.unresolved.get(repo, set())
            follow = [self.resolve(repo, name) for name in cosign_tags(digest) if name in names]
            unresolved.difference_update(cosign_tags(digest) + [fallback_tag(digest)])
            if fallback_tag(digest) in names:
                discovery.waiting += 1
                follow.append(self.resolve(repo, fallback_tag(digest), lists=digest))
            self.progress(tags=len(follow))
        follow += self._ask(repo, digest)
        for child in self.capped(repo, digest, self._children(digest) or ()):
            follow += self.follow(repo, child)
        return follow

    def _children(self, digest):
        if digest not in self.children and digest in self.known:
            self.children[digest] = self.children_of(digest)
        return self.children.get(digest)

    def _ask(self, repo, digest):
        """One referrers request per digest; until the registry has answered one, the rest wait."""
        if self.api is False:
            return []
        job = Job(Kind.REFERRERS, (repo, digest), {})
        if self.api is None:
            if self.probing:
                self.held.append(job)
                return []
            self.probing = True
        return [job]

    def on_referrers(self, args, context, answer):
        repo, digest = args
        descriptors, complete = answer
        follow = []
        if self.api is None:
            self.api, self.probing = True, False
            follow, self.held = self.held, []
        discovery = self.discoveries[(repo, digest)]
        discovery.api = complete
        for descriptor in descriptors:
            discovery.listed(descriptor.digest)
            follow += self._referrer(repo, digest, descriptor.digest, descriptor.media_type)
        return follow

    def failed(self, args, error):
        """A referrers request failed: what was read is followed; a registry without the API is asked no more."""
        repo, digest = args
        if isinstance(error, ListingTruncated):  # served, past --max-referrers or a page cap: follow what was read
            record(self.result, error)
            follow = self.on_referrers(args, {}, (error.items, False))
            self.discoveries[(repo, digest)].broken = True
            return follow
        if error.status in UNSERVED and self.api is None:
            self.api, self.probing = False, False
            self.held.clear()
            if self.options.referrers == "always":
                record(self.result, RegistryError(
                    f"referrers: this registry does not serve the OCI referrers API (HTTP {error.status}); "
                    "--referrers auto reads the referrers tag schema alone", registry=self.registry,
                    stage="referrers", status=error.status, code="REFERRERS_UNSUPPORTED"))
            return []
        record(self.result, error)
        self.discoveries[(repo, digest)].broken = True
        if self.api is None and self.held:  # the first answer failed otherwise: the next digest asks
            return [self.held.pop(0)]
        self.probing = False
        return []

    def fallback_listed(self, repo, index, subject):
        """A tag of the referrers tag schema resolved: `index` lists the referrers of `subject`."""
        self.lists[index].append((repo, subject))

    def lists_ready(self, index):
        """A fallback index read: its entries are the referrers of the subjects whose tag names it."""
        children = self._children(index)
        if children is None:
            return []  # not read yet (or it failed: then its subjects' listings stay incomplete)
        follow, most = [], self.options.max_referrers
        for repo, subject in self.lists.pop(index, ()):
            discovery = self.discoveries[(repo, subject)]
            discovery.waiting -= 1
            if len(children) > most:
                discovery.broken = True
                record(self.result, RegistryError(
                    f"referrers: the referrers tag schema's index {index} lists {len(children)} referrers of "
                    f"{subject}; the first {most} are followed, and none is removed (raise --max-referrers if a "
                    "digest has that many)", registry=self.registry, stage="referrers", repo=repo, digest=subject,
                    code="LISTING_TRUNCATED"))
            for child in children[:most]:
                discovery.listed(child)
                follow += self._referrer(repo, subject, child, None)
        return follow

    def recorded(self, facts):
        """A manifest this run recorded: the subjects its fallback index lists, the signature checks waiting
        for it, and its children's referrers for every repository following it."""
        digest = facts["digest"]
        listed = facts.get("platforms") or facts.get("referrers") or ()  # a referrers list's entries are no platforms
        self.children[digest] = [row["digest"] for row in listed if not row["attestation"]]
        follow = self.lists_ready(digest)
        follow += self.signing.recorded(facts)
        for repo in sorted(self.trackers.get(digest, ())):
            for child in self.capped(repo, digest, self.children[digest]):
                follow += self.follow(repo, child)
        return follow

    def _referrer(self, repo, subject, digest, media_type):
        """A referrer listed for `subject`: observed as a key of its own; the store keeps it only if its
        manifest names that subject."""
        if (repo, digest, subject) in self.referred:
            return []
        most = self.options.max_run_referrers
        if len(self.referred) >= most:  # one row for them all (Problems merges it), with their count
            self.discoveries[(repo, subject)].broken = True
            record(self.result, RegistryError(
                f"referrers: past the run's cap of {most} referrers followed (--max-run-referrers), the rest are "
                f"not followed (the first cut: {digest}, listed for {subject}), and none of those digests' "
                "referrers is removed", registry=self.registry, stage="referrers", repo=repo, digest=subject,
                code="RUN_REFERRERS_CAPPED"))
            return []
        self.referred.add((repo, digest, subject))  # listed for two subjects: the bytes tell which is a lie
        self.result.observations.append(Sighting(self.registry, repo, digest, now(), digest, media_type,
                                                 source=REFERRER, subject=subject))
        return self.fetch_if_new(repo, digest) + self.signing.signature(repo, digest, subject)

    def coverage(self):
        """One listing per repository of the referrers this run read completely: only those can be
        removed."""
        by_repo = defaultdict(lambda: (set(), set()))
        for (repo, digest), discovery in self.discoveries.items():
            subjects, found = by_repo[repo]
            found |= discovery.found or set()
            if self._complete(repo, discovery):
                subjects.add(digest)
        for repo, (subjects, found) in sorted(by_repo.items()):
            self.result.referrer_listings.append(Listing(
                self.registry, repo, ReferrerScope(frozenset(subjects)), now(), sorted(found), complete=bool(subjects),
                reason=None if subjects else "no digest's referrers were listed completely", source=REFERRER))

    def _complete(self, repo, discovery):
        if discovery.broken or discovery.waiting:
            return False
        if self.api:
            return discovery.api
        if self.api is None or self.options.referrers != "auto":
            # The API never answered, or is required and not served, or was not asked (never): then a
            # referrer only the API lists may still be there, and nothing is removed.
            return False
        return self.listed.get(repo, False)  # no API: the tag schema is complete with the tag listing
