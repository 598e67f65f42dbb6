"""The request minimum, counted by a loopback proxy in front of the real registry."""


def push_fixture(pusher, ns):
    """3 repos, 7 tags: shared digests within and across repos, and one multi-arch tag."""
    shared, _, _ = pusher.image(f"{ns}/app", "1.0", seed=ns)
    pusher.image(f"{ns}/app", "prod", seed=ns)
    pusher.image(f"{ns}/app", "1.1", seed=ns + "1.1")
    pusher.image(f"{ns}/tool", "latest", seed=ns)  # same digest as app:1.0, in another repo
    pusher.image(f"{ns}/tool", "2", seed=ns + "tool2")
    pusher.index(f"{ns}/base", "latest", [("amd64", None), ("arm64", "v8")], seed=ns)
    pusher.index(f"{ns}/base", "stable", [("amd64", None), ("arm64", "v8")], seed=ns)
    # distinct manifests: app 1.0 (= tool latest), app 1.1, tool 2, one index, two children
    return {"repos": 3, "tags": 7, "manifests": 6, "configs": 5}


def test_a_cold_run_fetches_each_distinct_digest_once(registry, pusher, proxy, ledger, ns):
    expected = push_fixture(pusher, ns)
    ledger.collect(f"{proxy.host}/{ns}/*")
    # A tag the ledger never held is resolved with one GET, no HEAD: 7 tags, then the index's 2 platform
    # children by digest (the other 4 manifests came with a tag's GET). Distribution 2.8 has no referrers
    # API: one request finds that out, for the whole registry and run.
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": expected["repos"],
                                  "manifest": expected["tags"] + 2, "config": expected["configs"], "referrers": 1}
    gets = [path.rsplit("/manifests/", 1) for method, path in proxy.log if method == "GET" and "/manifests/" in path]
    by_digest = [reference for _, reference in gets if reference.startswith("sha256:")]
    by_tag = [(repo, reference) for repo, reference in gets if not reference.startswith("sha256:")]
    assert len(by_digest) == len(set(by_digest)) == 2  # never the same digest twice
    assert len(by_tag) == len(set(by_tag)) == expected["tags"]  # one GET per tag


def test_a_warm_run_over_an_unchanged_registry_makes_exactly_the_minimum(registry, pusher, proxy, ledger, ns):
    expected = push_fixture(pusher, ns)
    ledger.collect(f"{proxy.host}/{ns}/*")
    proxy.reset()
    ledger.collect(f"{proxy.host}/{ns}/*")
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": expected["repos"], "head": expected["tags"],
                                  "referrers": 1}
    recorded = ledger.rows("SELECT requests FROM runs WHERE id = 2")[0]["requests"]
    assert recorded == '{"catalog": 1, "head": 7, "ping": 1, "referrers": 1, "tags": 3}'


def test_referrers_never_makes_no_request_past_the_minimum(registry, pusher, proxy, ledger, ns):
    expected = push_fixture(pusher, ns)
    ledger.collect(f"{proxy.host}/{ns}/*", "--referrers", "never")
    proxy.reset()
    ledger.collect(f"{proxy.host}/{ns}/*", "--referrers", "never")
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": expected["repos"], "head": expected["tags"]}


def test_every_manifest_request_sends_all_four_media_types(registry, pusher, proxy, ledger, ns):
    push_fixture(pusher, ns)
    seen = []

    def record(method, path, headers):
        if "/manifests/" in path:
            seen.append(headers.get("Accept", ""))
    proxy.alter_request = record
    ledger.collect(f"{proxy.host}/{ns}/*")
    assert seen and all(set(accept.split(", ")) == {
        "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json"} for accept in seen)


def test_requests_run_concurrently_within_the_bound(registry, pusher, proxy, ledger, ns):
    import threading
    import time

    for n in range(12):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns)
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(method, path, headers):
        if "/manifests/" in path:  # the tags' GETs (cold: the ledger never held them)
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
    proxy.alter_request = slow
    ledger.collect(f"{proxy.host}/{ns}/app", "--concurrency", "4")
    assert 2 <= state["peak"] <= 4
