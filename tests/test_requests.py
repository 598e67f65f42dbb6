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
    # distribution 2.8 has no referrers API: one request finds that out, for the whole registry and run
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": expected["repos"], "head": expected["tags"],
                                  "manifest": expected["manifests"], "config": expected["configs"], "referrers": 1}
    gets = [path for method, path in proxy.log if method == "GET" and "/manifests/" in path]
    assert len(gets) == len(set(p.rsplit("/", 1)[1] for p in gets))  # never the same digest twice


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
        if method == "HEAD":
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
    proxy.alter_request = slow
    ledger.collect(f"{proxy.host}/{ns}/app", "--concurrency", "4")
    assert 2 <= state["peak"] <= 4
