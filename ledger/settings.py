"""Per-registry settings: from command-line flags, or a TOML file for many registries.

Secrets never live in the file: it names environment variables, or leaves
credentials to the Docker config and its helpers.
"""

import difflib
import json
import os
import ssl
import tomllib
from dataclasses import dataclass, make_dataclass

import re2

from .auth import Credentials
from .credentials import CredentialsError, from_docker_config
from .references import TargetError, canonical_registry, parse_target
from .limits import NOTIFY_DEADLINE, NOTIFY_DEADLINE_RANGE, NOTIFY_ON
from .notify import Notifications, NotifyError, kinds
from .options import COLLECT, REGISTRY_OPTIONS, RUN_KEYS, SECTION_OPTIONS
from .paths import PathError, check_file, read_bytes
from .registry import RegistryOptions
from .semantics import tag_filter
from .terminal import printable

# The config file's keys: options.COLLECT's that a file may set, and the credentials' own.
_CONFIG_ONLY_KEYS = {"targets", "credentials", "username_env", "password_env"}
_KEYS = _CONFIG_ONLY_KEYS | {option.config_key for option in SECTION_OPTIONS}
_DEFAULT_KEYS = _KEYS - {"targets", "username_env", "password_env"}
_TOP_LEVEL_KEYS = RUN_KEYS  # once per run: one notification, one key set whichever registry signs
MAX_CONFIG_BYTES = 1024 * 1024


class SettingsError(Exception):
    """A config file or flag that cannot be used; the message names it. `usage` False: not the user's
    words but their machine (a credential helper that fails), so not bad usage."""

    def __init__(self, message, usage=True):
        super().__init__(message)
        self.usage = usage


class FlagsConflict(SettingsError):
    """Flags that make no run together (or none at all): the command's usage is worth showing."""


# The options `collect` and `watch` share, as given: TARGETS, --db, and options.COLLECT's, typed.
Flags = make_dataclass("Flags", [("targets", tuple), ("db_path", str)] + [
    (option.name, option.annotation()) for option in COLLECT])


@dataclass
class Plan:
    """What one run is asked to do: its targets and each registry's options, credentials resolved now
    (so a watcher made anew for each run picks up a rotated password or helper token)."""

    db_path: str
    targets: list
    described: list  # the targets as the runs table records them
    options: dict  # registry -> RegistryOptions
    daemon: object = None  # a DaemonClient with --daemon
    anchor: tuple | None = None  # (directory, signer) with --checkpoint-dir
    notify: Notifications | None = None  # with --notify, or notify in the config file
    observe: object = None  # told of every HTTP request (-v, the progress bar): transport.Transport.observe
    signature_keys: tuple = ()  # signatures.Key, from --signature-key and signature_keys in the config file
    metrics: object = None  # metrics.Metrics with --metrics-file or --metrics-port, told of every run


def describe(plan):
    """The plan as lines for people (`collect --dry-run`): each registry with how it is reached, whose
    credentials, its targets, filters and limits; the daemon, notifications and checkpoints. Names
    only, never a secret; every line through printable (a config file's text)."""
    from .registry import reach
    lines = [f"ledger: {plan.db_path}"]
    by_registry = {}
    for target in plan.targets:
        by_registry.setdefault(target.registry, []).append(target.text)
    for registry, options in plan.options.items():
        source = options.credentials.source
        filters = [f"{name} '{value}'" for name, value in (("include", options.include_tags),
                                                            ("exclude", options.exclude_tags)) if value]
        lines += [f"registry {registry}",
                  f"  reach      {reach(registry, options)}",
                  f"  auth       {'anonymous: no credentials' if source in (None, '', 'none') else source}",
                  f"  targets    {', '.join(by_registry.get(registry, [])) or '(none)'}",
                  f"  tags       {', '.join(filters) or 'every tag'}; at most {options.max_tags} per repository",
                  f"  limits     concurrency {options.concurrency}, "
                  f"{f'{options.rps:g} requests/s' if options.rps else 'no rate limit'}, "
                  f"{options.retries} retries, deadline {options.deadline:g}s",
                  f"  referrers  {options.referrers}"]
    if plan.daemon is not None:
        lines.append(f"daemon {plan.daemon.host}")
    if plan.notify is not None:
        lines.append(f"notify {len(plan.notify.urls)} URL{'s' * (len(plan.notify.urls) != 1)}, on "
                     f"{','.join(sorted(plan.notify.on))}")
    if plan.anchor is not None:
        lines.append(f"checkpoints {plan.anchor[0]}")
    return [printable(line) for line in lines]


