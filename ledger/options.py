"""The options `collect` and `watch` share, each declared once: its flag, type and bounds (limits.py's
ranges), default, help, and where a --config file may set it. The click options (`click_options`),
settings.Flags, and the config file's keys, types and ranges (settings.py) are all made from `COLLECT`,
so a flag and its TOML key cannot drift apart. Imports only click and the light modules, for --help.
"""

import functools
from dataclasses import dataclass

import click

from .limits import (CONCURRENCY_RANGE, DEADLINE_RANGE, DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, DEFAULT_RETRIES,
                     MAX_REFERRERS, MAX_REFERRERS_RANGE, MAX_RUN_REFERRERS, MAX_RUN_REFERRERS_RANGE, MAX_TAGS,
                     MAX_TAGS_RANGE, NOTIFY_DEADLINE, NOTIFY_DEADLINE_RANGE, NOTIFY_KINDS, NOTIFY_ON,
                     REFERRER_MODES, RETRIES_RANGE, RPS_RANGE)
from .params import DirectoryPath, FilePath, Float, Int

# Where a config file may set an option:
REGISTRY = "registry"  # a RegistryOptions field: in a [registries."HOST"] section, or at the top level for all
CREDENTIALS = "credentials"  # read for a registry's credentials: a section, or the top level for all
RUN = "run"  # once per run: the top level only


@dataclass(frozen=True)
class Option:
    """One option. `kind`: int, float, str, regex (an RE2 tag filter), bool (a flag), file, dir or choice;
    `bounds` the range of a number; `config` where a config file sets it (None: the command line only),
    under `key` when that is not the option's name."""

    name: str
    flags: tuple
    help: str
    kind: str = "str"
    bounds: tuple | None = None
    default: object = None
    show_default: bool = False
    metavar: str | None = None
    multiple: bool = False
    envvar: str | None = None
    exists: bool = False  # a file that must be there already
    choices: tuple = ()
    config: str | None = None
    key: str | None = None

    @property
    def config_key(self):
        return self.key or self.name

    def param_type(self):
        """The click type, bounded: params.py's, so the file's values and the flag's have one range."""
        return {"int": lambda: Int(*self.bounds), "float": lambda: Float(*self.bounds),
                "file": lambda: FilePath(exists=self.exists), "dir": DirectoryPath,
                "choice": lambda: click.Choice(self.choices)}.get(self.kind, lambda: None)()

    def value_types(self):
        """The Python types a config file's value may have (TOML's integers are numbers too)."""
        return {"bool": bool, "int": int, "float": (int, float)}.get(self.kind, str)

    def annotation(self):
        """settings.Flags' type of the option's value, as click gives it."""
        if self.multiple:
            return tuple
        given = {"bool": bool, "int": int, "float": float}.get(self.kind, str)
        return given if self.kind == "bool" or self.default is not None else given | None

    def decorator(self):
        """The click option."""
        extra = {"is_flag": True} if self.kind == "bool" else {"type": self.param_type()}
        if self.default is not None:
            extra["default"] = self.default
        return click.option(*self.flags, self.name, metavar=self.metavar, multiple=self.multiple,
                            envvar=self.envvar, show_default=self.show_default or None, help=self.help, **extra)


