"""Every command and option is documented in the README."""

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


@pytest.mark.parametrize("name,opt", sorted(set(options())))
def test_every_option_is_in_the_readme(name, opt):
    assert f"`{opt}" in README, f"{name} {opt} is not documented"


def test_every_view_and_table_is_in_the_readme():
    for name in ("runs", "events", "manifests", "platforms", "coverage", "errors", "current_tags", "tag_history",
                 "replaced_tags", "new_images", "removed_tags"):
        assert f"`{name}`" in README
