"""Being a good citizen: retries, Retry-After, rate limits, request pacing, tag filters, config files."""

import json
import re
import time

import pytest

from ledger.hub import HubError, fetch_hub_repositories
from ledger.registry import retry_after
from ledger.settings import SettingsError, load_config
from sandbox.loopback import LoopbackServer


def flaky(proxy, path_part, failures, status=503, headers=()):
    """Answer the first `failures` requests matching `path_part` with `status`."""
    left = {"n": failures}

    def alter(method, path, upstream_status, upstream_headers, body):
        if path_part in path and left["n"] > 0:
            left["n"] -= 1
            return status, [("Content-Type", "application/json"), *headers], b'{"errors":[{"code":"UNAVAILABLE"}]}'
    proxy.alter_response = alter
    return left


def test_5xx_and_429_are_retried_with_backoff(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    flaky(proxy, "/tags/list", 2)
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert proxy.counts["tags"] == 3
    flaky(proxy, "/manifests/1", 1, status=429, headers=[("Retry-After", "1")])
    proxy.reset()
    started = time.monotonic()
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert proxy.counts["head"] == 2
    assert [r["status"] for r in ledger.rows("SELECT status FROM runs")] == ["ok", "ok"]


def test_retries_give_up_and_the_run_is_partial(registry, pusher, proxy, ledger, ns):
    pusher.image(f"{ns}/app", "1", seed=ns)
    pusher.image(f"{ns}/ok", "1", seed=ns)
    flaky(proxy, f"{ns}/app/tags/list", 100)
    result = ledger("collect", f"{proxy.host}/{ns}/*", "--retries", "1", expect=3)
    assert "tags: HTTP 503 UNAVAILABLE" in result.output
    assert proxy.counts["tags"] == 3  # 2 for the failing repo, 1 for the other


@pytest.mark.parametrize("value,expected", [("3", 3.0), ("0", 0.0), ("", None), ("soon", None),
                                            ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0)])
def test_retry_after_takes_seconds_or_an_http_date(value, expected):
    assert retry_after(value, now=1445412470.0) == expected


def test_an_exhausted_rate_limit_stops_the_run_as_partial_without_removals(registry, pusher, proxy, ledger, ns):
    for n in range(6):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns)
    ledger.collect(f"{proxy.host}/{ns}/app")
    remaining = {"n": 3}

    def limited(method, path, status, headers, body):
        remaining["n"] = max(remaining["n"] - 1, 0)
        return status, headers + [("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", f"{remaining['n']};w=21600")], body
    proxy.alter_response = limited
    proxy.reset()
    result = ledger("collect", f"{proxy.host}/{ns}/app", "--concurrency", "1", expect=3)
    run = ledger.rows("SELECT status, removed FROM runs WHERE id = 2")[0]
    assert run == {"status": "partial", "removed": 0}
    assert "rate limit" in result.output and "0  left of 100" in result.output
    assert sum(proxy.counts.values()) <= 4  # it stopped asking
    assert ledger.rows("SELECT code FROM errors") == [{"code": "RATE_LIMIT_EXHAUSTED"}]
    recorded = json.loads(ledger.rows("SELECT rate_limits FROM runs WHERE id = 2")[0]["rate_limits"])
    assert recorded == {proxy.host: {"limit": 100, "remaining": 0}}


def test_rps_paces_requests(registry, pusher, proxy, ledger, ns):
    for n in range(4):
        pusher.image(f"{ns}/app", f"t{n}", seed=ns)
    started = time.monotonic()
    ledger.collect(f"{proxy.host}/{ns}/app", "--rps", "5")
    # ping + tags + 4 GETs of the tags (new to the ledger: the first brings the manifest) + config + the
    # referrers probe = 8 requests, 7 gaps of 0.2 s after the unpaced ping
    assert time.monotonic() - started >= 1.0
    assert sum(proxy.counts.values()) == 8


def test_tag_filters_choose_tags_and_removals_stay_inside_them(registry, pusher, ledger, ns):
    for tag in ("v1.0", "v1.1", "v2.0-rc1", "latest"):
        digest, _, _ = pusher.image(f"{ns}/app", tag, seed=ns + tag)
        if tag == "latest":
            latest = digest
    ledger.collect(f"{registry.host}/{ns}/app")
    ledger.collect(f"{registry.host}/{ns}/app", "--include-tags", r"^v\d", "--exclude-tags", "-rc")
    assert ledger.rows("SELECT count(*) AS n FROM events WHERE run_id = 2")[0]["n"] == 0
    assert ledger.rows("SELECT scope FROM coverage WHERE run_id = 2") == [
        {"scope": json.dumps({"exclude": "-rc", "include": r"^v\d"})}]
    pusher.delete(f"{ns}/app", latest)
    ledger.collect(f"{registry.host}/{ns}/app", "--include-tags", r"^v\d")
    assert ledger.rows("SELECT count(*) AS n FROM removed_tags")[0]["n"] == 0  # latest is outside the filter
    ledger.collect(f"{registry.host}/{ns}/app")
    assert ledger.rows("SELECT tag FROM removed_tags") == [{"tag": "latest"}]
    result = ledger("collect", f"{registry.host}/{ns}/app", "--include-tags", "(", expect=2)  # bad usage
    assert "--include-tags: invalid regular expression '('" in result.output


