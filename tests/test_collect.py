"""`ledger collect` against the real distribution registry."""

import os
import shutil



def test_first_collect_records_every_tag_as_added(registry, pusher, ledger, ns):
    one, image, _ = pusher.image(f"{ns}/app", "1.0", seed=ns, author="ann", labels={"team": "x"})
    pusher.image(f"{ns}/app", "prod", seed=ns, author="ann", labels={"team": "x"})
    other, _, _ = pusher.image(f"{ns}/tool", "latest", seed=ns + "tool")
    result = ledger("collect", f"{registry.host}/{ns}/*")
    assert "added              3" in result.output
    rows = ledger.rows("SELECT repo, tag, digest, image, author, created FROM current_tags ORDER BY repo, tag")
    assert [(r["repo"], r["tag"], r["digest"]) for r in rows] == [
        (f"{ns}/app", "1.0", one), (f"{ns}/app", "prod", one), (f"{ns}/tool", "latest", other)]
    assert rows[0]["image"] == image and rows[0]["author"] == "ann"
    assert rows[0]["created"] == "2024-01-01T00:00:00Z"
    run = ledger.rows("SELECT status, added, tags_seen, repos_listed FROM runs")[0]
    assert run == {"status": "ok", "added": 3, "tags_seen": 3, "repos_listed": 2}
    labels = ledger.rows("SELECT labels FROM manifests WHERE digest = ?", [one])[0]["labels"]
    assert labels == '{"team": "x"}'


def test_a_second_collect_of_an_unchanged_registry_appends_nothing(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "1.0", seed=ns)
    pusher.index(f"{ns}/app", "multi", [("amd64", None), ("arm64", "v8")], seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    before = ledger.rows("SELECT count(*) AS n, max(hash) AS head FROM events")[0]
    result = ledger("collect", f"{registry.host}/{ns}/app")
    assert ledger.rows("SELECT count(*) AS n, max(hash) AS head FROM events")[0] == before
    assert "added              0" in result.output and "updated            0" in result.output


def test_a_tag_pushed_to_a_new_image_is_one_moved_event_in_replaced_tags(registry, pusher, ledger, ns):
    old, old_image, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "old")
    pusher.image(f"{ns}/app", "stable", seed=ns + "stable")
    ledger.collect(f"{registry.host}/{ns}/app")
    new, new_image, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "new")
    ledger.collect(f"{registry.host}/{ns}/app")
    assert ledger.rows("SELECT kind, tag FROM events WHERE run_id = 2") == [{"kind": "moved", "tag": "prod"}]
    replaced = ledger.rows("SELECT tag, old_digest, new_digest, old_image, new_image, run_id FROM replaced_tags")
    assert replaced == [{"tag": "prod", "old_digest": old, "new_digest": new, "old_image": old_image,
                         "new_image": new_image, "run_id": 2}]
    assert ledger.rows("SELECT digest FROM current_tags WHERE tag = 'prod'")[0]["digest"] == new


def test_a_manifest_deleted_by_digest_removes_every_tag_that_pointed_to_it(registry, pusher, ledger, ns):
    shared, _, _ = pusher.image(f"{ns}/app", "a", seed=ns)
    pusher.image(f"{ns}/app", "b", seed=ns)
    kept, _, _ = pusher.image(f"{ns}/app", "c", seed=ns + "other")
    ledger.collect(f"{registry.host}/{ns}/app")
    pusher.delete(f"{ns}/app", shared)
    ledger.collect(f"{registry.host}/{ns}/app")
    removed = ledger.rows("SELECT tag, last_digest, run_id FROM removed_tags ORDER BY tag")
    assert removed == [{"tag": "a", "last_digest": shared, "run_id": 2}, {"tag": "b", "last_digest": shared, "run_id": 2}]
    assert [r["tag"] for r in ledger.rows("SELECT tag FROM current_tags")] == ["c"]
    assert ledger.rows("SELECT removed FROM runs WHERE id = 2")[0]["removed"] == 2
    assert kept