def target_registries(targets):
    """The registries the command line's targets name, in order; bad targets are FlagsConflict."""
    try:
        return list(dict.fromkeys(parse_target(text).registry for text in targets))
    except TargetError as error:
        raise FlagsConflict(str(error)) from None


def plan(flags, password=lambda registries: None, anchor=None):
    """A run's Plan from the flags and the config file. `password(registries)` gives the command line's
    password, which belongs to the one registry named."""
    if flags.docker_host and not flags.daemon:
        raise FlagsConflict("--docker-host is for --daemon")
    if not flags.targets and not flags.config_path and not flags.daemon:
        raise FlagsConflict("name at least one TARGET, or --config FILE, or --daemon")
    from .daemon import DaemonClient
    try:
        daemon = DaemonClient(flags.docker_host) if flags.daemon else None
    except ValueError as error:
        raise FlagsConflict(str(error)) from None
    registries = target_registries(flags.targets)
    targets = [parse_target(text) for text in flags.targets]
    password = password(registries)
    check_regex(flags.include_tags, "--include-tags")
    check_regex(flags.exclude_tags, "--exclude-tags")
    check_ca_file(flags.ca_file, "--ca-file")
    options = {registry: RegistryOptions(
        **{option.name: getattr(flags, option.name) for option in REGISTRY_OPTIONS},
        credentials=credentials_for(registry, username=flags.username, password=password,
                                    docker_config=flags.docker_config)) for registry in registries}
    file_notify = {}
    if flags.config_path:
        from_file, file_options, file_notify = load_config(flags.config_path)
        targets += from_file
        options.update(file_options)
    described = [*flags.targets] + ([f"--config {flags.config_path}"] if flags.config_path else [])
    described += [f"--daemon {daemon.host}"] if daemon else []
    return Plan(flags.db_path, targets, described, options, daemon, anchor, _notifications(flags, file_notify),
                signature_keys=_signature_keys([*flags.signature_key, *file_notify.get("signature_keys", [])]))


def _signature_keys(paths):
    """The keys and certificates signatures are verified against, read anew for every run."""
    if not paths:
        return ()
    from .signatures import KeyFileError, load_keys
    try:
        return load_keys(paths)
    except KeyFileError as error:
        raise SettingsError(f"--signature-key: {error}") from None


def _notifications(flags, from_file):
    """Where notifications go: the command line's URLs and the file's; the command line's kinds and
    deadline win over the file's. Every URL is checked now, its ${VAR}s expanded only to check it."""
    urls = tuple(dict.fromkeys([*flags.notify, *from_file.get("notify", [])]))
    if not urls:
        if flags.notify_on or flags.notify_deadline is not None:
            raise FlagsConflict("--notify-on and --notify-deadline need a --notify URL (or notify in the config file)")
        return None
    try:
        on = kinds([flags.notify_on]) if flags.notify_on else from_file.get("notify_on", frozenset(NOTIFY_ON))
        deadline = flags.notify_deadline if flags.notify_deadline is not None else from_file.get(
            "notify_deadline", NOTIFY_DEADLINE)
        return Notifications(urls, on, float(deadline)).check()
    except NotifyError as error:
        raise SettingsError(str(error)) from None