def test_a_config_file_collects_many_registries_in_one_run(registry, htpasswd_registry, pusher, ledger, ns, tmp_path,
                                                          monkeypatch):
    from conftest import PASSWORD

    pusher.image(f"{ns}/open", "1", seed=ns)
    pusher.image(f"{ns}/private", "v1", seed=ns + "p")
    pusher.image(f"{ns}/private", "dev", seed=ns + "d")
    monkeypatch.setenv("PRIVATE_USER", "alice")
    monkeypatch.setenv("PRIVATE_PASSWORD", PASSWORD)
    config = tmp_path / "ledger.toml"
    config.write_text(f"""
concurrency = 4
retries = 1

[registries."{registry.host}"]
targets = ["{registry.host}/{ns}/open"]
credentials = "none"

[registries."{htpasswd_registry.host}"]
targets = ["{htpasswd_registry.host}/{ns}/*"]
credentials = "env"
username_env = "PRIVATE_USER"
password_env = "PRIVATE_PASSWORD"
include_tags = '^v'
concurrency = 2
""")
    ledger.collect("--config", str(config))
    rows = ledger.rows("SELECT registry, repo, tag FROM current_tags ORDER BY registry, repo")
    assert {(r["registry"], r["repo"], r["tag"]) for r in rows} == {
        (registry.host, f"{ns}/open", "1"), (htpasswd_registry.host, f"{ns}/private", "v1")}
    assert ledger.rows("SELECT targets FROM runs")[0]["targets"] == json.dumps([f"--config {config}"])


