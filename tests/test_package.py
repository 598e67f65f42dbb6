"""The wheel holds the ledger package, its schema and metadata, and nothing test-only.

The wheel is built from a copy of the source tree (a build writes build/ and *.egg-info where it runs),
with the venv's own setuptools and no index: it needs no network. scripts/setup.sh installs a setuptools
that builds wheels by itself (70.1 and later; older ones need the `wheel` package too).
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the wheel

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                    ".hypothesis", ".pytest_cache", "test-artifacts", "*.db", "*.db-wal", "*.db-shm")


def _pip(*args, cwd):
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _version(name):
    try:
        return tuple(int(part) for part in importlib.metadata.version(name).split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    setuptools, wheel_package = _version("setuptools"), _version("wheel")
    assert setuptools and (setuptools >= (70, 1) or wheel_package), (
        f"building the wheel without a network needs setuptools>=70.1 in this venv (it has {setuptools}): "
        "run scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    built = _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(source),
                 cwd=tmp)
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    wheels = list((tmp / "dist").glob("registry_ledger-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _names(wheel):
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_the_package_its_schema_and_metadata(wheel):
    names = _names(wheel)
    modules = {"ledger/" + path.relative_to(ROOT / "ledger").as_posix() for path in (ROOT / "ledger").rglob("*.py")
               if "__pycache__" not in path.parts and not path.relative_to(ROOT / "ledger").parts[0] == "schema"}
    assert {"ledger/__init__.py", "ledger/cli.py"} <= modules
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    schema = {f"ledger/schema/{path.name}" for path in (ROOT / "schema").glob("*.sql")}
    assert {"ledger/schema/001_tables.sql", "ledger/schema/views.sql"} <= schema
    assert schema <= names, f"schema files missing from the wheel: {sorted(schema - names)}"
    assert "ledger/metadata.yml" in names
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("ledger/metadata.yml") == (ROOT / "metadata.yml").read_bytes()
        for name in schema:
            assert archive.read(name) == (ROOT / "schema" / Path(name).name).read_bytes(), name
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/RECORD"))
        assert archive.read(f"{dist_info}/top_level.txt").decode().split() == ["ledger"]
        assert "ledger = ledger.cli:cli" in archive.read(f"{dist_info}/entry_points.txt").decode()


def test_the_wheel_holds_nothing_test_only(wheel):
    names = _names(wheel)
    outside = sorted(name for name in names if not name.startswith(("ledger/", "registry_ledger-")))
    assert not outside, f"files outside the package: {outside}"
    # The names of tests/, scripts/ and the sandbox/ package (conftest.py, authserver.py, demo.py, hostile.py,
    # loopback.py, ...) are nowhere in it; __init__.py, which ledger/ has too, apart.
    test_only_names = {path.name for folder in ("tests", "scripts", "sandbox") for path in (ROOT / folder).iterdir()
                       if path.name != "__init__.py"}
    assert {"conftest.py", "demo.py", "hostile.py", "loopback.py"} <= test_only_names
    test_only = sorted(name for name in names if any(
        part in test_only_names or part in ("tests", "scripts", "sandbox") or part.startswith("test_")
        for part in name.split("/")))
    assert not test_only, f"test-only files in the wheel: {test_only}"
    assert not [name for name in names if name.endswith(".pyc") or "__pycache__" in name]
    kinds = {Path(name).suffix for name in names if name.startswith("ledger/")}
    assert kinds <= {".py", ".sql", ".yml", ".html"}, kinds
    assert {"ledger/templates/base.html", "ledger/templates/database.html"} <= set(names)  # ledger serve's pages


def test_the_installed_wheel_imports_and_makes_a_ledger_on_its_own(wheel, tmp_path):
    """Installed alone, away from the source tree: every module imports (so none needs a test-only one),
    and the schema it ships makes a ledger."""
    target = tmp_path / "site"
    installed = _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    check = """
import importlib, pkgutil, sys, ledger
assert ledger.__file__.startswith(sys.argv[1]), ledger.__file__
for module in pkgutil.walk_packages(ledger.__path__, "ledger."):
    if module.name != "ledger.__main__":  # that one runs the CLI
        importlib.import_module(module.name)
from ledger import store
db = store.open_db(sys.argv[2])
tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
print(db.execute("PRAGMA user_version").fetchone()[0], tables)
"""
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONDONTWRITEBYTECODE": "1"}
    ran = subprocess.run([sys.executable, "-c", check, str(target), str(tmp_path / "fresh.db")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    version, tables = map(int, ran.stdout.split())
    assert version >= 7 and tables >= 10
    assert not list(target.rglob("sandbox*"))
