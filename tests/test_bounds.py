"""Everything the user points the ledger at is bounded: a FIFO (or any file that is not regular) named as a
file is refused at once, in one line naming the option and the path, instead of blocking forever; every
number option has a range that SQLite and Python can hold, and a bad one is one line naming the option."""

import math
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from ledger import store
from ledger.checkpoint import write_new_key
from ledger.cli import cli
from ledger.params import INT64_MAX, Float, TreeSize
from ledger.settings import SettingsError, load_config
from ledger.times import parse_interval, parse_when

PROMPT = 10  # seconds: a refusal is at once; a blocked open would wait for this and fail the test


@pytest.fixture
def place(tmp_path):
    """A directory with a FIFO `fifo`, a ledger `ledger.db`, a directory `pins` holding a FIFO as a
    checkpoint, a Docker config directory whose config.json is a FIFO, and config files naming the FIFO."""
    os.mkfifo(tmp_path / "fifo")
    store.open_db(str(tmp_path / "ledger.db")).close()
    write_new_key(tmp_path / "signer.key", "bounds.example")  # and signer.key.pub: --expect needs --key
    (tmp_path / "pins").mkdir()
    os.mkfifo(tmp_path / "pins" / "1.checkpoint")
    (tmp_path / "docker").mkdir()
    os.mkfifo(tmp_path / "docker" / "config.json")
    for key in ("docker_config", "ca_file"):
        (tmp_path / f"{key}.toml").write_text(f'[registries."r.example"]\n{key} = "{tmp_path / "fifo"}"\n')
    return tmp_path


def ledger(*args, cwd, env=None):
    """`ledger ARGS` as a subprocess that must end promptly."""
    return subprocess.run([sys.executable, "-m", "ledger", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=PROMPT, env={**os.environ, "LEDGER_DB": "", **(env or {})}, stdin=subprocess.DEVNULL)


# (arguments, environment, what the one line names besides the path); `fifo` is the FIFO, `ledger.db` a ledger
FIFOS = [
    *[pytest.param([*command, "--db", "fifo"], {}, "--db", id=f"{command[0]}--db") for command in (
        ["tags"], ["verify"], ["runs"], ["history", "r.example/a:1"], ["at", "now"], ["changes", "--since", "now"],
        ["prove", "1"], ["checkpoint", "--key", "ledger.db"], ["collect", "r.example/a"], ["watch", "r.example/a"],
        ["serve"])],
    pytest.param(["serve", "fifo"], {}, "DB", id="serve-DB"),
    pytest.param(["serve"], {"LEDGER_DB": "fifo"}, "not a ledger", id="serve-LEDGER_DB"),
    pytest.param(["tags"], {"LEDGER_DB": "fifo"}, "--db", id="tags-LEDGER_DB"),
    pytest.param(["verify", "--db", "ledger.db", "--expect", "fifo", "--key", "signer.key.pub"], {}, "--expect",
                 id="verify--expect"),
    pytest.param(["verify", "--db", "ledger.db", "--expect", "pins", "--key", "signer.key.pub"], {}, "--expect",
                 id="verify--expect-dir"),
    pytest.param(["verify", "--db", "ledger.db", "--key", "fifo"], {}, "--key", id="verify--key"),
    pytest.param(["prove", "--consistency", "fifo", "1", "--db", "ledger.db", "--key", "signer.key.pub"], {},
                 "--consistency",
                 id="prove--consistency"),
    pytest.param(["checkpoint", "--key", "fifo", "--db", "ledger.db"], {}, "--key", id="checkpoint--key"),
    pytest.param(["checkpoint", "--new-key", "fifo"], {}, "--new-key", id="checkpoint--new-key"),
    *[pytest.param(["collect", "r.example/a", "--db", "new.db", option, "fifo", *more], {}, option,
                   id=f"collect{option}")
      for option, more in [("--config", []), ("--docker-config", []), ("--metrics-file", []), ("--ca-file", []),
                           ("--signature-key", []),
                           ("--checkpoint-key", ["--checkpoint-dir", "checkpoints"]),
                           ("--checkpoint-dir", ["--checkpoint-key", "ledger.db"])]],
    pytest.param(["collect", "r.example/a", "--db", "new.db"], {"DOCKER_CONFIG": "docker"}, "Docker config",
                 id="DOCKER_CONFIG"),
    *[pytest.param(["collect", "--config", f"{key}.toml", "--db", "new.db"], {}, key, id=f"config-{key}")
      for key in ("docker_config", "ca_file")],
]


@pytest.mark.parametrize("args, env, named", FIFOS)
def test_a_fifo_given_as_a_file_is_refused_at_once_naming_the_option_and_path(place, args, env, named):
    result = ledger(*args, cwd=place, env=env)
    error = result.stderr.strip().splitlines()[-1]
    assert result.returncode in (1, 2) and error.startswith("Error: "), result.stderr
    assert "fifo" in error or "config.json" in error or "1.checkpoint" in error, error
    assert "not a regular file" in error or "not a directory" in error, error
    assert named in error and "Traceback" not in result.stderr
    assert not os.path.exists(place / "new.db") and not os.path.exists(place / "checkpoints")


def test_a_fifo_as_a_ledger_is_refused_by_the_store_itself(place):
    """The store stats before SQLite opens: a library caller (the metrics, serve's connections) is safe too."""
    for open_ in (store.open_db, store.open_readonly, store.connect_readonly):
        with pytest.raises(store.StoreError, match="fifo: a FIFO, not a regular file"):
            open_(str(place / "fifo"))
    with pytest.raises(store.StoreError, match="a FIFO"):
        store.connect_attached({"a": str(place / "ledger.db"), "b": str(place / "fifo")})


def _commands():
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            yield name, command, param


def _numeric(param):
    return isinstance(param.type, (click.types._NumberParamTypeBase, TreeSize))


NUMBERS = [pytest.param(name, param, id=f"{name}-{param.name}") for name, _, param in _commands() if _numeric(param)]
REQUIRED = {"history": ["r.example/a:1"], "at": ["now"], "changes": ["--since", "now"]}


def test_every_number_parameter_has_bounds_sqlite_and_python_hold():
    """New options are held to it too: an integer's maximum fits 64 bits, a float is finite."""
    assert len(NUMBERS) >= 15
    for name, _, param in _commands():
        if isinstance(param.type, click.IntRange):
            assert param.type.min is not None and param.type.max is not None, (name, param.name)
            assert -INT64_MAX <= param.type.min and param.type.max <= INT64_MAX, (name, param.name)
        elif isinstance(param.type, click.FloatRange):
            assert isinstance(param.type, Float), (name, param.name)
        else:
            assert not isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)), (
                name, param.name)


