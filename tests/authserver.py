"""Test-side auth: a CA and certificates, htpasswd files, and a token server signing ES256 JWTs."""

import base64
import datetime
import hashlib
import ipaddress
import json
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from sandbox.loopback import LoopbackServer


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(path, data):
    path.write_bytes(data)
    return str(path)


def _name(common):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject, key, issuer, issuer_key, *, ca, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls(directory):
    """A CA, and a server certificate for 127.0.0.1 and localhost signed by it: (ca.pem, cert, key)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("ledger test CA", ca_key, "ledger test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("127.0.0.1", key, "ledger test CA", ca_key, ca=False,
                        sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    return (_pem(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
            _pem(directory / "server.pem", cert.public_bytes(serialization.Encoding.PEM)),
            _pem(directory / "server.key", key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption())))


def write_htpasswd(path, users):
    """bcrypt entries, as the registry's htpasswd auth requires."""
    path.write_text("".join(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                            for user, password in users.items()))
    return str(path)


def libtrust_kid(public_key):
    """sha256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32, in groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


class TokenServer:
    """The registry's token service: Basic-authenticated (or anonymous) GETs, refresh-token POSTs.

    `users` maps user to password; `public` lists repos anyone may pull;
    `catalog_users` may list the catalog. Every request is logged.
    """

    SERVICE = "ledger-test-registry"
    ISSUER = "ledger-test-issuer"

    def __init__(self, directory, users, public=(), catalog_users=(), expires_in=300, refresh_tokens=None):
        self.key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate("ledger token signer", self.key, "ledger token signer", self.key, ca=False)
        self.bundle = _pem(directory / "token-signer.pem", cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_kid(self.key.public_key())
        self.users = dict(users)
        self.public = set(public)
        self.catalog_users = set(catalog_users)
        self.expires_in = expires_in
        self.refresh_tokens = dict(refresh_tokens or {})  # refresh token -> user
        self.requests = []
        self.issued = []
        self._lock = threading.Lock()
        self.server = LoopbackServer({"GET": self._get, "POST": self._refresh}).start()
        self.realm = f"{self.server.url}/token"

    def registry_config(self):
        return (f"auth: {{token: {{realm: {self.realm}, service: {self.SERVICE}, issuer: {self.ISSUER}, "
                f"rootcertbundle: {self.bundle}}}}}\n")

    def stop(self):
        self.server.stop()

    def _get(self, handler):
        self._answer(handler, parse_qs(urlsplit(handler.path).query), self._basic_user(handler))

    def _refresh(self, handler):
        form = parse_qs(handler.body().decode())
        user = self.refresh_tokens.get((form.get("refresh_token") or [""])[0])
        if form.get("grant_type") != ["refresh_token"] or user is None:
            return self._deny(handler)
        scopes = (form.get("scope") or [""])[0].split()
        self._answer(handler, {"service": form.get("service", []), "scope": scopes}, user, oauth=True)

    def _basic_user(self, handler):
        header = handler.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else False

    def _deny(self, handler):
        handler.send(401)

    def _answer(self, handler, query, user, oauth=False):
        with self._lock:
            self.requests.append({"path": handler.path, "user": user, "scopes": list(query.get("scope", [])),
                                  "authorization": handler.headers.get("Authorization")})
        if user is False:
            return self._deny(handler)
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and (user or name in self.public):
                access.append({"type": "repository", "name": name, "actions": ["pull"]})
            elif kind == "registry" and name == "catalog" and user in self.catalog_users:
                access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
        token = self.sign(user or "", access)
        body = json.dumps({"access_token" if oauth else "token": token, "expires_in": self.expires_in,
                           "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}).encode()
        handler.send(200, body, [("Content-Type", "application/json")])

    def sign(self, subject, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        claims = {"iss": self.ISSUER, "sub": subject, "aud": self.SERVICE, "exp": now + self.expires_in,
                  "nbf": now - 1, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        with self._lock:
            self.issued.append(token)
        return token
