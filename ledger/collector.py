"""One collect run: list, resolve, fetch what is new. Decides nothing about events.

Network jobs run on a bounded thread pool; when one finishes, its handler
runs on the main thread and queues the next jobs (tag list -> HEADs ->
manifest GETs -> config GETs), so the pipe stays full and only the main
thread touches the results.

Each manifest and config is fetched once per digest per run, across tags, repositories and platforms, and
never once the ledger holds it. A tag the ledger never held is resolved with one GET (its manifest is wanted
anyway), one it holds with a HEAD; where the registry sends rate-limit headers (Docker Hub counts a manifest
GET as a pull, a HEAD not), every tag is resolved with a HEAD.
"""

import queue
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .findings import WARNING, Listing, RunResult, SignatureCheck, Sighting, SourceError, finish, record, unexpected
from .hub import fetch_hub_repositories
from .limits import MAX_INDEX_CHILDREN
from .manifests import LEGACY_TYPES, ManifestError, facts_of, needs_config, parse_manifest, verify_digest
from .references import DOCKER_HUB, storable_repo, storable_tag
from .referrers import REFERRER, UNSERVED, ReferrerScope, cosign_tags, fallback_tag, schema_tag
from .registry import ListingTruncated, RegistryClient, RegistryError, RegistryOptions
from . import signatures as sigs
from .semantics import Scope
from .suggest import closest, did_you_mean
from .times import now


_NAMED_WARNINGS = 5  # names a warning quotes; it counts them all


def collect(targets, known_digests=(), ledger_repos=None, *, options=None, progress=None, children_of=None,
            seen=None, observe=None, signatures=None, tags_held=None, rate_limited=(), config_of=None):
    """Collect every target into a RunResult for the store to classify and append.

    `options` maps a registry to its RegistryOptions. `ledger_repos` maps a
    registry to the repos the ledger holds live tags for, so that a repo gone
    from the catalog is listed (and its removal proven). `children_of(digest)`
    gives a known index's children (None for anything else): their referrers
    are followed too. `seen(registry, repo)` says whether the ledger ever held
    a key of that repository [default: whether it holds a live one]: a named
    repository the registry does not know is a deletion if so, else a failed
    target.
    `observe` is told of every HTTP request (transport.Transport.observe).
    `tags_held(registry, repo)` gives the tags the ledger ever held there [default: none]: the others are
    resolved with a GET, except on the registries in `rate_limited` (and Docker Hub), which get HEADs.
    `config_of(digest)` gives the bytes of a config the ledger holds, or None [default: None].
    `progress(tags=, done=, lists=)` is told of tags to resolve, tags resolved, and tag lists asked
    (positive) and answered (negative).
    `signatures` (a signatures.Checking) has every signature artifact met checked
    against the configured keys it has no verdict from yet.
    """
    result = RunResult()
    by_registry = defaultdict(list)
    for target in targets:
        by_registry[target.registry].append(target)
    reached = 0
    for registry, group in by_registry.items():
        settings = (options or {}).get(registry) or RegistryOptions()
        client = RegistryClient(registry, settings, observe)
        try:
            client.fetch_ping()
            reached += 1
            live = (ledger_repos or {}).get(registry, set())
            work = _Work(registry, group, client, set(known_digests), live, result, progress,
                         children_of or (lambda _digest: None),
                         (lambda repo: seen(registry, repo)) if seen else live.__contains__, signatures,
                         (lambda repo: tags_held(registry, repo)) if tags_held else (lambda _repo: ()),
                         registry == DOCKER_HUB or registry in rate_limited, config_of or (lambda _digest: None))
            with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="ledger") as pool:
                work.run(pool)
        except SourceError as error:
            record(result, error)
        except Exception as error:  # a registry's answer must never end the run: it is this registry's error
            record(result, unexpected(error, registry=registry, stage="registry"))
        finally:
            result.requests.update(client.requests)
            if client.auth.token_requests:
                result.requests["token"] += client.auth.token_requests
            if client.rate_limit:
                result.rate_limits[registry] = client.rate_limit
            client.close()
    return finish(result, reached > 0)


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


