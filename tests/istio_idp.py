"""A stand-in for an external identity provider as the gateway reaches it in a mesh: an HTTPS JWKS
endpoint behind the cluster istiod builds for a ServiceEntry + DestinationRule (TLS originated by
the gateway, see istio/README.md), for tests/test_istio_envoy.py.

The server has a certificate for its host name from a CA made for the test (nothing is written
outside a temporary directory), records the SNI and the requests it gets, and serves the JWKS of a
`jwt_tokens.Keyring`.
"""

from __future__ import annotations

import datetime
import json
import ssl
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from echo_upstream import EchoServer
from jwt_tokens import Keyring

JWKS_PATH = "/.well-known/jwks.json"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_leaf(host: str, directory: Path) -> tuple:
    """(CA certificate file, leaf certificate chain file, leaf key file) for `host`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("meshwall test CA")).issuer_name(_name("meshwall test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "idp.pem", directory / "idp-key.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class Idp:
    """A running HTTPS JWKS endpoint for `host`. `.port`, `.ca_file`, `.keys` (the Keyring whose
    public keys it serves), `.requests` [(method, path, host header)], `.sni` [server names]."""

    def __init__(self, host: str, directory: Path):
        self.host = host
        self.keys = Keyring(prefix="idp-")
        self.jwks = json.dumps(self.keys.jwks(with_hmac=False)).encode()
        self.requests: list = []
        self.sni: list = []
        self._lock = threading.Lock()
        self.ca_file, cert_file, key_file = make_ca_and_leaf(host, directory)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        ctx.sni_callback = self._on_sni
        self.server = EchoServer(handler=self._handle)
        # The handshake happens on the connection's first read, in its own handler thread.
        self.server.httpd.socket = ctx.wrap_socket(self.server.httpd.socket, server_side=True,
                                                   do_handshake_on_connect=False)
        self.port = self.server.port

    def _on_sni(self, sock, name, ctx):
        with self._lock:
            self.sni.append(name)

    def _handle(self, method, path, headers, body):
        host = next((v for k, v in headers if k.lower() == "host"), None)
        with self._lock:
            self.requests.append((method, path, host))
        if method == "GET" and path == JWKS_PATH:
            return 200, [("Content-Type", "application/jwk-set+json")], self.jwks
        return 404, [("Content-Type", "text/plain")], b"not found\n"

    def fetches(self) -> list:
        with self._lock:
            return [r for r in self.requests if r[1] == JWKS_PATH]


@contextmanager
def running_idp(host: str) -> Iterator[Idp]:
    with tempfile.TemporaryDirectory(prefix="meshwall-idp-") as d:
        idp = Idp(host, Path(d))
        with idp.server:
            yield idp

