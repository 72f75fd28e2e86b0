"""A self-signed certificate for the local stack's TLS listeners (the hub's AMQPS port, Azurite's
HTTPS), made on the spot: nothing secret is checked in.

The certificate names 127.0.0.1 and localhost, is its own CA, and is written as PEM files
(`cert`, `key`). A client trusts it by its CA file: `SSL_CERT_FILE=<cert>` for a process that
uses Python's default SSL context (the Event Hubs SDK's AMQP transport, aiohttp under the
blob SDK), or `ssl.create_default_context(cafile=<cert>)`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SelfSignedCert:
    cert: Path  # PEM certificate, also the CA file a client trusts
    key: Path  # PEM private key (unencrypted)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def make_self_signed_cert(directory: str | Path, common_name: str = "amlwh local stack") -> SelfSignedCert:
    """An RSA key and a certificate valid for a day, for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = SelfSignedCert(directory / "local-stack.crt", directory / "local-stack.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption()))
    paths.key.chmod(0o600)
    return paths