class _Work:
    """The jobs of one registry in one run."""

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
        self.futures = {}
        self.backlog = deque()  # jobs not yet submitted, in order
        self.in_flight = 4 * max(client.options.concurrency, 1)
        self.done = queue.SimpleQueue()  # futures as they finish
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
        self.children_of = children_of
        self.children = {}  # index digest -> the children whose referrers are followed with it
        self.schema = {}  # repo -> its tags that are referrer tags (cosign's, the tag schema's)
        self.listed = {}  # repo -> whether its tag listing was complete
        self.discoveries = {}  # (repo, digest) -> _Discovery, for every digest whose referrers are followed
        self.trackers = defaultdict(set)  # digest -> repos following it
        self.lists = defaultdict(list)  # fallback index digest not yet recorded -> (repo, subject) it lists
        self.referred = set()  # (repo, referrer digest, subject) observed
        self.cut = set()  # indexes whose children past MAX_INDEX_CHILDREN were said to be cut
        self.api = None if client.options.referrers != "never" else False  # whether the registry serves it
        self.probing = False  # the first referrers request is out: the rest wait for its answer
        self.held = []
        self.signatures = signatures
        self.checking = set()  # (signature digest, subject) whose check this run has begun
        self.unchecked = defaultdict(list)  # signature digest not yet read -> [(repo, subject, key ids wanted)]
        self.signature_bodies = {}  # signature manifests this run read: digest -> bytes
        self.handlers = {self.client.fetch_tags: self._on_tags, self.client.fetch_head: self._on_head,
                         self.client.fetch_tag: self._on_tag,
                         self.client.fetch_manifest: self._on_manifest, self.client.fetch_blob: self._on_config,
                         self.client.fetch_referrers: self._on_referrers, self._fetch_signature: self._on_signature}

    def run(self, pool):
        self.backlog.extend((self.client.fetch_tags, (repo,), {"scope": scope})
                            for repo, scope in sorted(self._scopes().items()))
        self.progress(lists=len(self.backlog))
        self._pump(pool)
        try:
            while self.futures:
                future = self.done.get()  # not wait(): that visits every pending future, O(n) per answer
                fetch, args, context = self.futures.pop(future)
                try:
                    value = future.result()
                    follow = self.handlers[fetch](args, context, value)
                except SourceError as error:
                    follow = self._on_error(fetch, args, context, error)
                except Exception as error:  # never let one answer end the run: it fails its own scope
                    follow = self._on_error(fetch, args, context, self._unexpected(fetch, args, error))
                if fetch == self.client.fetch_tags:
                    self.progress(lists=-1)
                self.backlog.extend(follow)
                self._pump(pool)
        except BaseException:
            for future in self.futures:
                future.cancel()  # an interrupted run stops asking at once
            raise
        self._referrer_coverage()
        self._unknown_repos()

    def _unexpected(self, fetch, args, error):
        stage = {self.client.fetch_tags: "tags", self.client.fetch_head: "head", self.client.fetch_manifest: "manifest",
                 self.client.fetch_tag: "manifest", self.client.fetch_blob: "config",
                 self.client.fetch_referrers: "referrers", self._fetch_signature: "signature"}[fetch]
        return unexpected(error, registry=self.registry, stage=stage, repo=args[0],
                          tag=args[1] if fetch in (self.client.fetch_head, self.client.fetch_tag) else None)

    def _pump(self, pool):
        """A few jobs per worker in flight, the rest waiting as plain tuples: a tag list of 100,000 tags
        submitted at once would be 100,000 futures in memory."""
        while self.backlog and len(self.futures) < self.in_flight:
            self._submit(pool, self.backlog.popleft())

    def _submit(self, pool, job):
        fetch, args, context = job
        if self.client.exhausted or self.client.stalled:
            self._skip(job)
            return
        if fetch == self.client.fetch_head and context.get("new") and not (self.head_first or self.client.rate_limited):
            if self.probe == "out":
                self.waiting.append(job)
                return
            self.probe = self.probe or "out"
            fetch, job = self.client.fetch_tag, (self.client.fetch_tag, args, context)
        future = pool.submit(fetch, *args)
        self.futures[future] = job
        future.add_done_callback(self.done.put)

    def _skip(self, job):
        """The registry's rate limit is spent, or it stopped answering: stop asking, say so once, prove
        nothing removed."""
        fetch, args, context = job
        if self.client.exhausted:
            reason, stage, code = (f"rate limit exhausted ({self.client.rate_limit}); run stopped early", "ratelimit",
                                   "RATE_LIMIT_EXHAUSTED")
        else:
            reason, stage, code = (f"the registry stopped answering: {self.client.stalls} requests in a row ran past "
                                   "their deadline; the rest of its run is skipped", "stalled", "STALLED")
        if not self.stopped:
            self.stopped = True
            record(self.result, RegistryError(reason, registry=self.registry, stage=stage, code=code))
        if fetch == self.client.fetch_tags:
            self._covered(args[0], context["scope"], reason=reason.split(";")[0])
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
        self._covered(repo, scope, listed, reason=incomplete)
        self.schema[repo] = {tag for tag in listed if schema_tag(tag)}  # followed with their subjects
        self.listed[repo] = incomplete is None
        if incomplete is None and scope.tags is not None:
            for tag in sorted(scope.tags - set(listed)):
                if scope.covers(tag):
                    record(self.result, RegistryError(f"tag {tag} is not in {repo}'s tag list",
                                                      registry=self.registry, stage="tags", repo=repo, tag=tag,
                                                      code="TAG_UNKNOWN"))
        wanted = [tag for tag in listed if scope.covers(tag) and (tag not in self.schema[repo] or (
            scope.tags is not None and tag in scope.tags))]
        self.progress(tags=len(wanted))
        return [self._resolve(repo, tag) for tag in wanted]

    def _resolve(self, repo, tag, **context):
        """The job resolving a tag: a HEAD, which `_submit` makes a GET for a tag the ledger never held."""
        held = self.held_tags.get(repo)
        if held is None:
            held = self.held_tags[repo] = self.tags_held(repo)
        if tag not in held:
            context["new"] = True
        return self.client.fetch_head, (repo, tag), context

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
        follow = self._fetch_if_new(repo, digest) + self._cosign_signature(repo, tag, digest)
        if context.get("lists"):  # a fallback index: the referrers of its subject
            self.lists[digest].append((repo, context["lists"]))
            return follow + self._lists_ready(digest)
        return follow if schema_tag(tag) else follow + self._follow(repo, digest)

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
            self.lists[digest].append((repo, context["lists"]))
        follow = self._cosign_signature(repo, tag, digest)  # first: checked once its bytes are recorded below
        if problem is not None and digest not in self.known:  # the header's digest stands, as a HEAD's
            follow += self._on_error(self.client.fetch_manifest, (repo, digest), {}, problem)
        elif digest not in self.known and digest not in self.started:
            self.started.add(digest)
            try:
                follow += self._on_manifest((repo, digest), {}, (body, media_type, digest))
            except SourceError as error:
                follow += self._on_error(self.client.fetch_manifest, (repo, digest), {}, error)
        if context.get("lists"):
            return follow + self._lists_ready(digest)
        return follow if schema_tag(tag) else follow + self._follow(repo, digest)

    def _cosign_signature(self, repo, tag, digest):
        """cosign's signature tag of the digest in its name: a signature to check."""
        if tag.endswith(".sig") and schema_tag(tag):
            return self._signature(repo, digest, tag[:-len(".sig")].replace("-", ":", 1))
        return []

    def _probed(self):
        """The first GET of a tag has answered: the registry's headers said whether it is rate-limited, and
        the tags waiting for that go first (each a HEAD, if it is); straight to the backlog, so that nothing
        the handler raises afterwards can lose them."""
        if self.probe == "out":
            self.probe, waiting, self.waiting = "done", self.waiting, []
            self.backlog.extendleft(reversed(waiting))

    def _follow(self, repo, digest):
        """Follow a digest's referrers (and its children's, for an index): its cosign tags and fallback
        index from the tag list already read, and the referrers API unless the registry lacks it."""
        if (repo, digest) in self.discoveries:
            return []
        discovery = self.discoveries[(repo, digest)] = _Discovery()
        self.trackers[digest].add(repo)
        names = self.schema.get(repo)
        follow = []
        if names:  # the repository has referrer tags at all
            follow = [self._resolve(repo, name) for name in cosign_tags(digest) if name in names]
            if fallback_tag(digest) in names:
                discovery.waiting += 1
                follow.append(self._resolve(repo, fallback_tag(digest), lists=digest))
            self.progress(tags=len(follow))
        follow += self._ask(repo, digest)
        for child in self._capped(repo, digest, self._children(digest) or ()):
            follow += self._follow(repo, child)
        return follow

    def _children(self, digest):
        if digest not in self.children and digest in self.known:
            self.children[digest] = self.children_of(digest)
        return self.children.get(digest)

    def _ask(self, repo, digest):
        """One referrers request per digest; until the registry has answered one, the rest wait."""
        if self.api is False:
            return []
        job = (self.client.fetch_referrers, (repo, digest), {})
        if self.api is None:
            if self.probing:
                self.held.append(job)
                return []
            self.probing = True
        return [job]

    def _on_referrers(self, args, context, answer):
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

    def _referrers_failed(self, args, error):
        repo, digest = args
        if isinstance(error, ListingTruncated):  # served, past --max-referrers or a page cap: follow what was read
            record(self.result, error)
            follow = self._on_referrers(args, {}, (error.items, False))
            self.discoveries[(repo, digest)].broken = True
            return follow
        if error.status in UNSERVED and self.api is None:
            self.api, self.probing = False, False
            self.held.clear()
            if self.client.options.referrers == "always":
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

    def _lists_ready(self, index):
        """A fallback index read: its entries are the referrers of the subjects whose tag names it."""
        children = self._children(index)
        if children is None:
            return []  # not read yet (or it failed: then its subjects' listings stay incomplete)
        follow, most = [], self.client.options.max_referrers
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

    def _referrer(self, repo, subject, digest, media_type):
        """A referrer listed for `subject`: observed as a key of its own; the store keeps it only if its
        manifest names that subject."""
        if (repo, digest, subject) in self.referred:
            return []
        most = self.client.options.max_run_referrers
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
        return self._fetch_if_new(repo, digest) + self._signature(repo, digest, subject)

    def _referrer_coverage(self):
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
        if self.api is None or self.client.options.referrers != "auto":
            # The API never answered, or is required and not served, or was not asked (never): then a
            # referrer only the API lists may still be there, and nothing is removed.
            return False
        return self.listed.get(repo, False)  # no API: the tag schema is complete with the tag listing

    def _fetch_if_new(self, repo, digest):
        if digest in self.known or digest in self.started:
            return []
        self.started.add(digest)
        return [(self.client.fetch_manifest, (repo, digest), {})]

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
        return [(self.client.fetch_blob, (repo, digest), {"manifest": manifest, "body": body})]

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
        digest = facts["digest"]
        listed = facts.get("platforms") or facts.get("referrers") or ()  # a referrers list's entries are no platforms
        self.children[digest] = [row["digest"] for row in listed if not row["attestation"]]
        follow = self._lists_ready(digest)
        if facts.get("artifact_kind") == "signature" and self.signatures is not None:
            self.signature_bodies[digest] = facts["body"]
            follow += self._check(digest)
        for repo in sorted(self.trackers.get(digest, ())):
            for child in self._capped(repo, digest, self.children[digest]):
                follow += self._follow(repo, child)
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

    def _on_error(self, fetch, args, context, error):
        if fetch == self.client.fetch_tag:
            self._probed()
        return self._failure(fetch, args, context, error)

    def _failure(self, fetch, args, context, error):
        if error.code == "RATE_LIMIT_EXHAUSTED":
            self._skip((fetch, args, context))
            return []
        if fetch == self.client.fetch_tags and error.status == 404 and error.code == "NAME_UNKNOWN":
            if args[0] in self.named and not self.seen(args[0]):
                self.unknown.append((args[0], context["scope"]))  # reported once the run's work is done
                return []
            return self._on_tags(args, context, [])  # the repository is gone: a complete, empty listing
        if fetch == self.client.fetch_referrers:
            return self._referrers_failed(args, error)
        record(self.result, error)
        if isinstance(error, ListingTruncated):
            return self._on_tags(args, context, error.items, incomplete=error.message)
        if fetch == self.client.fetch_tags:
            self._covered(args[0], context["scope"], reason=error.message)
        if fetch == self.client.fetch_manifest:
            self._failed(args[1])
        elif fetch == self.client.fetch_blob:
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

    def _signature(self, repo, digest, subject):
        """A possible signature of `subject` (a referrer, or a cosign `.sig` tag's manifest): checked against
        the keys it has no verdict from, once its manifest is read (now, if the ledger holds it)."""
        if self.signatures is None or (digest, subject) in self.checking:
            return []
        self.checking.add((digest, subject))
        wanted = self.signatures.wanted(digest, subject)
        if not wanted:
            return []
        self.unchecked[digest].append((repo, subject, wanted))
        return self._check(digest) if digest in self.known else []

    def _check(self, digest):
        """Check the signatures waiting for this manifest: at once when there is nothing to fetch (no key
        configured, a format not verified), else after fetching its signature layers."""
        waiting = self.unchecked.pop(digest, ())
        body = self.signature_bodies.get(digest) if waiting else None
        if waiting and body is None:
            body = self.signatures.body(digest)
        if body is None:
            return []  # not a signature, or its bytes were not read: nothing to say yet
        try:
            manifest = parse_manifest(body, digest)
        except ManifestError:
            return []
        follow = []
        for repo, subject, wanted in waiting:
            if manifest.artifact_kind != "signature" or manifest.subject not in (None, subject):
                continue  # not a signature, or a referrer of another subject (the store refuses it)
            document = sigs.document(body)
            planned = sigs.plan(document)
            if not self.signatures.keys or not planned.layers:
                self._verdicts(repo, digest, subject, wanted, sigs.verify(document, {}, subject, self.signatures.keys))
            else:
                follow.append((self._fetch_signature, (repo, digest, planned.layers),
                               {"document": document, "subject": subject, "wanted": wanted}))
        return follow

    def _fetch_signature(self, repo, digest, layers):
        """The signature layers' bytes, each bounded and checked against its digest (on a worker)."""
        return {layer: self.client.fetch_blob(repo, layer, limit=sigs.MAX_LAYER_BYTES, stage="signature")
                for layer, _ in layers}

    def _on_signature(self, args, context, blobs):
        repo, digest, _ = args
        self._verdicts(repo, digest, context["subject"], context["wanted"],
                       sigs.verify(context["document"], blobs, context["subject"], self.signatures.keys))
        return []

    def _verdicts(self, repo, digest, subject, wanted, verdicts):
        for verdict in verdicts:
            if verdict.key in wanted:
                self.result.signature_checks.append(SignatureCheck(
                    self.registry, repo, digest, subject, verdict.key, verdict.result, verdict.reason, verdict.layer,
                    now()))