COLLECT = (
    Option("config_path", ("--config",), kind="file", metavar="FILE",
           help="A TOML file of registries with their own targets, credentials, TLS and limits."),
    Option("concurrency", ("--concurrency",), kind="int", bounds=CONCURRENCY_RANGE, default=DEFAULT_CONCURRENCY,
           show_default=True, config=REGISTRY, help="Requests in flight at once, per registry."),
    Option("rps", ("--rps",), kind="float", bounds=RPS_RANGE, metavar="N", config=REGISTRY,
           help="At most N requests per second, per registry."),
    Option("retries", ("--retries",), kind="int", bounds=RETRIES_RANGE, default=DEFAULT_RETRIES, show_default=True,
           config=REGISTRY, help="Retries on connection errors, 5xx and 429, with exponential backoff and jitter; Retry-After (seconds "
                "or an HTTP date) is honoured, capped at 60 s."),
    Option("deadline", ("--deadline",), kind="float", bounds=DEADLINE_RANGE, default=DEFAULT_DEADLINE,
           show_default=True, metavar="SECONDS", config=REGISTRY,
           help="Give up on one request (connecting, headers and body together) after this long: a server that "
                "drips its answer cannot hold a run."),
    Option("max_tags", ("--max-tags",), kind="int", bounds=MAX_TAGS_RANGE, default=MAX_TAGS, show_default=True,
           metavar="N", config=REGISTRY,
           help="Most tags listed per repository; past it the listing is incomplete and removes nothing."),
    Option("max_referrers", ("--max-referrers",), kind="int", bounds=MAX_REFERRERS_RANGE, default=MAX_REFERRERS,
           show_default=True, metavar="N", config=REGISTRY,
           help="Most referrers followed per digest; past it the rest are cut (an error row) and none of its "
                "referrers is removed."),
    Option("max_run_referrers", ("--max-run-referrers",), kind="int", bounds=MAX_RUN_REFERRERS_RANGE,
           default=MAX_RUN_REFERRERS, show_default=True, metavar="N", config=REGISTRY,
           help="Most referrers followed per registry in one run; past it the rest are cut (an error row) and "
                "removes nothing."),
    Option("include_tags", ("--include-tags",), kind="regex", metavar="REGEX", config=REGISTRY,
           help="Only tags this regex matches (searched; anchor with ^ $). RE2 syntax, as in Go tools: linear time "
                "whatever the pattern; lookarounds and backreferences are refused (exit 2); \\d \\w are ASCII."),
    Option("exclude_tags", ("--exclude-tags",), kind="regex", metavar="REGEX", config=REGISTRY,
           help="Skip tags this regex matches (RE2, as --include-tags)."),
    Option("allow_empty", ("--allow-empty",), kind="bool", config=REGISTRY,
           help="A glob (or a registry's catalog) that matches no repository is expected: not an error."),
    Option("referrers", ("--referrers",), kind="choice", choices=REFERRER_MODES, default="auto", show_default=True,
           config=REGISTRY,
           help="Ask the OCI referrers API for each digest's signatures, attestations and SBOMs: auto (where the "
                "registry serves it), always (an error where it does not), never (the referrers tag schema and "
                "cosign's tags alone, which cost no request)."),
    Option("signature_key", ("--signature-key",), kind="file", multiple=True, metavar="PEM", config=RUN,
           key="signature_keys",
           help="Verify signatures (cosign keyed, Notation JWS) against this public key or certificate "
                "(repeatable); `signed` means a signature that verified against one of them."),
    Option("plain_http", ("--plain-http",), kind="bool", config=REGISTRY,
           help="Speak plain HTTP to the registries named here (a loopback registry is spoken to in plain HTTP "
                "already); credentials then go in clear text."),
    Option("ca_file", ("--ca-file",), kind="file", exists=True, metavar="PEM", config=REGISTRY,
           help="Speak HTTPS, checking the certificate against this CA bundle instead of the system's CAs."),
    Option("insecure", ("--insecure",), kind="bool", config=REGISTRY,
           help="Speak HTTPS without checking the certificate, falling back to plain HTTP when HTTPS fails, as "
                "Docker does for an insecure registry; credentials never take that fallback to a host that is not "
                "loopback."),
    Option("username", ("--username",), envvar="LEDGER_USERNAME", metavar="USER",
           help="User name for the registries named here (env LEDGER_USERNAME)."),
    Option("password_stdin", ("--password-stdin",), kind="bool",
           help="Read the password or token from standard input (or set LEDGER_PASSWORD). It belongs to one "
                "registry: targets on several registries with a password are bad usage (exit 2)."),
    Option("docker_config", ("--docker-config",), kind="file", metavar="FILE", config=CREDENTIALS,
           help="Docker config to read credentials from [default: $DOCKER_CONFIG/config.json or "
                "~/.docker/config.json]."),
    Option("daemon", ("--daemon",), kind="bool",
           help="Also record the images a local Docker daemon holds (keyed apart from the registries); no TARGET is "
                "needed then."),
    Option("docker_host", ("--docker-host",), metavar="URL",
           help="The daemon's API with --daemon: unix:///path or tcp://HOST:PORT "
                "[default: $DOCKER_HOST or unix:///var/run/docker.sock]."),
    Option("checkpoint_dir", ("--checkpoint-dir",), kind="dir", metavar="DIR",
           help="After every run, write the signed head to a new DIR/run-ID.checkpoint and link "
                "DIR/latest.checkpoint to it, once it extends the checkpoints there: a rolled-back or rewritten "
                "ledger is refused, exit 1, and no file is overwritten (keep DIR elsewhere: a git repo, a bucket)."),
    Option("checkpoint_key", ("--checkpoint-key",), kind="file", envvar="LEDGER_CHECKPOINT_KEY", metavar="FILE",
           help="The signer key for --checkpoint-dir (env LEDGER_CHECKPOINT_KEY)."),
    Option("notify", ("--notify",), multiple=True, metavar="URL", config=RUN,
           help="Send a message about each run that changed something or failed to this apprise URL (json://, "
                "slack://, msteams://, discord://, matrix://, mailto://, ...; repeatable); ${VAR} in it is read "
                "from the environment when sending, and never stored or shown."),
    Option("notify_on", ("--notify-on",), metavar="KINDS", config=RUN,
           help=f"What is worth a message, comma-separated: {', '.join(NOTIFY_KINDS)} "
                f"[default: {','.join(NOTIFY_ON)}]."),
    Option("notify_deadline", ("--notify-deadline",), kind="float", bounds=NOTIFY_DEADLINE_RANGE, metavar="SECONDS",
           config=RUN, help=f"Give up on a run's notifications after this long, every URL together "
                            f"[default: {NOTIFY_DEADLINE:g}]."),
    Option("metrics_file", ("--metrics-file",), kind="file", metavar="PATH",
           help="After every run, write Prometheus metrics to PATH, atomically (name it *.prom for node_exporter's "
                "textfile collector)."),
    Option("quiet", ("-q", "--quiet"), kind="bool", help="No progress bar and no summary; errors only."),
    Option("verbose", ("-v", "--verbose"), kind="bool",
           help="Print each HTTP request to stderr: method, URL (without its query), status, milliseconds; never a "
                "header or credential; no progress bar then."),
)

