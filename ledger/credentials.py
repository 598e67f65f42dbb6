"""Find credentials for a registry the way Docker does: config.json, helpers, stores."""

import base64
import binascii
import os
import shutil
import subprocess
from pathlib import Path

from .auth import Credentials
from .paths import read_bytes
from .references import DOCKER_HUB, canonical_registry
from .wire import WireError, loads

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 30
MAX_CONFIG_BYTES = 16 * 1024 * 1024


class CredentialsError(Exception):
    """A Docker config or credential helper that cannot be used; never holds a secret."""


def docker_config_path():
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def _host_of(key):
    """A config key (`https://index.docker.io/v1/`, `ghcr.io`, `http://host:5000`) as a registry name: its
    host, named as a target names it (Docker Hub's aliases are docker.io)."""
    return canonical_registry(key.split("://", 1)[-1].split("/", 1)[0])


def server_url(registry):
    """What Docker calls the registry in config keys and helper requests."""
    return DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def from_docker_config(registry, path=None):
    """Credentials for `registry` from the Docker config, or None. Order: credHelpers, credsStore, auths."""
    path = Path(path) if path else docker_config_path()
    if not path.exists():
        return None
    try:
        raw = read_bytes(path, MAX_CONFIG_BYTES)
        if len(raw) > MAX_CONFIG_BYTES:
            raise CredentialsError(f"{path}: the Docker config is larger than {MAX_CONFIG_BYTES} bytes")
        config = loads(raw, "the Docker config")
    except OSError as error:
        raise CredentialsError(f"{path}: cannot read the Docker config ({error.strerror})") from None
    except WireError as error:
        raise CredentialsError(f"{path}: cannot read the Docker config ({error})") from None
    if not isinstance(config, dict):
        raise CredentialsError(f"{path}: the Docker config is not a JSON object")
    helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), dict) else {}
    for key, helper in helpers.items():
        if _host_of(key) == registry and isinstance(helper, str) and helper:
            return from_helper(helper, registry)
    if isinstance(config.get("credsStore"), str) and config["credsStore"]:
        found = from_helper(config["credsStore"], registry)
        if found:
            return found
    auths = config.get("auths") if isinstance(config.get("auths"), dict) else {}
    for key, entry in auths.items():
        if _host_of(key) == registry and isinstance(entry, dict):
            return _from_auth_entry(entry, f"{path} ({key})")
    return None


def _from_auth_entry(entry, source):
    entry = {key: value for key, value in entry.items() if isinstance(value, str) and value}
    creds = Credentials(source=source)
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CredentialsError(f"{source}: 'auth' is not base64 user:password") from None
        creds.username, creds.password = username, password
    if entry.get("username") and entry.get("password"):
        creds.username, creds.password = entry["username"], entry["password"]
    creds.identity_token = entry.get("identitytoken") or None
    creds.registry_token = entry.get("registrytoken") or None
    if not (creds.password or creds.identity_token or creds.registry_token):
        return None
    return creds


def from_helper(name, registry):
    """Ask `docker-credential-NAME get`; a non-zero exit means it has no credentials."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        raise CredentialsError(f"credential helper docker-credential-{name} (for {registry}) is not on PATH")
    try:
        answer = subprocess.run([program, "get"], input=server_url(registry), capture_output=True, text=True,
                                timeout=HELPER_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CredentialsError(f"credential helper docker-credential-{name} failed for {registry} "
                               f"({error.__class__.__name__})") from None
    if answer.returncode != 0:
        return None
    try:
        found = loads(answer.stdout[:MAX_CONFIG_BYTES], "its answer")
        username, secret = found["Username"], found["Secret"]
        if not isinstance(username, str) or not isinstance(secret, str):
            raise TypeError
    except (WireError, KeyError, TypeError):
        raise CredentialsError(f"credential helper docker-credential-{name} answered for {registry} "
                               "with something that is not its JSON") from None
    source = f"docker-credential-{name}"
    if username == "<token>":
        return Credentials(identity_token=secret, source=source)
    return Credentials(username=username, password=secret, source=source)