@pytest.mark.parametrize("text,message", [
    ("nonsense = [", "not valid TOML"),
    ("colour = 1\n[registries.\"a.io\"]\n", "unknown setting 'colour'"),
    ("[registries.\"a.io\"]\ntargets = [\"b.io/x\"]\n", "is on another registry (b.io)"),
    ("[registries.\"a.io\"]\ncredentials = \"env\"\n", "needs password_env"),
    ("[registries.\"a.io\"]\ncredentials = \"env\"\npassword_env = \"LEDGER_NO_SUCH_VAR\"\n",
     "LEDGER_NO_SUCH_VAR is not set"),
    ("[registries.\"a.io\"]\nconcurrency = \"many\"\n", "concurrency has the wrong type"),
    ("[registries.\"a.io\"]\ninclude_tags = \"(\"\n", "invalid regular expression"),
    ("[registries.\"a.io\"]\nexclude_tags = '(?<=v)1'\n", "[registries.\"a.io\"]: exclude_tags: invalid regular expression"),
    ("x = 1\n", "unknown setting 'x'"),
    ("concurrency = 2\n", "no [registries"),
    ("[registries.\"a.io\"]\nrps = 0.001\n", "[registries.\"a.io\"]: rps must be from 0.1 to 100000 (not 0.001)"),
    ("[registries.\"a.io\"]\nretries = -1\n", "[registries.\"a.io\"]: retries must be from 0 to 10 (not -1)"),
    ("[registries.\"a.io\"]\ndeadline = 0\n", "[registries.\"a.io\"]: deadline must be from 1 to 86400 (not 0)"),
    ("max_tags = 0\n[registries.\"a.io\"]\n", "top level: max_tags must be from 1 to 10000000 (not 0)"),
    ("[registries.\"a.io\"]\nmax_referrers = 0\n", "max_referrers must be from 1 to 100000 (not 0)"),
    ("max_run_referrers = \"all\"\n[registries.\"a.io\"]\n", "max_run_referrers has the wrong type (str)"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML"),
    ("retries = 1000000\n[registries.\"a.io\"]\n", "top level: retries must be from 0 to 10 (not 1000000)"),
    ("[registries.\"a.io\"]\nconcurrency = 0\n", "concurrency must be from 1 to 256 (not 0)"),
    ("[registries.\"a.io\"]\nrps = nan\n", "rps must be from 0.1 to 100000 (not nan)"),
    ("[registries.\"a.io\"]\nrps = true\n", "rps has the wrong type (bool)"),
    ("[registries.\"a\\u001b[2J.io\"]\nrps = 0\n", "[registries.\"a\\u001b[2J.io\"]: rps must be from 0.1 to 100000"),
])
def test_a_bad_config_file_is_one_line_naming_it(ledger, tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_config(config)
    result = ledger("collect", "--config", str(config), expect=2)  # bad usage, as a bad flag is
    assert str(config) in result.output and message in result.output
    assert "Traceback" not in result.output


class HubStandIn:
    """Serves the documented JSON shape of Docker Hub's repository listing, in pages."""

    def __init__(self, namespace, names, page_size=2, password=None):
        self.namespace, self.names, self.page_size, self.password = namespace, names, page_size, password
        self.logins = []
        self.server = LoopbackServer({"GET": self._list, "POST": self._login}).start()
        self.url = self.server.url

    def _login(self, request):
        sent = json.loads(request.body())
        self.logins.append(sent["username"])
        if sent["password"] != self.password:
            return _send_json(request, 401, {"detail": "Incorrect authentication credentials"})
        _send_json(request, 200, {"token": "hub-jwt"})

    def _list(self, request):
        prefix = f"/v2/namespaces/{self.namespace}/repositories"
        if not request.path.startswith(prefix):
            return _send_json(request, 404, {"message": "object not found"})
        page = int(request.path.partition("page=")[2] or 1) if "page=" in request.path else 1
        chunk = self.names[(page - 1) * self.page_size: page * self.page_size]
        more = page * self.page_size < len(self.names)
        _send_json(request, 200, {
            "count": len(self.names), "previous": None,
            "next": f"{self.url}{prefix}?page_size={self.page_size}&page={page + 1}" if more else None,
            "results": [{"name": n, "namespace": self.namespace, "repository_type": "image"} for n in chunk]})


def _send_json(request, status, document):
    request.send(status, json.dumps(document).encode(), [("Content-Type", "application/json")])


def test_docker_hub_namespaces_are_listed_through_the_hub_api(monkeypatch):
    from ledger.auth import Credentials

    hub = HubStandIn("myorg", ["app", "api", "web", "tools", "db"], password="hub-pass")
    monkeypatch.setenv("LEDGER_DOCKER_HUB_API", hub.url)
    assert fetch_hub_repositories("myorg") == ["myorg/app", "myorg/api", "myorg/web", "myorg/tools", "myorg/db"]
    assert fetch_hub_repositories("myorg", Credentials(username="me", password="hub-pass", source="test"))
    assert hub.logins == ["me"]
    with pytest.raises(HubError, match="Docker Hub has no namespace 'other'"):
        fetch_hub_repositories("other")
    with pytest.raises(HubError, match="refused the credentials from test"):
        fetch_hub_repositories("myorg", Credentials(username="me", password="nope", source="test"))
    hub.server.stop()


def test_a_registry_without_a_catalog_gets_advice(registry, proxy, ledger):
    def no_catalog(method, path, status, headers, body):
        if path.startswith("/v2/_catalog"):
            return 404, [("Content-Type", "application/json")], b'{"errors":[{"code":"UNSUPPORTED"}]}'
    proxy.alter_response = no_catalog
    result = ledger("collect", proxy.host, expect=1)
    assert (f"{proxy.host}: catalog: this registry does not offer its catalog (HTTP 404); "
            f"name repositories instead, e.g. {proxy.host}/OWNER/REPO") in result.output


def test_tag_lists_are_followed_through_link_pages_and_sorted(registry, pusher, proxy, ledger, ns):
    """Registry 2.8 does not page tags; the proxy pages its real answer as newer registries do."""
    tags = ["b", "a", "d", "c", "e"]
    for tag in tags:
        pusher.image(f"{ns}/app", tag, seed=ns)

    def paged(method, path, status, headers, body):
        if "/tags/list" not in path:
            return None
        every = sorted(json.loads(body)["tags"], reverse=True)  # deliberately unsorted
        start = int(path.partition("last=")[2] or 0) if "last=" in path else 0
        page = every[start:start + 2]
        extra = [("Link", f'</v2/{ns}/app/tags/list?n=2&last={start + 2}>; rel="next"')] if start + 2 < len(every) else []
        return 200, [("Content-Type", "application/json"), *extra], json.dumps({"name": f"{ns}/app", "tags": page}).encode()
    proxy.alter_response = paged
    ledger.collect(f"{proxy.host}/{ns}/app")
    assert proxy.counts["tags"] == 3
    seen = [e["tag"] for e in ledger.events()]
    assert sorted(seen) == sorted(tags) and len(seen) == len(set(seen))
