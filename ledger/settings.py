"""Per-registry settings: from command-line flags, or a TOML file for many registries.

Secrets never live in the file: it names environment variables, or leaves
credentials to the Docker config and its helpers.
"""

import os
import re
import tomllib

from .auth import Credentials
from .credentials import CredentialsError, from_docker_config
from .references import ReferenceError, canonical_registry, parse_target
from .registry import RegistryOptions

_KEYS = {"targets", "credentials", "username_env", "password_env", "docker_config", "ca_file", "insecure",
         "plain_http", "concurrency", "rps", "retries", "include_tags", "exclude_tags"}
_DEFAULT_KEYS = _KEYS - {"targets", "username_env", "password_env"}


class SettingsError(Exception):
    """A config file or flag that cannot be used; the message names it."""


def credentials_for(registry, *, username=None, password=None, docker_config=None):
    """Explicit credentials win; else the Docker config (auths, credHelpers, credsStore)."""
    if password is not None:
        return Credentials(username=username or "", password=password, source="--username/--password-stdin")
    try:
        return from_docker_config(registry, docker_config) or Credentials()
    except CredentialsError as error:
        raise SettingsError(str(error)) from None


def check_regex(value, name):
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as error:
        raise SettingsError(f"{name}: invalid regular expression {value!r} ({error})") from None
    return value


def load_config(path):
    """Read a TOML config: returns (targets, {registry: RegistryOptions})."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML ({error})") from None
    defaults = {k: v for k, v in document.items() if k != "registries"}
    unknown = set(defaults) - _DEFAULT_KEYS
    if unknown:
        raise SettingsError(f"{path}: unknown setting {sorted(unknown)[0]!r}")
    registries = document.get("registries")
    if not isinstance(registries, dict) or not registries:
        raise SettingsError(f"{path}: no [registries.\"HOST\"] sections")
    targets, options = [], {}
    for host, section in registries.items():
        where = f"{path}: [registries.\"{host}\"]"
        if not isinstance(section, dict):
            raise SettingsError(f"{where} is not a table")
        unknown = set(section) - _KEYS
        if unknown:
            raise SettingsError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
        merged = {**defaults, **section}
        registry = canonical_registry(host)
        names = merged.get("targets") or [host]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SettingsError(f"{where}: targets must be a list of strings")
        for name in names:
            try:
                target = parse_target(name)
            except ReferenceError as error:
                raise SettingsError(f"{where}: {error}") from None
            if target.registry != registry:
                raise SettingsError(f"{where}: target {name!r} is on another registry ({target.registry})")
            targets.append(target)
        options[registry] = _options(registry, merged, where)
    return targets, options


def _options(registry, merged, where):
    values = {}
    for key in ("ca_file", "insecure", "plain_http", "concurrency", "rps", "retries", "include_tags", "exclude_tags"):
        if key not in merged:
            continue
        value = merged[key]
        expected = {"insecure": bool, "plain_http": bool, "concurrency": int, "retries": int,
                    "rps": (int, float)}.get(key, str)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise SettingsError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        values[key] = value
    if values.get("concurrency") is not None and not 1 <= values["concurrency"] <= 256:
        raise SettingsError(f"{where}: concurrency must be from 1 to 256")
    for key in ("include_tags", "exclude_tags"):
        check_regex(values.get(key), f"{where}: {key}")
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
                            password=os.environ[pass_var], source=f"${pass_var}")
    elif mode == "docker":
        creds = credentials_for(registry, docker_config=merged.get("docker_config"))
    else:
        raise SettingsError(f"{where}: credentials must be \"docker\", \"env\" or \"none\"")
    return RegistryOptions(credentials=creds, **values)
