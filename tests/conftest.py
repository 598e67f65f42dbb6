import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import time

import pytest
import requests
import sqlite_utils
from click.testing import CliRunner

from ledger.cli import cli
from authserver import TokenServer, make_tls, write_htpasswd
from podman import Podman
from sandbox import LocalRegistry, Proxy, Pusher, free_port


@pytest.fixture(scope="session")
def registry():
    """The real distribution registry, once per session, on a free loopback port."""
    with LocalRegistry() as running:
        yield running


@pytest.fixture
def pusher(registry):
    return Pusher(registry.url)


@pytest.fixture
def ns(request):
    """A repository namespace of this test's own, so tests never see each other's repos."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    return f"{name[:40].strip('-')}-{digest}"


@pytest.fixture
def proxy(registry):
    with Proxy(registry.host) as running:
        yield running


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "ledger.db")


class Ledger:
    """Run `ledger` in-process on one ledger file and read what it wrote."""

    def __init__(self, path):
        self.path = path
        self.runner = CliRunner()

    def __call__(self, *args, expect=0):
        result = self.runner.invoke(cli, [*args, "--db", self.path], catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    def collect(self, *targets, expect=0):
        return self(*["collect", "--quiet", *targets], expect=expect)

    def rows(self, sql, params=()):
        db = sqlite_utils.Database(sqlite3.connect(self.path))
        try:
            return list(db.query(sql, params))
        finally:
            db.close()

    def events(self):
        return self.rows("SELECT kind, repo, tag, digest, image FROM events ORDER BY id")


@pytest.fixture
def ledger(db_path):
    return Ledger(db_path)


PASSWORD = "s3cret-Pa55word-never-stored"


@pytest.fixture(scope="session")
def auth_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="session")
def htpasswd_registry(registry, auth_dir):
    """The same storage as `registry`, behind htpasswd (bcrypt) auth: user alice."""
    path = write_htpasswd(auth_dir / "htpasswd", {"alice": PASSWORD})
    with LocalRegistry(data_dir=registry.data_dir,
                       extra_config=f"auth: {{htpasswd: {{realm: basic-realm, path: {path}}}}}\n") as running:
        yield running


@pytest.fixture(scope="session")
def token_server(auth_dir):
    server = TokenServer(auth_dir, {"alice": PASSWORD}, catalog_users={"alice"},
                         refresh_tokens={"refresh-token-never-stored": "alice"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(registry, token_server):
    """The same storage as `registry`, behind token auth signed by `token_server`."""
    with LocalRegistry(data_dir=registry.data_dir, extra_config=token_server.registry_config()) as running:
        yield running


@pytest.fixture
def tokens(token_server):
    """The token server, with its log cleared and its settings restored after the test."""
    saved = (token_server.expires_in, set(token_server.public))
    token_server.requests.clear()
    yield token_server
    token_server.expires_in, token_server.public = saved


@pytest.fixture(scope="session")
def tls(auth_dir):
    return make_tls(auth_dir)


@pytest.fixture(scope="session")
def tls_registry(registry, tls):
    ca, cert, key = tls
    with LocalRegistry(data_dir=registry.data_dir, tls=(cert, key), ca_file=ca) as running:
        yield running


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """Write a Docker config.json in a fresh DOCKER_CONFIG; returns the writer."""
    directory = tmp_path / "docker"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))

    def write(config):
        (directory / "config.json").write_text(json.dumps(config))
        return directory / "config.json"
    return write


class Served:
    """`ledger serve` as a subprocess on a free loopback port, ready when its first page answers."""

    def __init__(self, db):
        self.db = db
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--db", db, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/-/versions.json", timeout=1).status_code == 200:
                    return
            except requests.exceptions.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"ledger serve did not answer on {self.base}: {self.stderr}")

    def stop(self):
        if self.process.returncode is None:
            self.process.terminate()
            self.stdout, self.stderr = self.process.communicate(timeout=30)


@pytest.fixture
def serve():
    started = []

    def start(db):
        started.append(Served(db))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def pytest_collection_modifyitems(items):
    """A test that needs podman is slow: the service takes seconds to stop (README: the quick loop)."""
    for item in items:
        if "podman_service" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def podman_service(registry, tmp_path_factory):
    """Debian's podman serving the Docker Engine API, once per session, trusting the test registry."""
    service = Podman(str(tmp_path_factory.mktemp("podman")), [registry.host])
    yield service
    service.stop()


@pytest.fixture
def podman(podman_service):
    """The podman service with no images: the daemon a test starts from."""
    podman_service.clear()
    return podman_service
