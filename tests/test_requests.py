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


def push_shared_config(pusher, repo, tags, start=0):
    """`tags` distinct manifests (an annotation apart) naming one config blob and one layer."""
    import json

    from ledger.manifests import OCI_MANIFEST
    config = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"one layer for every manifest"
    config_digest, layer_digest = pusher.blob(repo, config), pusher.blob(repo, layer)
    for n in range(start, start + tags):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                                      "digest": config_digest},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer),
                                       "digest": layer_digest}],
                           "annotations": {"n": str(n)}}).encode()
        pusher.manifest(repo, f"t{n}", body, OCI_MANIFEST)
    return config_digest


def test_manifests_sharing_a_config_fetch_it_once_and_never_again_once_stored(registry, pusher, proxy, ledger, ns):
    config = push_shared_config(pusher, f"{ns}/app", 301)
    ledger.collect(f"{proxy.host}/{ns}/app", "--referrers", "never")
    assert dict(proxy.counts) == {"ping": 1, "tags": 1, "manifest": 301, "config": 1}
    rows = ledger.rows("SELECT count(*) AS n, count(DISTINCT config_digest) AS configs, min(architecture) AS arch "
                       "FROM manifests")
    assert rows == [{"n": 301, "configs": 1, "arch": "arm64"}]  # every manifest has the config's facts
    push_shared_config(pusher, f"{ns}/app", 1, start=301)  # one more manifest naming the stored config
    proxy.reset()
    ledger.collect(f"{proxy.host}/{ns}/app", "--referrers", "never")
    assert dict(proxy.counts) == {"ping": 1, "tags": 1, "head": 301, "manifest": 1}  # the config: from the ledger
    assert ledger.rows("SELECT architecture FROM manifests WHERE config_digest = ? AND digest NOT IN "
                       "(SELECT digest FROM manifests WHERE first_run_id = 1)", [config]) == [{"architecture": "arm64"}]


def test_requests_for_one_digest_in_flight_are_shared(registry, pusher, proxy, ledger, ns):
    import time

    for repo in ("one", "two"):
        for tag in ("a", "b"):
            pusher.image(f"{ns}/{repo}", tag, seed="old")
    ledger.collect(f"{proxy.host}/{ns}/*", "--referrers", "never")
    digest, _, _ = pusher.image(f"{ns}/one", "a", seed="new")  # the same new digest under four keys
    for repo, tag in (("one", "b"), ("two", "a"), ("two", "b")):
        pusher.image(f"{ns}/{repo}", tag, seed="new")

    def slow(method, path, headers):
        if method == "GET" and ("/manifests/sha256:" in path or "/blobs/" in path):
            time.sleep(0.3)  # still in flight when the other keys' HEADs answer
    proxy.alter_request = slow
    proxy.reset()
    ledger.collect(f"{proxy.host}/{ns}/*", "--referrers", "never", "--concurrency", "4")
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": 2, "head": 4, "manifest": 1, "config": 1}
    assert {row["digest"] for row in ledger.rows("SELECT digest FROM current_tags")} == {digest}


def test_a_cold_run_of_new_tags_sharing_a_digest_gets_its_config_once(registry, pusher, proxy, ledger, ns):
    for repo in ("one", "two"):
        for tag in ("a", "b", "c"):
            pusher.image(f"{ns}/{repo}", tag, seed="same")
    ledger.collect(f"{proxy.host}/{ns}/*", "--referrers", "never", "--concurrency", "4")
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": 2, "manifest": 6, "config": 1}
    assert all(method == "GET" for method, path in proxy.log if "/manifests/" in path)
    assert not any("/manifests/sha256:" in path for _, path in proxy.log)  # the tags' GETs brought the bytes


RATE_LIMIT = [("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", "99;w=21600")]


def test_a_registry_that_sends_rate_limits_is_resolved_with_heads_even_cold(registry, pusher, proxy, ledger, ns):
    expected = push_fixture(pusher, ns)
    proxy.alter_response = lambda method, path, status, headers, body: (status, headers + RATE_LIMIT, body)
    ledger.collect(f"{proxy.host}/{ns}/*")
    # The ping said so: a manifest GET may be a pull there, a HEAD is not
    assert dict(proxy.counts) == {"ping": 1, "catalog": 1, "tags": expected["repos"], "head": expected["tags"],
                                  "manifest": expected["manifests"], "config": expected["configs"], "referrers": 1}


def test_rate_limits_seen_on_a_manifest_answer_make_every_later_tag_a_head(registry, pusher, proxy, ledger, ns):
    for n in range(8):
        pusher.image(f"{ns}/app", f"t{n}", seed=f"{ns}{n}")

    def limited(method, path, status, headers, body):
        return (status, headers + RATE_LIMIT, body) if "/manifests/" in path else None
    proxy.alter_response = limited
    ledger.collect(f"{proxy.host}/{ns}/app", "--referrers", "never", "--concurrency", "4")
    # the first GET of a tag answers alone: its headers say so, and the 7 other tags get HEADs
    tag_gets = [path for method, path in proxy.log if method == "GET" and "/manifests/t" in path]
    assert len(tag_gets) == 1 and proxy.counts["head"] == 7
    assert proxy.counts["manifest"] == 1 + 7  # the 7 new digests, by digest
    assert ledger.rows("SELECT rate_limits FROM runs") == [{"rate_limits": '{"%s": {"limit": 100, "remaining": 99}}'
                                                            % proxy.host}]
    pusher.image(f"{ns}/app", "new", seed="new")
    proxy.alter_response = None  # the ledger remembers: a tag it never held still gets a HEAD there
    proxy.reset()
    ledger.collect(f"{proxy.host}/{ns}/app", "--referrers", "never")
    assert dict(proxy.counts) == {"ping": 1, "tags": 1, "head": 9, "manifest": 1, "config": 1}
