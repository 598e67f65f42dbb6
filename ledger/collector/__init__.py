"""One collect run: list, resolve, fetch what is new. Decides nothing about events.

Per registry: `work.Work` lists its targets, resolves their tags and fetches the manifests and configs new to
the ledger; `discovery.Referrers` follows each digest's referrers and `signing.Signing` checks signatures;
`scheduler.Scheduler` runs their jobs on a bounded thread pool. When a job finishes, its handler runs on the
main thread and queues the next jobs (tag list -> HEADs -> manifest GETs -> config GETs), so the pipe stays
full and only the main thread touches the results.

Each manifest and config is fetched once per digest per run, across tags, repositories and platforms, and
never once the ledger holds it. A tag the ledger never held is resolved with one GET (its manifest is wanted
anyway), one it holds with a HEAD; where the registry sends rate-limit headers (Docker Hub counts a manifest
GET as a pull, a HEAD not), every tag is resolved with a HEAD.
"""

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from ..findings import RunResult, SourceError, finish, record, unexpected
from ..references import DOCKER_HUB
from ..registry import RegistryClient, RegistryOptions
from .work import Work

__all__ = ["collect"]


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
            work = Work(registry, group, client, set(known_digests), live, result, progress,
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