def credentials_for(registry, *, username=None, password=None, docker_config=None):
    """Explicit credentials win; else the Docker config (auths, credHelpers, credsStore)."""
    if password is not None:
        return Credentials(username=username or "", password=password, source="--username/--password-stdin")
    try:
        return from_docker_config(registry, docker_config) or Credentials()
    except CredentialsError as error:
        raise SettingsError(str(error), usage=False) from None


def check_regex(value, name):
    """A tag filter must compile with RE2, which runs it: lookarounds and backreferences are refused."""
    if value is None:
        return None
    try:
        tag_filter(value)
    except re2.error as error:
        reason = error.args[0].decode() if isinstance(error.args[0], bytes) else error.args[0]
        raise SettingsError(f"{name}: invalid regular expression {value!r} ({reason}; tag filters are RE2 "
                            "syntax: no lookarounds or backreferences)") from None
    return value


def check_ca_file(path, name):
    """A CA bundle TLS can load (else every request fails alike, far from the cause): SettingsError naming it."""
    if path is None:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise SettingsError(f"{name} {path}: no such file") from None
    except ssl.SSLError:
        raise SettingsError(f"{name} {path}: no PEM certificate in it") from None
    except OSError as error:
        raise SettingsError(f"{name} {path}: cannot read it ({error.strerror})") from None
    return path


def load_config(path):
    """Read a TOML config: returns (targets, {registry: RegistryOptions}, the top level's notification
    settings and signature_keys)."""
    try:
        raw = read_bytes(path, MAX_CONFIG_BYTES)
        if len(raw) > MAX_CONFIG_BYTES:
            raise SettingsError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
        document = tomllib.loads(raw.decode("utf-8"))
    except OSError as error:
        raise SettingsError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not valid TOML (not UTF-8)") from None
    except RecursionError:
        raise SettingsError(f"{path}: not valid TOML (nested too deeply)") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML ({error})") from None
    defaults = {k: v for k, v in document.items() if k != "registries"}
    notify = _notify_settings({key: defaults.pop(key) for key in _TOP_LEVEL_KEYS & set(defaults)}, f"{path}: top level")
    unknown = set(defaults) - _DEFAULT_KEYS
    if unknown:
        raise SettingsError(f"{path}: unknown setting {_unknown(unknown, _DEFAULT_KEYS | _TOP_LEVEL_KEYS)}")
    _check_values(defaults, f"{path}: top level")
    registries = document.get("registries")
    if not isinstance(registries, dict) or not registries:
        raise SettingsError(f"{path}: no [registries.\"HOST\"] sections")
    targets, options = [], {}
    for host, section in registries.items():
        where = f"{path}: [registries.{json.dumps(host)}]"  # escaped: a quoted key may hold control characters
        if not isinstance(section, dict):
            raise SettingsError(f"{where} is not a table")
        unknown = set(section) - _KEYS
        if unknown & _TOP_LEVEL_KEYS:
            raise SettingsError(f"{where}: {sorted(unknown & _TOP_LEVEL_KEYS)[0]} belongs at the top level")
        if unknown:
            raise SettingsError(f"{where}: unknown setting {_unknown(unknown, _KEYS)}")
        _check_values(section, where)
        merged = {**defaults, **section}
        registry = canonical_registry(host)
        names = merged.get("targets") or [host]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SettingsError(f"{where}: targets must be a list of strings")
        for name in names:
            try:
                target = parse_target(name)
            except TargetError as error:
                raise SettingsError(f"{where}: {error}") from None
            if target.registry != registry:
                raise SettingsError(f"{where}: target {name!r} is on another registry ({target.registry})")
            targets.append(target)
        options[registry] = _options(registry, merged, where)
    return targets, options, notify


def _unknown(keys, known):
    """The first unknown key, quoted, with the known one it is likely a misspelling of."""
    key = sorted(keys)[0]
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return repr(key) + (f" (did you mean {close[0]!r}?)" if close else "")