# The config file's keys, by where it may set them.
REGISTRY_OPTIONS = tuple(option for option in COLLECT if option.config == REGISTRY)
SECTION_OPTIONS = tuple(option for option in COLLECT if option.config in (REGISTRY, CREDENTIALS))
RUN_KEYS = frozenset(option.config_key for option in COLLECT if option.config == RUN)


def click_options():
    """The click options, in the order --help lists them."""
    return [option.decorator() for option in COLLECT]


# The options of many commands.

db_option = click.option(
    "--db", "db_path", default="ledger.db", show_default=True, envvar="LEDGER_DB", metavar="PATH",
    type=FilePath(), help="The ledger file (env LEDGER_DB).")


source_option = click.option(
    "--source", metavar="GLOB",
    help="Only keys of this source: 'registry', or a Docker daemon's 'daemon:HOSTNAME' ('daemon:*') [default: all].")


def output_options(command):
    """--json and --csv for scripts (one of them: both is bad usage); aligned columns otherwise."""
    @functools.wraps(command)
    def checked(*args, **kwargs):
        if kwargs.get("as_json") and kwargs.get("as_csv"):
            raise click.UsageError("--json and --csv: give one of them")
        return command(*args, **kwargs)
    checked = click.option("--csv", "as_csv", is_flag=True, help="Print CSV (the columns of --full, in order).")(checked)
    checked = click.option("--json", "as_json", is_flag=True, help="Print JSON (the columns of --full, in order).")(
        checked)
    return click.option("--full", is_flag=True, help="Every column, digests whole (JSON and CSV always have them).")(
        checked)
