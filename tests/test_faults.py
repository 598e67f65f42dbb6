"""Bad answers from the network become clear errors on one tag or repo; nothing wrong enters the ledger."""

import json

from sandbox import RESET, TRUNCATE


def only(match, answer):
    """An alter_response hook: `answer(...)` for requests where `match(method, path)`, else pass through."""
    def alter(method, path, status, headers, body):
        if match(method, path):
            return answer(method, path, status, headers, body)
    return alter


def two_repos(pusher, ns):
    good, _, _ = pusher.image(f"{ns}/good", "1", seed=ns + "good")
    bad, _, _ = pusher.image(f"{ns}/bad", "1", seed=ns + "bad")
    return good, bad


def assert_only_good_recorded(ledger, ns, good):
    assert ledger.rows("SELECT repo, digest FROM current_tags") == [{"repo": f"{ns}/good", "digest": good}]
    assert ledger("verify").exit_code == 0


def test_a_tag_list_that_is_not_json_fails_that_repo_only(registry, pusher, proxy, ledger, ns):
    good, _ = two_repos(pusher, ns)
    proxy.alter_response = only(lambda m, p: f"{ns}/bad/tags/list" in p,
                                lambda *a: (200, [("Content-Type", "application/json")], b'{"name": "x", "tags": [1, '))
    result = ledger("collect", f"{proxy.host}/{ns}/*", expect=3)
    assert f"{ns}/bad: tags: response is not JSON" in result.output
    assert_only_good_recorded(ledger, ns, good)
    assert ledger.rows("SELECT repo, complete FROM coverage WHERE complete = 0") == [{"repo": f"{ns}/bad", "complete": 0}]


def test_an_html_error_page_is_an_http_error_not_a_crash(registry, pusher, proxy, ledger, ns):
    good, _ = two_repos(pusher, ns)
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    proxy.alter_response = only(lambda m, p: f"{ns}/bad/" in p, lambda *a: (502, [("Content-Type", "text/html")], page))
    result = ledger("collect", f"{proxy.host}/{ns}/*", "--retries", "0", expect=3)
    assert f"{ns}/bad: tags: HTTP 502" in result.output
    assert_only_good_recorded(ledger, ns, good)


def test_an_html_page_with_status_200_is_not_a_catalog(registry, proxy, ledger):
    proxy.alter_response = only(lambda m, p: p.startswith("/v2/_catalog"),
                                lambda *a: (200, [("Content-Type", "text/html")], b"<html>login</html>"))
    result = ledger("collect", proxy.host, expect=1)
    assert "catalog: response is not JSON" in result.output
    assert ledger.events() == []


