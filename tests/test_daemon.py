"""`ledger collect --daemon`: a Docker daemon's images (here podman's Docker-compatible API) as a source
of their own, never read as the registry's truth."""

import json

import pytest
import requests

from ledger.manifests import ACCEPT
from sandbox import Proxy


def daemon_events(ledger):
    return ledger.rows("SELECT kind, repo, tag, digest, image FROM events WHERE source LIKE 'daemon:%' ORDER BY id")


def test_each_repo_tag_becomes_an_observation_with_image_id_digest_and_facts(registry, pusher, podman, ledger, ns):
    digest, config, _ = pusher.image(f"{ns}/app", "1", seed=ns, labels={"team": "web"}, author="web team")
    podman.pull(f"{registry.host}/{ns}/app:1")
    podman.tag(f"{registry.host}/{ns}/app:1", f"{registry.host}/{ns}/copy:9")
    result = ledger("collect", "--daemon", "--docker-host", podman.unix_host)
    assert "run 1: ok" in result.output
    rows = ledger.rows("SELECT registry, repo, tag, digest, image, created, size, source FROM current_tags "
                       "ORDER BY repo")
    assert [(r["registry"], r["repo"], r["tag"]) for r in rows] == [
        (registry.host, f"{ns}/app", "1"), (registry.host, f"{ns}/copy", "9")]
    assert {r["image"] for r in rows} == {config}
    assert rows[0]["digest"] == digest  # the RepoDigest of that repository
    assert rows[0]["created"] == "2024-01-01T00:00:00Z" and rows[0]["size"] > 0
    assert rows[0]["source"].startswith("daemon:")
    image = ledger.rows("SELECT * FROM images")[0]
    assert (image["id"], image["author"], json.loads(image["labels"]), image["os"]) == (
        config, "web team", {"team": "web"}, "linux")
    run = ledger.rows("SELECT source, targets FROM runs")[0]
    assert run["source"] == "daemon" and podman.unix_host in run["targets"]


def test_a_stale_local_copy_never_reads_as_a_registry_move(registry, pusher, podman, ledger, ns):
    old, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "old")
    podman.pull(f"{registry.host}/{ns}/app:prod")
    ledger.collect(f"{registry.host}/{ns}/app", "--daemon", "--docker-host", podman.unix_host)
    new, _, _ = pusher.image(f"{ns}/app", "prod", seed=ns + "new")
    ledger.collect(f"{registry.host}/{ns}/app", "--daemon", "--docker-host", podman.unix_host)
    moves = ledger.rows("SELECT source, old_digest, new_digest FROM replaced_tags")
    assert moves == [{"source": "registry", "old_digest": old, "new_digest": new}]
    now = {r["source"].split(":")[0]: r["digest"] for r in ledger.rows("SELECT source, digest FROM current_tags")}
    assert now == {"registry": new, "daemon": old}  # the host still runs the old image: a fact of its own
    assert ledger.rows("SELECT count(*) AS n FROM runs WHERE source = 'registry+daemon' AND status = 'ok'")[0]["n"] == 2


def test_seed_semantics_hold_within_the_daemon(registry, podman, ledger, ns):
    name = f"{registry.host}/{ns}/app"
    podman.build(f"{name}:1", b"first build", labels={"stage": "dev"})
    podman.tag(f"{name}:1", f"{name}:latest")
    collect = ("collect", "--daemon", "--docker-host", podman.unix_host)
    ledger(*collect)
    first = podman.image_id(f"{name}:1")
    assert [(e["kind"], e["tag"], e["image"]) for e in daemon_events(ledger)] == [
        ("added", "1", first), ("added", "latest", first)]

    podman.build(f"{name}:latest", b"second build")  # a new image under the same tag; the old one keeps :1
    ledger(*collect)
    second = podman.image_id(f"{name}:latest")
    assert [(e["kind"], e["tag"], e["image"]) for e in daemon_events(ledger)][2:] == [("moved", "latest", second)]

    podman.push(f"{name}:1")  # the same image, pushed, removed and pulled back: now with the registry's digest
    podman.remove(f"{name}:1")
    podman.pull(f"{name}:1")
    assert podman.image_id(f"{name}:1") == first
    ledger(*collect)
    updated = daemon_events(ledger)[3:]
    assert [(e["kind"], e["tag"], e["image"]) for e in updated] == [("updated", "1", first)]
    pushed = requests.head(f"{registry.url}/v2/{ns}/app/manifests/1", headers={"Accept": ACCEPT})
    assert updated[0]["digest"] == pushed.headers["Docker-Content-Digest"]

    podman.remove(f"{name}:1")
    ledger(*collect)
    assert [(e["kind"], e["tag"]) for e in daemon_events(ledger)][4:] == [("removed", "1")]
    assert not ledger.rows("SELECT 1 FROM events WHERE tag LIKE '%none%'")