def test_a_removed_tag_pushed_again_is_added(registry, pusher, ledger, ns):
    digest, _, _ = pusher.image(f"{ns}/app", "x", seed=ns)
    pusher.image(f"{ns}/app", "keep", seed=ns + "keep")
    ledger.collect(f"{registry.host}/{ns}/app")
    pusher.delete(f"{ns}/app", digest)
    ledger.collect(f"{registry.host}/{ns}/app")
    pusher.image(f"{ns}/app", "x", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/app")
    kinds = [(e["kind"], e["tag"]) for e in ledger.events() if e["tag"] == "x"]
    assert kinds == [("added", "x"), ("removed", "x"), ("added", "x")]
    first_seen = ledger.rows("SELECT first_seen FROM current_tags WHERE tag = 'x'")[0]["first_seen"]
    assert first_seen == ledger.rows("SELECT max(observed_at) AS t FROM events WHERE tag = 'x'")[0]["t"]


def test_every_tag_of_a_repository_deleted_is_removed_and_the_empty_list_is_complete(registry, pusher, ledger, ns):
    digest, _, _ = pusher.image(f"{ns}/app", "only", seed=ns)
    ledger.collect(f"{registry.host}/{ns}/*")
    pusher.delete(f"{ns}/app", digest)  # the registry now answers "tags": null
    ledger.collect(f"{registry.host}/{ns}/*")
    assert [r["tag"] for r in ledger.rows("SELECT tag FROM removed_tags")] == ["only"]
    assert ledger.rows("SELECT complete, tags_listed FROM coverage WHERE run_id = 2") == [
        {"complete": 1, "tags_listed": 0}]


def test_a_repository_gone_from_the_registry_is_removed_through_name_unknown(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/gone", "1", seed=ns)
    pusher.image(f"{ns}/stays", "1", seed=ns + "s")
    ledger.collect(f"{registry.host}/{ns}/*")
    shutil.rmtree(os.path.join(registry.root, "data", "docker", "registry", "v2", "repositories", ns, "gone"))
    ledger.collect(f"{registry.host}/{ns}/*")
    assert ledger.rows("SELECT repo, tag FROM removed_tags") == [{"repo": f"{ns}/gone", "tag": "1"}]
    assert [r["repo"] for r in ledger.rows("SELECT repo FROM current_tags")] == [f"{ns}/stays"]


def test_a_multi_arch_tag_records_platforms_and_marks_attestations(registry, pusher, ledger, ns):
    index, children = pusher.index(f"{ns}/base", "latest", [("amd64", None), ("arm64", "v8"), ("arm", "v7")],
                                   seed=ns)
    ledger.collect(f"{registry.host}/{ns}/base:latest")
    tag = ledger.rows("SELECT digest, image, media_type FROM current_tags")[0]
    assert tag == {"digest": index, "image": None,
                   "media_type": "application/vnd.docker.distribution.manifest.list.v2+json"}
    platforms = ledger.rows("SELECT digest, architecture, variant FROM platforms "
                            "WHERE index_digest = ? AND attestation = 0 ORDER BY position", [index])
    assert [(p["architecture"], p["variant"]) for p in platforms] == [("amd64", None), ("arm64", "v8"), ("arm", "v7")]
    assert [p["digest"] for p in platforms] == [children[("amd64", None)], children[("arm64", "v8")],
                                                children[("arm", "v7")]]
    attestations = ledger.rows("SELECT attests FROM platforms WHERE index_digest = ? AND attestation = 1", [index])
    assert sorted(a["attests"] for a in attestations) == sorted(children.values())
    child = ledger.rows("SELECT kind, architecture, variant, config_digest FROM manifests WHERE digest = ?",
                        [children[("arm", "v7")]])[0]
    assert (child["kind"], child["architecture"], child["variant"]) == ("image", "arm", "v7")
    assert child["config_digest"].startswith("sha256:")


def test_an_oci_index_of_oci_manifests_is_recorded(registry, pusher, ledger, ns):
    index, children = pusher.index(f"{ns}/oci", "1", [("amd64", None)], seed=ns, attestations=False,
                                   media_type="application/vnd.oci.image.index.v1+json")
    ledger.collect(f"{registry.host}/{ns}/oci")
    assert ledger.rows("SELECT digest, media_type FROM current_tags") == [
        {"digest": index, "media_type": "application/vnd.oci.image.index.v1+json"}]
    assert ledger.rows("SELECT kind FROM manifests WHERE digest = ?", [children[("amd64", None)]]) == [
        {"kind": "image"}]


def test_a_digest_shared_by_many_tags_and_repos_counts_once_in_new_images(registry, pusher, ledger, ns):
    for repo in ("a", "b", "c"):
        for tag in ("1", "2"):
            shared, _, _ = pusher.image(f"{ns}/{repo}", tag, seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/*")
    assert "new images         1" in result.output
    rows = ledger.rows("SELECT digest, run_id FROM new_images")
    assert rows == [{"digest": shared, "run_id": 1}]
    assert ledger.rows("SELECT new_images, added FROM runs") == [{"new_images": 1, "added": 6}]


def test_a_single_tag_target_lists_only_that_tag(registry, pusher, ledger, ns):
    pusher.image(f"{ns}/app", "wanted", seed=ns)
    pusher.image(f"{ns}/app", "other", seed=ns + "o")
    ledger.collect(f"{registry.host}/{ns}/app:wanted")
    assert [e["tag"] for e in ledger.events()] == ["wanted"]
    assert ledger.rows("SELECT scope FROM coverage") == [{"scope": '{"tags": ["wanted"]}'}]


def test_catalog_pages_are_followed_through_link_headers(registry, pusher, proxy, ns, db_path):
    from ledger import store
    from ledger.collector import collect
    from ledger.references import parse_target
    from ledger.registry import RegistryOptions

    for n in range(5):
        pusher.image(f"{ns}/r{n}", "1", seed=ns)
    result = collect([parse_target(f"{proxy.host}/{ns}/*")], options={proxy.host: RegistryOptions(page_size=2)})
    assert sorted({o.repo for o in result.observations}) == [f"{ns}/r{n}" for n in range(5)]
    assert result.requests["catalog"] == proxy.counts["catalog"] >= 3
    assert any("last=" in path for _, path in proxy.log if path.startswith("/v2/_catalog"))
    db = store.open_db(db_path)
    run_id = store.start_run(db, "registry", ["x"])
    assert store.append_run(db, run_id, result)["added"] == 5


def test_a_failed_tag_listing_is_partial_and_never_removes(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/flaky", "1", seed=ns)
    pusher.image(f"{ns}/fine", "1", seed=ns + "f")
    ledger.collect(f"{proxy.host}/{ns}/*")

    def fail_flaky(method, path, status, headers, body):
        if path.startswith(f"/v2/{ns}/flaky/tags/list"):
            return 503, [("Content-Type", "application/json")], b'{"errors":[{"code":"UNAVAILABLE","message":"down"}]}'
    proxy.alter_response = fail_flaky
    result = ledger("collect", f"{proxy.host}/{ns}/*", "--retries", "0", expect=3)
    assert f"{ns}/flaky" in result.output and "503" in result.output
    assert ledger.rows("SELECT count(*) AS n FROM removed_tags")[0]["n"] == 0
    assert ledger.rows("SELECT status FROM runs WHERE id = 2")[0]["status"] == "partial"
    assert ledger.rows("SELECT repo, complete FROM coverage WHERE run_id = 2 ORDER BY repo") == [
        {"repo": f"{ns}/fine", "complete": 1}, {"repo": f"{ns}/flaky", "complete": 0}]
    error = ledger.rows("SELECT stage, repo, http_status, code FROM errors")[0]
    assert error == {"stage": "tags", "repo": f"{ns}/flaky", "http_status": 503, "code": "UNAVAILABLE"}


def test_an_unreachable_registry_fails_the_run_and_appends_no_event(ledger):
    from sandbox import free_port
    host = f"127.0.0.1:{free_port()}"
    result = ledger("collect", f"{host}/app", expect=1)
    assert f"{host}: cannot connect" in result.output
    assert ledger.events() == []
    assert ledger.rows("SELECT status, errors FROM runs") == [{"status": "failed", "errors": 1}]
    assert ledger.rows("SELECT stage FROM errors") == [{"stage": "ping"}]


def test_a_manifest_that_does_not_match_its_digest_never_enters_the_ledger(registry, pusher, proxy, ledger, ns):
    digest, image, _ = pusher.image(f"{ns}/app", "1", seed=ns)

    def corrupt(method, path, status, headers, body):
        if method == "GET" and "/manifests/" in path:
            return status, headers, body.replace(b"schemaVersion", b"schemaVersioN")
    proxy.alter_response = corrupt
    ledger.collect(f"{proxy.host}/{ns}/app", expect=3)
    assert ledger.rows("SELECT code, digest FROM errors") == [{"code": "DIGEST_MISMATCH", "digest": digest}]
    assert ledger.rows("SELECT count(*) AS n FROM manifests")[0]["n"] == 0
    # The HEAD's digest is still true, so the tag is recorded; its image comes with the next good run.
    assert ledger.rows("SELECT kind, digest, image FROM events") == [{"kind": "added", "digest": digest, "image": None}]
    proxy.alter_response = None
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert ledger.rows("SELECT kind, image FROM events WHERE run_id = 2") == [{"kind": "updated", "image": image}]


def test_a_legacy_schema1_manifest_is_recorded_without_crashing(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/old", "1", seed=ns)

    def without_accept(method, path, headers):
        # Without Accept the real registry serves a signed schema1 conversion.
        return {k: v for k, v in headers.items() if k.lower() != "accept"}
    proxy.alter_request = without_accept
    ledger.collect(f"{proxy.host}/{ns}/old")
    tag = ledger.rows("SELECT digest, media_type, image FROM current_tags")[0]
    assert tag["media_type"] == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    assert tag["image"] is None
    # a schema1 conversion cannot be fetched by its digest, so nothing is stored as known from the HEAD's
    # word alone: another registry could claim any digest that way and poison it for every registry
    assert ledger.rows("SELECT kind FROM manifests WHERE digest = ?", [tag["digest"]]) == []
    ledger.collect(f"{proxy.host}/{ns}/old")
    assert len(ledger.events()) == 1