def _notify_settings(table, where):
    """The file's notify (a list of URLs), notify_on (a list of kinds), notify_deadline and signature_keys
    (a list of paths), checked."""
    urls = table.get("notify", [])
    if not isinstance(urls, list) or not all(isinstance(url, str) and url for url in urls):
        raise SettingsError(f"{where}: notify must be a list of URLs")
    checked = {"notify": urls} if urls else {}
    if "signature_keys" in table:
        paths = table["signature_keys"]
        if not isinstance(paths, list) or not all(isinstance(item, str) and item for item in paths):
            raise SettingsError(f"{where}: signature_keys must be a list of file paths")
        checked["signature_keys"] = paths
    if "notify_on" in table:
        on = table["notify_on"]
        if not isinstance(on, list) or not all(isinstance(kind, str) for kind in on):
            raise SettingsError(f"{where}: notify_on must be a list of kinds")
        try:
            checked["notify_on"] = kinds(on)
        except NotifyError as error:
            raise SettingsError(f"{where}: {str(error).replace('--notify-on', 'notify_on')}") from None
    if "notify_deadline" in table:
        deadline, (low, high) = table["notify_deadline"], NOTIFY_DEADLINE_RANGE
        if not isinstance(deadline, (int, float)) or isinstance(deadline, bool):
            raise SettingsError(f"{where}: notify_deadline has the wrong type ({type(deadline).__name__})")
        if not low <= deadline <= high:
            raise SettingsError(f"{where}: notify_deadline must be from {low} to {high} (not {deadline})")
        checked["notify_deadline"] = deadline
    return checked


def _check_values(table, where):
    """Types, the CLI's ranges (options.COLLECT's), readable files, RE2-runnable filters and choices, for
    the options one table of the file sets."""
    for option in SECTION_OPTIONS:
        key = option.config_key
        if key not in table:
            continue
        value, expected = table[key], option.value_types()
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise SettingsError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        low, high = option.bounds or (None, None)
        if low is not None and not low <= value <= high:  # written so that nan is refused too
            raise SettingsError(f"{where}: {key} must be from {low} to {high} (not {value})")
    checked = [option for kind in ("file", "regex", "choice") for option in SECTION_OPTIONS if option.kind == kind]
    for option in checked:
        key = option.config_key
        if key not in table:
            continue
        if option.kind == "file":
            try:
                check_file(table[key])
            except PathError as error:
                raise SettingsError(f"{where}: {key}: {error}") from None
            if key == "ca_file":
                check_ca_file(table[key], f"{where}: ca_file")
        elif option.kind == "regex":
            check_regex(table[key], f"{where}: {key}")
        elif option.kind == "choice" and table[key] not in option.choices:
            raise SettingsError(f"{where}: {key} must be one of {', '.join(option.choices)} (not {table[key]!r})")


def _options(registry, merged, where):
    values = {option.name: merged[option.config_key] for option in REGISTRY_OPTIONS if option.config_key in merged}
    mode = merged.get("credentials", "docker")
    if mode == "none":
        creds = Credentials()
    elif mode == "env":
        user_var, pass_var = merged.get("username_env"), merged.get("password_env")
        if not pass_var:
            raise SettingsError(f"{where}: credentials = \"env\" needs password_env")
        if pass_var not in os.environ:
            raise SettingsError(f"{where}: environment variable {pass_var} is not set")
        creds = Credentials(username=os.environ.get(user_var, "") if user_var else "",
                            password=os.environ[pass_var],
                            source=f"${user_var} and ${pass_var}" if user_var else f"${pass_var}")
    elif mode == "docker":
        creds = credentials_for(registry, docker_config=merged.get("docker_config"))
    else:
        raise SettingsError(f"{where}: credentials must be \"docker\", \"env\" or \"none\"")
    return RegistryOptions(credentials=creds, **values)
