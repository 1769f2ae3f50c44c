"""A throw-away PKI for demos and tests of the mutual TLS between DRIMboxes (FACTS.md 1).

In production the Consumer and the Source DRIMboxes authenticate each other with
IGC-Santé certificates. Here everything is generated on the fly, in a temporary
directory, and never committed: one test CA, certificates it issues, and the usual
negative cases (a second, untrusted CA; a certificate whose validity ended yesterday).

All keys are EC P-256 and written PEM, unencrypted, with mode 0600. Certificates carry
what strict verifiers (OpenSSL ``X509_V_FLAG_X509_STRICT``, ``cryptography``'s
``PolicyBuilder``) expect: critical basicConstraints and keyUsage, SKI/AKI, an EKU and a
subjectAltName on leaves.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Total validity of a test CA (started two days ago so that the expired leaf nests in it).
CA_VALIDITY = dt.timedelta(days=30)
CA_BACKDATE = dt.timedelta(days=2)
#: Validity of a leaf; backdated a little against clock skew between processes.
LEAF_VALIDITY = dt.timedelta(days=7)
LEAF_BACKDATE = dt.timedelta(hours=1)
#: The organisation named in every test certificate's subject.
TEST_ORGANIZATION = "DRIMbox viewer tests"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for one TLS endpoint: the CA that issued ``cert``, the cert, its key."""

    ca_cert: Path
    cert: Path
    key: Path


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"unusable file name: {name!r}")
    return slug


def subject(common_name: str, organization: str = TEST_ORGANIZATION) -> x509.Name:
    """The subject DN of a test certificate (what a test whitelist lists as the operator
    certificate DN, ``DNCertificatOperateur``)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (also when ``path`` already exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(
    *, cert_sign: bool = False, commitment: bool = False, agreement: bool = False
) -> x509.KeyUsage:
    """digitalSignature always; certificate and CRL signing for a CA; nonRepudiation for a
    document signer; keyAgreement for a TLS leaf (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _save(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    """``<slug of name>.crt`` and ``.key`` (private) in ``directory``."""
    slug = _slug(name)
    cert_path, key_path = directory / f"{slug}.crt", directory / f"{slug}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _self_signed(
    name: str, key: ec.EllipticCurvePrivateKey, not_before: dt.datetime, validity: dt.timedelta
) -> x509.CertificateBuilder:
    """A self-signed certificate's builder: subject = issuer = ``subject(name)``."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject(name))
        .issuer_name(subject(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + validity)
    )


def _load_ca(ca: tuple[Path, Path]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
    key = serialization.load_pem_private_key(ca[1].read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca[1]}: not an EC private key")
    return cert, key


def make_ca(directory: Path, name: str = "DRIMbox Test CA") -> tuple[Path, Path]:
    """Create a self-signed CA (EC P-256, 30 days) in ``directory``.

    Files are ``<slug>.crt`` and ``<slug>.key`` (slug of ``name``). Returns
    ``(ca_cert, ca_key)``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _self_signed(name, key, _now() - CA_BACKDATE, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return _save(directory, name, key, cert)


def issue(
    directory: Path,
    ca: tuple[Path, Path],
    *,
    common_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    client: bool = False,
    server: bool = False,
    expired: bool = False,
    organization: str = TEST_ORGANIZATION,
    name: str,
) -> TlsFiles:
    """Issue a leaf certificate signed by ``ca`` = ``(ca_cert, ca_key)``.

    ``server``/``client`` set the extendedKeyUsage (serverAuth/clientAuth; at least one).
    ``dns_names``/``ip_addresses`` go to the subjectAltName (omitted when both are empty;
    TLS clients match host names against the SAN only, never the CN).
    ``expired=True`` gives a certificate whose validity ended yesterday (negative tests).
    ``organization``: the O of the subject (another one: a certificate the test whitelist
    does not list). Files are ``<slug of name>.crt`` and ``.key``.
    """
    if not (client or server):
        raise ValueError("a leaf certificate needs client=True and/or server=True")
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())

    now = _now()
    if expired:
        not_before = max(now - dt.timedelta(days=2), ca_cert.not_valid_before_utc)
        not_after = now - dt.timedelta(days=1)
    else:
        not_before = max(now - LEAF_BACKDATE, ca_cert.not_valid_before_utc)
        not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)

    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(agreement=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = _save(directory, name, key, cert)
    return TlsFiles(ca_cert=ca[0], cert=cert_path, key=key_path)


def make_test_pki(
    directory: Path,
    *,
    server_names: Sequence[str] = ("localhost", "db1.localhost"),
    client_name: str = "consumer.localhost",
) -> dict[str, TlsFiles]:
    """The whole test PKI in ``directory``.

    Keys of the result:

    - ``server``: Source DRIMbox certificate (serverAuth) for ``server_names`` plus the
      loopback addresses 127.0.0.1 and ::1, from the test CA;
    - ``client``: Consumer DRIMbox certificate (clientAuth) for ``client_name``, same CA;
    - ``untrusted_server`` / ``untrusted_client``: the same names, from ANOTHER CA (their
      ``ca_cert`` is that other CA);
    - ``expired_server``: like ``server``, test CA, validity ended yesterday.
    """
    if not server_names:
        raise ValueError("server_names must not be empty")
    ca = make_ca(directory, "DRIMbox Test CA")
    other_ca = make_ca(directory, "DRIMbox Untrusted CA")
    loopback = ("127.0.0.1", "::1")

    def server(ca_pair: tuple[Path, Path], name: str, *, expired: bool = False) -> TlsFiles:
        return issue(
            directory,
            ca_pair,
            common_name=server_names[0],
            dns_names=server_names,
            ip_addresses=loopback,
            server=True,
            expired=expired,
            name=name,
        )

    def client(ca_pair: tuple[Path, Path], name: str) -> TlsFiles:
        return issue(
            directory,
            ca_pair,
            common_name=client_name,
            dns_names=(client_name,),
            client=True,
            name=name,
        )

    return {
        "server": server(ca, "server"),
        "client": client(ca, "client"),
        "untrusted_server": server(other_ca, "untrusted-server"),
        "untrusted_client": client(other_ca, "untrusted-client"),
        "expired_server": server(ca, "expired-server", expired=True),
    }


def make_whitelist_signer(directory: Path, name: str = "ANS liste blanche de test") -> TlsFiles:
    """A self-signed signing certificate standing for the ANS one that signs the
    whitelist (EC P-256, digitalSignature + nonRepudiation, no TLS usage). The application
    pins it (DRIMBOX_WHITELIST_SIGNER_CERT); ``ca_cert`` is the certificate itself."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _self_signed(name, key, _now() - LEAF_BACKDATE, LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(commitment=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = _save(directory, name, key, cert)
    return TlsFiles(ca_cert=cert_path, cert=cert_path, key=key_path)
