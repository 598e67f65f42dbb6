"""Every command and option is documented in the README."""

import re
from collections import Counter
from pathlib import Path

import click
import pytest

from ledger.cli import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def options():
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts + param.secondary_opts:
                    yield name, opt


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_in_the_readme(name):
    assert f"ledger {name}" in README


def test_every_view_and_table_is_in_the_readme():
    for name in ("runs", "events", "manifests", "platforms", "coverage", "errors", "current_tags", "tag_history",
                 "replaced_tags", "new_images", "removed_tags"):
        assert f"`{name}`" in README


def test_the_exit_statuses_are_the_same_in_the_readme_and_the_help():
    """One table of exit statuses in the README, the same codes in `ledger --help`, and the codes the CLI
    uses among them."""
    from click.testing import CliRunner

    from ledger import cli as module

    section = README.split("### Exit status", 1)[1].split("\n#", 1)[0]
    documented = {int(line.split("**")[1]) for line in section.splitlines() if line.startswith("| **")}
    shown = CliRunner().invoke(cli, ["--help"]).output.split("Exit status:", 1)[1].split("Options:", 1)[0]
    helped = {int(line.split()[0]) for line in shown.splitlines() if line[:6].strip().isdigit()}
    assert documented == helped == {0, 1, 2, 3}
    assert {module.EXIT_FAILED, module.EXIT_PARTIAL, 2} <= documented


def _readme_reference():
    import importlib.util
    spec = importlib.util.spec_from_file_location("readme_reference",
                                                  Path(__file__).parent.parent / "scripts" / "readme_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    return reference


def test_the_command_reference_is_made_from_the_cli():
    """README's command reference names every command and option once, as --help does, and its table of
    contents lists every section: both made by scripts/readme_reference.py, so a new or changed option or
    heading fails here until it is run again."""
    reference = _readme_reference()
    assert reference.rewritten(README) == README, "README.md's reference or contents are out of date: run " + reference.COMMAND
    section = README[README.index(reference.BEGIN):README.index(reference.END)]
    for name, opt in set(options()):
        if opt != "--help":
            heading = section.index(f"#### `ledger {name}`")
            rows = section[heading:section.find("#### ", heading + 1)]
            assert len(re.findall(rf"^\| `([^`]*[ ,/])?{re.escape(opt)}[ `,/=]", rows, re.M)) == 1, (name, opt)


def test_every_link_within_the_readme_leads_to_a_heading():
    anchors = {anchor for _, _, anchor in _readme_reference().headings(README)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and not links - anchors, sorted(links - anchors)


def test_the_read_commands_come_before_the_collect_reference():
    """What users do every day first: the terminal's questions, then the long collect section."""
    assert README.index("### Reading the ledger from a terminal") < README.index("### `ledger collect TARGET...`")


def test_the_companion_sqlite_utils_reads_a_ledger_as_the_readme_says(tmp_path):
    """sqlite-utils is a dependency for its CLI alone: the README's command reads a ledger's views, and the
    package never imports it."""
    import subprocess
    import sys

    from ledger import store
    from ledger.findings import RunResult, Sighting

    command = re.search(r'`sqlite-utils ledger\.db "(SELECT [^"]+)" --table`', README)
    assert command, "the README's sqlite-utils example is gone"
    path = tmp_path / "ledger.db"
    db = store.open_db(str(path))
    store.append_run(db, store.start_run(db, "registry", ["r.example/app"]), RunResult(observations=[
        Sighting("r.example", "app", "v1", "2026-01-01T00:00:00.000000Z", "sha256:" + "1" * 64, "m")]))
    db.close()
    ran = subprocess.run([str(Path(sys.executable).parent / "sqlite-utils"), str(path), command.group(1), "--table"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "r.example" in ran.stdout and "sha256:" + "1" * 64 in ran.stdout, ran.stderr
    package = Path(store.__file__).resolve().parent.parent
    assert not [source for source in package.rglob("*.py") if "sqlite_utils" in source.read_text()]


ROOT = Path(__file__).parent.parent
ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text()
_PATH = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.py)\b")  # a path as the map writes it: from ledger/ or the root


def test_every_module_is_on_the_architecture_map_once():
    """ARCHITECTURE.md's map (its picture and the lists under it, up to its first section) names every module
    of ledger/ once, by its path under ledger/: a new, moved or removed module fails here until the map is
    redrawn."""
    modules = sorted(path.relative_to(ROOT / "ledger").as_posix() for path in (ROOT / "ledger").rglob("*.py"))
    named = Counter(_PATH.findall(ARCHITECTURE.split("\n## ", 1)[0]))
    assert {module: named[module] for module in modules if named[module] != 1} == {}


def test_every_path_and_name_in_the_architecture_is_in_the_code():
    """Every file ARCHITECTURE.md names is in the tree, and every `module.name` it names (a module of ledger/
    by its last name: `work.Work._admit`, `store.open_db`) is defined there, so a renamed function cannot
    leave the walk of a collect behind."""
    import importlib

    files = {path for path in _PATH.findall(ARCHITECTURE)
             if not ((ROOT / path).exists() or (ROOT / "ledger" / path).exists())}
    assert files == set(), "ARCHITECTURE.md names files that are not in the tree"
    modules = {}
    for path in (ROOT / "ledger").rglob("*.py"):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules.setdefault(dotted.rsplit(".", 1)[-1], []).append(dotted)
    missing = []
    for name in re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)", ARCHITECTURE):
        first, *attributes = name.split(".")
        if first not in modules or attributes[-1] in ("py", "sql"):
            continue  # not a module's name (`plan.metrics`, `metadata.yml`), or a file

        def defined(module):
            value = importlib.import_module(module)
            for attribute in attributes:
                if not hasattr(value, attribute):
                    return False
                value = getattr(value, attribute)
            return True
        if not any(defined(module) for module in modules[first]):
            missing.append(name)
    assert missing == []
