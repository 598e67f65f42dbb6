"""GET /v2/: whether the registry answers, and how it wants to be authenticated."""

from ..references import is_loopback
from .errors import RegistryError


def fetch_ping(policy):
    """GET /v2/: reachability, and the auth challenge. Credentials go only in answer to a challenge,
    and are checked at once, as docker login does. With --insecure, HTTPS that fails (a registry
    that speaks plain HTTP, or none on 443) falls back to plain HTTP, as Docker does for an
    insecure registry; credentials still never go in clear text to another machine (auth.py)."""
    try:
        _ping(policy)
    except RegistryError as error:
        if not (policy.options.insecure and policy.base.startswith("https://")
                and error.code in ("TLS", "UNREACHABLE")):
            raise
        policy.speak_plain_http()
        try:
            _ping(policy)
        except RegistryError as second:
            second.message += f" (after HTTPS failed: {error.message})"
            raise


def _ping(policy):
    try:
        response = policy.request("GET", f"{policy.base}/v2/", "ping", retry_unreachable=False)
    except RegistryError as error:
        if error.status == 401 and not policy.auth.scheme:
            error.message = "ping: HTTP 401 with no challenge this client can answer"
        elif error.status == 400 and policy.base.startswith("http://"):
            fix = ("give --ca-file PEM to speak HTTPS and trust its CA (or --insecure not to check it)" if
                   is_loopback(policy.registry) and not policy.options.plain_http else "drop --plain-http")
            error.message = (f"ping: HTTP 400 from {policy.base}/v2/: this looks like a TLS (HTTPS) port spoken "
                             f"to in plain HTTP; {fix}")
        elif error.status is not None and 400 <= error.status < 500 and error.status not in (401, 429):
            error.message = f"ping: HTTP {error.status} from {policy.base}/v2/ (is this a registry?)"
        raise
    response.close()
    policy.login_checked = policy.auth.scheme is not None
