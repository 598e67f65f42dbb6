import hashlib
import re
import sqlite3

import pytest
import sqlite_utils
from click.testing import CliRunner

from ledger.cli import cli
from ledger.sandbox import LocalRegistry, Proxy, Pusher


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