@pytest.mark.parametrize("command, param", NUMBERS)
@pytest.mark.parametrize("value", ["1" + "0" * 30, "-" + "9" * 25, "9223372036854775808", "1e400", "inf", "nan",
                                   "1" * 5000])
def test_a_number_out_of_bounds_is_one_line_naming_its_option(command, param, value):
    given = [value] * (param.nargs if param.nargs > 0 else 1)
    where = ["--", *given] if isinstance(param, click.Argument) else [param.opts[-1], *given]
    result = CliRunner().invoke(cli, [command, *REQUIRED.get(command, []), *where], env={"LEDGER_DB": "none.db"})
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, (result.output, result.exception)
    error = result.output.strip().splitlines()[-1]
    named = param.name.upper() if isinstance(param, click.Argument) else param.opts[-1]
    assert error.startswith("Error: Invalid value for") and named in error, error
    assert "Traceback" not in result.output


@pytest.mark.parametrize("setting, value, message", [
    ("concurrency", "99999999999999999999999", "concurrency must be from 1 to 256"),
    ("retries", "-99999999999999999999999", "retries must be from 0 to 10"),
    ("max_tags", "9223372036854775808", "max_tags must be from 1 to 10000000"),
    ("deadline", "1e400", "deadline must be from 1 to 86400 (not inf)"),
    ("deadline", "nan", "deadline must be from 1 to 86400 (not nan)"),
    ("rps", "inf", "rps must be from 0.1 to 100000 (not inf)"),
    ("rps", "1e400", "rps must be from 0.1 to 100000 (not inf)"),
    ("notify_deadline", "inf", "notify_deadline must be from 1 to 20 (not inf)"),
    ("notify_deadline", "99999999999999999999999", "notify_deadline must be from 1 to 20"),
])
def test_the_config_files_numbers_are_bounded_as_the_options_are(tmp_path, setting, value, message):
    path = tmp_path / "ledger.toml"
    path.write_text(f'{setting} = {value}\n[registries."r.example"]\n')
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(str(path))


def test_times_and_intervals_people_type_are_bounded():
    for text in ["9" * 400 + "d", "1" + "0" * 30, "367d"]:
        with pytest.raises(ValueError, match="longer than a year"):
            parse_interval(text)
    assert parse_interval("366d") == 366 * 86400
    for text in ["9" * 400 + " days ago", "1e400", "1e400 days ago", "inf days ago", "nan"]:
        with pytest.raises(ValueError, match="before the year 1|is not a time"):
            parse_when(text)
    assert math.isfinite(parse_interval("0.5"))
