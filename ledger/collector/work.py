"""The jobs of one registry in one run: its targets listed (the catalog for a glob), their tags resolved, the
manifests and configs new to the ledger fetched, once each; failures become Problems of their own scope."""

from collections import defaultdict

from ..findings import WARNING, Listing, Sighting, SourceError, record, unexpected
from ..hub import fetch_hub_repositories
from ..limits import MAX_INDEX_CHILDREN
from ..manifests import LEGACY_TYPES, ManifestError, facts_of, needs_config, parse_manifest, verify_digest
from ..references import DOCKER_HUB, storable_repo, storable_tag
from ..referrers import schema_tag
from ..registry import ListingTruncated, RegistryError
from ..semantics import Scope
from ..suggest import closest, did_you_mean
from ..times import now
from .discovery import Referrers
from .scheduler import Job, Kind, Scheduler
from .signing import Signing

_NAMED_WARNINGS = 5  # names a warning quotes; it counts them all


class Work:
    """The jobs of one registry in one run: its targets listed, their tags resolved, the manifests and configs
    new to the ledger fetched; referrer discovery (discovery.Referrers) and signature checks (signing.Signing)
    are asked along the way, and the scheduler (scheduler.Scheduler) runs the jobs."""

    def __init__(self, registry, targets, client, known, ledger_repos, result, progress, children_of, seen,
                 signatures, tags_held, head_first, config_of):
        self.registry = registry
        self.targets = targets
        self.named = {target.repo for target in targets if target.repo is not None}
        self.seen = seen
        self.unknown = []  # (repo, scope) named, never held by the ledger, and unknown to the registry
        self.catalog = None  # the catalog's names, once read (for globs, or to suggest a name)
        self.client = client
        self.known = known
        self.ledger_repos = ledger_repos
        self.result = result
        self.progress = progress or (lambda **_: None)
        self.started = set()  # digests fetched, or being fetched, in this run
        self.tags_held = tags_held
        self.held_tags = {}  # repo -> the tags of it the ledger ever held
        self.head_first = head_first  # every tag resolved with a HEAD: the registry counts GETs as pulls
        self.probe = None  # "out" while the first GET of a tag is: until it answers, whether the registry is
        self.waiting = []  # rate-limited is not known, and the other GETs of tags wait here
        self.config_of = config_of
        self.configs = {}  # config digest -> its bytes, verified: fetched this run, or read from the ledger
        self.config_waits = {}  # config digest being fetched -> the (manifest, body) waiting for it
        self.index_needs = {}  # index digest -> child digests not yet recorded
        self.index_facts = {}
        self.stopped = False
        self.cut = set()  # indexes whose children past MAX_INDEX_CHILDREN were said to be cut
        self.signing = Signing(registry, client, signatures, known, result)
        self.referrers = Referrers(registry, client.options, result, self.progress, known, children_of, self.signing,
                                   self._resolve, self._fetch_if_new, self._capped)
        self.handlers = {Kind.TAGS: self._on_tags, Kind.HEAD: self._on_head, Kind.TAG: self._on_tag,
                         Kind.MANIFEST: self._on_manifest, Kind.CONFIG: self._on_config,
                         Kind.REFERRERS: self.referrers.on_referrers, Kind.SIGNATURE: self.signing.on_signature}
        fetchers = {Kind.TAGS: client.fetch_tags, Kind.HEAD: client.fetch_head, Kind.TAG: client.fetch_tag,
                    Kind.MANIFEST: client.fetch_manifest, Kind.CONFIG: client.fetch_blob,
                    Kind.REFERRERS: client.fetch_referrers, Kind.SIGNATURE: self.signing.fetch}
        self.scheduler = Scheduler(4 * max(client.options.concurrency, 1), fetchers, self._admit, self._finished)

    def run(self, pool):
        jobs = [Job(Kind.TAGS, (repo,), {"scope": scope}) for repo, scope in sorted(self._scopes().items())]
        self.progress(lists=len(jobs))
        self.scheduler.run(pool, jobs)
        orphans = [self._resolve(repo, tag) for repo, tag in self.referrers.orphans()]
        if orphans:  # referrer tags whose subject no tag reached: resolved as any tag, never skipped
            self.progress(tags=len(orphans))
            self.scheduler.run(pool, orphans)
        self.referrers.coverage()
        self._unknown_repos()

    def _admit(self, job):
        """A job leaving the backlog: skipped once the registry's limit is spent or it stalled; a HEAD of a
        tag the ledger never held made a GET, unless the registry counts GETs as pulls, which the first GET's
        answer tells (until then, the others wait)."""
        if self.client.exhausted or self.client.stalled:
            self._skip(job)
            return None
        if job.kind is Kind.HEAD and job.context.get("new") and not (self.head_first or self.client.rate_limited):
            if self.probe == "out":
                self.waiting.append(job)
                return None
            self.probe = self.probe or "out"
            return job._replace(kind=Kind.TAG)
        return job

    def _finished(self, job, future):
        """A job's answer, on the main thread: its handler's jobs, or its failure's."""
        try:
            follow = self.handlers[job.kind](job.args, job.context, future.result())
        except SourceError as error:
            follow = self._on_error(job, error)
        except Exception as error:  # never let one answer end the run: it fails its own scope
            follow = self._on_error(job, unexpected(
                error, registry=self.registry, stage=job.kind.stage, repo=job.args[0],
                tag=job.args[1] if job.kind in (Kind.HEAD, Kind.TAG) else None))
        if job.kind is Kind.TAGS:
            self.progress(lists=-1)
        return follow

    def _skip(self, job):
        """The registry's rate limit is spent, or it stopped answering: stop asking, say so once, prove
        nothing removed."""
        if self.client.exhausted:
            reason, stage, code = (f"rate limit exhausted ({self.client.rate_limit}); run stopped early", "ratelimit",
                                   "RATE_LIMIT_EXHAUSTED")
        else:
            reason, stage, code = (f"the registry stopped answering: {self.client.stalls} requests in a row ran past "
                                   "their deadline; the rest of its run is skipped", "stalled", "STALLED")
        if not self.stopped:
            self.stopped = True
            record(self.result, RegistryError(reason, registry=self.registry, stage=stage, code=code))
        if job.kind is Kind.TAGS:
            self._covered(job.args[0], job.context["scope"], reason=reason.split(";")[0])
            self.progress(lists=-1)

    def _scopes(self):
        """Which repos to list, each with the Scope of tags its listing speaks for."""
        include, exclude = self.client.options.include_tags, self.client.options.exclude_tags
        every = Scope(include=include, exclude=exclude)
        named = defaultdict(set)
        scopes = {}
        for target in self.targets:
            if target.repo is not None and target.tag is None:
                scopes[target.repo] = every
            elif target.tag is not None:
                named[target.repo].add(target.tag)
        for repo, tags in named.items():
            scopes.setdefault(repo, Scope(tags=frozenset(tags), include=include, exclude=exclude))
        globs = [target for target in self.targets if target.repo is None]
        if not globs:
            return scopes
        truncated = False
        try:
            catalog = set(self._catalog(globs))
        except ListingTruncated as error:
            record(self.result, error)
            catalog, truncated = set(error.items), True
        except SourceError as error:
            record(self.result, error)
            return scopes
        self.catalog = catalog
        if not truncated:
            for target in globs:
                self._unmatched(target, catalog)
        matched = {repo for repo in catalog if any(target.matches(repo) for target in globs)}
        stored = {repo for repo in matched if storable_repo(repo)}
        self._warn_names("catalog", "catalog lists a repository name that cannot be stored safely, not recorded:",
                         sorted(matched - stored))
        for repo in stored:
            scopes[repo] = every
        for repo in self.ledger_repos - catalog:
            if any(target.matches(repo) for target in globs):
                scopes[repo] = every  # gone from the catalog: its tag list proves the removal
        return scopes

    def _unmatched(self, target, catalog):
        """A glob (or a whole registry) that matches nothing watches nothing: an error unless --allow-empty
        says that is expected. A repository only the ledger still holds is a match (its removal is proven)."""
        if self.client.options.allow_empty or any(map(target.matches, catalog | self.ledger_repos)):
            return
        listed = f"the catalog lists {len(catalog)} repositor{'y' if len(catalog) == 1 else 'ies'}"
        record(self.result, RegistryError(
            f"target {target.text} matches no repository ({listed} and the ledger holds none that matches); "
            "--allow-empty if that is expected", registry=self.registry, stage="catalog", code="NO_MATCH"))

    def _unknown_repos(self):
        """Each named repository the registry does not know and the ledger never held: a failed target (a typo,
        most likely), with the catalog's closest names when the registry offers a catalog."""
        if not self.unknown:
            return
        names = sorted(repo for repo in self._suggestible() if storable_repo(repo))
        for repo, scope in self.unknown:
            offered = did_you_mean([f"{self.registry}/{name}" for name in closest(repo, names)])
            reason = "no such repository: the registry answers 404 NAME_UNKNOWN"
            record(self.result, RegistryError(f"{reason} and the ledger never held it{offered}",
                                              registry=self.registry, stage="tags", repo=repo, status=404,
                                              code="NAME_UNKNOWN"))
            self._covered(repo, scope, reason=reason)

    def _suggestible(self):
        """The catalog's names, read for the globs or now; none where the registry offers no catalog (or has
        stopped answering): a suggestion is never worth another error."""
        if self.catalog is None and self.registry != DOCKER_HUB and not (self.client.exhausted or self.client.stalled):
            try:
                self.catalog = set(self.client.fetch_catalog())
            except ListingTruncated as error:
                self.catalog = set(error.items)
            except Exception:  # whatever the catalog answered, the missing repository's own error stands
                self.catalog = set()
        return self.catalog or set()

    def _catalog(self, globs):
        if self.registry != DOCKER_HUB:
            return self.client.fetch_catalog()
        names = []
        for target in globs:
            namespace = (target.pattern or "").split("/", 1)[0]
            if not namespace or set("*?[") & set(namespace):
                raise RegistryError("Docker Hub has no catalog: name a namespace, e.g. docker.io/NAMESPACE/*",
                                    registry=self.registry, stage="catalog", code="UNSUPPORTED")
            names += fetch_hub_repositories(namespace, self.client.options.credentials, self.client.transport)
        return names

    def _covered(self, repo, scope, tags=None, reason=None):
        """Record what a listing of `repo` showed: its tags, or (with `reason`) that it is incomplete."""
        self.result.coverage.append(Listing(self.registry, repo, scope, now(), tags or [], complete=reason is None,
                                            reason=reason))

    def _warn_names(self, stage, message, names, **where):
        """One warning for the names left out, naming a few, counting them all."""
        if not names:
            return
        named = ", ".join(repr(name[:200]) for name in names[:_NAMED_WARNINGS])
        more = f" and {len(names) - _NAMED_WARNINGS} more like these" if len(names) > _NAMED_WARNINGS else ""
        record(self.result, RegistryError(f"{message} {named}{more}", registry=self.registry, stage=stage,
                                          code=WARNING, **where), count=len(names))

    def _on_tags(self, args, context, tags, incomplete=None):
        """Resolve the tags a listing showed; only a complete listing is coverage that can remove.

        The scope (named tags, --include-tags, --exclude-tags) comes first: a tag it leaves out is never
        warned about. A named tag a complete listing lacks is an error (a removal too, if it was live)."""
        (repo,) = args
        scope = context["scope"]
        listed = sorted({tag for tag in tags if storable_tag(tag)})
        # RE2 reads UTF-8 only: a lone surrogate (a JSON escape) is matched as '?'.
        unsafe = sorted({tag for tag in tags if not storable_tag(tag)
                         and scope.covers(tag.encode("utf-8", "replace").decode())})
        self._warn_names("tags", "tag list has a tag name that cannot be stored safely, not recorded:", unsafe,
                         repo=repo)
        missing = sorted(tag for tag in scope.tags - set(listed) if scope.covers(tag)) \
            if incomplete is None and scope.tags is not None else []
        offer = sorted(tag for tag in listed if not schema_tag(tag))
        for tag in missing:
            offered = did_you_mean([f"{self.registry}/{repo}:{name}" for name in closest(tag, offer)])
            record(self.result, RegistryError(f"tag {tag} is not in {repo}'s tag list{offered}",
                                              registry=self.registry, stage="tags", repo=repo, tag=tag,
                                              code="TAG_UNKNOWN"))
        if missing and not (scope.tags & (set(listed) | set(self._held(repo)))):
            incomplete = "no tag named is in the tag list, nor ever in the ledger"  # a failed target: proves nothing
        self._covered(repo, scope, listed, reason=incomplete)
        schema = self.referrers.tag_listing(repo, listed, incomplete is None, scope)  # followed with their subjects
        wanted = [tag for tag in listed if scope.covers(tag) and (tag not in schema or (
            scope.tags is not None and tag in scope.tags))]
        self.progress(tags=len(wanted))
        return [self._resolve(repo, tag) for tag in wanted]

    def _resolve(self, repo, tag, **context):
        """The job resolving a tag: a HEAD, which `_admit` makes a GET for a tag the ledger never held."""
        if tag not in self._held(repo):
            context["new"] = True
        return Job(Kind.HEAD, (repo, tag), context)

    def _held(self, repo):
        """The tags of `repo` the ledger ever held, read once a run."""
        if repo not in self.held_tags:
            self.held_tags[repo] = self.tags_held(repo)
        return self.held_tags[repo]

    def _on_head(self, args, context, resolved):
        repo, tag = args
        digest, media_type, _ = resolved
        self.result.observations.append(Sighting(self.registry, repo, tag, now(), digest, media_type))
        self.progress(done=1)
        if media_type in LEGACY_TYPES:
            # schema1 has no config to learn from, and a converted one cannot be fetched by digest: the
            # digest and media type are all there is, and the event has them. Nothing is stored as known
            # from a HEAD's word alone (another registry could claim any digest that way).
            return []
        follow = self._fetch_if_new(repo, digest) + self.signing.cosign_tag(repo, tag, digest)
        if context.get("lists"):  # a fallback index: the referrers of its subject
            self.referrers.fallback_listed(repo, digest, context["lists"])
            return follow + self.referrers.lists_ready(digest)
        return follow if schema_tag(tag) else follow + self.referrers.follow(repo, digest)

    def _on_tag(self, args, context, fetched):
        """A tag resolved with a GET: the sighting, and the manifest's bytes at hand (unless this run has
        them already, or is fetching them)."""
        repo, tag = args
        body, media_type, digest, problem = fetched
        self._probed()
        self.result.observations.append(Sighting(self.registry, repo, tag, now(), digest, media_type))
        self.progress(done=1)
        if media_type in LEGACY_TYPES:
            return []  # as _on_head: the digest and media type are all there is
        if context.get("lists"):
            self.referrers.fallback_listed(repo, digest, context["lists"])
        follow = self.signing.cosign_tag(repo, tag, digest)  # first: checked once its bytes are recorded below
        if problem is not None and digest not in self.known:  # the header's digest stands, as a HEAD's
            follow += self._on_error(Job(Kind.MANIFEST, (repo, digest), {}), problem)
        elif digest not in self.known and digest not in self.started:
            self.started.add(digest)
            try:
                follow += self._on_manifest((repo, digest), {}, (body, media_type, digest))
            except SourceError as error:
                follow += self._on_error(Job(Kind.MANIFEST, (repo, digest), {}), error)
        if context.get("lists"):
            return follow + self.referrers.lists_ready(digest)
        return follow if schema_tag(tag) else follow + self.referrers.follow(repo, digest)

    def _probed(self):
        """The first GET of a tag has answered: the registry's headers said whether it is rate-limited, and
        the tags waiting for that go first (each a HEAD, if it is); straight to the backlog, so that nothing
        the handler raises afterwards can lose them."""
        if self.probe == "out":
            self.probe, waiting, self.waiting = "done", self.waiting, []
            self.scheduler.first(waiting)

    def _fetch_if_new(self, repo, digest):
        if digest in self.known or digest in self.started:
            return []
        self.started.add(digest)
        return [Job(Kind.MANIFEST, (repo, digest), {})]

    def _on_manifest(self, args, context, fetched):
        repo, digest = args
        body, content_type, _ = fetched
        try:
            manifest = parse_manifest(body, digest, content_type)
        except ManifestError as error:
            raise RegistryError(f"manifest {digest}: {error}", registry=self.registry, stage="manifest",
                                repo=repo, digest=digest, code="MANIFEST_INVALID") from None
        if needs_config(manifest):  # an image's config, or a Helm chart's (its name and version)
            return self._config(repo, manifest, body)
        facts = facts_of(manifest, body)
        if manifest.kind != "index":
            return self._recorded(facts)
        needed = {child.digest for child in self._capped(repo, digest, manifest.children) if not child.attestation
                  and child.digest not in self.known and child.media_type not in LEGACY_TYPES}
        self.index_facts[digest] = facts
        self.index_needs[digest] = needed
        follow = []
        for child in sorted(needed):
            follow += self._fetch_if_new(repo, child)
        return follow + self._index_ready(digest)

    def _config(self, repo, manifest, body):
        """A manifest's config: bytes this run has, or the ledger holds, or one GET that every manifest
        naming the same config waits for."""
        digest = manifest.config_digest
        config = self.configs.get(digest)
        if config is None and digest not in self.config_waits:
            config = self.config_of(digest)
            if config is not None:
                try:
                    verify_digest(config, digest)
                    self.configs[digest] = config
                except ManifestError:  # the ledger's copy does not hold: the registry's is fetched
                    config = None
        if config is not None:
            return self._configured(repo, manifest, body, config)
        if digest in self.config_waits:
            self.config_waits[digest].append((manifest, body))
            return []
        self.config_waits[digest] = []
        return [Job(Kind.CONFIG, (repo, digest), {"manifest": manifest, "body": body})]

    def _on_config(self, args, context, body):
        repo, config_digest = args
        self.configs[config_digest] = body
        waiting = self.config_waits.pop(config_digest, [])
        follow = self._configured(repo, context["manifest"], context["body"], body)
        for manifest, manifest_body in waiting:
            follow += self._configured(repo, manifest, manifest_body, body)
        return follow

    def _configured(self, repo, manifest, body, config):
        try:
            facts = facts_of(manifest, body, config)
        except ManifestError as error:
            record(self.result, RegistryError(f"config {manifest.config_digest}: {error}", registry=self.registry,
                                              stage="config", repo=repo, digest=manifest.digest,
                                              code="CONFIG_INVALID"))
            self._failed(manifest.digest)
            return []
        return self._recorded(facts)

    def _recorded(self, facts):
        self.result.manifests.append(facts)
        self.known.add(facts["digest"])
        follow = self.referrers.recorded(facts)
        for index, needs in list(self.index_needs.items()):
            if facts["digest"] in needs:
                needs.discard(facts["digest"])
                follow += self._index_ready(index)
        return follow

    def _capped(self, repo, index, children):
        """An index's children as far as a run fetches them and follows their referrers: the first
        MAX_INDEX_CHILDREN (its platforms rows keep them all, from its bytes). A cut is said once per index."""
        if len(children) <= MAX_INDEX_CHILDREN:
            return children
        if index not in self.cut:
            self.cut.add(index)
            record(self.result, RegistryError(
                f"manifest {index}: the index lists {len(children)} children; the first {MAX_INDEX_CHILDREN} are "
                "fetched and their referrers followed, the rest are not", registry=self.registry, stage="manifest",
                repo=repo, digest=index, code="INDEX_TRUNCATED"))
        return children[:MAX_INDEX_CHILDREN]

    def _index_ready(self, index):
        """An index is recorded once every child it needs is, so a later run retries a partial one."""
        if index in self.index_needs and not self.index_needs[index]:
            del self.index_needs[index]
            return self._recorded(self.index_facts.pop(index))
        return []

    def _on_error(self, job, error):
        if job.kind is Kind.TAG:
            self._probed()
        return self._failure(job, error)

    def _failure(self, job, error):
        kind, args, context = job
        if error.code == "RATE_LIMIT_EXHAUSTED":
            self._skip(job)
            return []
        if kind is Kind.TAGS and error.status == 404 and error.code == "NAME_UNKNOWN":
            if args[0] in self.named and not self.seen(args[0]):
                self.unknown.append((args[0], context["scope"]))  # reported once the run's work is done
                return []
            return self._on_tags(args, context, [])  # the repository is gone: a complete, empty listing
        if kind is Kind.REFERRERS:
            return self.referrers.failed(args, error)
        record(self.result, error)
        if isinstance(error, ListingTruncated):
            return self._on_tags(args, context, error.items, incomplete=error.message)
        if kind is Kind.TAGS:
            self._covered(args[0], context["scope"], reason=error.message)
        if kind is Kind.MANIFEST:
            self._failed(args[1])
        elif kind is Kind.CONFIG:
            self._failed(context["manifest"].digest)
            for manifest, _ in self.config_waits.pop(args[1], ()):  # the same config: the same failure
                self._failed(manifest.digest)
        return []

    def _failed(self, digest):
        """A manifest that could not be recorded: an index waiting for it is not recorded either."""
        for index, needs in list(self.index_needs.items()):
            if digest in needs:
                del self.index_needs[index]
                self.index_facts.pop(index, None)

