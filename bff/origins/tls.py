"""TLS between DRIMboxes (mutual TLS, IGC-Santé certificates; issue 13 items 6 and 7):
the protocol floor and cipher list both ends use, and the subject of the certificate the
peer presented.

TLS 1.2 and 1.3 only. For TLS 1.2, forward secrecy (ECDHE) with an AEAD cipher only
(AES-GCM, ChaCha20-Poly1305), as in Mozilla's "intermediate" profile without DHE: no CBC,
no SHA-1 MAC, no RSA key exchange. TLS 1.3 suites are OpenSSL's (all AEAD).
"""

from __future__ import annotations

import ssl

from cryptography import x509

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """Set the floor (TLS 1.2), the TLS 1.2 suites, and no compression or renegotiation."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The certificate the peer presented in the handshake (None without one)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None