def test_a_transient_connection_reset_is_retried(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    left = {"n": 1}

    def reset_once(method, path, status, headers, body):
        if "/manifests/" in path and left["n"]:  # the tag's GET: a cold run resolves a new tag with one
            left["n"] -= 1
            return RESET
    proxy.alter_response = reset_once
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert proxy.counts["manifest"] == 2  # the tag's GET, reset, then again; it brought the manifest
    assert ledger.rows("SELECT count(*) AS n FROM current_tags")[0]["n"] == 1


def test_persistent_resets_on_one_tag_leave_the_others(registry, pusher, proxy, ledger, ns):
    digest, _, _ = pusher.image(f"{ns}/app", "ok", seed=ns)
    pusher.image(f"{ns}/app", "cursed", seed=ns + "c")
    proxy.alter_response = only(lambda m, p: p.endswith("/manifests/cursed"), lambda *a: RESET)
    result = ledger("collect", f"{proxy.host}/{ns}/app", "--retries", "1", expect=3)
    assert f"{ns}/app:cursed: cannot connect" in result.output
    assert ledger.rows("SELECT tag, digest FROM current_tags") == [{"tag": "ok", "digest": digest}]


def test_a_truncated_manifest_is_an_error_and_is_fetched_again_next_run(registry, pusher, proxy, ledger, ns):
    digest, image, _ = pusher.image(f"{ns}/app", "1", seed=ns)
    proxy.alter_response = only(lambda m, p: m == "GET" and "/manifests/" in p, lambda *a: TRUNCATE)
    result = ledger("collect", f"{proxy.host}/{ns}/app", expect=3)
    assert "manifest: connection broke while reading" in result.output
    assert ledger.rows("SELECT digest, image FROM current_tags") == [{"digest": digest, "image": None}]
    assert ledger.rows("SELECT count(*) AS n FROM manifests")[0]["n"] == 0
    proxy.alter_response = None
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert ledger.rows("SELECT image FROM current_tags") == [{"image": image}]


def test_an_oversized_manifest_is_refused_before_it_is_read(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    proxy.alter_response = only(lambda m, p: m == "GET" and "/manifests/" in p,
                                lambda m, p, s, h, b: (200, [("Content-Type", "application/json")], huge))
    result = ledger("collect", f"{proxy.host}/{ns}/app", expect=3)
    assert "exceeds the 4194304-byte limit" in result.output
    assert ledger.rows("SELECT count(*) AS n FROM manifests")[0]["n"] == 0


def test_a_wrong_content_type_falls_back_to_the_body(registry, pusher, proxy, ledger, ns):
    digest, image, _ = pusher.image(f"{ns}/app", "1", seed=ns)

    def octet(method, path, status, headers, body):
        kept = [(k, v) for k, v in headers if k.lower() != "content-type"]
        return status, kept + [("Content-Type", "application/octet-stream")], body
    proxy.alter_response = only(lambda m, p: m == "GET" and "/manifests/" in p, octet)
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert ledger.rows("SELECT media_type, config_digest FROM manifests WHERE digest = ?", [digest]) == [
        {"media_type": "application/vnd.docker.distribution.manifest.v2+json", "config_digest": image}]


def test_a_head_without_a_digest_header_hashes_the_body(registry, pusher, proxy, ledger, ns):
    digest, _, _ = pusher.image(f"{ns}/app", "1", seed=ns)

    def strip(method, path, status, headers, body):
        return status, [(k, v) for k, v in headers if k.lower() != "docker-content-digest"], body
    proxy.alter_response = only(lambda m, p: "/manifests/" in p, strip)
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert ledger.rows("SELECT digest FROM current_tags") == [{"digest": digest}]


def test_a_tag_list_with_duplicates_and_invalid_names(registry, pusher, proxy, ledger, ns):
    digest, _, _ = pusher.image(f"{ns}/app", "ok", seed=ns)

    def mangle(method, path, status, headers, body):
        tags = json.loads(body)["tags"] + ["ok", "bad tag!", "-dash", "x" * 200]
        return status, headers, json.dumps({"name": f"{ns}/app", "tags": tags}).encode()
    proxy.alter_response = only(lambda m, p: "/tags/list" in p, mangle)
    result = ledger("collect", f"{proxy.host}/{ns}/app", expect=3)
    # distribution's grammar refuses '-dash' and 200 characters, but they can be stored: they are asked for
    # (this registry does not know them); 'bad tag!' cannot be put in a URL path: a warning, never recorded
    assert "cannot be stored safely, not recorded: 'bad tag!'" in result.output
    assert f"tag -dash is in {ns}/app's tag list, but its manifest is unknown (HTTP 404)" in result.output
    assert ledger.rows("SELECT tag, digest FROM current_tags") == [{"tag": "ok", "digest": digest}]
    assert proxy.counts["manifest"] == 3  # ok, -dash and x*200, each with one GET (the ledger never held them)


def test_an_index_pointing_at_a_missing_child(registry, pusher, ledger, ns):
    index, children = pusher.index(f"{ns}/multi", "latest", [("amd64", None), ("arm64", "v8")], seed=ns,
                                   attestations=False)
    pusher.delete(f"{ns}/multi", children[("arm64", "v8")])
    result = ledger("collect", f"{registry.host}/{ns}/multi", expect=3)
    assert "manifest: HTTP 404 MANIFEST_UNKNOWN" in result.output
    assert ledger.rows("SELECT digest FROM current_tags") == [{"digest": index}]
    assert ledger.rows("SELECT count(*) AS n FROM manifests WHERE digest = ?", [index])[0]["n"] == 0
    assert ledger.rows("SELECT count(*) AS n FROM platforms")[0]["n"] == 0


def test_a_head_without_a_digest_and_a_body_that_is_not_a_manifest_records_nothing(registry, pusher, proxy, ledger,
                                                                                   ns):
    """Found by the soak: the hash of a garbage body once became a false 'moved'."""
    pusher.image(f"{ns}/app", "1", seed=ns)

    def garbage(method, path, status, headers, body):
        if "/manifests/" in path:
            return 200, [("Content-Type", "application/json")], b'{"tags": [oops'
    proxy.alter_response = garbage
    result = ledger("collect", f"{proxy.host}/{ns}/app", expect=3)
    assert "no Docker-Content-Digest, and the manifest is not one" in result.output
    assert ledger.events() == []