def test_an_unreachable_daemon_fails_the_run_and_appends_nothing(ledger, tmp_path):
    host = f"unix://{tmp_path}/no-such.sock"
    result = ledger("collect", "--daemon", "--docker-host", host, expect=1)
    assert "error: daemon:" in result.output and f"cannot connect to {host} (No such file" in result.output
    assert ledger.events() == []
    run = ledger.rows("SELECT status, errors FROM runs")[0]
    assert run == {"status": "failed", "errors": 1}
    error = ledger.rows("SELECT stage, code, registry, source FROM errors")[0]
    assert (error["stage"], error["code"]) == ("daemon", "UNREACHABLE") and error["source"].startswith("daemon:")
    assert error["registry"] == ""  # a daemon is not a registry (issue 14)


def test_with_registry_targets_a_dead_daemon_makes_a_partial_run(registry, pusher, ledger, ns, tmp_path):
    pusher.image(f"{ns}/app", "1", seed=ns)
    result = ledger("collect", f"{registry.host}/{ns}/app", "--daemon", "--docker-host",
                    f"unix://{tmp_path}/gone.sock", expect=3)
    assert "run 1: partial" in result.output
    assert [(e["kind"], e["tag"]) for e in ledger.events()] == [("added", "1")]


def test_a_daemon_error_removes_nothing_and_a_full_listing_does(registry, pusher, podman, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    podman.pull(f"{registry.host}/{ns}/app:1")
    with Proxy(f"127.0.0.1:{podman.tcp_port}") as proxy:
        host = f"tcp://{proxy.host}"
        ledger("collect", "--daemon", "--docker-host", host)
        podman.remove(f"{registry.host}/{ns}/app:1")
        proxy.alter_response = lambda method, path, status, headers, body: (
            (500, [("Content-Type", "application/json")], b'{"message": "storage is broken"}')
            if path.startswith("/images/json") else None)
        result = ledger("collect", "--daemon", "--docker-host", host, expect=1)
        assert "HTTP 500: storage is broken" in result.output
        assert [e["kind"] for e in daemon_events(ledger)] == ["added"]  # no false removal
        proxy.alter_response = None
        ledger("collect", "--daemon", "--docker-host", host)
    assert [e["kind"] for e in daemon_events(ledger)] == ["added", "removed"]


@pytest.mark.parametrize("host, message", [
    ("ssh://build-host", "invalid Docker host 'ssh://build-host'"),
    ("unix://", "invalid Docker host 'unix://'"),
])
def test_a_docker_host_that_is_not_supported_is_a_usage_error(ledger, host, message):
    assert message in ledger("collect", "--daemon", "--docker-host", host, expect=2).output


def test_docker_host_needs_daemon(ledger):
    assert "--docker-host is for --daemon" in ledger("collect", "--docker-host", "unix:///x.sock", expect=2).output


def test_untagged_images_are_skipped_and_docker_hub_names_are_normalised(registry, pusher, podman, ledger, ns):
    name = f"{registry.host}/{ns}/app"
    podman.build(f"{name}:dev", b"one")
    podman.build(f"{name}:dev", b"two")  # the first build is left dangling: <none>:<none>
    assert any(not image.get("RepoTags") or image["RepoTags"] == ["<none>:<none>"] for image in podman.images())
    podman.tag(f"{name}:dev", "docker.io/library/alpine:3")
    podman.tag(f"{name}:dev", "docker.io/myorg/tool:1")
    ledger("collect", "--daemon", "--docker-host", podman.unix_host)
    keys = [(r["registry"], r["repo"], r["tag"]) for r in ledger.rows("SELECT * FROM current_tags ORDER BY registry")]
    assert keys == [(registry.host, f"{ns}/app", "dev"), ("docker.io", "library/alpine", "3"),
                    ("docker.io", "myorg/tool", "1")]
    assert ledger.rows("SELECT count(DISTINCT image) AS n FROM current_tags")[0]["n"] == 1


def test_terminal_reads_show_and_filter_the_source(registry, pusher, podman, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    podman.pull(f"{registry.host}/{ns}/app:1")
    ledger.collect(f"{registry.host}/{ns}/app", "--daemon", "--docker-host", podman.unix_host)
    table = ledger("tags").output
    assert "source" in table.splitlines()[0] and "daemon:" in table and "registry" in table
    only = json.loads(ledger("tags", "--source", "daemon:*", "--json").output)
    assert [row["source"].startswith("daemon:") for row in only] == [True]
    history = json.loads(ledger("history", f"{registry.host}/{ns}/app:1", "--source", "registry", "--json").output)
    assert [(row["kind"], row["source"]) for row in history] == [("added", "registry")]


def test_docker_style_names_map_as_registry_targets_do():
    from ledger.daemon import _key, _repo_digests

    assert _key("alpine:3") == ("docker.io", "library/alpine", "3")
    assert _key("localhost:5000/team/app:1") == ("localhost:5000", "team/app", "1")
    digest = "sha256:" + "a" * 64
    assert _repo_digests([f"alpine@{digest}", "garbage", "x@md5:1"]) == {("docker.io", "library/alpine"): digest}


def test_the_docker_host_comes_from_the_environment(monkeypatch):
    from ledger.daemon import DaemonClient

    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375")
    assert DaemonClient().source == "daemon:10.0.0.5:2375"


def test_an_invalid_repo_tag_is_an_error_of_its_own_and_the_rest_is_recorded(registry, pusher, podman, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    podman.pull(f"{registry.host}/{ns}/app:1")

    def bad_name(method, path, status, headers, body):
        if not path.startswith("/images/json"):
            return None
        images = json.loads(body)
        images[0]["RepoTags"].append("Not A/Valid:Name")
        return status, [(k, v) for k, v in headers if k.lower() != "content-length"], json.dumps(images).encode()

    with Proxy(f"127.0.0.1:{podman.tcp_port}") as proxy:
        proxy.alter_response = bad_name
        result = ledger("collect", "--daemon", "--docker-host", f"tcp://{proxy.host}", expect=3)
    assert "'Not A/Valid:Name'" in result.output and "run 1: partial" in result.output
    assert [(e["kind"], e["tag"]) for e in daemon_events(ledger)] == [("added", "1")]
    error = ledger.rows("SELECT code, stage, at FROM errors")[0]
    assert (error["code"], error["stage"]) == ("NAME_INVALID", "daemon") and error["at"]


def test_a_daemon_image_is_new_once_whatever_digests_it_gains(registry, podman, ledger, ns):
    """Build, push, re-push, retag into another repository: one image ID, one new image (the Go
    collector's semantics: the image ID tells a daemon's images apart)."""
    name = f"{registry.host}/{ns}/app"
    collect = ("collect", "--daemon", "--docker-host", podman.unix_host)
    podman.build(f"{name}:1", b"built once")
    ledger(*collect)
    podman.push(f"{name}:1")
    ledger(*collect)
    podman.push(f"{name}:1")
    podman.tag(f"{name}:1", f"{name}:2")
    ledger(*collect)
    podman.tag(f"{name}:1", f"{registry.host}/{ns}/other:1")
    ledger(*collect)
    image = podman.image_id(f"{name}:1")
    assert ledger.rows("SELECT image, repo, tag FROM new_images") == [{"image": image, "repo": f"{ns}/app", "tag": "1"}]
    assert [r["new_images"] for r in ledger.rows("SELECT new_images FROM runs ORDER BY id")] == [1, 0, 0, 0]
    assert ledger.rows("SELECT count(*) AS n FROM events WHERE digest IS NOT NULL")[0]["n"] >= 1  # it gained one
    assert ledger("verify").exit_code == 0
