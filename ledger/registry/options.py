"""How to reach one registry: the options the CLI and the config file fill in, and `reach`, those options in
words."""

from dataclasses import dataclass, field

from ..auth import Credentials
from ..limits import (DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, DEFAULT_RETRIES, MAX_REFERRERS, MAX_RUN_REFERRERS,
                      MAX_TAGS)
from ..references import api_base


@dataclass
class RegistryOptions:
    """How to reach one registry; the CLI and the config file fill these in."""

    plain_http: bool = False
    ca_file: str | None = None
    insecure: bool = False  # skip TLS verification
    credentials: Credentials = field(default_factory=Credentials)
    concurrency: int = DEFAULT_CONCURRENCY
    rps: float | None = None  # requests per second, at most
    retries: int = DEFAULT_RETRIES
    backoff: float = 0.5  # seconds; doubles per retry, with jitter
    page_size: int = 1000
    timeout: tuple = (10, 60)  # connect, and each read
    deadline: float = DEFAULT_DEADLINE  # one whole request
    max_tags: int = MAX_TAGS
    max_referrers: int = MAX_REFERRERS  # followed per digest
    max_run_referrers: int = MAX_RUN_REFERRERS  # followed per run
    include_tags: str | None = None
    exclude_tags: str | None = None
    referrers: str = "auto"  # auto | always | never: when to ask the OCI referrers API
    allow_empty: bool = False  # a glob (or a catalog) that matches no repository is expected, not an error


def reach(registry, options):
    """How a registry is spoken to with these options, in words (the dry run's plan): the table of
    --plain-http, --insecure and --ca-file in the README, for one registry."""
    if options.plain_http:
        return "plain HTTP (--plain-http)"
    if options.insecure:
        return "HTTPS, certificate not checked (--insecure); plain HTTP if HTTPS fails"
    if options.ca_file:
        return f"HTTPS, certificate checked against {options.ca_file} (--ca-file)"
    if api_base(registry).startswith("http://"):
        return "plain HTTP (a loopback registry, as Docker)"
    return "HTTPS, certificate checked against the system's CAs"
